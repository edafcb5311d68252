// Package executor runs a consumer's handlers on a fixed set of workers.
//
// # Outcome
//
// Each task runs its handler once with a context of its own; a panic
// becomes an error (Config.Panic); the outcome goes to Config.Done with how
// long the handler ran. Nothing here writes to the database: the owner
// turns outcomes into acknowledgements and failures.
//
// # Batches
//
// With Config.HandleBatch, each worker runs one batch at a time: the tasks
// of one SubmitBatch call, in order, in one call that returns an error per
// task. The batch has one context, cancelled by the timeout (each error it
// returns after that wraps TimeoutCause), by the parent, or once every task
// in it was cancelled; a task cancelled alone (its lease lost) gets its own
// outcome (LeaseLost) while the others run on. A panic or a result of the
// wrong length fails every task. Capacity, not Workers, then bounds the
// tasks submitted and not finished.
//
// # Timeout
//
// With Config.Timeout set, a handler's context is cancelled with cause
// Config.TimeoutCause once it has run that long (ctx.Err() is then
// context.Canceled; the cause says why). Each worker has one timer, reset
// per task, so the timeout costs no allocation per delivery. A handler that returns an
// error after that fails with an error matching TimeoutCause (wrapping its
// own); one that returns nil succeeded anyway. A handler still running
// Config.Grace after its timeout is stuck: the heartbeat no longer extends
// its lease, so the lease expires and another consumer gets the message,
// Config.Stuck is called once, and the task counts as stuck in Stats until
// it returns. A stuck handler keeps its worker: Workers bounds the
// goroutines a consumer runs, stuck or not.
//
// # Heartbeat
//
// Heartbeat extends the leases of running, not stuck, tasks every period;
// a task whose lease the database no longer grants is cancelled with cause
// Config.LeaseLostCause.
//
// # Taking back
//
// Capacity may exceed Workers (a consumer's prefetch): tasks then wait for
// a worker, and the heartbeat extends their leases like running ones.
// TakeBack removes the tasks that have waited since a given moment and no
// worker has started, cancelling them, for the owner to hand back to the
// queue; the worker that later reaches one skips it and reports it with
// Outcome.TakenBack, so the owner can free its slot once both that has
// happened and the hand-back is written. A waiting task whose lease is
// lost is cancelled like a running one and skipped: it never runs. So is
// one whose Task.LeaseUntil has passed by the local clock when a worker
// reaches it: no heartbeat could extend its lease (the database
// unreachable), so another consumer may already have it.
//
// # Stopping
//
// Close lets the workers finish what was submitted and end; Wait waits for
// them until its context is done. CancelAll cancels every task not yet
// finished with a cause and returns them, for the owner to hand back;
// workers skip the ones not yet started.
package executor
