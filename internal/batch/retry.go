package batch

import (
	"context"
	"log/slog"
	"time"

	"github.com/pgflow-go/pgflow/internal/backoff"
)

// WriteTimeout bounds one write, so a hung connection cannot stall a writer
// for ever.
const WriteTimeout = 30 * time.Second

// WriteRetrying runs write (each try bounded by WriteTimeout under runCtx)
// until it succeeds, retrying with backoff and logging each failure as
// batch name's. It returns false if stop closed first. Flusher uses it, and
// so does any writer with batching of its own (the completer's
// acknowledgements).
func WriteRetrying(runCtx context.Context, stop <-chan struct{}, log *slog.Logger, name string, items int, write func(context.Context) error) bool {
	// Capped low: outcomes are written within half a second of the server
	// coming back.
	retry := backoff.Policy{Base: 20 * time.Millisecond, Max: 500 * time.Millisecond}
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(runCtx, WriteTimeout)
		err := write(ctx)
		cancel()
		if err == nil {
			return true
		}
		d := retry.Delay(attempt)
		if attempt == 1 || attempt%20 == 0 {
			// Tries are at most half a second apart: log the first failure
			// and then every few seconds.
			log.Warn("pgflow: batch write failed; retrying", "batch", name, "items", items, "err", err, "retry_in", d, "attempt", attempt)
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return false
		}
	}
}

// WriteFinal runs write under final (the stop deadline) until it succeeds,
// every 20 ms, and returns nil, or returns write's last error once final is
// done.
func WriteFinal(final context.Context, write func(context.Context) error) error {
	for {
		err := write(final)
		if err == nil {
			return nil
		}
		if final.Err() != nil {
			return err
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-t.C:
		case <-final.Done():
			t.Stop()
		}
	}
}
