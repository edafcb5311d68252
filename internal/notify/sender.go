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

	mu       sync.Mutex
	pending  map[string]struct{}
	lastSent time.Time // the last NOTIFY sent or handed to a publish (TakeInline)
	wake     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
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

// TakeInline reports whether a publish to queue that is about to be sent
// should carry the notification itself (pg_notify in its own transaction,
// delivered at its commit) because none was sent for a debounce interval.
// It then counts as the interval's notification and covers the queue's
// pending signals, all from publishes that committed before it. A publish
// that took the notification and then failed must Signal.
//
// Under a steady stream of publishes this replaces the sender's own NOTIFY
// transactions, each of which costs a transaction id and a commit.
func (s *Sender) TakeInline(queue string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.lastSent) < s.debounce {
		return false
	}
	s.lastSent = now
	delete(s.pending, queue)
	return true
}

// Stop sends what is pending, then ends the goroutine.
func (s *Sender) Stop() {
	s.cancel()
	<-s.done
}

// take empties pending; it records the send, if there is one to make.
func (s *Sender) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	s.lastSent = time.Now()
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
	for {
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			s.flush(context.Background(), 2*time.Second)
			return
		}
		// Right after a notification, wait out its interval and one more:
		// a publish starting in that time can carry the next notification
		// (TakeInline) and cover what is pending. Under a steady stream of
		// publishes that keeps happening, and the sender sends nothing.
		for {
			s.mu.Lock()
			last := s.lastSent
			s.mu.Unlock()
			wait := s.debounce - time.Since(last)
			if wait <= 0 {
				break
			}
			if !backoff.Sleep(s.ctx, wait+s.debounce) {
				s.flush(context.Background(), 2*time.Second)
				return
			}
		}
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
