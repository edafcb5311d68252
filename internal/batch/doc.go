// Package batch groups items produced by many goroutines into batches that
// one goroutine writes together (group commit).
//
// # Batching
//
// The flusher writes as soon as it has an item, and whatever arrives while a
// write is in flight forms the next batch. Under light load every item is
// written at once; under heavy load batches grow by themselves, up to the
// maximum given to New.
//
// # Failures
//
// A FlushFunc error makes the flusher retry the same batch with backoff
// (package backoff, 20 ms doubling up to 500 ms, so writes resume within
// half a second of the server coming back) until it succeeds or the flusher
// is stopped; each write
// is bounded by a timeout, so a hung connection cannot stall the flusher for
// ever.
//
// # Lifecycle
//
// Each Flusher owns one goroutine. Add blocks while the input buffer is full
// (back-pressure) and refuses items once the flusher is stopping; Stop writes
// what is queued, trying until its context is done, logs and drops what is
// left, and returns after the goroutine has ended.
package batch
