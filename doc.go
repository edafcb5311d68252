// Package pgflow is a durable message queue on PostgreSQL.
//
// Messages are rows in the tables pgflow_queues, pgflow_messages and
// pgflow_dlq of a schema you create with `pgflow init` (or migrate.Up). There
// is no broker: a message is committed before Publish returns, or with your
// own transaction when you use PublishTx, and it leaves pgflow_messages only
// when a handler succeeded or when it moves to the dead-letter queue in the
// same statement that removes it. The module needs only pgx; the CLI
// (cmd/pgflow), the YAML configuration (config), Prometheus (promflow) and
// OpenTelemetry (otelpgflow) live in modules of their own.
//
// # Quick start
//
// Create the tables once with `pgflow init` (or migrate.Up(ctx, pool,
// "public") in code; both are safe to run again and from several processes),
// then publish and consume with one Client:
//
//	client, err := pgflow.Connect(ctx, os.Getenv("PGFLOW_DATABASE_URL"), pgflow.Config{})
//	if err != nil {
//		return err
//	}
//	defer client.Close(ctx)
//
//	err = client.Consume(pgflow.ConsumerConfig{
//		Queue:   "emails",
//		Workers: 4,
//		Handler: func(ctx context.Context, m *pgflow.Message) error {
//			var e Email
//			if err := m.Decode(&e); err != nil {
//				return pgflow.Permanent(err) // malformed: straight to the DLQ
//			}
//			return send(ctx, e) // an error retries with backoff
//		},
//	})
//	if err != nil {
//		return err
//	}
//	if err := client.Start(ctx); err != nil {
//		return err
//	}
//	id, err := client.Publish(ctx, "emails", Email{To: "ops@example.com"})
//
// Connect owns its pool; New uses a *pgxpool.Pool you already have. The
// runnable examples (Example, ExampleClient_PublishTx, …) show each call with
// its output. Queues are created on first use with the defaults of
// pgflow_queues' columns (3 retries, 1 s first retry delay, 30 s lease) unless
// Config.StrictQueues asks for DeclareQueue first; DeclareQueue writes only
// the settings it sets (Set(0) is an explicit zero) and reports changes.
//
// # Publishing
//
// Publish commits one message and returns its id; PublishTx writes it in the
// caller's transaction, so it becomes visible when that transaction commits
// and vanishes if it rolls back (the outbox pattern without an outbox);
// PublishBatch and PublishBatchTx write many at once, all or none. Payloads
// are JSON: a value is marshalled with encoding/json, []byte and
// json.RawMessage must already hold JSON. Options set the priority
// (WithPriority: higher first), a delay (WithDelay, WithVisibleAt), headers
// (WithHeader, WithHeaders) and a deduplication key (WithDedupKey: while a
// message with the same key is queued or in flight on the queue, publishing
// again returns its id and writes nothing).
//
// Bad input is refused before anything is written, with an *InputError that
// matches a sentinel (errors.Is(err, ErrInvalidPayload), ErrPayloadTooLarge,
// ErrInvalidQueueName, …). For high publish rates with retries on transient
// database errors, the producer package group-commits publishes.
//
// # Consuming
//
// Consume registers a Handler for one queue before Start (HandleJSON decodes
// each payload into a type of yours; a payload that does not decode is
// dead-lettered at once); Workers handlers run at once, fed by claims of up to MaxBatch messages taken with
// FOR UPDATE SKIP LOCKED, so any number of processes can consume the same
// queue. A handler returning nil acknowledges the message (it is deleted);
// acknowledgements are batched. AckTx acknowledges inside the handler's own
// transaction, so its writes and the acknowledgement commit together.
//
// A BatchHandler, set instead of Handler, receives up to BatchSize messages
// per call (default 100) and returns an outcome per message (BatchErrors):
// acknowledged, retried with its error, or dead-lettered with
// Permanent. Workers calls run at once, so the consumer holds at most
// Workers × BatchSize messages; leases, retries, the dead-letter queue and
// events are those of single deliveries, message by message. A cheap,
// batch-friendly handler (aggregating, writing rows in bulk) then needs one
// claim and one acknowledgement statement per batch.
//
// Idle consumers are woken by LISTEN/NOTIFY within milliseconds of a
// publish, with polling (Config.PollInterval) as the fallback and the only
// mechanism in PollOnly mode and behind a transaction pooler (see
// Connection poolers and failover). PauseQueue
// and ResumeQueue stop and restart claiming on every instance.
//
// Every change of a message's state (claim, ack, retry or dead-letter, lease
// extension, hand-back, rescue of an expired lease) is one function in the
// schema, so each rule is written once. Close stops the client as Stop does
// and closes the pool when the client owns it.
//
//   - Claim token: every claim gives the delivery a new random token, and
//     only the holder of that token can acknowledge, fail, extend or hand
//     back the message. A handler whose lease was taken over, or whose claim
//     was lost in a database server crash (claims commit without waiting
//     for their WAL flush, so a crash can make a claimed message pending
//     again), cannot touch the new delivery: AckTx returns ErrLeaseLost and
//     its outcome is ignored. Message.Attempt stays the delivery count.
//   - Timeout: ConsumerConfig.Timeout (default 1 min, negative to disable)
//     bounds a handler run. Past it the handler's context is cancelled with
//     cause ErrHandlerTimeout and an error it returns fails the attempt
//     (retried with backoff, dead-lettered when out of retries); nil still
//     acknowledges. A handler still running a grace period later (a third
//     of the lease, at most 10 s; noticed at the next heartbeat) is stuck:
//     its lease is no longer extended, so it expires and another consumer
//     gets the message; an
//     EventHandlerStuck event is emitted and ConsumerStats counts it. A
//     stuck handler keeps its worker until it returns, so a consumer never
//     runs more than Workers handlers.
//   - Held deliveries: a consumer holds at most Workers + Prefetch messages
//     at a time (Workers × BatchSize with a BatchHandler), running, waiting
//     for a worker or handled with the outcome not yet written. Claiming
//     waits for acknowledgements as well as for workers (a claim writes the
//     acknowledgements waiting for it in its own transaction), so a process
//     killed at any moment repeats at most that many deliveries.
//   - Prefetch: ConsumerConfig.Prefetch (default 0) lets a single-message
//     handler's consumer claim that many messages ahead of free workers, so
//     cheap handlers drain a backlog with fewer claims. A waiting message's
//     lease is extended; it is handed back (not a failed attempt) once it
//     has waited half its lease or at Stop, is dropped unrun if its lease
//     is lost, and a message of higher priority waits behind at most
//     Prefetch of them.
//   - Wake-ups: an idle consumer sleeps until a notification, its poll
//     interval, or the moment the queue's next delayed or backed-off message
//     becomes visible, which every claim that finds fewer messages than it
//     asked for reads from the database. A retry notifies every process
//     consuming the queue, so whichever is idle claims the message as it
//     becomes visible, within a few milliseconds.
//   - Stop: stops claiming, hands back at once the messages claimed that no
//     handler has started (prefetched), waits for running handlers until
//     its context is done, writes the outcomes already known, and returns
//     nil. If the
//     context ends first, the handlers still running are cancelled (cause
//     ErrClientStopped), their messages handed back at once (not a failed
//     attempt), and Stop returns a *StopError counting them, after at most
//     about a second more of best-effort writes. Stop on a client that is
//     not running returns nil; Start may follow Stop at any time.
//

// # Retries and the dead-letter queue
//
// A handler error schedules a retry after retry_delay · 2^(n-1) (drawn from
// [d/2, d], capped at the queue's MaxRetryDelay), until the queue's
// MaxRetries: a message is delivered at most MaxRetries+1 times. Permanent(err)
// dead-letters at once; RetryAfter(d, err) chooses the delay and still counts
// the attempt. A panic is recovered and recorded as a *PanicError with its
// stack. A message out of retries moves to pgflow_dlq with its payload,
// headers, source queue, original id, attempt count and every attempt's
// error (DLQMessage.Errors).
//
// ListDLQ, CountDLQ and DLQMessage read the dead-letter queue; RedriveDLQ
// moves selected messages back to their queue (fresh attempts, same id and
// payload), PurgeDLQ deletes them. Both take a DLQFilter (ids, queue, time
// range, error text, priority, or All) and work in chunks, atomically per
// message.
//
// # Expiry and dead-letter retention
//
// A message published WithExpiry(d) or WithExpiresAt(t), or on a queue with
// an Expiry, that no consumer claimed by then is moved to the DLQ with
// DLQMessage.Reason "expired" instead of being delivered late. A delivery
// that started before is not interrupted, but no retry starts after the
// expiry. A queue's DLQRetention deletes its dead letters once they are
// that old. Both are done by the maintenance task that every started client
// runs (Config.MaintenanceInterval), one batch at a time across all clients
// of a schema under a transaction-scoped advisory lock; Maintain runs it
// once. Both settings are off by default.
//
// After restoring pgflow's tables from a backup, Recover hands back the
// leases the backup holds at once, without counting a failed attempt.
//
// # Leases and crashes
//
// A claimed message is leased to its consumer (locked_by, locked_until)
// rather than locked by an open transaction. While a handler runs, its
// process extends the lease every third of the queue's LeaseTimeout, up to
// the handler's timeout and grace period. When a process freezes or a
// handler is stuck, its leases run out and the rescuer (every
// Config.RescueInterval, default 500 ms, in every started client) makes
// those messages available again; an expiry counts as a failed attempt, so
// a message that kills its process still ends in the DLQ. A handler whose
// lease was taken over sees its context cancelled with cause ErrLeaseLost,
// and its outcome is not recorded.
//
// A process that dies (SIGKILL, out of memory) does not make anyone wait
// for its leases. A started client with consumers registers in
// pgflow_consumers, heartbeats every 250 ms through its pool and holds a
// session advisory lock on its own connection (the listener's; in PollOnly
// mode one of its own). PostgreSQL drops the lock as soon as that session
// ends; once the lock is gone and the heartbeat is more than 1 s old, the
// rescuer of any other started consumer takes the dead consumer's messages
// back, each counted as an expired lease would be (EventLeaseExpired, and
// one EventConsumerGone per consumer): within seconds of the kill (1 s, the
// rescuer's tick and the statements' latency; 1.0 s measured on a quiet machine, 2-4 s on
// an overloaded machine) rather than at the end of the lease. A live client keeps its leases while
// either holds: a late heartbeat (a starved pool, a pause) with the session
// up, or a dropped session with heartbeats going on while it reconnects.
// With TransactionPooling there is no stable session, so the heartbeat
// alone decides, after 3 s. Right after a server restart, a failover or
// its own outage a client judges no one for 3 s, so that the consumers
// that are alive register their new sessions first. A client taken for
// gone while alive (its session and heartbeats lost for longer than that,
// a network cut) finds its deliveries lost at its next lease extension
// (ErrLeaseLost; the claim token keeps a late acknowledgement from
// touching the new delivery) and registers again. A lost host's session
// ends when the server's TCP keepalive gives up on it (pgflow sets about
// 4 s on that connection), and its messages come back after that.
//
// When the server is down, claims, the listener and outcome writes retry
// with backoff capped at 500 ms, and a claim waiting to retry wakes on any
// notification: consumers claim and listen again within about half a
// second of the server accepting connections.
//
// Delivery is therefore at least once: a handler may see a message again
// after a crash, so handlers should be idempotent, or acknowledge with AckTx.
// Claims and the consumer's acknowledgements commit without waiting for
// their WAL flush: a database server crash may undo the last fraction of a
// second of them, and those messages are delivered again (the claim token
// keeps a handler of a lost claim from touching the new delivery). Retries,
// dead-lettering, publishes and AckTx wait for their flush.
//
// # Operating
//
// ListQueues, QueueStats and AllQueueStats report depth by state, the DLQ
// size, the oldest ready message's age and handled/failed counts over
// StatsWindows; ListPending and ListInFlight page through a queue's messages
// in claim order and by lease expiry. The pgflow CLI (module
// github.com/pgflow-go/pgflow/cmd/pgflow) runs the same calls from a shell
// and serves metrics and a dashboard. Config.Hooks receive every lifecycle
// Event (published, received, completed, retried, dead_lettered,
// lease_expired, redriven, purged, expired, dlq_deleted, …) on the goroutine
// that caused it: promflow
// turns them into Prometheus counters and histograms (and reads queue gauges
// from the database at scrape time), otelpgflow into OpenTelemetry traces
// and metrics.
//
// # Connection poolers and failover
//
// Behind PgBouncer in transaction mode set Config.TransactionPooling:
// pgflow then prepares no statements across round trips (the pool runs in
// pgx's QueryExecModeCacheDescribe), runs no LISTEN (idle consumers poll,
// every 100 ms by default) and keeps no session state. Connect and OpenPool
// set it by themselves when DetectPooler finds a pooler (the server's
// backend pid differs from the connection's cancel key; the pool mode cannot
// be seen, so session mode is treated the same way); New, given a pool of
// yours, refuses one that prepares statements by name when it is set. On a
// direct connection statements stay prepared, with generic plans.
//
// For failover, give every process a multi-host URL with
// target_session_attrs=read-write: connections to a dead primary fail and
// are dropped, new ones find the promoted standby, and consumers and
// producers carry on without a restart. docs/deploy.md has the settings,
// the tests and the measured figures.
//
// # Topics and other languages
//
// Subscribe puts a queue on a topic; PublishTopic (and PublishTopicTx in
// the caller's transaction) then writes one message per subscribed queue in
// one statement, all or none, each with its own retries and DLQ; a topic
// without subscribers is an error matching ErrNoSubscribers unless
// AllowNoSubscribers. Every operation is also a SQL function of the schema
// (pgflow_send, pgflow_claim, pgflow_ack, pgflow_fail, pgflow_extend,
// pgflow_release, pgflow_publish, …; docs/sql.md), so psql and services in
// other languages produce and consume the same queues with the same
// semantics; the Go client calls the same functions for pausing, DLQ
// redrive and purge, and topics.
//
// # Testing
//
// The pgflowtest package gives each test a fresh, migrated schema on a real
// PostgreSQL, dropped when the test ends, so tests run in parallel and leave
// nothing behind.
package pgflow
