package executor

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Task is one delivery to run.
type Task[T any] struct {
	ID    int64
	Token int64
	Msg   T
	// LeaseUntil, when set, is when the delivery's lease runs out by the
	// local clock, at the latest: set by the owner from the moment it sent
	// the claim, moved on by each heartbeat that extends the lease (from
	// the moment it sent the extension; Config.Lease). A task not started
	// by then is skipped as lease lost. Guarded by Executor.mu once
	// submitted.
	LeaseUntil time.Time

	ctx    context.Context
	cancel context.CancelCauseFunc
	queued time.Time // when it was submitted
	start  time.Time // zero until a worker starts it (guarded by Executor.mu)
	stuck  bool      // guarded by Executor.mu
	done   bool      // guarded by Executor.mu
	// takenBack: TakeBack took it before a worker started it (guarded by
	// Executor.mu).
	takenBack bool
	// batch is the batch run the task belongs to once started (batch mode;
	// guarded by Executor.mu), gone counts it cancelled in that run.
	batch *batchRun
	gone  bool
}

// batchRun is one call of Config.HandleBatch: its context is cancelled by
// the timeout, or once every task in it was cancelled (lease lost, taken
// back); a single task's lost lease leaves the others running.
type batchRun struct {
	ctx       context.Context
	cancel    context.CancelCauseFunc
	start     time.Time
	n         int // tasks in the run
	cancelled int // of which cancelled (guarded by Executor.mu)
}

// Outcome is how a task ended.
type Outcome struct {
	Err  error
	Took time.Duration
	// LeaseLost: the lease was taken over (heartbeat) while the handler ran;
	// the outcome must not be written.
	LeaseLost bool
	// Cancelled: CancelAll took the task back; nothing is to be written.
	Cancelled bool
	// Skipped: the task never ran (cancelled before a worker took it).
	Skipped bool
	// TakenBack: TakeBack took the task before it ran (Skipped and
	// Cancelled are set too); the owner hands it back itself.
	TakenBack bool
}

// Config configures an Executor.
type Config[T any] struct {
	Workers int
	Handle  func(ctx context.Context, msg T) error
	// HandleBatch, set instead of Handle, runs the tasks of one SubmitBatch
	// call at once and returns one error per message, in order (nil: every
	// one succeeded). Each of the Workers workers runs one batch at a time.
	HandleBatch func(ctx context.Context, msgs []T) []error
	// Capacity is how many tasks may be submitted and not finished at
	// once; Submit and SubmitBatch never block within it. Default Workers.
	Capacity int
	// Timeout bounds a handler's run; zero or negative: no bound.
	Timeout time.Duration
	// Grace is how long past Timeout a handler may run before it is stuck.
	Grace          time.Duration
	TimeoutCause   error
	LeaseLostCause error
	// Panic turns a recovered panic into the handler's error.
	Panic func(v any, stack []byte) error
	// Done receives every task's outcome, on the worker's goroutine.
	Done func(t *Task[T], o Outcome)
	// Stuck is called once per task that became stuck.
	Stuck func(t *Task[T])
	// Lease, if set, is the lease a heartbeat's extension grants: each
	// extended task's LeaseUntil moves to the beat's start plus Lease().
	Lease func() time.Duration
}

// Executor runs tasks. Safe for concurrent use.
type Executor[T any] struct {
	cfg    Config[T]
	parent context.Context
	queue  chan *Task[T]   // single mode
	chunks chan []*Task[T] // batch mode
	wg     sync.WaitGroup

	mu       sync.Mutex
	inflight map[int64]*Task[T]
	closed   bool
}

// New starts cfg.Workers workers. parent parents every task's context.
func New[T any](parent context.Context, cfg Config[T]) *Executor[T] {
	if cfg.Capacity < cfg.Workers {
		cfg.Capacity = cfg.Workers
	}
	e := &Executor[T]{
		cfg: cfg, parent: parent,
		inflight: make(map[int64]*Task[T], cfg.Capacity),
	}
	if cfg.HandleBatch != nil {
		e.chunks = make(chan []*Task[T], cfg.Capacity)
	} else {
		e.queue = make(chan *Task[T], cfg.Capacity)
	}
	for range cfg.Workers {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			w := &worker[T]{}
			if cfg.Timeout > 0 {
				// One timer per worker, reset for each task: no allocation
				// per delivery. A firing meant for an earlier task finds a
				// task that has not run for Timeout yet and does nothing.
				w.timer = time.AfterFunc(time.Hour, func() {
					if t := w.cur.Load(); t != nil && time.Since(t.start) >= cfg.Timeout {
						t.cancel(cfg.TimeoutCause)
					}
					if b := w.curBatch.Load(); b != nil && time.Since(b.start) >= cfg.Timeout {
						b.cancel(cfg.TimeoutCause)
					}
				})
				w.timer.Stop()
				defer w.timer.Stop()
			}
			if e.chunks != nil {
				for ts := range e.chunks {
					e.runBatch(w, ts)
				}
				return
			}
			for t := range e.queue {
				e.run(w, t)
			}
		}()
	}
	return e
}

// worker is one worker goroutine's timeout timer and current task.
type worker[T any] struct {
	timer    *time.Timer
	cur      atomic.Pointer[Task[T]]
	curBatch atomic.Pointer[batchRun]
}

// Submit queues a task (single mode). The owner submits at most Capacity
// tasks that have not finished, so Submit never blocks. It returns false
// after Close.
func (e *Executor[T]) Submit(t *Task[T]) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	t.ctx, t.cancel = context.WithCancelCause(e.parent)
	t.queued = time.Now()
	e.inflight[t.ID] = t
	e.queue <- t
	return true
}

// SubmitBatch queues tasks to run together in one HandleBatch call (batch
// mode). Like Submit it never blocks within Capacity and returns false
// after Close.
func (e *Executor[T]) SubmitBatch(ts []*Task[T]) bool {
	if len(ts) == 0 {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	now := time.Now()
	for _, t := range ts {
		t.ctx, t.cancel = context.WithCancelCause(e.parent)
		t.queued = now
		e.inflight[t.ID] = t
	}
	e.chunks <- slices.Clone(ts)
	return true
}

// cancelLocked cancels t with cause; in a running batch, the batch's
// context is cancelled with the last of its tasks. Callers hold e.mu.
func (e *Executor[T]) cancelLocked(t *Task[T], cause error) {
	t.cancel(cause)
	if b := t.batch; b != nil && !t.gone {
		t.gone = true
		b.cancelled++
		if b.cancelled == b.n {
			b.cancel(cause)
		}
	}
}

// skipLocked reports whether t must not start: taken back (CancelAll,
// TakeBack), or its lease lost (the heartbeat) or run out by the local
// clock (LeaseUntil) before a worker reached it. If so it is done, and its
// outcome is the one to report. Callers hold e.mu.
func (e *Executor[T]) skipLocked(t *Task[T], now time.Time) (Outcome, bool) {
	if t.ctx.Err() == nil && !t.LeaseUntil.IsZero() && !now.Before(t.LeaseUntil) {
		e.cancelLocked(t, e.cfg.LeaseLostCause)
	}
	if t.ctx.Err() == nil {
		return Outcome{}, false
	}
	e.forgetLocked(t)
	t.done = true
	lost := e.cfg.LeaseLostCause != nil && errors.Is(context.Cause(t.ctx), e.cfg.LeaseLostCause)
	return Outcome{Skipped: true, Cancelled: !lost, LeaseLost: lost, TakenBack: t.takenBack}, true
}

func (e *Executor[T]) run(w *worker[T], t *Task[T]) {
	e.mu.Lock()
	if o, skip := e.skipLocked(t, time.Now()); skip {
		e.mu.Unlock()
		t.cancel(nil)
		e.cfg.Done(t, o)
		return
	}
	t.start = time.Now()
	e.mu.Unlock()

	// The timeout cancels the task's own context (the worker's timer, not a
	// context of its own), so the first cause wins: timeout, lease lost, or
	// stop.
	if w.timer != nil {
		w.cur.Store(t)
		w.timer.Reset(e.cfg.Timeout)
	}
	err := e.invoke(t.ctx, t.Msg)
	took := time.Since(t.start)
	if w.timer != nil {
		w.timer.Stop()
		w.cur.Store(nil)
	}
	// The timeout cancels the task's own context here; in a batch it
	// cancels the batch's.
	cause := context.Cause(t.ctx)
	timedOut := e.cfg.TimeoutCause != nil && errors.Is(cause, e.cfg.TimeoutCause)
	if timedOut {
		cause = nil
	}
	o := e.outcome(cause, timedOut, err, took)
	e.mu.Lock()
	e.forgetLocked(t)
	t.done = true
	e.mu.Unlock()
	t.cancel(nil)
	e.cfg.Done(t, o)
}

// runBatch runs one batch: the tasks taken back before it started are
// skipped, the others go to HandleBatch together, and each gets its own
// outcome.
func (e *Executor[T]) runBatch(w *worker[T], ts []*Task[T]) {
	now := time.Now()
	b := &batchRun{start: now}
	b.ctx, b.cancel = context.WithCancelCause(e.parent)
	live := make([]*Task[T], 0, len(ts))
	var skipped []*Task[T]
	var skips []Outcome
	e.mu.Lock()
	for _, t := range ts {
		if o, skip := e.skipLocked(t, now); skip {
			skipped = append(skipped, t)
			skips = append(skips, o)
			continue
		}
		t.start, t.batch = now, b
		live = append(live, t)
	}
	b.n = len(live)
	e.mu.Unlock()
	for i, t := range skipped {
		t.cancel(nil)
		e.cfg.Done(t, skips[i])
	}
	if len(live) == 0 {
		b.cancel(nil)
		return
	}
	if w.timer != nil {
		w.curBatch.Store(b)
		w.timer.Reset(e.cfg.Timeout)
	}
	msgs := make([]T, len(live))
	for i, t := range live {
		msgs[i] = t.Msg
	}
	errs := e.invokeBatch(b.ctx, msgs)
	took := time.Since(now)
	if w.timer != nil {
		w.timer.Stop()
		w.curBatch.Store(nil)
	}
	timedOut := e.cfg.TimeoutCause != nil && errors.Is(context.Cause(b.ctx), e.cfg.TimeoutCause)
	e.mu.Lock()
	for _, t := range live {
		e.forgetLocked(t)
		t.done = true
	}
	e.mu.Unlock()
	b.cancel(nil)
	for i, t := range live {
		o := e.outcome(context.Cause(t.ctx), timedOut, errs[i], took)
		t.cancel(nil)
		e.cfg.Done(t, o)
	}
}

// outcome is how a run ended: cause is what cancelled the task's context
// other than the timeout (nil: nothing), timedOut whether the run's
// timeout passed, err what the handler returned for it. An error after a
// timeout says so; a lost lease and a stop are reported as such whatever
// the handler returned.
func (e *Executor[T]) outcome(cause error, timedOut bool, err error, took time.Duration) Outcome {
	o := Outcome{Took: took}
	switch {
	case cause == nil:
		if timedOut && err != nil && !errors.Is(err, e.cfg.TimeoutCause) {
			err = fmt.Errorf("%w after %v: %w", e.cfg.TimeoutCause, e.cfg.Timeout, err)
		}
	case e.cfg.LeaseLostCause != nil && errors.Is(cause, e.cfg.LeaseLostCause):
		o.LeaseLost = true
	default:
		// Cancelled by CancelAll (stop) or the parent.
		o.Cancelled = true
	}
	o.Err = err
	return o
}

// invokeBatch calls HandleBatch and returns exactly one error per message:
// a panic, or a result of the wrong length, fails them all.
func (e *Executor[T]) invokeBatch(ctx context.Context, msgs []T) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			var err error
			if e.cfg.Panic != nil {
				err = e.cfg.Panic(r, debug.Stack())
			} else {
				err = fmt.Errorf("handler panicked: %v", r)
			}
			errs = fill(len(msgs), err)
		}
	}()
	errs = e.cfg.HandleBatch(ctx, msgs)
	switch len(errs) {
	case len(msgs):
		return errs
	case 0:
		return make([]error, len(msgs))
	default:
		return fill(len(msgs), fmt.Errorf("batch handler returned %d outcomes for %d messages", len(errs), len(msgs)))
	}
}

func fill(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

func (e *Executor[T]) invoke(ctx context.Context, msg T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e.cfg.Panic != nil {
				err = e.cfg.Panic(r, debug.Stack())
			} else {
				err = fmt.Errorf("handler panicked: %v", r)
			}
		}
	}()
	return e.cfg.Handle(ctx, msg)
}

// Close ends the workers once the submitted tasks are done.
func (e *Executor[T]) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		if e.chunks != nil {
			close(e.chunks)
		} else {
			close(e.queue)
		}
	}
}

// Wait waits for the workers to end after Close, until ctx is done. It
// returns how many handlers were still running.
func (e *Executor[T]) Wait(ctx context.Context) int {
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return 0
	case <-ctx.Done():
	}
	running, _ := e.Stats()
	return running
}

// forgetLocked removes t from the tasks in flight, unless its id now
// belongs to a later delivery of the same message: a task taken back or
// taken over while it waited in the queue may be claimed and submitted
// again before a worker reaches the old one. Callers hold e.mu.
func (e *Executor[T]) forgetLocked(t *Task[T]) {
	if e.inflight[t.ID] == t {
		delete(e.inflight, t.ID)
	}
}

// CancelAll cancels every task not finished with cause and returns them.
func (e *Executor[T]) CancelAll(cause error) []*Task[T] {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*Task[T], 0, len(e.inflight))
	for _, t := range e.inflight {
		e.cancelLocked(t, cause)
		out = append(out, t)
	}
	clear(e.inflight)
	return out
}

// TakeBack takes back every task submitted at or before queuedBefore that no
// worker has started, with cause, and returns them for the owner to hand
// back. They leave the heartbeat's leases at once; a worker that reaches
// one skips it and reports it with Outcome.TakenBack.
func (e *Executor[T]) TakeBack(queuedBefore time.Time, cause error) []*Task[T] {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*Task[T]
	for id, t := range e.inflight {
		if !t.start.IsZero() || t.queued.After(queuedBefore) || t.ctx.Err() != nil {
			continue
		}
		t.takenBack = true
		t.cancel(cause)
		delete(e.inflight, id)
		out = append(out, t)
	}
	return out
}

// Stats counts the tasks running (stuck ones included) and stuck.
func (e *Executor[T]) Stats() (running, stuck int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.inflight {
		if !t.start.IsZero() {
			running++
			if t.stuck {
				stuck++
			}
		}
	}
	return running, stuck
}

// Leases lists the tasks whose lease the heartbeat should extend: every
// task not stuck. Tasks running longer than Timeout+Grace become stuck here
// (Config.Stuck is called for each, outside the lock).
func (e *Executor[T]) Leases(now time.Time) (ids, tokens []int64) {
	var newlyStuck []*Task[T]
	e.mu.Lock()
	ids = make([]int64, 0, len(e.inflight))
	tokens = make([]int64, 0, len(e.inflight))
	for _, t := range e.inflight {
		if !t.stuck && e.cfg.Timeout > 0 && !t.start.IsZero() && now.Sub(t.start) > e.cfg.Timeout+e.cfg.Grace {
			t.stuck = true
			newlyStuck = append(newlyStuck, t)
		}
		if !t.stuck {
			ids = append(ids, t.ID)
			tokens = append(tokens, t.Token)
		}
	}
	e.mu.Unlock()
	if e.cfg.Stuck != nil {
		for _, t := range newlyStuck {
			e.cfg.Stuck(t)
		}
	}
	return ids, tokens
}

// ExtendFunc extends the leases of (ids, tokens) and returns the ids it
// extended.
type ExtendFunc func(ctx context.Context, ids, tokens []int64) ([]int64, error)

// Heartbeat extends leases every period() until ctx is done; period is read
// before each wait, so a changed lease applies at the next beat. onErr
// receives failed extensions.
func (e *Executor[T]) Heartbeat(ctx context.Context, period func() time.Duration, extend ExtendFunc, onErr func(error)) {
	for {
		t := time.NewTimer(period())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		e.Beat(ctx, extend, onErr)
	}
}

// Beat runs one heartbeat and returns how many tasks it found had lost
// their lease (and cancelled).
func (e *Executor[T]) Beat(ctx context.Context, extend ExtendFunc, onErr func(error)) (lost int) {
	began := time.Now()
	ids, tokens := e.Leases(began)
	if len(ids) == 0 {
		return 0
	}
	kept, err := extend(ctx, ids, tokens)
	if err != nil {
		if ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		return 0
	}
	held := make(map[int64]bool, len(kept))
	for _, id := range kept {
		held[id] = true
	}
	var until time.Time
	if e.cfg.Lease != nil {
		until = began.Add(e.cfg.Lease())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, id := range ids {
		t, ok := e.inflight[id]
		if !ok || t.Token != tokens[i] {
			continue
		}
		if held[id] {
			if !t.LeaseUntil.IsZero() && until.After(t.LeaseUntil) {
				t.LeaseUntil = until
			}
			continue
		}
		if t.ctx.Err() == nil {
			e.cancelLocked(t, e.cfg.LeaseLostCause)
			lost++
		}
	}
	return lost
}
