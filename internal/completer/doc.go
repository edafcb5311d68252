// Package completer writes a consumer's outcomes in batches.
//
// Acknowledgements and failures each have one goroutine (internal/batch)
// that writes whatever accumulated while the previous write was in flight,
// so a worker hands its outcome over and is free at once, and a burst of
// outcomes shares one transaction. Acknowledgements are paced (AckPace):
// under a steady trickle the acks of one pace share a transaction. The pace
// is cut short while Config.Urgent says the owner waits for the writes: a
// consumer's claims wait for its acknowledgements, so pacing them then
// would only slow the consumer down.
//
// # Results
//
// After each write the completer calls Acked or Failed, set at
// construction, with the items it wrote: the owner frees the consumer's
// slots and emits its events from there. Items whose claim token no longer
// matches are written as no-ops and reported all the same (their delivery
// was taken over; nothing is to be done). A batch that cannot be written by
// the time Stop's context is done is dropped and logged, and Stop returns
// how many items it dropped: their messages come back when their lease
// expires.
package completer
