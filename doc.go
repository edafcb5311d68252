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
// together. (Claims commit without waiting for their WAL flush: a claim lost
// in a database server crash makes its messages available again at once, and
// a handler still running that lost delivery may then acknowledge or fail
// the next one. Acks, retries and publishes wait for their flush.)
package pgflow
