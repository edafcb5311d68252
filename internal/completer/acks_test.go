package completer

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blockedAcks returns a completer whose writes of id 1 block until release
// is closed or the write's context ends, with ids 2 and 3 queued behind the
// first: they wait in the queue, where a claim can take them.
func blockedAcks(t *testing.T, acked chan<- []Ack) (c *Completer, release chan struct{}, written func() [][]int64, queued *atomic.Int64) {
	t.Helper()
	release = make(chan struct{})
	writing := make(chan struct{})
	var mu sync.Mutex
	var writes [][]int64
	queued = new(atomic.Int64)
	c = New(Config{
		Name: "q", Log: quiet(),
		WriteAcks: func(ctx context.Context, ids, tokens []int64) error {
			mu.Lock()
			writes = append(writes, append([]int64(nil), ids...))
			first := len(writes) == 1
			mu.Unlock()
			if first {
				close(writing)
			}
			if ids[0] == 1 {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		},
		WriteFails: func(ctx context.Context, items []Fail) ([]FailResult, error) { return nil, nil },
		Acked: func(items []Ack) {
			if acked != nil {
				acked <- append([]Ack(nil), items...)
			}
		},
		Failed: func([]Fail, []FailResult) {},
		Queued: func() { queued.Add(1) },
	})
	c.Ack(Ack{ID: 1, Token: 10})
	select {
	case <-writing:
	case <-time.After(time.Minute):
		t.Fatal("the first ack was never written")
	}
	c.Ack(Ack{ID: 2, Token: 20})
	c.Ack(Ack{ID: 3, Token: 30})
	written = func() [][]int64 {
		mu.Lock()
		defer mu.Unlock()
		return append([][]int64(nil), writes...)
	}
	return c, release, written, queued
}

// Acknowledgements taken by a claim and written by it are not written again
// nor reported to Acked (the claim frees their slots); Queued is called for
// every acknowledgement queued.
func TestTakenAcksWrittenByTheClaimAreNotWrittenAgain(t *testing.T) {
	acked := make(chan []Ack, 4)
	c, release, written, queued := blockedAcks(t, acked)
	if n := c.PendingAcks(); n != 2 {
		t.Fatalf("pending %d, want 2", n)
	}
	took := c.TakeAcks(nil)
	if len(took) != 2 || took[0].ID != 2 || took[1].ID != 3 || took[1].Token != 30 {
		t.Fatalf("took %+v", took)
	}
	if n := c.PendingAcks(); n != 0 {
		t.Fatalf("pending %d after the take, want 0", n)
	}
	c.SettleAcks(took, true)
	close(release)
	if a := <-acked; len(a) != 1 || a[0].ID != 1 {
		t.Fatalf("acked %+v, want id 1", a)
	}
	if dropped := c.Stop(context.Background()); dropped != 0 {
		t.Fatalf("dropped %d", dropped)
	}
	if w := written(); len(w) != 1 {
		t.Fatalf("writes %v, want only id 1's", w)
	}
	select {
	case a := <-acked:
		t.Fatalf("reported %+v, written by the claim", a)
	default:
	}
	if q := queued.Load(); q != 3 {
		t.Fatalf("Queued called %d times, want 3", q)
	}
}

// Acknowledgements a claim could not write are queued again and written by
// the completer.
func TestTakenAcksNotWrittenAreQueuedAgain(t *testing.T) {
	acked := make(chan []Ack, 4)
	c, release, written, _ := blockedAcks(t, acked)
	took := c.TakeAcks(nil)
	c.SettleAcks(took, false)
	if n := c.PendingAcks(); n != 2 {
		t.Fatalf("pending %d after a failed claim, want 2", n)
	}
	close(release)
	got := map[int64]bool{}
	for len(got) < 3 {
		select {
		case a := <-acked:
			for _, it := range a {
				got[it.ID] = true
			}
		case <-time.After(time.Minute):
			t.Fatalf("acked %v, want 1, 2 and 3; writes %v", got, written())
		}
	}
	if dropped := c.Stop(context.Background()); dropped != 0 {
		t.Fatalf("dropped %d", dropped)
	}
}

// Stop counts acknowledgements a claim still holds as unwritten, and a
// claim that fails after Stop does not queue them again.
func TestStopCountsAcksHeldByAClaim(t *testing.T) {
	c, _, _, _ := blockedAcks(t, nil)
	took := c.TakeAcks(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if dropped := c.Stop(ctx); dropped != 3 {
		t.Fatalf("dropped %d, want 3 (one blocked, two held by a claim)", dropped)
	}
	c.SettleAcks(took, false)
	if n := c.PendingAcks(); n != 0 {
		t.Fatalf("pending %d after Stop, want 0", n)
	}
	if c.Ack(Ack{ID: 4}) {
		t.Fatal("Ack after Stop accepted")
	}
}
