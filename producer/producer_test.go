package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
	"github.com/pgflow-go/pgflow/producer"
)

// flaky fails the first `fail` writes with err, then delegates.
type flaky struct {
	next  producer.Publisher
	fail  atomic.Int64
	err   error
	calls atomic.Int64
	// reject fails any batch holding a payload containing this text.
	reject string
}

func (f *flaky) PublishBatch(ctx context.Context, msgs []pgflow.Outgoing) ([]int64, error) {
	f.calls.Add(1)
	if f.fail.Add(-1) >= 0 {
		return nil, f.err
	}
	if f.reject != "" {
		for _, m := range msgs {
			if strings.Contains(string(m.Payload.(json.RawMessage)), f.reject) {
				return nil, &pgconn.PgError{Code: "23514", Message: "check constraint violated"}
			}
		}
	}
	return f.next.PublishBatch(ctx, msgs)
}

func newClient(t *testing.T) (*pgflow.Client, *pgflowtest.DB) {
	t.Helper()
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 4})
	c, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema, PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c, db
}

// waitFor polls cond until it holds or the (generous) deadline passes; the
// deadline only guards against hangs.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrentPublishesCommitTogether(t *testing.T) {
	c, db := newClient(t)
	ctx := context.Background()
	p, err := producer.New(c, producer.Config{Queue: "q", Workers: 2, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	ids := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id, err := p.Publish(ctx, map[string]int{"i": i})
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, id := range ids {
		if id == 0 || seen[id] {
			t.Fatalf("bad or repeated id %d", id)
		}
		seen[id] = true
	}
	if got := db.Count(t, "pgflow_messages", "queue_name = 'q'"); got != n {
		t.Fatalf("%d rows, want %d", got, n)
	}
	st := p.Stats()
	if st.Published != n || st.Failed != 0 || st.Batches < 1 || st.Batches > n {
		t.Fatalf("stats %+v", st)
	}
}

func TestTransientFailureIsRetried(t *testing.T) {
	c, db := newClient(t)
	ctx := context.Background()
	f := &flaky{next: c, err: &pgconn.PgError{Code: "40001", Message: "could not serialize access"}}
	f.fail.Store(2)
	p, err := producer.New(f, producer.Config{Queue: "q", MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	id, err := p.Publish(ctx, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	if id == 0 || db.Count(t, "pgflow_messages", "id = $1", id) != 1 {
		t.Fatalf("message %d not stored", id)
	}
	if st := p.Stats(); st.Retries != 2 || st.Published != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRetriesExhaustedIsNotAcknowledged(t *testing.T) {
	c, db := newClient(t)
	ctx := context.Background()
	f := &flaky{next: c, err: fmt.Errorf("write: %w", &pgconn.PgError{Severity: "ERROR", Code: "08006", Message: "connection failure"})}
	f.fail.Store(100)
	p, err := producer.New(f, producer.Config{Queue: "q", MaxRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	id, err := p.Publish(ctx, map[string]string{"k": "v"})
	if err == nil || id != 0 {
		t.Fatalf("got id %d, err %v; want an error", id, err)
	}
	if want := "producer: publish failed after 2 retries: write: ERROR: connection failure (SQLSTATE 08006)"; err.Error() != want {
		t.Fatalf("err %q, want %q", err, want)
	}
	if f.calls.Load() != 3 {
		t.Fatalf("%d writes, want 3", f.calls.Load())
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("%d rows stored", n)
	}
}

func TestPermanentFailureIsolatesTheBadMessage(t *testing.T) {
	c, db := newClient(t)
	ctx := context.Background()
	f := &flaky{next: c, reject: "poison"}
	p, err := producer.New(f, producer.Config{Queue: "q", MaxRetries: 3, MaxBatch: 50})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 20 {
		wg.Go(func() {
			v := "ok"
			if i == 7 {
				v = "poison"
			}
			if _, err := p.Publish(ctx, map[string]string{"v": v}); err != nil {
				failed.Add(1)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
					t.Errorf("unexpected error %v", err)
				}
			}
		})
	}
	wg.Wait()
	_ = p.Close(ctx)
	if failed.Load() != 1 {
		t.Fatalf("%d publishes failed, want 1", failed.Load())
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 19 {
		t.Fatalf("%d rows, want 19", n)
	}
	if st := p.Stats(); st.Retries != 0 {
		t.Fatalf("a permanent error was retried: %+v", st)
	}
}

func TestInputErrorsFailAtOnce(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	p, err := producer.New(c, producer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	if _, err := p.Publish(ctx, 1); !errors.Is(err, pgflow.ErrInvalidQueueName) {
		t.Fatalf("no default queue: %v", err)
	}
	if _, err := p.PublishTo(ctx, "bad queue", 1); !errors.Is(err, pgflow.ErrInvalidQueueName) {
		t.Fatalf("bad queue: %v", err)
	}
	if _, err := p.PublishTo(ctx, "q", make(chan int)); !errors.Is(err, pgflow.ErrInvalidPayload) {
		t.Fatalf("bad payload: %v", err)
	}
}

func TestDefaultPriorityAndClose(t *testing.T) {
	c, db := newClient(t)
	ctx := context.Background()
	high := pgflow.PriorityHigh
	p, err := producer.New(c, producer.Config{Queue: "q", Priority: &high})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.Publish(ctx, 1)
	b, _ := p.Publish(ctx, 2, pgflow.WithPriority(pgflow.PriorityNormal))
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if db.Count(t, "pgflow_messages", "id = $1 AND priority = 10", a) != 1 || db.Count(t, "pgflow_messages", "id = $1 AND priority = 0", b) != 1 {
		t.Fatal("priorities not applied")
	}
	if _, err := p.Publish(ctx, 3); !errors.Is(err, producer.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

// safeToRetry is an error that says whether it happened before anything
// was sent, as pgconn's errors do.
type safeToRetry bool

func (e safeToRetry) Error() string     { return fmt.Sprintf("safe to retry: %v", bool(e)) }
func (e safeToRetry) SafeToRetry() bool { return bool(e) }

func TestTransient(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("pgflow: publish batch: %w", err) }
	pg := func(code string) error { return wrap(&pgconn.PgError{Severity: "FATAL", Code: code}) }
	// Errors the driver builds itself, from real connections.
	ctx := context.Background()
	_, refused := pgconn.Connect(ctx, "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=5")
	cfg, err := pgconn.ParseConfig(pgflowtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = "pgflow_no_such_database"
	_, noDB := pgconn.ConnectConfig(ctx, cfg)
	conn, err := pgconn.Connect(ctx, pgflowtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, timedOut := conn.Exec(short, "SELECT pg_sleep(5)").ReadAll()
	cancel()
	_ = conn.Close(ctx)
	_, closed := conn.Exec(ctx, "SELECT 1").ReadAll()
	var connectErr *pgconn.ConnectError
	if !errors.As(refused, &connectErr) || !errors.As(noDB, &connectErr) || !pgconn.Timeout(timedOut) || !errors.Is(closed, pgconn.ErrConnClosed) {
		t.Fatalf("driver errors not of the expected kinds: %v / %v / %v / %v", refused, noDB, timedOut, closed)
	}

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"conn closed", wrap(pgconn.ErrConnClosed), true},
		{"conn closed from the driver", closed, true},
		{"EOF", wrap(io.EOF), true},
		{"unexpected EOF", wrap(io.ErrUnexpectedEOF), true},
		{"net.ErrClosed", wrap(net.ErrClosed), true},
		{"net.OpError", wrap(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true},
		{"ECONNRESET", wrap(syscall.ECONNRESET), true},
		{"ECONNREFUSED", wrap(syscall.ECONNREFUSED), true},
		{"ECONNABORTED", wrap(syscall.ECONNABORTED), true},
		{"EPIPE", wrap(os.NewSyscallError("write", syscall.EPIPE)), true},
		{"connect error (refused)", wrap(refused), true},
		{"safe to retry", wrap(safeToRetry(true)), true},
		{"attempt timed out (pgconn.Timeout)", wrap(timedOut), true},
		{"attempt deadline", wrap(context.DeadlineExceeded), true},
		{"08006 connection failure", pg("08006"), true},
		{"08001 cannot connect", pg("08001"), true},
		{"08P01 protocol violation", pg("08P01"), true},
		{"57P01 admin shutdown", pg("57P01"), true},
		{"57P02 crash shutdown", pg("57P02"), true},
		{"57P03 cannot connect now", pg("57P03"), true},
		{"57P05 idle session timeout", pg("57P05"), true},
		{"25P03 idle in transaction timeout", pg("25P03"), true},
		{"40001 serialization failure", pg("40001"), true},
		{"40P01 deadlock", pg("40P01"), true},
		{"53300 too many connections", pg("53300"), true},
		{"53100 disk full", pg("53100"), true},
		{"55P03 lock not available", pg("55P03"), true},
		{"57P03 inside a connect error", wrap(fmt.Errorf("failed to connect: %w", &pgconn.PgError{Code: "57P03"})), true},

		{"nil", nil, false},
		{"23505 unique violation", pg("23505"), false},
		{"22P02 invalid text", pg("22P02"), false},
		{"23514 check violation", pg("23514"), false},
		{"42P01 undefined table", pg("42P01"), false},
		{"57014 query canceled", pg("57014"), false},
		{"3D000 inside a connect error", wrap(noDB), false},
		{"input error", wrap(&pgflow.InputError{Kind: pgflow.ErrInvalidPayload, Field: "payload", Reason: "bad"}), false},
		{"caller cancelled", wrap(context.Canceled), false},
		{"not safe to retry alone", wrap(safeToRetry(false)), false},
		{"something else", errors.New("something else"), false},
	} {
		if got := producer.Transient(tc.err); got != tc.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// gate holds the first write until released and records batch sizes.
type gate struct {
	next    producer.Publisher
	entered chan struct{} // closed when the first write is held
	release chan struct{}
	mu      sync.Mutex
	sizes   []int
}

func (g *gate) PublishBatch(ctx context.Context, msgs []pgflow.Outgoing) ([]int64, error) {
	g.mu.Lock()
	first := len(g.sizes) == 0
	g.sizes = append(g.sizes, len(msgs))
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.release
	}
	return g.next.PublishBatch(ctx, msgs)
}

// Publishes that arrive while a commit is in flight share the next commit.
func TestGroupCommit(t *testing.T) {
	c, db := newClient(t)
	ctx := context.Background()
	g := &gate{next: c, entered: make(chan struct{}), release: make(chan struct{})}
	p, err := producer.New(g, producer.Config{Queue: "q", Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := p.Publish(ctx, 0); err != nil {
			t.Error(err)
		}
	})
	select {
	case <-g.entered: // the first publish is being written
	case <-time.After(time.Minute):
		t.Fatal("the first publish was never written")
	}
	for i := 1; i < 50; i++ {
		wg.Go(func() {
			if _, err := p.Publish(ctx, i); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, "49 publishes waiting", func() bool { return p.Stats().Waiting == 49 })
	close(g.release)
	wg.Wait()
	_ = p.Close(ctx)
	if got := g.sizesSnapshot(); len(got) != 2 || got[0] != 1 || got[1] != 49 {
		t.Fatalf("batch sizes %v, want [1 49]", got)
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 50 {
		t.Fatalf("%d rows, want 50", n)
	}
}

func (g *gate) sizesSnapshot() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.sizes...)
}
