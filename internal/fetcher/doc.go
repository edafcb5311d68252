// Package fetcher runs one consumer's claim loop.
//
// # Slots
//
// A consumer has Workers + Prefetch slots (Workers × BatchSize with a
// batch handler). The fetcher takes a slot for every message it claims,
// and the owner gives it back only once the delivery's outcome is written
// (acknowledged, failed, released) or known to need no write (the lease
// was lost). So the messages a consumer holds, running, waiting for a
// worker (prefetched) or handled but not yet acknowledged, never exceed
// Workers + Prefetch: claiming waits for running handlers and for
// acknowledgements alike, and a process killed at any point leaves at most
// Workers + Prefetch deliveries to be repeated. With Prefetch 0 a message
// is claimed only for a free worker.
//
// A prefetched message handed back before a worker started it (it waited
// too long, or the consumer stops) keeps its slot until the release is
// written and the worker that reaches it in the executor's queue has
// skipped it: the consumer never claims in its place while it is still
// leased, nor, while every worker is busy, claims it again at once.
//
// A slot whose delivery is handled and whose outcome waits to be written is
// ready (Config.Ready): the fetcher counts it as free, and the claim writes
// the waiting outcomes in its own transaction before claiming in their
// place, so the slot passes from the old delivery to the new one in one
// commit and the bound holds at every commit.
//
// # Claims
//
// With free or ready slots the fetcher claims up to min(free + ready,
// MaxBatch) messages. A
// backlog with only some slots free waits briefly (GatherWait) for more, so
// claims stay large; while claims keep finding several messages, they come
// at most every Pace, so one claim takes what arrived meanwhile, and a
// message that arrives alone is claimed at once. Between claims from the start of the queue,
// at least every FullScanEvery, a claim starts at the claim-order key of
// the last message claimed (the frontier), minus FrontierSlack for rows
// committed out of order; see the claim function's comment in the schema.
//
// # Wake-ups
//
// An idle fetcher sleeps until Wake (a local publish, a NOTIFY), the poll
// interval, or its timer. After a claim that found fewer messages than it
// asked for, the database says when the queue's next delayed or backed-off
// message becomes visible; the timer is set for that moment (and for the
// next full scan when a frontier claim came up short). Every fetcher of the
// queue does this after every short claim, and a retry or delayed publish
// wakes every fetcher (a NOTIFY), so each of them re-reads the next moment:
// a retried message is claimed as it becomes visible by any process, not
// only the one that failed it.
//
// # Failures
//
// A failed claim is retried after 50 ms, doubling up to MaxRetryDelay
// (500 ms), or at once on a Wake, which means the database answered
// someone (a publish, a notification, the listener reconnecting): a
// fetcher claims again within half a second of the server coming back.
package fetcher
