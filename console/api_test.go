package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/pgflow-go/pgflow/console"
)

type listed struct {
	State string `json:"state"`
	Items []struct {
		ID        int64             `json:"id"`
		State     string            `json:"state"`
		Priority  int               `json:"priority"`
		LockedBy  string            `json:"locked_by"`
		LeaseLeft *float64          `json:"lease_left_s"`
		Error     string            `json:"error"`
		TraceID   string            `json:"trace_id"`
		Headers   map[string]string `json:"headers"`
	} `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func ids(l listed) []int64 {
	var out []int64
	for _, it := range l.Items {
		out = append(out, it.ID)
	}
	return out
}

func TestAPIReads(t *testing.T) {
	e := newEnv(t, console.Options{AdminToken: adminToken})
	e.seed(t)
	e.db.Exec(t, `INSERT INTO pgflow_queue_stats (queue_name, bucket, handled, failed, dead_lettered)
		VALUES ('orders', date_trunc('minute', now()), 7, 2, 1)`)

	r := e.do(t, req{method: "GET", path: "/api/queues"})
	if r.status != http.StatusOK {
		t.Fatalf("/api/queues: %d %s", r.status, r.body)
	}
	var qs []struct {
		Queue                                             string
		Ready, Delayed, InFlight, DeadLettered, Handled1h int64
		HandledPerMin                                     []int64 `json:"handled_per_min"`
	}
	r.json(t, &qs)
	var raw []map[string]any
	r.json(t, &raw)
	if len(qs) != 2 || qs[0].Queue != "emails" || qs[1].Queue != "orders" {
		t.Fatalf("queues %s", r.body)
	}
	if o := raw[1]; o["ready"] != 3.0 || o["delayed"] != 1.0 || o["in_flight"] != 1.0 || o["dead_lettered"] != 3.0 || o["handled_1h"] != 7.0 {
		t.Fatalf("orders: %v", o)
	}
	if h := qs[1].HandledPerMin; len(h) != 60 || h[59] != 7 {
		t.Fatalf("orders handled per minute %v", h)
	}

	r = e.do(t, req{method: "GET", path: "/api/queues/orders"})
	var d map[string]any
	r.json(t, &d)
	if r.status != http.StatusOK || d["max_retries"] != 3.0 || d["lease_timeout_s"] != 30.0 {
		t.Fatalf("queue detail %d %s", r.status, r.body)
	}

	list := func(query string) listed {
		t.Helper()
		r := e.do(t, req{method: "GET", path: "/api/queues/orders/messages?" + query})
		if r.status != http.StatusOK {
			t.Fatalf("messages?%s: %d %s", query, r.status, r.body)
		}
		var l listed
		r.json(t, &l)
		return l
	}
	// Pending in claim order: priority 5 first, then by visible_at; paged.
	p1 := list("state=pending&limit=2")
	if !slices.Equal(ids(p1), []int64{1002, 1001}) || p1.NextCursor == "" {
		t.Fatalf("pending page 1: %v cursor %q", ids(p1), p1.NextCursor)
	}
	if p1.Items[1].TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("trace id %q", p1.Items[1].TraceID)
	}
	p2 := list("state=pending&limit=2&cursor=" + url.QueryEscape(p1.NextCursor))
	if !slices.Equal(ids(p2), []int64{1003}) {
		t.Fatalf("pending page 2: %v", ids(p2))
	}
	if l := list("state=pending&priority=5"); !slices.Equal(ids(l), []int64{1002}) {
		t.Fatalf("priority filter: %v", ids(l))
	}
	if l := list(""); l.State != "pending" || len(l.Items) != 3 {
		t.Fatalf("default state: %s %v", l.State, ids(l))
	}
	if l := list("state=delayed"); !slices.Equal(ids(l), []int64{1004}) || l.Items[0].State != "delayed" {
		t.Fatalf("delayed: %v", ids(l))
	}
	if l := list("state=in_flight"); !slices.Equal(ids(l), []int64{1005}) || l.Items[0].LockedBy != "worker-a" ||
		l.Items[0].LeaseLeft == nil || *l.Items[0].LeaseLeft <= 0 {
		t.Fatalf("in flight: %+v", l.Items)
	}
	dead := list("state=dead")
	if len(dead.Items) != 3 || dead.Items[0].Error != "card declined" { // newest first
		t.Fatalf("dead: %+v", dead.Items)
	}
	if l := list("state=dead&error=BANK"); len(l.Items) != 1 || l.Items[0].Error != "timeout calling bank" {
		t.Fatalf("dead, error filter: %+v", l.Items)
	}
	if l := list("state=dead&since=1h"); len(l.Items) != 2 {
		t.Fatalf("dead, since 1h: %+v", l.Items)
	}

	r = e.do(t, req{method: "GET", path: "/api/messages/1001"})
	var m map[string]any
	r.json(t, &m)
	if r.status != http.StatusOK || m["state"] != "ready" || m["queue"] != "orders" || m["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("message: %d %s", r.status, r.body)
	}

	r = e.do(t, req{method: "GET", path: "/api/dlq?queue=orders&limit=2"})
	var dl struct {
		Items []struct {
			ID        int64 `json:"id"`
			MessageID int64 `json:"message_id"`
		}
		NextCursor string `json:"next_cursor"`
	}
	r.json(t, &dl)
	if r.status != http.StatusOK || len(dl.Items) != 2 || dl.NextCursor == "" || dl.Items[0].MessageID != 103 {
		t.Fatalf("dlq: %d %s", r.status, r.body)
	}
	r = e.do(t, req{method: "GET", path: "/api/dlq?cursor=" + url.QueryEscape(dl.NextCursor) + "&queue=orders&limit=2"})
	r.json(t, &dl)
	if len(dl.Items) != 1 || dl.Items[0].MessageID != 101 {
		t.Fatalf("dlq page 2: %s", r.body)
	}
	r = e.do(t, req{method: "GET", path: "/api/dlq/count?queue=orders&error=declined"})
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "{\n  \"count\": 2\n}" {
		t.Fatalf("count: %d %s", r.status, r.body)
	}
	r = e.do(t, req{method: "GET", path: fmt.Sprintf("/api/dlq/%d", dl.Items[0].ID)})
	r.json(t, &m)
	if r.status != http.StatusOK || m["error"] != "card declined" || len(m["errors"].([]any)) != 1 {
		t.Fatalf("dlq message: %d %s", r.status, r.body)
	}

	for _, w := range []string{"1h", "24h"} {
		r = e.do(t, req{method: "GET", path: "/api/queues/orders/series?window=" + w})
		var s struct {
			Handled, Failed []int64
			DeadLettered    []int64 `json:"dead_lettered"`
			Bins            []string
		}
		r.json(t, &s)
		want := map[string]int{"1h": 60, "24h": 96}[w]
		if r.status != http.StatusOK || len(s.Bins) != want || s.Handled[want-1] != 7 || s.Failed[want-1] != 2 || s.DeadLettered[want-1] != 1 {
			t.Fatalf("series %s: %d %s", w, r.status, r.body)
		}
	}

	r = e.do(t, req{method: "GET", path: "/api/session"})
	r.json(t, &m)
	if m["role"] != "read-only" || m["via"] != "anonymous" || m["admin_configured"] != true {
		t.Fatalf("anonymous session: %s", r.body)
	}
}

// Every bad request gets a 4xx with a message, and changes nothing.
func TestAPIBadRequests(t *testing.T) {
	e := newEnv(t, console.Options{AdminToken: adminToken})
	e.seed(t)
	long := strings.Repeat("q", 300)
	cases := []struct {
		name   string
		q      req
		status int
		want   string // in the error message
	}{
		{"bad queue name", req{method: "GET", path: "/api/queues/bad%20name"}, 400, "invalid queue name"},
		{"too long queue name", req{method: "GET", path: "/api/queues/" + long + "/messages"}, 400, "invalid queue name"},
		{"unknown queue", req{method: "GET", path: "/api/queues/nope"}, 404, "queue not found"},
		{"unknown queue messages", req{method: "GET", path: "/api/queues/nope/messages"}, 404, "queue not found"},
		{"bad state", req{method: "GET", path: "/api/queues/orders/messages?state=lost"}, 400, "state \"lost\" must be one of"},
		{"bad limit", req{method: "GET", path: "/api/queues/orders/messages?limit=0"}, 400, "limit"},
		{"huge limit", req{method: "GET", path: "/api/queues/orders/messages?limit=5000"}, 400, "limit"},
		{"bad cursor", req{method: "GET", path: "/api/queues/orders/messages?cursor=xyz"}, 400, "cursor"},
		{"bad dlq cursor", req{method: "GET", path: "/api/dlq?cursor=xyz"}, 400, "cursor"},
		{"bad priority", req{method: "GET", path: "/api/queues/orders/messages?priority=high"}, 400, "priority"},
		{"bad since", req{method: "GET", path: "/api/queues/orders/messages?since=yesterday"}, 400, "since"},
		{"since after until", req{method: "GET", path: "/api/dlq?since=1h&until=2h"}, 400, "before until"},
		{"unknown parameter", req{method: "GET", path: "/api/dlq?colour=red"}, 400, "unknown parameter"},
		{"in_flight with filter", req{method: "GET", path: "/api/queues/orders/messages?state=in_flight&priority=1"}, 400, "only limit"},
		{"dlq bad queue", req{method: "GET", path: "/api/dlq?queue=a%20b"}, 400, "invalid queue name"},
		{"bad window", req{method: "GET", path: "/api/queues/orders/series?window=7d"}, 400, "window"},
		{"bad id", req{method: "GET", path: "/api/messages/abc"}, 400, "not a message id"},
		{"negative id", req{method: "GET", path: "/api/dlq/-3"}, 400, "not a message id"},
		{"unknown message", req{method: "GET", path: "/api/messages/987654"}, 404, "message not found"},
		{"unknown dead letter", req{method: "GET", path: "/api/dlq/987654"}, 404, "dead-letter message not found"},
		{"unknown endpoint", req{method: "GET", path: "/api/frobnicate"}, 404, "no such API endpoint"},

		{"bad JSON", req{method: "POST", path: "/api/dlq/redrive", token: adminToken, body: `{"ids": [1,`}, 400, "bad JSON"},
		{"unknown field", req{method: "POST", path: "/api/dlq/purge", token: adminToken, body: `{"everything": true}`}, 400, "unknown field"},
		{"two values", req{method: "POST", path: "/api/dlq/purge", token: adminToken, body: `{"all": true} {"all": true}`}, 400, "more than one"},
		{"empty selection", req{method: "POST", path: "/api/dlq/purge", token: adminToken, body: `{}`}, 400, "empty selection"},
		{"no body", req{method: "POST", path: "/api/dlq/redrive", token: adminToken}, 400, "empty selection"},
		{"bad id in selection", req{method: "POST", path: "/api/dlq/redrive", token: adminToken, body: `{"ids": [0]}`}, 400, "not a dead-letter id"},
		{"negative rate", req{method: "POST", path: "/api/dlq/redrive", token: adminToken, body: `{"all": true, "rate": -1}`}, 400, "rate"},
		{"rate on purge", req{method: "POST", path: "/api/dlq/purge", token: adminToken, body: `{"all": true, "rate": 5}`}, 400, "redrive only"},
		{"bad time in selection", req{method: "POST", path: "/api/dlq/purge", token: adminToken, body: `{"since": "soon"}`}, 400, "since"},
		{"bad queue in selection", req{method: "POST", path: "/api/dlq/purge", token: adminToken, body: `{"queue": "no way"}`}, 400, "invalid queue name"},
		{"unknown ids", req{method: "POST", path: "/api/dlq/redrive", token: adminToken, body: `{"ids": [987654]}`}, 404, "not found"},
		{"unknown ids purge", req{method: "POST", path: "/api/dlq/purge", token: adminToken, body: `{"ids": [987654]}`}, 404, "not found"},
		{"form body", req{method: "POST", path: "/api/dlq/purge", token: adminToken, body: `all=true`, contentType: "application/x-www-form-urlencoded"}, 415, "must be JSON"},
		{"pause unknown queue", req{method: "POST", path: "/api/queues/nope/pause", token: adminToken}, 404, "queue not found"},
		{"pause bad queue", req{method: "POST", path: "/api/queues/bad%20q/pause", token: adminToken}, 400, "invalid queue name"},
		{"pause with body", req{method: "POST", path: "/api/queues/orders/pause", token: adminToken, body: `{"now": true}`}, 400, "unknown field"},
		{"publish no payload", req{method: "POST", path: "/api/queues/orders/publish", token: adminToken, body: `{}`}, 400, "payload is missing"},
		{"publish bad JSON", req{method: "POST", path: "/api/queues/orders/publish", token: adminToken, body: `{"payload": {"a": }}`}, 400, "bad JSON"},
		{"publish bad delay", req{method: "POST", path: "/api/queues/orders/publish", token: adminToken, body: `{"payload": 1, "delay": "soon"}`}, 400, "delay"},
		{"publish negative delay", req{method: "POST", path: "/api/queues/orders/publish", token: adminToken, body: `{"payload": 1, "delay": "-5s"}`}, 400, "negative"},
		{"publish bad priority", req{method: "POST", path: "/api/queues/orders/publish", token: adminToken, body: `{"payload": 1, "priority": 99999}`}, 400, "priority"},
		{"publish bad headers", req{method: "POST", path: "/api/queues/orders/publish", token: adminToken, body: `{"payload": 1, "headers": {"a": 1}}`}, 400, "bad JSON"},
		{"publish unknown queue", req{method: "POST", path: "/api/queues/typo/publish", token: adminToken, body: `{"payload": 1}`}, 404, "queue not found"},
		{"publish too large", req{method: "POST", path: "/api/queues/orders/publish", token: adminToken, body: `{"payload": "` + strings.Repeat("x", 3<<20) + `"}`}, 400, "larger than"},
		{"GET on an action", req{method: "GET", path: "/api/dlq/redrive"}, 400, "not a message id"},
		{"DELETE queue", req{method: "DELETE", path: "/api/queues/orders"}, 405, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, c.q)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if c.want != "" {
				if msg := r.errorText(t); !strings.Contains(msg, c.want) {
					t.Fatalf("error %q lacks %q", msg, c.want)
				}
			}
		})
	}
	// Nothing changed.
	if n := e.db.Count(t, "pgflow_dlq", ""); n != 3 {
		t.Errorf("DLQ has %d rows, want 3", n)
	}
	if n := e.db.Count(t, "pgflow_messages", ""); n != 5 {
		t.Errorf("%d messages, want 5", n)
	}
	if n := e.db.Count(t, "pgflow_queues", "paused OR queue_name NOT IN ('orders', 'emails')"); n != 0 {
		t.Errorf("%d queues paused or created", n)
	}
	// Refused actions are recorded too.
	var refused int
	for _, a := range e.recorded() {
		if a.Err != nil {
			refused++
		}
	}
	if refused < 20 {
		t.Errorf("%d refused actions recorded", refused)
	}
}

func TestAPIActions(t *testing.T) {
	e := newEnv(t, console.Options{AdminToken: adminToken})
	e.seed(t)
	post := func(path string, body any) resp {
		t.Helper()
		return e.do(t, req{method: "POST", path: path, token: adminToken, body: body})
	}

	if r := post("/api/queues/orders/pause", nil); r.status != http.StatusOK {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	if n := e.db.Count(t, "pgflow_queues", "queue_name = 'orders' AND paused"); n != 1 {
		t.Fatal("orders not paused")
	}
	if r := post("/api/queues/orders/resume", nil); r.status != http.StatusOK {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	if n := e.db.Count(t, "pgflow_queues", "paused"); n != 0 {
		t.Fatal("orders still paused")
	}

	r := post("/api/queues/emails/publish", map[string]any{
		"payload": map[string]any{"to": "ada@example.com"}, "headers": map[string]string{"source": "console"},
		"priority": 7, "delay": "1h", "dedup_key": "welcome-ada"})
	if r.status != http.StatusCreated {
		t.Fatalf("publish: %d %s", r.status, r.body)
	}
	var pub struct{ ID int64 }
	r.json(t, &pub)
	if n := e.db.Count(t, "pgflow_messages", "id = $1 AND queue_name = 'emails' AND priority = 7 AND dedup_key = 'welcome-ada' AND headers->>'source' = 'console' AND visible_at > now() + interval '50 minutes' AND payload = '{\"to\": \"ada@example.com\"}'", pub.ID); n != 1 {
		t.Fatalf("published message %d not stored as asked", pub.ID)
	}

	dlq := e.dlqIDs(t)
	// One by id.
	r = post("/api/dlq/redrive", map[string]any{"ids": []int64{dlq[0]}})
	var red struct {
		Redriven int
		ByQueue  map[string]int `json:"by_queue"`
	}
	r.json(t, &red)
	if r.status != http.StatusOK || red.Redriven != 1 || red.ByQueue["orders"] != 1 {
		t.Fatalf("redrive one: %d %s", r.status, r.body)
	}
	if n := e.db.Count(t, "pgflow_messages", "id = 101 AND status = 'pending' AND retry_count = 0"); n != 1 {
		t.Fatal("message 101 not back in its queue")
	}
	// A filtered selection, with a rate.
	r = post("/api/dlq/redrive", map[string]any{"queue": "orders", "error": "timeout", "rate": 100})
	r.json(t, &red)
	if r.status != http.StatusOK || red.Redriven != 1 {
		t.Fatalf("redrive filtered: %d %s", r.status, r.body)
	}
	// Purge the rest of the queue's dead letters.
	r = post("/api/dlq/purge", map[string]any{"queue": "orders"})
	var pur struct{ Purged int }
	r.json(t, &pur)
	if r.status != http.StatusOK || pur.Purged != 1 {
		t.Fatalf("purge: %d %s", r.status, r.body)
	}
	if n := e.db.Count(t, "pgflow_dlq", ""); n != 0 {
		t.Fatalf("%d dead letters left", n)
	}

	// Every action recorded: event and log line with who, what, how many.
	var names []string
	for _, a := range e.recorded() {
		if a.Err != nil {
			t.Errorf("action %s failed: %v", a.Name, a.Err)
		}
		if !strings.HasPrefix(a.Who, "admin token ") {
			t.Errorf("action %s by %q", a.Name, a.Who)
		}
		names = append(names, fmt.Sprintf("%s:%s:%d", a.Name, a.Queue, a.Count))
	}
	want := []string{"pause:orders:0", "resume:orders:0", "publish:emails:1", "redrive::1", "redrive:orders:1", "purge:orders:1"}
	if !slices.Equal(names, want) {
		t.Errorf("actions %v, want %v", names, want)
	}
	logs := e.logText()
	for _, want := range []string{"action=purge", "count=1", `who="admin token `, "queue=orders", "action=publish", `detail="id=`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestAPIAuth(t *testing.T) {
	e := newEnv(t, console.Options{AdminToken: adminToken, ReadToken: readToken})
	e.seed(t)
	pause := req{method: "POST", path: "/api/queues/orders/pause"}
	with := func(q req, f func(*req)) req { f(&q); return q }

	// Reading needs a token when a read token is configured.
	if r := e.do(t, req{method: "GET", path: "/api/queues"}); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("read without token: %d", r.status)
	}
	if r := e.do(t, req{method: "GET", path: "/api/queues", token: "wrong-token-0123456789"}); r.status != http.StatusUnauthorized {
		t.Fatalf("read with a wrong token: %d", r.status)
	}
	if r := e.do(t, req{method: "GET", path: "/api/queues", header: map[string]string{"Authorization": "Basic eDp5"}}); r.status != http.StatusUnauthorized ||
		!strings.Contains(r.errorText(t), "Bearer") {
		t.Fatalf("read with basic auth: %d %s", r.status, r.body)
	}
	for _, tok := range []string{readToken, adminToken} {
		if r := e.do(t, req{method: "GET", path: "/api/queues", token: tok}); r.status != http.StatusOK {
			t.Fatalf("read with a token: %d", r.status)
		}
	}
	// Pages redirect to the login page.
	if r := e.do(t, req{method: "GET", path: "/queues/orders"}); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login?next=") {
		t.Fatalf("page without session: %d %v", r.status, r.header)
	}

	// Writes: 401 without, 403 read-only, 200 admin.
	if r := e.do(t, pause); r.status != http.StatusUnauthorized {
		t.Fatalf("pause without token: %d %s", r.status, r.body)
	}
	if r := e.do(t, with(pause, func(q *req) { q.token = "wrong-token-0123456789" })); r.status != http.StatusUnauthorized {
		t.Fatalf("pause with a wrong token: %d", r.status)
	}
	if r := e.do(t, with(pause, func(q *req) { q.token = readToken })); r.status != http.StatusForbidden || !strings.Contains(r.errorText(t), "read-only") {
		t.Fatalf("pause read-only: %d %s", r.status, r.body)
	}
	if n := e.db.Count(t, "pgflow_queues", "paused"); n != 0 {
		t.Fatal("a refused pause paused")
	}

	// Browser sessions: the CSRF token is required on every action.
	ck, csrf := e.login(t, adminToken)
	if r := e.do(t, with(pause, func(q *req) { q.cookie = ck })); r.status != http.StatusForbidden || !strings.Contains(r.errorText(t), "missing CSRF token") {
		t.Fatalf("session without CSRF token: %d %s", r.status, r.body)
	}
	if r := e.do(t, with(pause, func(q *req) { q.cookie = ck; q.header = map[string]string{"X-CSRF-Token": csrf + "x"} })); r.status != http.StatusForbidden || !strings.Contains(r.errorText(t), "invalid CSRF token") {
		t.Fatalf("session with a wrong CSRF token: %d %s", r.status, r.body)
	}
	// Another session's token does not fit.
	_, otherCSRF := e.login(t, adminToken)
	if r := e.do(t, with(pause, func(q *req) { q.cookie = ck; q.header = map[string]string{"X-CSRF-Token": otherCSRF} })); r.status != http.StatusForbidden {
		t.Fatalf("session with another session's CSRF token: %d", r.status)
	}
	// A cross-site request is refused even with the right token.
	if r := e.do(t, with(pause, func(q *req) {
		q.cookie = ck
		q.header = map[string]string{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
	})); r.status != http.StatusForbidden || !strings.Contains(r.errorText(t), "cross-origin") {
		t.Fatalf("cross-site: %d %s", r.status, r.body)
	}
	if n := e.db.Count(t, "pgflow_queues", "paused"); n != 0 {
		t.Fatal("a refused pause paused")
	}
	if r := e.do(t, with(pause, func(q *req) { q.cookie = ck; q.header = map[string]string{"X-CSRF-Token": csrf} })); r.status != http.StatusOK {
		t.Fatalf("session with CSRF token: %d %s", r.status, r.body)
	}
	// A forged session cookie is no session.
	forged := &http.Cookie{Name: ck.Name, Value: strings.Replace(ck.Value, "2.", "2.9", 1)}
	if r := e.do(t, with(pause, func(q *req) { q.cookie = forged; q.header = map[string]string{"X-CSRF-Token": csrf} })); r.status != http.StatusUnauthorized {
		t.Fatalf("forged session: %d %s", r.status, r.body)
	}
	// A read-only session gets 403 even with its own CSRF token.
	rck, rcsrf := e.login(t, readToken)
	resume := req{method: "POST", path: "/api/queues/orders/resume", cookie: rck, header: map[string]string{"X-CSRF-Token": rcsrf}}
	if r := e.do(t, resume); r.status != http.StatusForbidden {
		t.Fatalf("read-only session: %d %s", r.status, r.body)
	}
	// A wrong token at the login page.
	r := e.do(t, req{method: "POST", path: "/login", body: "token=nope", contentType: "application/x-www-form-urlencoded"})
	if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "neither the admin nor the read-only token") {
		t.Fatalf("bad login: %d", r.status)
	}

	var refused []string
	for _, a := range e.recorded() {
		if a.Err != nil {
			refused = append(refused, fmt.Sprintf("%s/%d", a.Name, a.Status))
		}
	}
	if len(refused) < 8 || !strings.Contains(e.logText(), "action refused") {
		t.Errorf("refusals recorded: %v", refused)
	}
}

// Without an admin token nothing can act, whatever is sent.
func TestAPIReadOnlyConsole(t *testing.T) {
	e := newEnv(t, console.Options{})
	e.seed(t)
	for _, tok := range []string{"", adminToken} {
		r := e.do(t, req{method: "POST", path: "/api/dlq/purge", token: tok, body: `{"all": true}`})
		if tok != "" {
			if r.status != http.StatusUnauthorized {
				t.Fatalf("unknown token on a read-only console: %d %s", r.status, r.body)
			}
			continue
		}
		if r.status != http.StatusForbidden || !strings.Contains(r.errorText(t), "--admin-token-file") {
			t.Fatalf("purge on a read-only console: %d %s", r.status, r.body)
		}
	}
	if n := e.db.Count(t, "pgflow_dlq", ""); n != 3 {
		t.Fatalf("DLQ has %d rows", n)
	}
	if r := e.do(t, req{method: "POST", path: "/login", body: "token=" + adminToken, contentType: "application/x-www-form-urlencoded"}); r.status != http.StatusUnauthorized {
		t.Fatalf("login on a console without tokens: %d", r.status)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	e := newEnv(t, console.Options{})
	for _, o := range []console.Options{
		{AdminToken: "short"},
		{AdminToken: adminToken, ReadToken: adminToken},
		{Prefix: "console"},
		{Prefix: "/console/"},
	} {
		if _, err := console.New(e.client, o); err == nil {
			t.Errorf("New accepted %+v", o)
		}
	}
	if _, err := console.New(nil, console.Options{}); err == nil {
		t.Error("New accepted a nil client")
	}
}
