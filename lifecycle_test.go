package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func TestExpiredLeaseGoesToAnotherConsumer(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	q := &pgflow.QueueConfig{Name: "lease", MaxRetries: pgflow.Set(3), RetryDelay: pgflow.Set(10 * time.Millisecond), LeaseTimeout: pgflow.Set(200 * time.Millisecond)}

	// A consumer that claimed the message and then hung without heartbeats
	// (as a frozen process would): we make the claim by hand.
	stuck := newClient(t, db, pgflow.Config{ID: "stuck"})
	if err := stuck.DeclareQueue(ctx, *q); err != nil {
		t.Fatal(err)
	}
	id, err := stuck.Publish(ctx, "lease", map[string]string{"job": "x"})
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `UPDATE pgflow_messages SET status = 'processing', attempt = 1, locked_by = 'stuck', locked_until = now() + interval '200 milliseconds' WHERE id = $1`, id)

	rec := newRecorder()
	got := make(chan *pgflow.Message, 1)
	healthy := newClient(t, db, pgflow.Config{ID: "healthy", RescueInterval: 50 * time.Millisecond, Hooks: []pgflow.EventHook{rec.hook}})
	if err := healthy.Consume(pgflow.ConsumerConfig{Queue: "lease", Handler: func(ctx context.Context, m *pgflow.Message) error {
		got <- m
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := healthy.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var m *pgflow.Message
	select {
	case m = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("expired lease never rescued")
	}
	if m.ID != id || m.Attempt != 2 || m.RetryCount != 1 {
		t.Fatalf("rescued delivery: id %d attempt %d retry_count %d", m.ID, m.Attempt, m.RetryCount)
	}
	if e := rec.of(pgflow.EventLeaseExpired); len(e) != 1 || e[0].MessageID != id {
		t.Fatalf("lease_expired events: %+v", e)
	}
	// The healthy consumer's acknowledgement removes it.
	waitFor(t, "ack", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
}

func TestExpiredLeaseWithoutRetriesDeadLetters(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "poison", MaxRetries: pgflow.Set(1)}); err != nil {
		t.Fatal(err)
	}
	id, _ := c.Publish(ctx, "poison", map[string]int{"n": 1})
	// Its second delivery also dies with its process.
	db.Exec(t, `UPDATE pgflow_messages SET status = 'processing', attempt = 2, retry_count = 1, locked_by = 'dead', locked_until = now() - interval '1 second' WHERE id = $1`, id)
	n, err := c.RescueExpired(ctx)
	if err != nil || n != 1 {
		t.Fatalf("rescued %d, err %v", n, err)
	}
	d := readDLQ(t, db)
	if len(d) != 1 || d[0].messageID != id || d[0].attempts != 2 || d[0].retryCount != 2 {
		t.Fatalf("dlq = %+v", d)
	}
	if d[0].lastError == "" || len(d[0].errors) != 1 {
		t.Fatalf("dlq error history = %q %+v", d[0].lastError, d[0].errors)
	}
}

func TestHeartbeatKeepsLongHandlerLease(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	rec := newRecorder()
	c := newClient(t, db, pgflow.Config{RescueInterval: 50 * time.Millisecond, Hooks: []pgflow.EventHook{rec.hook}})
	var deliveries atomic.Int32
	started := make(chan int64, 1)
	release := make(chan struct{})
	causes := make(chan error, 1)
	q := &pgflow.QueueConfig{Name: "long", LeaseTimeout: pgflow.Set(time.Second)}
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "long", Declare: q, Handler: func(ctx context.Context, m *pgflow.Message) error {
		if deliveries.Add(1) == 1 {
			started <- m.ID
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			select {
			case causes <- context.Cause(ctx):
			default:
			}
			return context.Cause(ctx)
		}
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "long", 1); err != nil {
		t.Fatal(err)
	}
	id := await(t, "the handler", started)
	// The test watches through a connection of its own: polling through
	// the client's pool (one connection under PGFLOW_TEST_MAX_CONNS=1)
	// would compete with the heartbeat it checks.
	obs := newObserver(t, db)
	count := obs.count
	var first time.Time
	if err := obs.pool.QueryRow(ctx, fmt.Sprintf(`SELECT locked_until FROM %q.pgflow_messages WHERE id = $1`, db.Schema), id).Scan(&first); err != nil {
		t.Fatal(err)
	}
	// The handler runs on until the server's clock is three leases past
	// the lease it was first given; meanwhile the rescuer (every 50 ms)
	// takes back any lease that runs out.
	waitFor(t, "three leases past the first", func() bool {
		return count("id = $1 AND now() > $2::timestamptz + interval '3 seconds'", id, first) == 1
	})
	// The lease was extended, and is still this delivery's.
	if n := count("id = $1 AND status = 'processing' AND attempt = 1 AND locked_until > $2::timestamptz", id, first); n != 1 {
		t.Fatal("the heartbeat did not extend the lease")
	}
	if n, err := c.RescueExpired(ctx); err != nil || n != 0 {
		t.Fatalf("RescueExpired took back %d (err %v) while the handler ran", n, err)
	}
	close(release)
	waitFor(t, "done", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
	select {
	case cause := <-causes:
		t.Fatalf("the handler was cancelled: %v", cause)
	default:
	}
	if d := deliveries.Load(); d != 1 {
		t.Fatalf("%d deliveries; the heartbeat did not keep the lease", d)
	}
	if e := rec.of(pgflow.EventLeaseExpired); len(e) != 0 {
		t.Fatalf("lease_expired events: %+v", e)
	}
}

func TestLostLeaseCancelsHandler(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	causes := make(chan error, 1)
	started := make(chan int64, 1)
	q := &pgflow.QueueConfig{Name: "stolen", LeaseTimeout: pgflow.Set(300 * time.Millisecond)}
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "stolen", Declare: q, Handler: func(ctx context.Context, m *pgflow.Message) error {
		started <- m.ID
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return ctx.Err()
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "stolen", 1); err != nil {
		t.Fatal(err)
	}
	id := <-started
	// Another consumer takes the message over (as after an expiry), with a
	// lease long enough that the rescuer leaves it alone.
	db.Exec(t, `UPDATE pgflow_messages SET attempt = attempt + 1, claim_token = claim_token + 1, locked_by = 'thief', locked_until = now() + interval '1 hour' WHERE id = $1`, id)
	select {
	case cause := <-causes:
		if !errors.Is(cause, pgflow.ErrLeaseLost) {
			t.Fatalf("cause = %v", cause)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("handler not cancelled after losing its lease")
	}
	// Stop returns once every outcome is written: the cancelled handler's
	// failure must not have touched the thief's delivery.
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_messages", "id = $1 AND status = 'processing' AND locked_by = 'thief' AND retry_count = 0 AND errors = '[]'", id); n != 1 {
		t.Fatalf("the thief's delivery was changed by the cancelled handler (%d rows as the thief left it)", n)
	}
}

func TestGracefulStopFinishesInFlight(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	started := make(chan struct{}, 4)
	release := make(chan struct{})
	var finished atomic.Int32
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "grace", Workers: 4, Handler: func(ctx context.Context, m *pgflow.Message) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return context.Cause(ctx) // a graceful stop must not get here
		}
		finished.Add(1)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := c.Publish(ctx, "grace", i); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		<-started
	}
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	finishedAtStop := make(chan int, 1)
	go func() {
		err := c.Stop(stopCtx)
		finishedAtStop <- int(finished.Load())
		stopped <- err
	}()
	// Stop has begun once the client no longer reports its consumers; the
	// four handlers still hold their messages.
	waitFor(t, "Stop to begin", func() bool { return c.ConsumerStats() == nil })
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while four handlers were running", err)
	default:
	}
	close(release)
	if err := await(t, "Stop", stopped); err != nil {
		t.Fatal(err)
	}
	f := <-finishedAtStop
	if f != 4 {
		t.Fatalf("Stop returned with %d handlers finished, want the 4 running", f)
	}
	// Every finished message was acked before Stop returned; the rest wait.
	if left := db.Count(t, "pgflow_messages", ""); left != 10-f {
		t.Fatalf("%d messages left after %d finished", left, f)
	}
	if n := db.Count(t, "pgflow_messages", "status = 'processing'"); n != 0 {
		t.Fatalf("%d messages still leased after a graceful stop", n)
	}
}

func TestStopDeadlineReleasesMessages(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	release := make(chan struct{})
	defer close(release)
	c := newClient(t, db, pgflow.Config{})
	started := make(chan struct{}, 3)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "stuck", Workers: 3, Handler: func(ctx context.Context, m *pgflow.Message) error {
		started <- struct{}{}
		<-release
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c.Publish(ctx, "stuck", i); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		<-started
	}
	stopCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := c.Stop(stopCtx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want the deadline error", err)
	}
	// Released: pending, visible now, no failure counted.
	if n := db.Count(t, "pgflow_messages", "status = 'pending' AND visible_at <= now() AND retry_count = 0 AND locked_by IS NULL"); n != 3 {
		t.Fatalf("%d of 3 messages released", n)
	}
	// Another consumer takes them at once.
	other := newClient(t, db, pgflow.Config{})
	done := countingConsumer(t, other, "stuck", 3)
	waitFor(t, "taken over", func() bool { return done.Load() == 3 && db.Count(t, "pgflow_messages", "") == 0 })
}

func TestRestartAfterStop(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	var n atomic.Int32
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "again", Handler: func(ctx context.Context, m *pgflow.Message) error {
		n.Add(1)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Publish(ctx, "again", round); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("round %d", round), func() bool { return n.Load() == int32(round) })
		if err := c.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReconnectAfterBackendsTerminated kills every connection of a running
// consumer with pg_terminate_backend (its own backends only, on the shared
// server) and checks it goes on consuming.
func TestReconnectAfterBackendsTerminated(t *testing.T) {
	t.Parallel()
	app := fmt.Sprintf("pgflow-terminate-%d", time.Now().UnixNano())
	db := pgflowtest.New(t, pgflowtest.Options{AppName: app, MaxConns: 4})
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{PollInterval: 100 * time.Millisecond})
	handled := countingConsumer(t, c, "resilient", 2)
	if _, err := c.Publish(ctx, "resilient", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first message", func() bool { return handled.Load() == 1 })

	admin := pgflowtest.NewPoolOn(t, db, 1)
	var killed int
	waitFor(t, "backends to kill", func() bool {
		err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&killed)
		return err == nil && killed >= 2 // the pool's and the listener's
	})
	// Publishing through the same pool may hit a dead connection once.
	waitFor(t, "publish after terminate", func() bool {
		_, err := c.Publish(ctx, "resilient", 2)
		return err == nil
	})
	waitFor(t, "message after terminate", func() bool { return handled.Load() == 2 })
	waitFor(t, "acknowledged", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
}
