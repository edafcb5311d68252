// Package console serves pgflow's browser console and the JSON API behind
// it, as one http.Handler: `pgflow serve` mounts it, and a Go service can
// too.
//
// # What it shows
//
// The overview lists every queue with its ready, delayed, in-flight,
// retrying and dead-lettered counts, the oldest ready message's age, whether
// it is paused, and sparklines of handled and failed deliveries per minute
// over the last hour (from pgflow_queue_stats); it refreshes itself. A
// queue's page has tabs for pending messages (in claim order), in-flight
// ones (consumer, lease left, attempt), delayed and retrying ones, and dead
// letters, each paged with a cursor and filtered by time range, priority and
// error text, plus charts of handled, failed and dead-lettered deliveries
// over 1 h and 24 h. A message's page shows its payload and headers
// pretty-printed, every attempt's error and time, and its trace id.
//
// # What it does
//
// With the admin credential: pause and resume a queue; redrive one dead
// letter, the selected ones, or every one matching the filter (optionally at
// a rate); purge the same; publish a message (a JSON editor validates as you
// type). Destructive actions ask for confirmation with the count they touch.
//
// # Safety
//
// Options.AdminToken is the only credential that acts; without it the
// console is read-only. Options.ReadToken, when set, is needed to read.
// Tokens are compared in constant time. Browsers log in once (a signed,
// HttpOnly, SameSite=Strict session cookie, signed with a key made at
// startup) and every action they send carries a CSRF token bound to the
// session; scripts send "Authorization: Bearer <token>" instead, which a
// browser never adds by itself, so they need no CSRF token. Cross-origin
// browser requests are refused (http.CrossOriginProtection). Actions take a
// JSON body only, decoded strictly; a bad request gets a 4xx with a clear
// message and changes nothing. Writes answer 401 without a credential and
// 403 with a read-only one, a missing or wrong CSRF token, or when no admin
// token is configured. Every action, done or refused, is logged (one slog
// line with who, what, on which queue, how many) and passed to
// Options.OnAction.
//
// # API
//
// GET /api/queues, /api/queues/{queue}, /api/queues/{queue}/messages?state=
// pending|in_flight|delayed|dead, /api/queues/{queue}/series?window=1h|24h,
// /api/messages/{id}, /api/dlq?queue=…, /api/dlq/count?…, /api/dlq/{id},
// /api/session; POST /api/queues/{queue}/pause, /api/queues/{queue}/resume,
// /api/queues/{queue}/publish, /api/dlq/redrive, /api/dlq/purge. See
// docs/console.md for bodies, parameters and curl examples.
//
// # Assets
//
// Templates, the stylesheet and the script are embedded (no CDN, works
// offline); charts are inline SVG drawn by the server and, on refresh, by a
// few lines of script.
package console
