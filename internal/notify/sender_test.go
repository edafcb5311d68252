package notify

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

func TestSenderCoalescesAndDeliversEverySignal(t *testing.T) {
	var mu sync.Mutex
	var sends [][]string
	s := NewSender(func(ctx context.Context, queues []string) error {
		mu.Lock()
		sends = append(sends, queues)
		mu.Unlock()
		return nil
	}, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for range 1000 {
		s.Signal("a")
	}
	s.Signal("b")
	s.Stop()
	mu.Lock()
	defer mu.Unlock()
	got := map[string]int{}
	for _, batch := range sends {
		for _, q := range batch {
			got[q]++
		}
	}
	if got["a"] < 1 || got["b"] < 1 {
		t.Fatalf("signals lost: %v", got)
	}
	// Signals that arrive while a send is pending share it: far fewer sends
	// than signals.
	if len(sends) > 100 {
		t.Fatalf("%d sends for 1001 signals; debounce not working", len(sends))
	}
}

// A publish may carry the notification itself once per debounce interval;
// it then covers the queue's pending signals, and the sender's own NOTIFY
// is only for signals no such publish covered.
func TestTakeInlineCoversPendingSignals(t *testing.T) {
	const debounce = 50 * time.Millisecond
	sent := make(chan []string, 10)
	s := NewSender(func(ctx context.Context, queues []string) error {
		sent <- queues
		return nil
	}, debounce, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer s.Stop()

	before := time.Now()
	if !s.TakeInline("a") {
		t.Fatal("no notification due after a quiet spell")
	}
	// Only a fault if the two calls really fell within one interval.
	if s.TakeInline("a") && time.Since(before) < debounce {
		t.Fatal("a second inline notification within the debounce interval")
	}
	// A publish within the interval signals; a later publish that carries
	// the next notification covers it, so the sender sends nothing for it.
	s.Signal("a")
	deadline := time.Now().Add(time.Minute)
	for !s.TakeInline("a") {
		if time.Now().After(deadline) {
			t.Fatal("no notification due after the debounce interval")
		}
		time.Sleep(time.Millisecond) // polling the sender's state
	}
	// A signal that no publish covers is sent once the interval (and the
	// grace for a publish to take it) is over. It is the first send: had
	// the inline notification not covered "a", the sender would have sent
	// "a" before or with it.
	s.Signal("b")
	select {
	case q := <-sent:
		if len(q) != 1 || q[0] != "b" {
			t.Fatalf("sent %v, want [b] (a publish carried the notification for a)", q)
		}
	case <-time.After(time.Minute):
		t.Fatal("an uncovered signal was never sent")
	}
}
