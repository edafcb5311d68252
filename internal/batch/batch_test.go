package batch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestEveryItemIsWrittenOnceInBoundedBatches(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	largest := 0
	f := New("t", 50, quiet, func(ctx context.Context, items []int) error {
		mu.Lock()
		defer mu.Unlock()
		largest = max(largest, len(items))
		for _, it := range items {
			seen[it]++
		}
		return nil
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				if !f.Add(g*1000 + i) {
					t.Error("Add refused before Stop")
				}
			}
		}()
	}
	wg.Wait()
	f.Stop(context.Background())
	if len(seen) != 8000 {
		t.Fatalf("%d distinct items written, want 8000", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("item %d written %d times", k, n)
		}
	}
	if largest > 50 {
		t.Fatalf("batch of %d exceeds max 50", largest)
	}
	if f.Add(1) {
		t.Fatal("Add accepted after Stop")
	}
}

func TestFailedWriteIsRetried(t *testing.T) {
	var calls atomic.Int32
	written := make(chan []string, 1)
	f := New("t", 10, quiet, func(ctx context.Context, items []string) error {
		if calls.Add(1) < 3 {
			return errors.New("connection reset")
		}
		written <- append([]string(nil), items...)
		return nil
	})
	f.Add("a")
	got := <-written
	f.Stop(context.Background())
	if len(got) != 1 || got[0] != "a" || calls.Load() != 3 {
		t.Fatalf("got %v after %d calls", got, calls.Load())
	}
}

func TestStopGivesUpAtDeadline(t *testing.T) {
	block := make(chan struct{})
	f := New("t", 10, quiet, func(ctx context.Context, items []int) error {
		select {
		case <-block:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	defer close(block)
	f.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { f.Stop(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop hung past its deadline")
	}
}

// A paced flusher writes the first item after a quiet spell at once and
// gathers the items that follow within the pace into one write; Stop writes
// what a pace is still holding.
func TestPacedFlusherGathersATrickle(t *testing.T) {
	writes := make(chan []int, 100)
	f := NewPaced("t", 100, time.Hour, quiet, func(ctx context.Context, items []int) error {
		writes <- append([]int(nil), items...)
		return nil
	})
	// The flusher asks whether it is urgent for each item it takes while
	// the pace holds it back: the signal that it holds that item.
	held := make(chan struct{}, 10)
	f.SetUrgent(func() bool {
		held <- struct{}{}
		return false
	})
	f.Add(1)
	select {
	case w := <-writes:
		if len(w) != 1 || w[0] != 1 {
			t.Fatalf("first write %v, want [1]", w)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first item after a quiet spell was not written at once")
	}
	for i := 2; i <= 5; i++ {
		f.Add(i)
	}
	for i := 2; i <= 5; i++ {
		select {
		case <-held:
		case <-time.After(time.Minute):
			t.Fatalf("item %d never held by the pace", i)
		}
	}
	select {
	case w := <-writes:
		t.Fatalf("wrote %v before the pace was over", w)
	default:
	}
	f.Stop(context.Background())
	close(writes)
	var rest [][]int
	for w := range writes {
		rest = append(rest, w)
	}
	if len(rest) != 1 || !slices.Equal(rest[0], []int{2, 3, 4, 5}) {
		t.Fatalf("Stop wrote %v, want one write of the 4 gathered items", rest)
	}
}

// A full batch does not wait for the pace.
func TestPacedFlusherWritesAFullBatchAtOnce(t *testing.T) {
	writes := make(chan int, 100)
	f := NewPaced("t", 3, time.Hour, quiet, func(ctx context.Context, items []int) error {
		writes <- len(items)
		return nil
	})
	defer f.Stop(context.Background())
	for _, want := range []int{1, 3} {
		for i := range want {
			f.Add(i)
		}
		select {
		case n := <-writes:
			if n != want {
				t.Fatalf("write of %d items, want %d", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no write of %d items", want)
		}
	}
}

// An urgent paced flusher writes without waiting for its pace.
func TestUrgentSkipsThePace(t *testing.T) {
	writes := make(chan int, 4)
	f := NewPaced("t", 10, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)), func(ctx context.Context, items []int) error {
		writes <- len(items)
		return nil
	})
	f.SetUrgent(func() bool { return true })
	defer f.Stop(context.Background())
	for range 2 {
		f.Add(1)
		select {
		case <-writes:
		case <-time.After(time.Minute):
			t.Fatal("an urgent item waited for the pace")
		}
	}
}
