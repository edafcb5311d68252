// Package pgflow is a durable message queue on PostgreSQL.
//
// Messages live in the tables pgflow_queues, pgflow_messages and pgflow_dlq
// of a schema you create with `pgflow init` (or migrate.Up). A message is
// committed before Publish returns, or with your own transaction when you use
// PublishTx, and leaves pgflow_messages only when a handler succeeded or when
// it moves to the dead-letter queue in the same statement that removes it.
//
// Consumers claim messages in batches with FOR UPDATE SKIP LOCKED and hold a
// lease (locked_by, locked_until) rather than a transaction while handlers
// run; heartbeats extend the lease of long handlers, and an expired lease
// (a consumer that crashed or hung) makes the message available again and
// counts as a failed attempt. Failed messages are retried with exponential
// backoff and jitter (retry_delay_ms · 2^(n-1), capped) until the queue's
// max_retries, then dead-lettered with every attempt's error.
//
// Idle consumers are woken by LISTEN/NOTIFY within milliseconds of a publish,
// with polling as the fallback (and the only mechanism in PollOnly mode, for
// PgBouncer in transaction pooling).
//
// Delivery is at least once: a handler may see a message again after a crash,
// so handlers should be idempotent, or acknowledge inside their own
// transaction with AckTx so their writes and the acknowledgement commit
// together. (Claims and the consumer's acknowledgements commit without
// waiting for their WAL flush: a database server crash may undo the last
// fraction of a second of them, and those messages are delivered again.
// Retries, dead-lettering, publishes and AckTx wait for their flush.)
//
// # Consuming
//
// Register a Handler per queue with Consume (HandleJSON decodes each payload
// into a type of yours; a payload that does not decode is dead-lettered at
// once), then Start. Every change of a message's state (claim, ack, retry or
// dead-letter, lease extension, hand-back, rescue of an expired lease) is
// one function in the schema, so each rule is written once.
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
//   - Held deliveries: a consumer holds at most Workers messages at a time,
//     running or handled with the outcome not yet written. Claiming waits
//     for acknowledgements as well as for workers, so a process killed at
//     any moment repeats at most Workers deliveries.
//   - Wake-ups: an idle consumer sleeps until a notification, its poll
//     interval, or the moment the queue's next delayed or backed-off message
//     becomes visible, which every claim that finds fewer messages than it
//     asked for reads from the database. A retry notifies every process
//     consuming the queue, so whichever is idle claims the message as it
//     becomes visible, within a few milliseconds.
//   - Stop: stops claiming, waits for running handlers until its context is
//     done, writes the outcomes already known, and returns nil. If the
//     context ends first, the handlers still running are cancelled (cause
//     ErrClientStopped), their messages handed back at once (not a failed
//     attempt), and Stop returns a *StopError counting them, after at most
//     about a second more of best-effort writes. Stop on a client that is
//     not running returns nil; Start may follow Stop at any time.
package pgflow
