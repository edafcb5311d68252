package notify

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/backoff"
)

// ConnectFunc opens the dedicated connection a Listener uses.
type ConnectFunc func(ctx context.Context) (*pgx.Conn, error)

// Listener LISTENs on one channel. Run it in a goroutine; it returns when ctx
// is cancelled.
type Listener struct {
	Connect ConnectFunc
	Channel string
	// OnNotify receives each notification's payload.
	OnNotify func(payload string)
	// OnConnect runs after every successful LISTEN, including the first:
	// notifications sent while no connection listened are lost, so owners
	// should look for work.
	OnConnect func()
	Log       *slog.Logger
}

// Run listens until ctx is cancelled, reconnecting with backoff.
func (l *Listener) Run(ctx context.Context) {
	retry := backoff.Policy{Base: 100 * time.Millisecond, Max: 10 * time.Second}
	failures := 0
	for ctx.Err() == nil {
		err := l.session(ctx)
		if ctx.Err() != nil {
			return
		}
		failures++
		d := retry.Delay(failures)
		l.Log.Warn("pgflow: notification listener lost its connection; reconnecting", "err", err, "retry_in", d)
		if !backoff.Sleep(ctx, d) {
			return
		}
		if err == nil || !errors.Is(err, errNeverConnected) {
			// A session that was up resets the backoff.
			failures = 0
		}
	}
}

var errNeverConnected = errors.New("never connected")

func (l *Listener) session(ctx context.Context) error {
	conn, err := l.Connect(ctx)
	if err != nil {
		return errors.Join(errNeverConnected, err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.Channel}.Sanitize()); err != nil {
		return errors.Join(errNeverConnected, err)
	}
	if l.OnConnect != nil {
		l.OnConnect()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		l.OnNotify(n.Payload)
	}
}
