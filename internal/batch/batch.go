// Package batch groups items produced by many goroutines into batches that
// one goroutine writes together (group commit).
//
// There is no timer: the flusher writes as soon as it has an item, and
// whatever arrives while a write is in flight forms the next batch. Under
// light load every item is written at once; under heavy load batches grow
// by themselves, up to Max.
package batch

import (
	"context"
	"log/slog"
	"time"

	"github.com/pgflow-go/pgflow/internal/backoff"
)

// writeTimeout bounds one write, so a hung connection cannot stall the
// flusher forever.
const writeTimeout = 30 * time.Second

// FlushFunc writes one batch. An error makes the flusher retry the same
// batch with backoff until it succeeds or the flusher is stopped.
type FlushFunc[T any] func(ctx context.Context, items []T) error

// Flusher owns one goroutine; Stop ends it.
type Flusher[T any] struct {
	name  string
	flush FlushFunc[T]
	max   int
	log   *slog.Logger
	in    chan T
	stop  chan struct{}
	done  chan struct{}
	// deadline for the final flushes, set by Stop
	final context.Context
	// runCtx parents every write; Stop cancels it once its deadline passes,
	// so a write stuck on a dead connection cannot outlive Stop.
	runCtx    context.Context
	cancelRun context.CancelFunc
}

// New starts a flusher. max bounds a batch; the input buffer holds 4×max.
func New[T any](name string, max int, log *slog.Logger, flush FlushFunc[T]) *Flusher[T] {
	if max < 1 {
		max = 1
	}
	f := &Flusher[T]{
		name: name, flush: flush, max: max, log: log,
		in:   make(chan T, 4*max),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	f.runCtx, f.cancelRun = context.WithCancel(context.Background())
	go f.loop()
	return f
}

// Add queues an item, blocking while the buffer is full. It returns false,
// dropping the item, once the flusher is stopping.
func (f *Flusher[T]) Add(item T) bool {
	select {
	case <-f.stop:
		return false
	default:
	}
	select {
	case f.in <- item:
		return true
	case <-f.stop:
		return false
	}
}

// Stop writes what is queued, trying until ctx is done, and ends the
// goroutine. Items left unwritten are logged and dropped.
func (f *Flusher[T]) Stop(ctx context.Context) {
	select {
	case <-f.stop:
		<-f.done
		return
	default:
	}
	f.final = ctx
	abort := context.AfterFunc(ctx, f.cancelRun)
	defer abort()
	close(f.stop)
	<-f.done
	f.cancelRun()
}

func (f *Flusher[T]) loop() {
	defer close(f.done)
	batch := make([]T, 0, f.max)
	for {
		select {
		case item := <-f.in:
			batch = append(batch[:0], item)
		case <-f.stop:
			f.drain(batch[:0])
			return
		}
	fill:
		for len(batch) < f.max {
			select {
			case item := <-f.in:
				batch = append(batch, item)
			default:
				break fill
			}
		}
		if !f.write(batch) {
			f.drain(batch)
			return
		}
	}
}

// write flushes one batch, retrying on error. It returns false if the
// flusher was stopped before the batch could be written.
func (f *Flusher[T]) write(items []T) bool {
	retry := backoff.Policy{Base: 20 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(f.runCtx, writeTimeout)
		err := f.flush(ctx, items)
		cancel()
		if err == nil {
			return true
		}
		d := retry.Delay(attempt)
		f.log.Warn("pgflow: batch write failed; retrying", "batch", f.name, "items", len(items), "err", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-f.stop:
			t.Stop()
			return false
		}
	}
}

// drain writes batch and everything still buffered, until f.final is done.
func (f *Flusher[T]) drain(batch []T) {
	for {
	more:
		for len(batch) < f.max {
			select {
			case item := <-f.in:
				batch = append(batch, item)
			default:
				break more
			}
		}
		if len(batch) == 0 {
			return
		}
		for {
			err := f.flush(f.final, batch)
			if err == nil {
				break
			}
			if f.final.Err() != nil {
				f.log.Error("pgflow: batch dropped at stop; these messages will be delivered again when their lease expires",
					"batch", f.name, "items", len(batch)+len(f.in), "err", err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		batch = batch[:0]
	}
}
