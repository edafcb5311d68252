package executor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

var (
	errTimeout = errors.New("timeout")
	errLost    = errors.New("lease lost")
	errStopped = errors.New("stopped")
)

type result struct {
	t *Task[string]
	o Outcome
}

// startExec starts an executor with cfg whose outcomes go to the returned
// channel, and closes it when the test ends.
func startExec(t *testing.T, cfg Config[string]) (*Executor[string], <-chan result) {
	t.Helper()
	results := make(chan result, 16)
	cfg.Done = func(t *Task[string], o Outcome) { results <- result{t, o} }
	e := New(context.Background(), cfg)
	t.Cleanup(func() {
		e.Close()
		e.Wait(context.Background())
	})
	return e, results
}

func newExec(t *testing.T, workers int, timeout time.Duration, handle func(ctx context.Context, msg string) error) (*Executor[string], <-chan result, <-chan *Task[string]) {
	t.Helper()
	results := make(chan result, 16)
	stuck := make(chan *Task[string], 16)
	e := New(context.Background(), Config[string]{
		Workers: workers, Handle: handle, Timeout: timeout, Grace: 10 * time.Millisecond,
		TimeoutCause: errTimeout, LeaseLostCause: errLost,
		Panic: func(v any, stack []byte) error { return errors.New("panic: " + v.(string)) },
		Done:  func(t *Task[string], o Outcome) { results <- result{t, o} },
		Stuck: func(t *Task[string]) { stuck <- t },
	})
	t.Cleanup(func() {
		e.CancelAll(errStopped)
		e.Close()
		e.Wait(context.Background())
	})
	return e, results, stuck
}

func await[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatal("timed out")
		panic("unreachable")
	}
}

func TestTimeoutCancelsWithCauseAndFailsTheAttempt(t *testing.T) {
	causes := make(chan error, 1)
	e, results, _ := newExec(t, 1, 10*time.Millisecond, func(ctx context.Context, msg string) error {
		<-ctx.Done()
		causes <- context.Cause(ctx)
		if msg == "nil" {
			return nil
		}
		return ctx.Err()
	})
	e.Submit(&Task[string]{ID: 1, Msg: "err"})
	if c := await(t, causes); !errors.Is(c, errTimeout) {
		t.Fatalf("cause = %v", c)
	}
	r := await(t, results)
	if !errors.Is(r.o.Err, errTimeout) || !errors.Is(r.o.Err, context.Canceled) || r.o.Cancelled || r.o.LeaseLost {
		t.Fatalf("outcome = %+v", r.o)
	}
	// A handler that still returns nil after its timeout succeeded.
	e.Submit(&Task[string]{ID: 2, Msg: "nil"})
	await(t, causes)
	if r := await(t, results); r.o.Err != nil {
		t.Fatalf("outcome = %+v", r.o)
	}
}

func TestPanicBecomesTheError(t *testing.T) {
	e, results, _ := newExec(t, 1, 0, func(ctx context.Context, msg string) error { panic("boom") })
	e.Submit(&Task[string]{ID: 1})
	if r := await(t, results); r.o.Err == nil || r.o.Err.Error() != "panic: boom" {
		t.Fatalf("outcome = %+v", r.o)
	}
}

// A handler past timeout and grace is stuck: reported once, no longer in
// the leases to extend, counted in Stats until it returns.
func TestStuckHandlerIsNoLongerExtended(t *testing.T) {
	unblock := make(chan struct{})
	started := make(chan struct{}, 2)
	// A long timeout: the handler becomes stuck only at the moments this
	// test hands to Leases, however slowly the test itself runs.
	e, results, stuck := newExec(t, 2, time.Minute, func(ctx context.Context, msg string) error {
		started <- struct{}{}
		if msg == "stuck" {
			<-unblock // ignores ctx
			return nil
		}
		<-ctx.Done()
		<-unblock
		return ctx.Err()
	})
	e.Submit(&Task[string]{ID: 1, Token: 11, Msg: "stuck"})
	await(t, started)
	ids, tokens := e.Leases(time.Now())
	if len(ids) != 1 || ids[0] != 1 || tokens[0] != 11 {
		t.Fatalf("leases before the timeout = %v %v", ids, tokens)
	}
	ids, _ = e.Leases(time.Now().Add(time.Hour))
	if len(ids) != 0 {
		t.Fatalf("leases of a stuck handler = %v, want none", ids)
	}
	if s := await(t, stuck); s.ID != 1 {
		t.Fatalf("stuck = %d", s.ID)
	}
	e.Leases(time.Now().Add(2 * time.Hour))
	select {
	case s := <-stuck:
		t.Fatalf("stuck reported twice (%d)", s.ID)
	default:
	}
	if running, nstuck := e.Stats(); running != 1 || nstuck != 1 {
		t.Fatalf("stats = %d running, %d stuck", running, nstuck)
	}
	close(unblock)
	await(t, results)
	if running, nstuck := e.Stats(); running != 0 || nstuck != 0 {
		t.Fatalf("stats after return = %d running, %d stuck", running, nstuck)
	}
}

// A heartbeat whose extension misses a task cancels it with the lease-lost
// cause; its outcome says so.
func TestLostLeaseCancelsTheTask(t *testing.T) {
	started := make(chan struct{}, 1)
	e, results, _ := newExec(t, 1, 0, func(ctx context.Context, msg string) error {
		started <- struct{}{}
		<-ctx.Done()
		return context.Cause(ctx)
	})
	e.Submit(&Task[string]{ID: 7, Token: 70})
	await(t, started)
	var mu sync.Mutex
	var asked []int64
	e.Beat(context.Background(), func(ctx context.Context, ids, tokens []int64) ([]int64, error) {
		mu.Lock()
		asked = append(asked, ids...)
		mu.Unlock()
		return nil, nil // not extended: taken over
	}, nil)
	r := await(t, results)
	if !r.o.LeaseLost || !errors.Is(r.o.Err, errLost) {
		t.Fatalf("outcome = %+v", r.o)
	}
	if len(asked) != 1 || asked[0] != 7 {
		t.Fatalf("extended %v", asked)
	}
}

// CancelAll takes every unfinished task back: running ones see the cause,
// queued ones never run.
func TestCancelAllTakesBackRunningAndQueued(t *testing.T) {
	started := make(chan struct{}, 2)
	causes := make(chan error, 2)
	e, results, _ := newExec(t, 1, 0, func(ctx context.Context, msg string) error {
		started <- struct{}{}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return ctx.Err()
	})
	e.Submit(&Task[string]{ID: 1})
	await(t, started)
	e.Submit(&Task[string]{ID: 2}) // queued behind the only worker
	back := e.CancelAll(errStopped)
	if len(back) != 2 {
		t.Fatalf("took back %d tasks, want 2", len(back))
	}
	if c := await(t, causes); !errors.Is(c, errStopped) {
		t.Fatalf("cause = %v", c)
	}
	for range 2 {
		r := await(t, results)
		if !r.o.Cancelled || (r.t.ID == 2) != r.o.Skipped {
			t.Fatalf("task %d outcome = %+v", r.t.ID, r.o)
		}
	}
	e.Close()
	if running := e.Wait(context.Background()); running != 0 {
		t.Fatalf("%d running after Wait", running)
	}
	if e.Submit(&Task[string]{ID: 3}) {
		t.Fatal("Submit after Close accepted")
	}
}

// BenchmarkRun: one task through a worker, with and without a timeout;
// reports allocations per delivery.
func BenchmarkRun(b *testing.B) {
	for _, timeout := range []time.Duration{0, time.Minute} {
		b.Run("timeout="+timeout.String(), func(b *testing.B) {
			done := make(chan struct{}, 1)
			e := New(context.Background(), Config[string]{
				Workers: 1, Timeout: timeout, Grace: time.Second, TimeoutCause: errTimeout, LeaseLostCause: errLost,
				Handle: func(ctx context.Context, msg string) error { return nil },
				Done:   func(t *Task[string], o Outcome) { done <- struct{}{} },
			})
			defer e.Close()
			b.ReportAllocs()
			for i := range b.N {
				e.Submit(&Task[string]{ID: int64(i)})
				<-done
			}
		})
	}
}

// TakeBack takes only tasks no worker has started and that were queued by
// the given moment; the worker that reaches one skips it and reports it as
// taken back, and it is no longer among the leases to extend.
func TestTakeBackTakesOnlyWaitingTasks(t *testing.T) {
	release := make(chan struct{})
	started := make(chan string, 4)
	e, results := startExec(t, Config[string]{
		Workers: 1, Capacity: 3,
		Handle: func(ctx context.Context, msg string) error {
			started <- msg
			<-release
			return nil
		},
	})
	e.Submit(&Task[string]{ID: 1, Token: 11, Msg: "running"})
	if m := await(t, started); m != "running" {
		t.Fatalf("started %q", m)
	}
	e.Submit(&Task[string]{ID: 2, Token: 12, Msg: "waiting"})
	cutoff := time.Now()
	for !time.Now().After(cutoff) {
		// The next task is queued strictly after cutoff.
	}
	e.Submit(&Task[string]{ID: 3, Token: 13, Msg: "later"})
	got := e.TakeBack(cutoff, errStopped)
	if len(got) != 1 || got[0].ID != 2 {
		t.Fatalf("took back %v, want task 2 only", got)
	}
	if again := e.TakeBack(time.Now(), errStopped); len(again) != 1 || again[0].ID != 3 {
		t.Fatalf("second take-back %v, want task 3 only (task 1 runs, task 2 is gone)", again)
	}
	if ids, _ := e.Leases(time.Now()); len(ids) != 1 || ids[0] != 1 {
		t.Fatalf("leases %v, want only the running task", ids)
	}
	close(release)
	outcomes := map[int64]Outcome{}
	for range 3 {
		r := await(t, results)
		outcomes[r.t.ID] = r.o
	}
	if o := outcomes[1]; o.Skipped || o.TakenBack || o.Err != nil {
		t.Fatalf("running task's outcome %+v", o)
	}
	for _, id := range []int64{2, 3} {
		if o := outcomes[id]; !o.Skipped || !o.TakenBack || !o.Cancelled {
			t.Fatalf("task %d's outcome %+v, want skipped and taken back", id, o)
		}
	}
	select {
	case m := <-started:
		t.Fatalf("a taken-back task ran: %q", m)
	default:
	}
}

// A task whose lease has run out by the local clock before a worker
// reaches it (no heartbeat extended it) is skipped as lease lost; a
// heartbeat's extension moves the deadline on.
func TestTaskPastItsLeaseIsSkipped(t *testing.T) {
	release := make(chan struct{})
	started := make(chan string, 4)
	e, results := startExec(t, Config[string]{
		Workers: 1, Capacity: 3, LeaseLostCause: errLost,
		Lease: func() time.Duration { return time.Hour },
		Handle: func(ctx context.Context, msg string) error {
			started <- msg
			if msg == "running" {
				<-release
			}
			return nil
		},
	})
	e.Submit(&Task[string]{ID: 1, Token: 11, Msg: "running"})
	await(t, started)
	past := time.Now().Add(-time.Millisecond)
	e.Submit(&Task[string]{ID: 3, Token: 13, Msg: "extended", LeaseUntil: past})
	// A heartbeat extends every lease it is asked to: task 3's deadline
	// moves on. Task 2, submitted after it, has none but its own.
	if lost := e.Beat(context.Background(), func(ctx context.Context, ids, tokens []int64) ([]int64, error) {
		return ids, nil
	}, nil); lost != 0 {
		t.Fatalf("beat lost %d", lost)
	}
	e.Submit(&Task[string]{ID: 2, Token: 12, Msg: "expired", LeaseUntil: past})
	close(release)
	outcomes := map[int64]Outcome{}
	for range 3 {
		r := await(t, results)
		outcomes[r.t.ID] = r.o
	}
	if o := outcomes[2]; !o.Skipped || !o.LeaseLost {
		t.Fatalf("expired task's outcome %+v, want skipped, lease lost", o)
	}
	if o := outcomes[3]; o.Skipped || o.Err != nil {
		t.Fatalf("extended task's outcome %+v, want run", o)
	}
	if m := await(t, started); m != "extended" {
		t.Fatalf("started %q", m)
	}
}

// A message handed back while its task waits can be claimed again and
// submitted under the same id before a worker reaches the old task; the
// old task's skip must leave the new delivery in flight (its lease
// extended by the heartbeat), and only the new delivery runs.
func TestRedeliveryOfAWaitingTaskStaysInFlight(t *testing.T) {
	release, hold := make(chan struct{}), make(chan struct{})
	var unhold sync.Once
	started := make(chan string, 4)
	e, results := startExec(t, Config[string]{
		Workers: 1, Capacity: 3,
		Handle: func(ctx context.Context, msg string) error {
			started <- msg
			if msg == "blocker" {
				<-release
			} else {
				<-hold
			}
			return nil
		},
	})
	t.Cleanup(func() { unhold.Do(func() { close(hold) }) })
	e.Submit(&Task[string]{ID: 1, Token: 11, Msg: "blocker"})
	if m := await(t, started); m != "blocker" {
		t.Fatalf("started %q", m)
	}
	old := &Task[string]{ID: 2, Token: 21, Msg: "first delivery"}
	e.Submit(old)
	if got := e.TakeBack(time.Now(), errStopped); len(got) != 1 || got[0] != old {
		t.Fatalf("took back %v, want the waiting task", got)
	}
	// Claimed again: the same message id, a new token.
	e.Submit(&Task[string]{ID: 2, Token: 22, Msg: "second delivery"})
	close(release)
	if m := await(t, started); m != "second delivery" {
		t.Fatalf("started %q, want the second delivery", m)
	}
	// The old task was skipped on the way; the running delivery is still
	// in flight with its own token.
	if ids, tokens := e.Leases(time.Now()); len(ids) != 1 || ids[0] != 2 || tokens[0] != 22 {
		t.Fatalf("leases %v %v, want the second delivery's (2, 22)", ids, tokens)
	}
	unhold.Do(func() { close(hold) })
	outcomes := map[string]Outcome{}
	for range 3 {
		r := await(t, results)
		outcomes[r.t.Msg] = r.o
	}
	if o := outcomes["first delivery"]; !o.Skipped || !o.TakenBack {
		t.Fatalf("first delivery's outcome %+v, want skipped and taken back", o)
	}
	if o := outcomes["second delivery"]; o.Skipped || o.Err != nil {
		t.Fatalf("second delivery's outcome %+v, want it run", o)
	}
}
