package batch

import (
	"context"
	"log/slog"
)

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
	// dropped counts items Stop could not write (set by the loop before done).
	dropped int
}

// New starts a flusher. maxItems bounds a batch; the input buffer holds
// 4×maxItems.
func New[T any](name string, maxItems int, log *slog.Logger, flush FlushFunc[T]) *Flusher[T] {
	maxItems = max(maxItems, 1)
	f := &Flusher[T]{
		name: name, flush: flush, max: maxItems, log: log,
		in:   make(chan T, 4*maxItems),
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
// goroutine. Items left unwritten are logged and dropped; Stop returns how
// many (0 on a second call).
func (f *Flusher[T]) Stop(ctx context.Context) int {
	select {
	case <-f.stop:
		<-f.done
		return 0
	default:
	}
	f.final = ctx
	abort := context.AfterFunc(ctx, f.cancelRun)
	defer abort()
	close(f.stop)
	<-f.done
	f.cancelRun()
	return f.dropped
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
	return WriteRetrying(f.runCtx, f.stop, f.log, f.name, len(items), func(ctx context.Context) error {
		return f.flush(ctx, items)
	})
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
		if err := WriteFinal(f.final, func(ctx context.Context) error { return f.flush(ctx, batch) }); err != nil {
			f.dropped = len(batch) + len(f.in)
			f.log.Error("pgflow: batch dropped at stop; these messages will be delivered again when their lease expires",
				"batch", f.name, "items", f.dropped, "err", err)
			return
		}
		batch = batch[:0]
	}
}
