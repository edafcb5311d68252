package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// await waits for ch to deliver, failing the test after a generous deadline
// that only guards against hangs.
func await[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// idleSignal installs test hooks on c (before Start) and returns a channel
// that receives each time the consumer of queue goes to sleep with no
// wake-up queued, once the notification listener listens (or at once with
// PollOnly): from then on only a notification, its timer or its poll
// interval can make it claim again.
func idleSignal(c *pgflow.Client, queue string, pollOnly bool) <-chan struct{} {
	var listening atomic.Bool
	listening.Store(pollOnly || !pgflow.Listens(c))
	ch := make(chan struct{}, 1)
	pgflow.SetTestHooks(c, func(q string, wakePending bool) {
		if q == queue && !wakePending && listening.Load() {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}, func() { listening.Store(true) })
	return ch
}

// A handler past its timeout sees cause ErrHandlerTimeout; the attempt
// fails with an error matching it, is retried, and is dead-lettered once
// out of retries.
func TestHandlerTimeoutFailsTheAttempt(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	rec := newRecorder()
	c := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	causes := make(chan error, 4)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "slow", Declare: fastQueue("slow", 1), Timeout: 50 * time.Millisecond,
		Handler: func(ctx context.Context, m *pgflow.Message) error {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return ctx.Err()
		}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "slow", 1); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if cause := await(t, "handler cancelled", causes); !errors.Is(cause, pgflow.ErrHandlerTimeout) {
			t.Fatalf("cause = %v, want ErrHandlerTimeout", cause)
		}
	}
	waitFor(t, "dead letter", func() bool { return db.Count(t, "pgflow_dlq", "") == 1 })
	if n := db.Count(t, "pgflow_dlq", "error LIKE '%handler timeout%' AND attempts = 2"); n != 1 {
		t.Fatalf("dlq row does not name the timeout: %+v", readDLQ(t, db))
	}
	retried := rec.of(pgflow.EventRetried)
	if len(retried) != 1 || !errors.Is(retried[0].Err, pgflow.ErrHandlerTimeout) || !errors.Is(retried[0].Err, context.Canceled) {
		t.Fatalf("retried events = %+v", retried)
	}
}

// A negative Timeout disables it: the handler runs past the default.
func TestNegativeTimeoutDisablesIt(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	done := make(chan error, 1)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "untimed", Timeout: -1, Handler: func(ctx context.Context, m *pgflow.Message) error {
		_, hasDeadline := ctx.Deadline()
		if hasDeadline {
			done <- errors.New("handler context has a deadline")
		} else {
			done <- nil
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "untimed", 1); err != nil {
		t.Fatal(err)
	}
	if err := await(t, "handler", done); err != nil {
		t.Fatal(err)
	}
}

// A handler that ignores its context past timeout and grace is stuck: its
// lease is no longer extended, it shows in ConsumerStats and as an event,
// and another consumer gets the message. When the stuck handler finally
// returns, its outcome does not touch the new delivery.
func TestStuckHandlerLosesItsLeaseToAnotherConsumer(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	rec := newRecorder()
	queue := &pgflow.QueueConfig{Name: "stuck", MaxRetries: pgflow.Set(3), RetryDelay: pgflow.Set(10 * time.Millisecond), LeaseTimeout: pgflow.Set(300 * time.Millisecond)}
	a := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}, RescueInterval: 50 * time.Millisecond})
	started := make(chan *pgflow.Message, 1)
	unblock := make(chan struct{})
	returned := make(chan struct{})
	if err := a.Consume(pgflow.ConsumerConfig{Queue: "stuck", Declare: queue, Timeout: 50 * time.Millisecond,
		Handler: func(ctx context.Context, m *pgflow.Message) error {
			started <- m
			<-unblock // ignores its context
			defer close(returned)
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := a.Publish(ctx, "stuck", 1)
	if err != nil {
		t.Fatal(err)
	}
	first := await(t, "first delivery", started)
	waitFor(t, "handler_stuck event", func() bool { return rec.count(pgflow.EventHandlerStuck) == 1 })
	st := a.ConsumerStats()
	if len(st) != 1 || st[0].Stuck != 1 || st[0].Running != 1 || st[0].Held != 1 {
		t.Fatalf("consumer stats = %+v", st)
	}

	// Another process gets the message once the lease has run out.
	b := newClient(t, db, pgflow.Config{RescueInterval: 50 * time.Millisecond})
	second := make(chan *pgflow.Message, 1)
	finish := make(chan struct{})
	if err := b.Consume(pgflow.ConsumerConfig{Queue: "stuck", Handler: func(ctx context.Context, m *pgflow.Message) error {
		second <- m
		<-finish
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	m2 := await(t, "redelivery to the other consumer", second)
	if m2.ID != id || m2.Attempt != 2 || pgflow.MessageToken(m2) == pgflow.MessageToken(first) {
		t.Fatalf("redelivered %d attempt %d (first attempt %d)", m2.ID, m2.Attempt, first.Attempt)
	}
	// The stuck handler returns nil; its acknowledgement must miss.
	close(unblock)
	<-returned
	waitFor(t, "stuck slot freed", func() bool {
		st := a.ConsumerStats()
		return len(st) == 1 && st[0].Held == 0
	})
	if n := db.Count(t, "pgflow_messages", "id = $1 AND status = 'processing' AND attempt = 2", id); n != 1 {
		t.Fatal("the stuck handler's outcome touched the new delivery")
	}
	close(finish)
	waitFor(t, "acknowledged by the second consumer", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
}

// A delivery that lost its lease cannot acknowledge the new delivery of the
// same message, even in its own transaction (AckTx).
func TestStaleDeliveryCannotAckTheNewOne(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	first := make(chan *pgflow.Message, 1)
	unblock := make(chan struct{})
	defer close(unblock)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "stale", Handler: func(ctx context.Context, m *pgflow.Message) error {
		first <- m
		<-unblock
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "stale", 1); err != nil {
		t.Fatal(err)
	}
	old := await(t, "first delivery", first)
	// The lease runs out and another consumer claims the message.
	db.Exec(t, `UPDATE pgflow_messages SET locked_until = now() - interval '1 second'`)
	if n, err := c.RescueExpired(ctx); err != nil || n != 1 {
		t.Fatalf("rescued %d, %v", n, err)
	}
	db.Exec(t, `SELECT * FROM pgflow_claim('stale', 1, 'other', 60000)`)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if err := c.AckTx(ctx, tx, old); !errors.Is(err, pgflow.ErrLeaseLost) {
		t.Fatalf("AckTx of the stale delivery: %v, want ErrLeaseLost", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_messages", "locked_by = 'other'"); n != 1 {
		t.Fatal("the new delivery was acknowledged by the stale one")
	}
}

// Stop with a deadline: a handler that ignores its context is counted in a
// *StopError; one that watches it sees cause ErrClientStopped; both
// messages are handed back at once.
func TestStopDeadlineCountsRunningHandlers(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	started := make(chan struct{}, 2)
	causes := make(chan error, 1)
	unblock := make(chan struct{})
	defer close(unblock)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "cut", Workers: 2, Handler: func(ctx context.Context, m *pgflow.Message) error {
		started <- struct{}{}
		var n int
		_ = m.Decode(&n)
		if n == 1 {
			<-unblock // ignores its context
			return nil
		}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return ctx.Err()
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		if _, err := c.Publish(ctx, "cut", i); err != nil {
			t.Fatal(err)
		}
	}
	await(t, "handler 1", started)
	await(t, "handler 2", started)
	stopCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err := c.Stop(stopCtx)
	var se *pgflow.StopError
	if !errors.As(err, &se) || !errors.Is(err, context.DeadlineExceeded) || se.Running != 2 {
		t.Fatalf("Stop = %v, want a *StopError with 2 running wrapping DeadlineExceeded", err)
	}
	if cause := await(t, "cut-short handler", causes); !errors.Is(cause, pgflow.ErrClientStopped) {
		t.Fatalf("cause = %v, want ErrClientStopped", cause)
	}
	if n := db.Count(t, "pgflow_messages", "status = 'pending' AND retry_count = 0 AND claim_token IS NULL"); n != 2 {
		t.Fatalf("%d messages handed back, want 2", n)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop of a stopped client = %v, want nil", err)
	}
}

// Start, traffic, Stop, again and again on one client: run with -race.
func TestStartStopStartWithTraffic(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	var handled atomic.Int32
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "cycle", Workers: 4, Handler: func(ctx context.Context, m *pgflow.Message) error {
		handled.Add(1)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	stopPublishing := make(chan struct{})
	var published atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopPublishing:
				return
			default:
			}
			if _, err := c.Publish(ctx, "cycle", 1); err != nil {
				t.Error(err)
				return
			}
			published.Add(1)
		}
	}()
	for range 5 {
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		_ = c.ConsumerStats()
		target := handled.Load() + 5
		waitFor(t, "some handled", func() bool { return handled.Load() >= target })
		if err := c.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(stopPublishing)
	wg.Wait()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all handled", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
	if h, p := handled.Load(), published.Load(); h < p {
		t.Fatalf("handled %d of %d", h, p)
	}
}

// A delayed publish reaches a consumer that only its exact wake-up can
// wake: polling is off (1 h), and the publish's NOTIFY arrives before the
// message is visible.
func TestDelayedPublishWakesAnIdleConsumerOnTime(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	publisher := newClient(t, db, pgflow.Config{})
	consumer, err := pgflow.New(pgflowtest.NewPoolOn(t, db, 4), pgflow.Config{Schema: db.Schema, Logger: quietLogger(), PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = consumer.Close(context.Background()) })
	idle := idleSignal(consumer, "delayed", false)
	got := make(chan time.Duration, 1)
	if err := consumer.Consume(pgflow.ConsumerConfig{Queue: "delayed", Handler: func(ctx context.Context, m *pgflow.Message) error {
		got <- time.Since(m.VisibleAt)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := consumer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	await(t, "consumer idle", idle)
	if _, err := publisher.Publish(ctx, "delayed", 1, pgflow.WithDelay(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	late := await(t, "delayed message", got)
	if late < 0 {
		t.Fatalf("claimed %v before it was visible", -late)
	}
	t.Logf("claimed %v after visible_at", late)
}

// A retry scheduled by one process is picked up by another as it becomes
// visible. The failing process stops right after its failures are written,
// and the other polls once an hour and is asleep when they are: only the
// retries' NOTIFY and the exact wake-up it arms can deliver the messages.
// Logs the pickup delays.
func TestRetryIsPickedUpByAnotherProcessOnTime(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	if db.TransactionPooling {
		t.Skip("the other process is woken by NOTIFY alone (poll interval 1 h); a transaction-mode pooler allows no LISTEN")
	}
	ctx := context.Background()
	const n = 50
	const retryIn = 700 * time.Millisecond
	rec := newRecorder()
	a := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	started := make(chan struct{}, n)
	gate := make(chan struct{})
	if err := a.Consume(pgflow.ConsumerConfig{Queue: "retry", Workers: n, Handler: func(ctx context.Context, m *pgflow.Message) error {
		started <- struct{}{}
		<-gate
		return pgflow.RetryAfter(retryIn, errors.New("try elsewhere"))
	}}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := a.Publish(ctx, "retry", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for range n {
		await(t, "A's handlers", started)
	}

	b, err := pgflow.New(pgflowtest.NewPoolOn(t, db, 4), pgflow.Config{Schema: db.Schema, Logger: quietLogger(), PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	idle := idleSignal(b, "retry", false)
	var mu sync.Mutex
	var delays []time.Duration
	if err := b.Consume(pgflow.ConsumerConfig{Queue: "retry", Workers: n, Handler: func(ctx context.Context, m *pgflow.Message) error {
		mu.Lock()
		delays = append(delays, time.Since(m.VisibleAt))
		mu.Unlock()
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	await(t, "B idle", idle)

	close(gate)
	waitFor(t, "A's failures written", func() bool { return rec.count(pgflow.EventRetried) == n })
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retries handled by B", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
	mu.Lock()
	defer mu.Unlock()
	picked := slices.Clone(delays)
	slices.Sort(picked)
	if len(picked) != n || picked[0] < 0 {
		t.Fatalf("B handled %d messages (%v), want %d, none before visible_at", len(picked), picked, n)
	}
	t.Logf("%d retries picked up by the other process after visible_at: min %v, median %v, p99 %v, max %v",
		len(picked), picked[0], picked[len(picked)/2], picked[(len(picked)*99-1)/100], picked[len(picked)-1])
}

// TestHelperDrainProcess is not a test: TestKilledConsumerHoldsAtMostWorkers
// runs it as a separate process draining a backlog with 20 workers.
func TestHelperDrainProcess(t *testing.T) {
	schema := os.Getenv("PGFLOW_DRAIN_SCHEMA")
	if schema == "" {
		t.Skip("helper process only")
	}
	ctx := context.Background()
	c, err := pgflow.Connect(ctx, pgflowtest.DatabaseURL(), pgflow.Config{Schema: schema, Logger: quietLogger(), ID: os.Getenv("PGFLOW_DRAIN_ID")})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	var handled atomic.Int32
	err = c.Consume(pgflow.ConsumerConfig{Queue: "drain", Workers: 20, Handler: func(ctx context.Context, m *pgflow.Message) error {
		if handled.Add(1) == 300 {
			fmt.Println("PROGRESS 300")
		}
		return nil
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

// A 20-worker consumer killed with SIGKILL while it drains a backlog with
// fast handlers holds at most 20 messages (running or handled with the
// acknowledgement not yet written): at most 20 are delivered twice. Four
// processes are killed in turn, each after 300 messages, since one kill
// lands between a claim and its acknowledgements only some of the time
// (without the bound, 2 of 5 single kills held 40).
func TestKilledConsumerHoldsAtMostWorkersMessages(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	msgs := make([]pgflow.Outgoing, 5000)
	for i := range msgs {
		msgs[i] = pgflow.Outgoing{Queue: "drain", Payload: i}
	}
	if _, err := c.PublishBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	for round := range 4 {
		id := fmt.Sprintf("drainer-%d", round)
		p := pgflowtest.StartProcess(t, "TestHelperDrainProcess", "PGFLOW_DRAIN_SCHEMA="+db.Schema, "PGFLOW_DRAIN_ID="+id)
		p.Next("PROGRESS ")
		if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.Cmd.Wait()
		held := db.Count(t, "pgflow_messages", "status = 'processing' AND locked_by = $1", id)
		left := db.Count(t, "pgflow_messages", "")
		t.Logf("process %d killed with %d of %d messages drained; it held %d", round, len(msgs)-left, len(msgs), held)
		if held > 20 {
			t.Fatalf("killed consumer %d held %d messages, more than its 20 workers", round, held)
		}
	}
}

// HandleJSON decodes the payload; a payload that does not decode into T is
// dead-lettered at once.
func TestHandleJSONDecodeFailureIsPermanent(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	type order struct {
		ID    int    `json:"id"`
		Email string `json:"email"`
	}
	got := make(chan order, 1)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "typed", Handler: pgflow.HandleJSON(func(ctx context.Context, m *pgflow.Message, o order) error {
		got <- o
		return nil
	})}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "typed", order{ID: 7, Email: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	if o := await(t, "typed message", got); o.ID != 7 || o.Email != "a@example.com" {
		t.Fatalf("decoded %+v", o)
	}
	if _, err := c.Publish(ctx, "typed", map[string]any{"id": "not a number"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letter", func() bool { return db.Count(t, "pgflow_dlq", "") == 1 })
	d := readDLQ(t, db)[0]
	if d.attempts != 1 || !strings.Contains(d.lastError, "permanent") || !strings.Contains(d.lastError, "order") {
		t.Fatalf("dlq = %+v", d)
	}
}

// AckTx leaves the caller's transaction as it was: its commit still waits
// for the WAL flush (the consumer's own acknowledgements do not).
func TestAckTxKeepsTheCallersCommitSynchronous(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	got := make(chan string, 1)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "acktx", Handler: func(ctx context.Context, m *pgflow.Message) error {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck
		if err := c.AckTx(ctx, tx, m); err != nil {
			return err
		}
		var mode string
		if err := tx.QueryRow(ctx, "SHOW synchronous_commit").Scan(&mode); err != nil {
			return err
		}
		got <- mode
		return tx.Commit(ctx)
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "acktx", 1); err != nil {
		t.Fatal(err)
	}
	if mode := await(t, "handler", got); mode != "on" {
		t.Fatalf("synchronous_commit in the caller's transaction after AckTx = %q, want on", mode)
	}
	waitFor(t, "acknowledged", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
}

// Stop's context bounds the final acknowledgement write too: with the
// message's row locked the acknowledgement cannot be written, and Stop
// returns a *StopError counting it once its context is done (plus at most
// the bounded best effort), not after the write's own 30 s timeout.
func TestStopDeadlineBoundsTheFinalWrites(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	started := make(chan int64, 1)
	gate := make(chan struct{})
	returned := make(chan struct{})
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "blocked", Handler: func(ctx context.Context, m *pgflow.Message) error {
		started <- m.ID
		<-gate
		close(returned)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "blocked", 1); err != nil {
		t.Fatal(err)
	}
	id := await(t, "handler", started)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, "SELECT 1 FROM "+db.Schema+".pgflow_messages WHERE id = $1 FOR UPDATE", id); err != nil {
		t.Fatal(err)
	}
	close(gate)
	<-returned
	stopCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	err = c.Stop(stopCtx)
	var se *pgflow.StopError
	if !errors.As(err, &se) || se.Unwritten != 1 || se.Running != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want a *StopError with 1 unwritten outcome", err)
	}
	// Not a performance bound: which mechanism ended Stop. Without the
	// bound, only the write's own 30 s timeout ends it (with the same
	// error), and the lock is held all along.
	if took := time.Since(began); took >= 30*time.Second {
		t.Fatalf("Stop returned after %v: the write's own timeout ended it, not Stop's context", took)
	}
	// (The write given up on may still commit once the lock is released:
	// the server may see the cancellation after that. Either way the
	// message was handled.)
}
