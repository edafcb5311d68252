// Package completer writes a consumer's outcomes in batches.
//
// Failures have one goroutine (internal/batch) that writes whatever
// accumulated while the previous write was in flight, so a worker hands its
// outcome over and is free at once, and a burst of outcomes shares one
// transaction.
//
// Acknowledgements wait in a queue of their own until the owner's next
// claim takes them (TakeAcks) and writes them in the claim's transaction,
// or, if no claim has taken them within AckPace of the first one queued,
// until the completer's goroutine writes them. A consumer's claims wait for
// its acknowledgements (it holds at most Workers + Prefetch deliveries), so while it
// drains a backlog each claim carries the acknowledgements of the last one:
// one round trip instead of a claim and the writes it waits for. Under a
// trickle, the acknowledgements of one pace share a transaction. A claim
// that fails hands its acknowledgements back (SettleAcks) and the completer
// writes them.
//
// # Results
//
// After each write of its own the completer calls Acked or Failed, set at
// construction, with the items it wrote (not for acknowledgements a claim
// wrote): the owner frees the consumer's slots and emits its events from
// there. Items whose claim token no longer
// matches are written as no-ops and reported all the same (their delivery
// was taken over; nothing is to be done). A batch that cannot be written by
// the time Stop's context is done is dropped and logged, and Stop returns
// how many items it dropped, counting acknowledgements a claim still holds:
// their messages come back when their lease expires.
package completer
