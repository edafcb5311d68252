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
// Delivery stays at least once: when a connection breaks during COMMIT the
// outcome is unknown, the batch is retried and may be stored twice. Give
// messages a dedup key (pgflow.WithDedupKey) to make such a retry a no-op.
//
// # Design
//
// The package is built only on pgflow's public API (Client.PublishBatch), so
// it lives beside the core rather than in it: the core keeps one way to
// publish, and this package adds batching policy on top.
package producer
