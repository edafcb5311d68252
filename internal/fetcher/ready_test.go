package fetcher

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// With every slot held but some ready (Config.Ready), the fetcher claims:
// the claim writes the ready outcomes and takes their slots, so the slots
// held never exceed the capacity; with none free and none ready it waits.
func TestReadySlotsAreClaimedThrough(t *testing.T) {
	slots := NewSlots(4)
	var ready atomic.Int64
	type claimCall struct{ n, ready int }
	calls := make(chan claimCall, 10)
	fail := make(chan bool, 10)
	f := New(Config{
		Queue: "q", MaxBatch: 4, Slots: slots, PollInterval: time.Hour,
		Log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready: func() int { return int(ready.Load()) },
		Claim: func(ctx context.Context, n int, after *Key) (Result, error) {
			r := int(ready.Swap(0))
			// Whether this claim fails is decided before the test hears
			// of it, so a failure the test asks for after one claim
			// applies to the next.
			failed := false
			select {
			case <-fail:
				failed = true
			default:
			}
			calls <- claimCall{n: n, ready: r}
			if failed {
				ready.Add(int64(r)) // not written: still ready
				return Result{}, errors.New("claim failed")
			}
			asked := min(4, n+r)
			return Result{Claimed: asked, Asked: asked, Freed: r, Last: Key{VisibleAt: time.Now()}}, nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, context.Background())
	}()
	t.Cleanup(func() { cancel(); <-done })
	nextCall := func() claimCall {
		t.Helper()
		select {
		case c := <-calls:
			return c
		case <-time.After(time.Minute):
			t.Fatal("no claim")
			panic("unreachable")
		}
	}
	if c := nextCall(); c.n != 4 || c.ready != 0 {
		t.Fatalf("first claim %+v, want 4 free, none ready", c)
	}
	// Three handled, their outcomes waiting: a claim writes them and
	// claims three in their place.
	ready.Store(3)
	slots.Notify()
	if c := nextCall(); c.n != 0 || c.ready != 3 {
		t.Fatalf("claim %+v, want 0 free and 3 ready", c)
	}
	if h := slots.Held(); h != 4 {
		t.Fatalf("held %d after claiming through ready slots, want 4", h)
	}
	// A failed claim writes nothing: the ready slots stay held, and the
	// next claim (after the retry delay) writes them.
	fail <- true
	ready.Store(2)
	slots.Notify()
	if c := nextCall(); c.ready != 2 {
		t.Fatalf("claim %+v, want 2 ready", c)
	}
	if c := nextCall(); c.n != 0 || c.ready != 2 {
		t.Fatalf("retried claim %+v, want 0 free and 2 ready", c)
	}
	if h := slots.Held(); h != 4 {
		t.Fatalf("held %d, want 4", h)
	}
}
