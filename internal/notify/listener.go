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

// Reconnection backoff: 100 ms, doubling, at most MaxRetryDelay. Low, so a
// listener is back within half a second of the server accepting connections
// again; a connection attempt to a server that is down costs it little.
const (
	FirstRetryDelay = 100 * time.Millisecond
	MaxRetryDelay   = 500 * time.Millisecond
)

// Listener holds one dedicated connection (a session of its own) and LISTENs
// on Channel. Run it in a goroutine; it returns when ctx is cancelled.
type Listener struct {
	Connect ConnectFunc
	// Channel is LISTENed on; "" holds the session without listening (for
	// Setup's sake alone).
	Channel string
	// Setup, if set, runs first on every new connection: the owner ties
	// state to the session (a session advisory lock). An error drops the
	// connection and retries.
	Setup func(ctx context.Context, conn *pgx.Conn) error
	// OnNotify receives each notification's payload.
	OnNotify func(payload string)
	// OnConnect runs after every successful LISTEN (or Setup), including
	// the first: notifications sent while no connection listened are lost,
	// so owners should look for work.
	OnConnect func()
	Log       *slog.Logger
}

// Run listens until ctx is cancelled, reconnecting with backoff.
func (l *Listener) Run(ctx context.Context) {
	retry := backoff.Policy{Base: FirstRetryDelay, Max: MaxRetryDelay}
	failures := 0
	for ctx.Err() == nil {
		err := l.session(ctx)
		if ctx.Err() != nil {
			return
		}
		failures++
		d := retry.Delay(failures)
		if failures == 1 || failures%20 == 0 {
			// Every try is at most half a second apart: log the first of
			// a run of failures and then every few seconds.
			l.Log.Warn("pgflow: notification listener lost its connection; reconnecting", "err", err, "retry_in", d, "failures", failures)
		}
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
	if l.Setup != nil {
		if err := l.Setup(ctx, conn); err != nil {
			return errors.Join(errNeverConnected, err)
		}
	}
	if l.Channel != "" {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.Channel}.Sanitize()); err != nil {
			return errors.Join(errNeverConnected, err)
		}
	}
	if l.OnConnect != nil {
		l.OnConnect()
	}
	for {
		// Without LISTEN nothing arrives: this waits until the session
		// ends or ctx is cancelled.
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if l.OnNotify != nil {
			l.OnNotify(n.Payload)
		}
	}
}
