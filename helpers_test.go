package pgflow_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// quietLogger keeps expected warnings (retries, lease loss) out of test
// output; set PGFLOW_TEST_LOG=1 to see them.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newClient returns a client on db, closed when the test ends.
func newClient(t testing.TB, db *pgflowtest.DB, cfg pgflow.Config) *pgflow.Client {
	t.Helper()
	cfg.Schema = db.Schema
	cfg.TransactionPooling = cfg.TransactionPooling || db.TransactionPooling
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	c, err := pgflow.New(db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// fastQueue has short delays so retry tests finish quickly.
func fastQueue(name string, maxRetries int) *pgflow.QueueConfig {
	return &pgflow.QueueConfig{Name: name, MaxRetries: pgflow.Set(maxRetries), RetryDelay: pgflow.Set(10 * time.Millisecond),
		MaxRetryDelay: pgflow.Set(40 * time.Millisecond), LeaseTimeout: pgflow.Set(5 * time.Second)}
}

// recorder collects events by kind.
type recorder struct {
	mu     sync.Mutex
	events []pgflow.Event
	signal chan struct{}
}

func newRecorder() *recorder { return &recorder{signal: make(chan struct{}, 1)} }

func (r *recorder) hook(e pgflow.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

func (r *recorder) count(kind pgflow.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (r *recorder) of(kind pgflow.EventKind) []pgflow.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []pgflow.Event
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// waitFor polls cond until it holds or the (generous) deadline passes. The
// deadline only guards against hangs; it is not a performance assertion.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countingConsumer starts c with a consumer on queue whose handler only
// counts the messages it acknowledges.
func countingConsumer(t testing.TB, c *pgflow.Client, queue string, workers int) *atomic.Int32 {
	t.Helper()
	var handled atomic.Int32
	if err := c.Consume(pgflow.ConsumerConfig{Queue: queue, Workers: workers, Handler: func(ctx context.Context, m *pgflow.Message) error {
		handled.Add(1)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &handled
}

// logWatch is a slog handler that discards records but signals when one
// with a given message is logged (see on).
type logWatch struct {
	mu      sync.Mutex
	seen    map[string]bool
	waiting map[string]chan struct{}
}

func newLogWatch() *logWatch {
	return &logWatch{seen: map[string]bool{}, waiting: map[string]chan struct{}{}}
}

// on returns a channel closed once a record with message msg is logged
// (already closed if one was).
func (w *logWatch) on(msg string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := w.waiting[msg]
	if ch == nil {
		ch = make(chan struct{})
		w.waiting[msg] = ch
		if w.seen[msg] {
			close(ch)
		}
	}
	return ch
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }

func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.seen[r.Message] {
		w.seen[r.Message] = true
		if ch := w.waiting[r.Message]; ch != nil {
			close(ch)
		}
	}
	return nil
}

func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *logWatch) WithGroup(string) slog.Handler      { return w }

// observer counts rows of pgflow_messages through a connection of its own,
// so that polling does not compete with the client's heartbeat for a pool
// of one connection (PGFLOW_TEST_MAX_CONNS=1).
type observer struct {
	t      testing.TB
	pool   *pgxpool.Pool
	schema string
}

func newObserver(t testing.TB, db *pgflowtest.DB) *observer {
	return &observer{t: t, pool: pgflowtest.NewPoolOn(t, db, 1), schema: db.Schema}
}

func (o *observer) count(where string, args ...any) int {
	o.t.Helper()
	n, err := o.tryCount(where, args...)
	if err != nil {
		o.t.Fatal(err)
	}
	return n
}

func (o *observer) tryCount(where string, args ...any) (int, error) {
	var n int
	err := o.pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*) FROM %q.pgflow_messages WHERE `, o.schema)+where, args...).Scan(&n)
	return n, err
}
