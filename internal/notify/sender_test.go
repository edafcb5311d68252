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
