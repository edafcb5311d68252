package notify

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pgflow-go/pgflow/internal/backoff"
)

// SendFunc sends one NOTIFY per queue name.
type SendFunc func(ctx context.Context, queues []string) error

// Sender coalesces Signal calls into debounced sends. It owns one goroutine,
// stopped by Stop.
type Sender struct {
	send     SendFunc
	debounce time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	pending map[string]struct{}
	wake    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewSender starts a sender.
func NewSender(send SendFunc, debounce time.Duration, log *slog.Logger) *Sender {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sender{
		send: send, debounce: debounce, log: log,
		pending: map[string]struct{}{},
		wake:    make(chan struct{}, 1),
		ctx:     ctx, cancel: cancel,
		done: make(chan struct{}),
	}
	go s.loop()
	return s
}

// Signal asks for a notification on queue; it never blocks.
func (s *Sender) Signal(queue string) {
	s.mu.Lock()
	s.pending[queue] = struct{}{}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Stop sends what is pending, then ends the goroutine.
func (s *Sender) Stop() {
	s.cancel()
	<-s.done
}

func (s *Sender) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	out := make([]string, 0, len(s.pending))
	for q := range s.pending {
		out = append(out, q)
	}
	clear(s.pending)
	return out
}

func (s *Sender) loop() {
	defer close(s.done)
	retry := backoff.Policy{Base: 10 * time.Millisecond, Max: time.Second}
	failures := 0
	var last time.Time
	for {
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			s.flush(context.Background(), 2*time.Second)
			return
		}
		if wait := s.debounce - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				s.flush(context.Background(), 2*time.Second)
				return
			}
		}
		last = time.Now()
		queues := s.take()
		if len(queues) == 0 {
			continue
		}
		if err := s.send(s.ctx, queues); err != nil {
			if s.ctx.Err() != nil {
				s.flush(context.Background(), 2*time.Second)
				return
			}
			failures++
			s.log.Warn("pgflow: notify failed; consumers fall back to polling until it works again", "err", err, "queues", queues)
			for _, q := range queues {
				s.Signal(q)
			}
			backoff.Sleep(s.ctx, retry.Delay(failures))
			continue
		}
		failures = 0
	}
}

func (s *Sender) flush(ctx context.Context, timeout time.Duration) {
	queues := s.take()
	if len(queues) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.send(ctx, queues); err != nil {
		s.log.Warn("pgflow: final notify failed", "err", err)
	}
}
