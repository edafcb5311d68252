package fetcher

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

type call struct {
	n     int
	after *Key
	at    time.Time
}

// run starts a fetcher whose claims go to calls and answer with reply.
func run(t *testing.T, slots *Slots, maxBatch int, reply func(n int) Result) (*Fetcher, <-chan call) {
	t.Helper()
	calls := make(chan call, 100)
	f := New(Config{
		Queue: "q", MaxBatch: maxBatch, Slots: slots, PollInterval: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Claim: func(ctx context.Context, n int, after *Key) (Result, error) {
			calls <- call{n: n, after: after, at: time.Now()}
			return reply(n), nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, context.Background())
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f, calls
}

func next(t *testing.T, calls <-chan call) call {
	t.Helper()
	select {
	case c := <-calls:
		return c
	case <-time.After(time.Minute):
		t.Fatal("no claim")
		panic("unreachable")
	}
}

// With a backlog, the fetcher claims only as many messages as slots are
// free, and a slot is free only once released.
func TestClaimsNeverExceedFreeSlots(t *testing.T) {
	slots := NewSlots(4)
	_, calls := run(t, slots, 4, func(n int) Result {
		return Result{Claimed: n, Last: Key{VisibleAt: time.Now()}}
	})
	if c := next(t, calls); c.n != 4 {
		t.Fatalf("first claim asked for %d, want 4", c.n)
	}
	for range 3 {
		slots.Release(1)
		if c := next(t, calls); c.n != 1 {
			t.Fatalf("claim after one release asked for %d, want 1", c.n)
		}
	}
	if h := slots.Held(); h != 4 {
		t.Fatalf("held %d, want 4", h)
	}
}

// After a claim that found nothing but a message due later, the fetcher
// claims again when it is due, with no wake-up and no poll.
func TestShortClaimArmsAWakeUpForTheNextVisibleMessage(t *testing.T) {
	slots := NewSlots(2)
	const due = 50 * time.Millisecond
	first := true
	_, calls := run(t, slots, 2, func(n int) Result {
		if first {
			first = false
			return Result{HasNext: true, NextIn: due}
		}
		return Result{}
	})
	c1 := next(t, calls)
	c2 := next(t, calls)
	if gap := c2.at.Sub(c1.at); gap < due {
		t.Fatalf("claimed again after %v, before the message was due (%v)", gap, due)
	}
}

// A later short claim that reports an earlier moment re-arms the timer
// for it: one pending wake-up does not hide an earlier one.
func TestEarlierNextVisibleReArmsTheTimer(t *testing.T) {
	slots := NewSlots(1)
	replies := make(chan Result, 4)
	replies <- Result{HasNext: true, NextIn: time.Hour}
	replies <- Result{HasNext: true, NextIn: 30 * time.Millisecond}
	f, calls := run(t, slots, 1, func(n int) Result {
		select {
		case r := <-replies:
			return r
		default:
			return Result{}
		}
	})
	next(t, calls) // at start: next in an hour
	f.Wake()       // a NOTIFY: the next is now in 30 ms
	c2 := next(t, calls)
	c3 := next(t, calls) // the timer
	if gap := c3.at.Sub(c2.at); gap < 30*time.Millisecond {
		t.Fatalf("woke after %v, before the 30 ms the claim reported", gap)
	}
}

// Between full scans the fetcher claims from a little before the key of
// the last message it claimed.
func TestFrontierClaimStartsBeforeTheLastKey(t *testing.T) {
	slots := NewSlots(1)
	last := Key{Priority: 3, VisibleAt: time.Now(), ID: 42}
	f, calls := run(t, slots, 1, func(n int) Result {
		return Result{Claimed: n, Last: last}
	})
	if c := next(t, calls); c.after != nil {
		t.Fatalf("first claim from %+v, want from the start", c.after)
	}
	slots.Release(1)
	c := next(t, calls)
	if c.after == nil || c.after.Priority != 3 || !c.after.VisibleAt.Equal(last.VisibleAt.Add(-FrontierSlack)) {
		t.Fatalf("second claim from %+v, want priority 3 from %v", c.after, last.VisibleAt.Add(-FrontierSlack))
	}
	_ = f
}

func TestSlotsPanicOnOverRelease(t *testing.T) {
	s := NewSlots(1)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	s.Release(1)
}

// While claims keep finding several messages, a wake-up is answered no
// sooner than Pace after the last claim, so that the next claim takes what
// arrived meanwhile.
func TestClaimsFindingSeveralArePaced(t *testing.T) {
	slots := NewSlots(10)
	f, calls := run(t, slots, 10, func(n int) Result {
		return Result{Claimed: 2, Last: Key{VisibleAt: time.Now()}}
	})
	first := next(t, calls)
	slots.Release(2)
	f.Wake()
	second := next(t, calls)
	if gap := second.at.Sub(first.at); gap < Pace {
		t.Fatalf("the claim after one that found two came %v after it, want at least Pace (%v)", gap, Pace)
	}
}
