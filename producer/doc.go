// Package producer publishes pgflow messages through a small pool of
// flushers that commit concurrent publishes together (group commit) and
// retry a write that failed on a transient database error.
//
// It is what a pgflow.yaml producer entry's settings mean (package config):
//
//	workers         how many flushers commit batches in parallel
//	max_retries     how many times a batch is retried after a transient error
//	retry_delay_ms  the first retry's delay, doubled for each further retry
//
// # Delivery
//
// Publish returns a message id only after the batch holding the message has
// committed. A write that failed on a permanent error (bad input, a missing
// queue, a constraint) is not retried; when such a batch held several
// messages, each is then written on its own so one bad message cannot fail
// the others.
//
// # Retries
//
// A write that failed on a transient error is retried, after a backoff, up
// to max_retries times; the callers of its messages wait meanwhile and see
// an error only once the last attempt failed. Transient means every failure
// of the connection rather than of the statement (closed or reset
// connections, EOF, network and dial errors, a server shutting down,
// crashing, starting up or refusing connections, SQLSTATE class 08) and
// serialization failures, deadlocks and a server out of resources; see
// Transient. So a server restart shorter than the retries' total delay costs
// the callers time, never messages.
//
// # Duplicates
//
// Delivery stays at least once. When the connection breaks after COMMIT was
// sent, the outcome is unknown: the transaction may have committed. The
// producer cannot tell, so it retries, and the batch may then be stored
// twice. Only a restart or a network failure in that instant causes this;
// the retry's log line then says may_have_committed=true.
// Giving messages a dedup key (pgflow.WithDedupKey) makes such a retry
// return the stored message's id instead of writing a copy, as long as that
// copy is still in its queue (a dedup key is unique among live messages; a
// consumer that handled the first copy in the meantime frees the key).
// Handlers should be idempotent in any case: consumers deliver at least
// once too.
//
// The producer does not generate a key per publish to close this gap: it
// would add a unique-index entry to every message, take the column the
// caller's own keys use, and still miss a copy consumed before the retry.
//
// # Design
//
// The package is built only on pgflow's public API (Client.PublishBatch), so
// it lives beside the core rather than in it: the core keeps one way to
// publish, and this package adds batching policy on top.
package producer
