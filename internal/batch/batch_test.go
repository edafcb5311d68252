package batch

import (
	"context"
	"errors"
	"io"
	"log/slog"
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
