package pgflow_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/pgcluster"
	"github.com/pgflow-go/pgflow/migrate"
)

// serverReadyAt reads the throwaway cluster's log for the last time the
// server said it accepts connections (the default log_line_prefix starts
// with a millisecond timestamp).
func serverReadyAt(t *testing.T, cl *pgcluster.Cluster) time.Time {
	t.Helper()
	f, err := os.Open(filepath.Join(cl.Dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last time.Time
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "database system is ready to accept connections") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		at, err := time.Parse("2006-01-02 15:04:05.000 MST", strings.Join(fields[:3], " "))
		if err != nil {
			t.Fatalf("server log line %q: %v", line, err)
		}
		last = at
	}
	if last.IsZero() {
		t.Fatal("the server log has no 'ready to accept connections' line")
	}
	return last
}

// The server is stopped (3 s; 10 s with PGFLOW_TEST_LONG_OUTAGE=1) under a
// consumer whose polling is set to an hour, so that only its reconnection
// can bring it back. Measured from the moment the server accepts
// connections again (its log): the first message handled (it became
// visible during the outage, so the consumer's claims were failing), and
// the listener's LISTEN again; then a message published by another client
// after the restart must wake the consumer through NOTIFY. The reconnection
// figures are logged; the bound asserted is generous (a loaded test
// machine), the design target is under a second (backoff capped at 500 ms).
func TestConsumersResumeWithinASecondOfServerRestart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	if !pgcluster.Available() {
		t.Skip("PostgreSQL server binaries not installed")
	}
	outage := 3 * time.Second
	if os.Getenv("PGFLOW_TEST_LONG_OUTAGE") != "" {
		outage = 10 * time.Second
	}
	ctx := context.Background()
	cl, err := pgcluster.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Remove)
	newPool := func() *pgxpool.Pool {
		pool, err := pgxpool.New(ctx, cl.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return pool
	}
	pool := newPool()
	if _, err := migrate.Up(ctx, pool, "public"); err != nil {
		t.Fatal(err)
	}
	c, err := pgflow.New(pool, pgflow.Config{Logger: quietLogger(), PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	var mu sync.Mutex
	listened := []time.Time{}
	pgflow.SetTestHooks(c, nil, func() {
		mu.Lock()
		listened = append(listened, time.Now())
		mu.Unlock()
	})
	handled := make(chan int, 8)
	handledAt := map[int]time.Time{}
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "restart", Handler: pgflow.HandleJSON(func(ctx context.Context, m *pgflow.Message, n int) error {
		mu.Lock()
		handledAt[n] = time.Now()
		mu.Unlock()
		handled <- n
		return nil
	})}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "restart", 1); err != nil {
		t.Fatal(err)
	}
	if n := await(t, "the first message", handled); n != 1 {
		t.Fatalf("handled %d", n)
	}
	// Becomes visible while the server is down.
	if _, err := c.Publish(ctx, "restart", 2, pgflow.WithDelay(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := cl.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-handled:
		t.Fatalf("message %d handled before the outage began: the server took over 2 s to stop", n)
	default:
	}
	time.Sleep(outage) // the fault: the server stays down
	if err := cl.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	ready := serverReadyAt(t, cl)
	if n := await(t, "the message due during the outage", handled); n != 2 {
		t.Fatalf("handled %d, want 2", n)
	}
	waitFor(t, "the listener back", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(listened) > 0 && listened[len(listened)-1].After(ready)
	})
	// Published by another client: only NOTIFY (or polling, an hour away)
	// can wake the consumer.
	other, err := pgflow.New(newPool(), pgflow.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	published := time.Now()
	if _, err := other.Publish(ctx, "restart", 3); err != nil {
		t.Fatal(err)
	}
	if n := await(t, "the message published after the restart", handled); n != 3 {
		t.Fatalf("handled %d, want 3", n)
	}
	mu.Lock()
	firstHandled := handledAt[2].Sub(ready)
	var listenAgain time.Duration
	for _, at := range listened {
		if at.After(ready) {
			listenAgain = at.Sub(ready)
			break
		}
	}
	woken := handledAt[3].Sub(published)
	mu.Unlock()
	t.Logf("outage %v; server accepting connections -> first message handled %v, -> listening again %v; publish after restart -> handled %v",
		outage, firstHandled.Round(time.Millisecond), listenAgain.Round(time.Millisecond), woken.Round(time.Millisecond))
	if firstHandled > 5*time.Second || listenAgain > 5*time.Second {
		t.Fatalf("resumed %v / listened %v after the server came back, want about a second", firstHandled, listenAgain)
	}
}

// After a server restart every session is new and every heartbeat old: a
// live consumer holding a message across the outage must not be taken for
// gone once the server is back (judging waits until the judge has
// heartbeated for 3 s and the server has been up for 3 s, by which time the
// live consumers have registered their new sessions).
func TestServerRestartDoesNotTakeLiveConsumersForGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl, pool, _ := throwawayClient(t)
	rec := newRecorder()
	client := func(cfg pgflow.Config) *pgflow.Client {
		cfg.Logger, cfg.Hooks = quietLogger(), []pgflow.EventHook{rec.hook}
		c, err := pgflow.New(pool, cfg)
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
	// The judge rescues every 20 ms, so that it judges before the holder's
	// first heartbeat after the restart if nothing holds it back.
	judge := client(pgflow.Config{RescueInterval: 20 * time.Millisecond})
	countingConsumer(t, judge, "other", 1)
	holder := client(pgflow.Config{})
	release := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	started, cause := holdOne(t, holder, "held", release)
	id, err := holder.Publish(ctx, "held", 1)
	if err != nil {
		t.Fatal(err)
	}
	await(t, "the handler's start", started)
	judgeUp := func(d string) func() bool {
		return func() bool {
			var n int
			err := pool.QueryRow(ctx, `SELECT count(*) FROM pgflow_consumers WHERE consumer = $1 AND up_since <= now() - $2::interval`, judge.ID(), d).Scan(&n)
			return err == nil && n == 1
		}
	}
	waitFor(t, "the judge ready", judgeUp("3 seconds"))

	if err := cl.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the fault: the server stays down
	if err := cl.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// Judging resumes 3 s after the restart; give it two seconds more of
	// rescues (every 500 ms in both clients).
	waitFor(t, "the judge ready again", judgeUp("5 seconds"))
	var lockedBy string
	var attempt int
	if err := pool.QueryRow(ctx, `SELECT locked_by, attempt FROM pgflow_messages WHERE id = $1 AND status = 'processing'`, id).Scan(&lockedBy, &attempt); err != nil {
		t.Fatalf("the held message after the restart: %v", err)
	}
	if lockedBy != holder.ID() || attempt != 1 {
		t.Fatalf("held by %s attempt %d, want %s attempt 1", lockedBy, attempt, holder.ID())
	}
	close(release)
	if err := await(t, "the handler's end", cause); err != nil {
		t.Fatalf("the live handler's context ended with %v", err)
	}
	waitFor(t, "acknowledged", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pgflow_messages`).Scan(&n)
		return err == nil && n == 0
	})
	if n := rec.count(pgflow.EventLeaseExpired); n != 0 {
		t.Fatalf("%d lease_expired events", n)
	}
}
