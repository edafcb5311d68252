package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/pgcluster"
	"github.com/pgflow-go/pgflow/migrate"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// TestHelperConsumerProcess is not a test: TestConsumerProcessKilled runs the
// test binary again with this test selected, as a separate consumer process.
func TestHelperConsumerProcess(t *testing.T) {
	schema := os.Getenv("PGFLOW_HELPER_SCHEMA")
	if schema == "" {
		t.Skip("helper process only")
	}
	ctx := context.Background()
	cfg := pgflow.Config{Schema: schema, Logger: quietLogger(), TransactionPooling: os.Getenv("PGFLOW_HELPER_TXPOOL") != ""}
	c, err := pgflow.Connect(ctx, pgflowtest.DatabaseURL(), cfg)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	workers, _ := strconv.Atoi(os.Getenv("PGFLOW_HELPER_WORKERS"))
	fmt.Printf("ID %s\n", c.ID())
	err = c.Consume(pgflow.ConsumerConfig{Queue: "crash", Workers: workers, Handler: func(ctx context.Context, m *pgflow.Message) error {
		fmt.Printf("HANDLING %d %d\n", m.ID, m.Attempt)
		if os.Getenv("PGFLOW_HELPER_SUICIDE") != "" {
			// A poison message: it takes its process down.
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		select {} // hang until killed
	}})
	if err == nil {
		err = c.Start(ctx)
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	select {}
}

// startConsumerProcess runs the helper and waits until its handler has the
// message; it returns the process and the "id attempt" it saw.
func startConsumerProcess(t *testing.T, schema string, suicide bool) (*exec.Cmd, string) {
	t.Helper()
	env := []string{"PGFLOW_HELPER_SCHEMA=" + schema}
	if suicide {
		env = append(env, "PGFLOW_HELPER_SUICIDE=1")
	}
	p := pgflowtest.StartProcess(t, "TestHelperConsumerProcess", env...)
	return p.Cmd, p.Next("HANDLING ")
}

// TestConsumerProcessKilled: a consumer process dies with SIGKILL in the
// middle of a handler; the message is delivered again elsewhere once its
// lease expires. A message that kills every process that handles it ends in
// the DLQ instead of looping forever.
func TestConsumerProcessKilled(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{RescueInterval: 50 * time.Millisecond})
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "crash", MaxRetries: pgflow.Set(1), LeaseTimeout: pgflow.Set(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	id, err := c.Publish(ctx, "crash", map[string]string{"job": "resize-image"})
	if err != nil {
		t.Fatal(err)
	}

	// First process: killed from outside mid-handler.
	p1, seen := startConsumerProcess(t, db.Schema, false)
	if want := fmt.Sprintf("%d 1", id); seen != want {
		t.Fatalf("first process handled %q, want %q", seen, want)
	}
	if err := p1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p1.Wait()

	// Second process: the message comes back (attempt 2) and kills it.
	p2, seen := startConsumerProcess(t, db.Schema, true)
	if want := fmt.Sprintf("%d 2", id); seen != want {
		t.Fatalf("second process handled %q, want %q", seen, want)
	}
	_ = p2.Wait()

	// Out of retries: this test's client (it runs the rescuer) buries it.
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letter", func() bool { return db.Count(t, "pgflow_dlq", "") == 1 })
	d := readDLQ(t, db)[0]
	if d.messageID != id || d.attempts != 2 || len(d.errors) != 2 || !strings.Contains(d.lastError, "lease expired") {
		t.Fatalf("dlq = %+v", d)
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("%d messages left", n)
	}
}

// throwawayClient starts a throwaway cluster (never the shared server), a
// migrated database on it and a client; all removed when t ends.
func throwawayClient(t *testing.T) (*pgcluster.Cluster, *pgxpool.Pool, *pgflow.Client) {
	return throwawayClientLogging(t, quietLogger())
}

// throwawayClientLogging is throwawayClient with the client logging to log.
func throwawayClientLogging(t *testing.T, log *slog.Logger) (*pgcluster.Cluster, *pgxpool.Pool, *pgflow.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	if !pgcluster.Available() {
		t.Skip("PostgreSQL server binaries not installed")
	}
	ctx := context.Background()
	cl, err := pgcluster.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Remove)
	pool, err := pgxpool.New(ctx, cl.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := migrate.Up(ctx, pool, "public"); err != nil {
		t.Fatal(err)
	}
	c, err := pgflow.New(pool, pgflow.Config{Logger: log, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Bounded: a test that failed may leave a handler blocked.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return cl, pool, c
}

// Claims commit without waiting for their WAL flush. The server crashes
// (immediate stop) right after a claim while its handler runs: whether the
// claim survived or not, the message must be handled and acknowledged once
// the server is back, and never dead-lettered. When the claim was lost, the
// message is claimed again with a new claim token, so the first delivery,
// which outlived the crash, cannot acknowledge the second.
func TestMessageClaimedJustBeforeAServerCrashIsStillHandled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl, pool, c := throwawayClient(t)
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "crash", MaxRetries: pgflow.Set(5), RetryDelay: pgflow.Set(10 * time.Millisecond),
		MaxRetryDelay: pgflow.Set(50 * time.Millisecond), LeaseTimeout: pgflow.Set(time.Second)}); err != nil {
		t.Fatal(err)
	}
	firstStarted := make(chan struct{})
	secondStarted := make(chan struct{}, 8)
	releaseFirst, releaseSecond := make(chan struct{}), make(chan struct{})
	release := func(ch chan struct{}) {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	// Runs before the client's Close (cleanups run last first): a failed
	// test's handlers return instead of holding Close.
	t.Cleanup(func() { release(releaseFirst); release(releaseSecond) })
	firstAck := make(chan error, 1)
	var deliveries atomic.Int32
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "crash", Workers: 2, Handler: func(ctx context.Context, m *pgflow.Message) error {
		if deliveries.Add(1) == 1 {
			close(firstStarted)
			<-releaseFirst // the first delivery outlives the crash
			// Its heartbeat may already have seen the lease lost and
			// cancelled ctx: the acknowledgement itself must say so.
			ctx = context.WithoutCancel(ctx)
			tx, err := pool.Begin(ctx)
			if err != nil {
				firstAck <- err
				return err
			}
			defer tx.Rollback(ctx) //nolint:errcheck
			err = c.AckTx(ctx, tx, m)
			if err == nil {
				err = tx.Commit(ctx)
			}
			firstAck <- err
			return err
		}
		secondStarted <- struct{}{}
		<-releaseSecond
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "crash", 1); err != nil {
		t.Fatal(err)
	}
	<-firstStarted
	if err := cl.Crash(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cl.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var status string
	var attempt int
	if err := pool.QueryRow(ctx, `SELECT status, attempt FROM pgflow_messages`).Scan(&status, &attempt); err != nil {
		t.Fatal(err)
	}
	t.Logf("after the crash the message is %s, attempt %d (pending, attempt 0: the claim was lost)", status, attempt)
	if status == "pending" {
		// The claim was lost: the message is delivered again (attempt 1
		// again) with a new token while the first delivery still runs.
		await(t, "second delivery", secondStarted)
		release(releaseFirst)
		if err := await(t, "the first delivery's AckTx", firstAck); !errors.Is(err, pgflow.ErrLeaseLost) {
			t.Fatalf("first delivery's AckTx = %v, want ErrLeaseLost", err)
		}
		var live int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pgflow_messages WHERE status = 'processing'`).Scan(&live); err != nil || live != 1 {
			t.Fatalf("the first delivery acknowledged the second (%d live, %v)", live, err)
		}
	} else {
		release(releaseFirst)
	}
	release(releaseSecond)
	waitFor(t, "the message acknowledged after the crash", func() bool {
		var live, dead int
		err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pgflow_messages), (SELECT count(*) FROM pgflow_dlq)`).Scan(&live, &dead)
		if err == nil && dead != 0 {
			t.Fatalf("%d messages dead-lettered", dead)
		}
		return err == nil && live == 0
	})
}

// TestConsumerSurvivesServerRestart stops and restarts a throwaway cluster
// under a running consumer (never the shared server).
func TestConsumerSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	logs := newLogWatch()
	cl, pool, c := throwawayClientLogging(t, slog.New(logs))
	var listens atomic.Int32
	pgflow.SetTestHooks(c, nil, func() { listens.Add(1) })
	handled := countingConsumer(t, c, "restart", 1)
	if _, err := c.Publish(ctx, "restart", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "before restart", func() bool { return handled.Load() == 1 })
	// Acknowledged too: an acknowledgement still being written when the
	// server goes down holds the only worker's slot, and the consumer
	// would not claim (nor fail to) until it is written.
	waitFor(t, "acknowledged before restart", func() bool {
		var left int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pgflow_messages`).Scan(&left)
		return err == nil && left == 0
	})

	if err := cl.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "restart", 2); err == nil {
		t.Fatal("publish succeeded while the server was down")
	}
	// The consumer notices: its claims fail and its listener loses its
	// connection, and both go on retrying.
	await(t, "a failed claim", logs.on("pgflow: claim failed; retrying"))
	await(t, "the listener's lost connection", logs.on("pgflow: notification listener lost its connection; reconnecting"))
	listensBefore := listens.Load()
	if err := cl.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "publish after restart", func() bool {
		_, err := c.Publish(ctx, "restart", 3)
		return err == nil
	})
	waitFor(t, "consume after restart", func() bool { return handled.Load() == 2 })
	waitFor(t, "the listener back", func() bool { return listens.Load() > listensBefore })
	waitFor(t, "acknowledged", func() bool {
		var left int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pgflow_messages`).Scan(&left)
		return err == nil && left == 0
	})
}
