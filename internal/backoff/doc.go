// Package backoff computes exponential retry delays with jitter.
//
// # Where pgflow uses it
//
// Message retries (retry_delay_ms · 2^(n-1), capped at the queue's maximum),
// reconnecting to a lost database (the LISTEN connection, the flushers), and
// producers retrying a publish that failed on a transient error.
//
// # Schedule
//
// Policy.Delay(n) is Base · 2^(n-1) for the n-th retry, never more than Max,
// with "equal jitter": the delay is drawn uniformly from [d/2, d], so retries
// of many messages that failed together spread out but never come much
// earlier than the schedule. NoJitter gives the exact schedule for tests and
// documentation.
//
// # Waiting
//
// Sleep waits for a delay or until its context is done, whichever comes
// first, so every retry loop stops promptly when its owner stops.
package backoff
