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
	sent := make(chan []string, 10)
	s := NewSender(func(ctx context.Context, queues []string) error {
		sent <- queues
		return nil
	}, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer s.Stop()

	if !s.TakeInline("a") {
		t.Fatal("no notification due after a quiet spell")
	}
	if s.TakeInline("a") {
		t.Fatal("a second inline notification within the debounce interval")
	}
	// A publish within the interval signals; a later publish that carries
	// the next notification covers it, so the sender sends nothing.
	s.Signal("a")
	time.Sleep(60 * time.Millisecond)
	if !s.TakeInline("a") {
		t.Fatal("no notification due after the debounce interval")
	}
	select {
	case q := <-sent:
		t.Fatalf("sender sent %v although a publish carried the notification", q)
	case <-time.After(150 * time.Millisecond):
	}
	// A signal that no publish covers is sent once the interval (and the
	// grace for a publish to take it) is over.
	s.Signal("b")
	select {
	case q := <-sent:
		if len(q) != 1 || q[0] != "b" {
			t.Fatalf("sent %v, want [b]", q)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an uncovered signal was never sent")
	}
}
