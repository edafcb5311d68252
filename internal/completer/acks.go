package completer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pgflow-go/pgflow/internal/batch"
)

// ackQueue holds acknowledgements until either a claim takes them (Take:
// written in the claim's own transaction) or they have waited AckPace and
// its goroutine writes them. Items stay in pending, not in a channel, so
// that a claim can still take them while the writer waits out the pace.
type ackQueue struct {
	name   string
	log    *slog.Logger
	write  func(ctx context.Context, items []Ack) error // WriteAcks, then Acked
	queued func()

	mu      sync.Mutex
	pending []Ack
	since   time.Time // when pending last became non-empty
	taken   int       // taken by claims whose write is not settled yet
	closed  bool      // Stop was called: Ack refuses
	over    bool      // Stop's final writes are done: Settle no longer requeues

	kick chan struct{} // pending became non-empty (coalesced)
	stop chan struct{}
	done chan struct{}
	// final bounds Stop's last writes; runCtx parents every write and is
	// cancelled once final is done.
	final     context.Context
	runCtx    context.Context
	cancelRun context.CancelFunc
	dropped   int
}

func newAckQueue(name string, log *slog.Logger, write func(ctx context.Context, items []Ack) error, queued func()) *ackQueue {
	q := &ackQueue{
		name: name, log: log, write: write, queued: queued,
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	q.runCtx, q.cancelRun = context.WithCancel(context.Background())
	go q.loop()
	return q
}

func (q *ackQueue) add(a Ack) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.pending = append(q.pending, a)
	first := len(q.pending) == 1
	if first {
		q.since = time.Now()
	}
	q.mu.Unlock()
	if first {
		q.poke()
	}
	if q.queued != nil {
		q.queued()
	}
	return true
}

func (q *ackQueue) poke() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *ackQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// take moves up to MaxAckBatch pending items to dst; with claim set, they
// count as taken until settle.
func (q *ackQueue) take(dst []Ack, claim bool) []Ack {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.pending), MaxAckBatch)
	dst = append(dst, q.pending[:n]...)
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	if rest > 0 {
		q.since = time.Now()
	}
	if claim {
		q.taken += n
	}
	return dst
}

// settle ends a claim's hold on items: written, or handed back to be
// written by the queue.
func (q *ackQueue) settle(items []Ack, written bool) {
	if len(items) == 0 {
		return
	}
	q.mu.Lock()
	q.taken -= len(items)
	requeue := !written && !q.over
	if requeue {
		if len(q.pending) == 0 {
			q.since = time.Time{} // written at once: they have waited already
		}
		q.pending = append(q.pending, items...)
	}
	q.mu.Unlock()
	if requeue {
		q.poke()
	}
}

func (q *ackQueue) loop() {
	defer close(q.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var items []Ack
	for {
		select {
		case <-q.kick:
		case <-timer.C:
		case <-q.stop:
			q.drain(items[:0])
			return
		}
		for {
			q.mu.Lock()
			if len(q.pending) == 0 {
				q.mu.Unlock()
				break
			}
			if wait := AckPace - time.Since(q.since); wait > 0 && len(q.pending) < MaxAckBatch {
				q.mu.Unlock()
				timer.Reset(wait)
				break
			}
			q.mu.Unlock()
			items = q.take(items[:0], false)
			if !q.writeRetrying(items) {
				q.drain(items)
				return
			}
		}
	}
}

// writeRetrying writes one batch, retrying on error. It returns false if
// the queue was stopped before the batch could be written.
func (q *ackQueue) writeRetrying(items []Ack) bool {
	return batch.WriteRetrying(q.runCtx, q.stop, q.log, q.name, len(items), func(ctx context.Context) error {
		return q.write(ctx, items)
	})
}

// drain writes items and everything pending until q.final is done, then
// counts what is left, including items a claim holds unsettled.
func (q *ackQueue) drain(items []Ack) {
	for {
		if len(items) == 0 {
			items = q.take(items, false)
		}
		if len(items) == 0 {
			break
		}
		if err := batch.WriteFinal(q.final, func(ctx context.Context) error { return q.write(ctx, items) }); err != nil {
			q.mu.Lock()
			q.dropped = len(items) + len(q.pending) + q.taken
			q.over = true
			q.mu.Unlock()
			q.log.Error("pgflow: items dropped at stop; these messages will be delivered again when their lease expires",
				"items", q.name, "items", q.dropped, "err", err)
			return
		}
		items = items[:0]
	}
	q.mu.Lock()
	q.dropped = len(q.pending) + q.taken // handed back by a claim just now, or still held by one
	q.over = true
	q.mu.Unlock()
}

// shutdown refuses new items, writes what is pending until ctx is done, and
// returns how many items were left unwritten (0 on a second call).
func (q *ackQueue) shutdown(ctx context.Context) int {
	q.mu.Lock()
	again := q.closed
	q.closed = true
	q.mu.Unlock()
	if again {
		<-q.done
		return 0
	}
	q.final = ctx
	abort := context.AfterFunc(ctx, q.cancelRun)
	defer abort()
	close(q.stop)
	<-q.done
	q.cancelRun()
	return q.dropped
}
