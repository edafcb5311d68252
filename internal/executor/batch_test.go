package executor

import (
	"context"
	"errors"
	"testing"
	"time"
)

func newBatchExec(t *testing.T, timeout time.Duration, handle func(ctx context.Context, msgs []string) []error) (*Executor[string], <-chan result) {
	t.Helper()
	results := make(chan result, 64)
	e := New(context.Background(), Config[string]{
		Workers: 1, Capacity: 16, HandleBatch: handle, Timeout: timeout, Grace: time.Minute,
		TimeoutCause: errTimeout, LeaseLostCause: errLost,
		Panic: func(v any, stack []byte) error { return errors.New("panic: " + v.(string)) },
		Done:  func(t *Task[string], o Outcome) { results <- result{t, o} },
	})
	t.Cleanup(func() {
		e.CancelAll(errStopped)
		e.Close()
		e.Wait(context.Background())
	})
	return e, results
}

func tasks(msgs ...string) []*Task[string] {
	out := make([]*Task[string], len(msgs))
	for i, m := range msgs {
		out[i] = &Task[string]{ID: int64(i + 1), Token: int64(10 * (i + 1)), Msg: m}
	}
	return out
}

// outcomes collects n results by task id.
func outcomes(t *testing.T, results <-chan result, n int) map[int64]Outcome {
	t.Helper()
	got := make(map[int64]Outcome, n)
	for range n {
		r := await(t, results)
		got[r.t.ID] = r.o
	}
	return got
}

// One SubmitBatch is one HandleBatch call with the messages in order, and
// each message gets the outcome at its index.
func TestBatchOutcomePerMessage(t *testing.T) {
	errBad := errors.New("bad")
	calls := make(chan []string, 2)
	e, results := newBatchExec(t, 0, func(ctx context.Context, msgs []string) []error {
		calls <- msgs
		errs := make([]error, len(msgs))
		for i, m := range msgs {
			if m == "bad" {
				errs[i] = errBad
			}
		}
		return errs
	})
	e.SubmitBatch(tasks("a", "bad", "c"))
	if got := await(t, calls); len(got) != 3 || got[0] != "a" || got[1] != "bad" || got[2] != "c" {
		t.Fatalf("batch = %v", got)
	}
	got := outcomes(t, results, 3)
	if got[1].Err != nil || !errors.Is(got[2].Err, errBad) || got[3].Err != nil {
		t.Fatalf("outcomes = %+v", got)
	}
	for id, o := range got {
		if o.Cancelled || o.LeaseLost || o.Skipped {
			t.Fatalf("task %d outcome = %+v", id, o)
		}
	}
}

// A nil result acknowledges every message; a result of the wrong length
// and a panic fail every message with a clear error.
func TestBatchNilShortAndPanic(t *testing.T) {
	e, results := newBatchExec(t, 0, func(ctx context.Context, msgs []string) []error {
		switch msgs[0] {
		case "nil":
			return nil
		case "short":
			return []error{nil}
		default:
			panic("boom")
		}
	})
	e.SubmitBatch(tasks("nil", "x"))
	for id, o := range outcomes(t, results, 2) {
		if o.Err != nil {
			t.Fatalf("nil result: task %d outcome %+v", id, o)
		}
	}
	e.SubmitBatch(tasks("short", "x"))
	for id, o := range outcomes(t, results, 2) {
		if o.Err == nil || o.Err.Error() != "batch handler returned 1 outcomes for 2 messages" {
			t.Fatalf("short result: task %d outcome %+v", id, o)
		}
	}
	e.SubmitBatch(tasks("panic", "x"))
	for id, o := range outcomes(t, results, 2) {
		if o.Err == nil || o.Err.Error() != "panic: boom" {
			t.Fatalf("panic: task %d outcome %+v", id, o)
		}
	}
}

// The timeout cancels the batch's context and wraps the errors returned
// after it; a message the handler still acknowledged succeeded.
func TestBatchTimeout(t *testing.T) {
	e, results := newBatchExec(t, 10*time.Millisecond, func(ctx context.Context, msgs []string) []error {
		<-ctx.Done()
		if !errors.Is(context.Cause(ctx), errTimeout) {
			return fill(len(msgs), errors.New("wrong cause"))
		}
		return []error{ctx.Err(), nil}
	})
	e.SubmitBatch(tasks("a", "b"))
	got := outcomes(t, results, 2)
	if !errors.Is(got[1].Err, errTimeout) || !errors.Is(got[1].Err, context.Canceled) || got[2].Err != nil {
		t.Fatalf("outcomes = %+v", got)
	}
}

// A lease lost for one message of a running batch marks that message only
// (its outcome is not to be written) and leaves the batch running; once
// every lease is lost the batch's context is cancelled.
func TestBatchLeaseLost(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	causes := make(chan error, 1)
	e, results := newBatchExec(t, 0, func(ctx context.Context, msgs []string) []error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			causes <- context.Cause(ctx)
		}
		return make([]error, len(msgs))
	})
	e.SubmitBatch(tasks("a", "b"))
	await(t, started)
	keep := func(keep ...int64) ExtendFunc {
		return func(ctx context.Context, ids, tokens []int64) ([]int64, error) { return keep, nil }
	}
	e.Beat(context.Background(), keep(2), nil) // message 1 lost
	close(release)
	got := outcomes(t, results, 2)
	if !got[1].LeaseLost || got[2].LeaseLost || got[2].Err != nil || got[2].Cancelled {
		t.Fatalf("one lost: outcomes = %+v", got)
	}

	release = make(chan struct{})
	e.SubmitBatch(tasks("c", "d"))
	await(t, started)
	e.Beat(context.Background(), keep(), nil)
	if c := await(t, causes); !errors.Is(c, errLost) {
		t.Fatalf("batch cause = %v", c)
	}
	got = outcomes(t, results, 2)
	if !got[1].LeaseLost || !got[2].LeaseLost {
		t.Fatalf("all lost: outcomes = %+v", got)
	}
}

// CancelAll takes back a running batch (its context sees the cause) and a
// queued one (never run).
func TestBatchCancelAll(t *testing.T) {
	started := make(chan struct{}, 2)
	causes := make(chan error, 2)
	e, results := newBatchExec(t, 0, func(ctx context.Context, msgs []string) []error {
		started <- struct{}{}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return fill(len(msgs), ctx.Err())
	})
	e.SubmitBatch(tasks("a", "b"))
	await(t, started)
	queued := []*Task[string]{{ID: 3, Msg: "c"}}
	e.SubmitBatch(queued)
	if back := e.CancelAll(errStopped); len(back) != 3 {
		t.Fatalf("took back %d tasks, want 3", len(back))
	}
	if c := await(t, causes); !errors.Is(c, errStopped) {
		t.Fatalf("cause = %v", c)
	}
	got := outcomes(t, results, 3)
	for id, o := range got {
		if !o.Cancelled || (id == 3) != o.Skipped {
			t.Fatalf("task %d outcome = %+v", id, o)
		}
	}
	select {
	case <-started:
		t.Fatal("the queued batch ran")
	default:
	}
}
