package rescuer

import (
	"context"
	"log/slog"
	"time"
)

// Run calls rescue every interval until ctx is done, logging failures.
func Run(ctx context.Context, interval time.Duration, rescue func(ctx context.Context) error, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if err := rescue(ctx); err != nil && ctx.Err() == nil {
			log.Warn("pgflow: lease rescue failed", "err", err)
		}
	}
}
