package completer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Outcomes are written, then reported to the callbacks with their results.
func TestWritesThenReports(t *testing.T) {
	acked := make(chan []Ack, 4)
	failed := make(chan []FailResult, 4)
	var mu sync.Mutex
	var wroteAcks [][]int64
	var wroteFails int
	c := New(Config{
		Name: "q", Log: quiet(),
		WriteAcks: func(ctx context.Context, ids, tokens []int64) error {
			mu.Lock()
			defer mu.Unlock()
			wroteAcks = append(wroteAcks, append([]int64(nil), tokens...))
			return nil
		},
		WriteFails: func(ctx context.Context, items []Fail) ([]FailResult, error) {
			mu.Lock()
			defer mu.Unlock()
			wroteFails += len(items)
			out := make([]FailResult, len(items))
			for i, it := range items {
				out[i] = FailResult{ID: it.ID, Dead: it.Permanent}
			}
			return out, nil
		},
		Acked: func(items []Ack) {
			mu.Lock()
			if len(wroteAcks) == 0 {
				t.Error("ack reported before it was written")
			}
			mu.Unlock()
			acked <- append([]Ack(nil), items...)
		},
		Failed: func(items []Fail, res []FailResult) {
			mu.Lock()
			if wroteFails == 0 {
				t.Error("failure reported before it was written")
			}
			mu.Unlock()
			failed <- res
		},
	})
	c.Ack(Ack{ID: 1, Token: 10})
	c.Fail(Fail{ID: 2, Token: 20, Permanent: true, Err: errors.New("x")})
	select {
	case a := <-acked:
		if len(a) != 1 || a[0].Token != 10 {
			t.Fatalf("acked %+v", a)
		}
	case <-time.After(time.Minute):
		t.Fatal("no ack reported")
	}
	select {
	case r := <-failed:
		if len(r) != 1 || r[0].ID != 2 || !r[0].Dead {
			t.Fatalf("failed %+v", r)
		}
	case <-time.After(time.Minute):
		t.Fatal("no failure reported")
	}
	if dropped := c.Stop(context.Background()); dropped != 0 {
		t.Fatalf("dropped %d", dropped)
	}
	if len(wroteAcks) != 1 || wroteAcks[0][0] != 10 {
		t.Fatalf("wrote %v", wroteAcks)
	}
	if c.Ack(Ack{ID: 3}) {
		t.Fatal("Ack after Stop accepted")
	}
}

// Writes that keep failing are dropped once Stop's context is done, and
// Stop says how many.
func TestStopCountsWhatItCouldNotWrite(t *testing.T) {
	c := New(Config{
		Name: "q", Log: quiet(),
		WriteAcks:  func(ctx context.Context, ids, tokens []int64) error { return errors.New("down") },
		WriteFails: func(ctx context.Context, items []Fail) ([]FailResult, error) { return nil, errors.New("down") },
		Acked:      func([]Ack) { t.Error("reported an unwritten ack") },
		Failed:     func([]Fail, []FailResult) { t.Error("reported an unwritten failure") },
	})
	c.Ack(Ack{ID: 1})
	c.Ack(Ack{ID: 2})
	c.Fail(Fail{ID: 3, Err: errors.New("x")})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if dropped := c.Stop(ctx); dropped != 3 {
		t.Fatalf("dropped %d, want 3", dropped)
	}
}
