package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// gate is a handler that blocks each delivery until the test lets one go
// (next) or all (open), recording the order in which deliveries started.
type gate struct {
	release chan struct{}
	opened  chan struct{}
	once    sync.Once
	started chan int64

	mu    sync.Mutex
	order []int64
}

func newGate() *gate {
	return &gate{release: make(chan struct{}), opened: make(chan struct{}), started: make(chan int64, 1000)}
}

func (g *gate) handle(ctx context.Context, m *pgflow.Message) error {
	g.mu.Lock()
	g.order = append(g.order, m.ID)
	g.mu.Unlock()
	g.started <- m.ID
	select {
	case <-g.release:
	case <-g.opened:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return nil
}

// next lets one blocked delivery return.
func (g *gate) next(t testing.TB) {
	t.Helper()
	select {
	case g.release <- struct{}{}:
	case <-time.After(time.Minute):
		t.Fatal("no handler to release")
	}
}

func (g *gate) open() { g.once.Do(func() { close(g.opened) }) }

func (g *gate) ran(id int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, x := range g.order {
		if x == id {
			return true
		}
	}
	return false
}

func TestPrefetchConfigIsValidated(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	h := func(context.Context, *pgflow.Message) error { return nil }
	bh := func(context.Context, []*pgflow.Message) error { return nil }
	for _, cc := range []pgflow.ConsumerConfig{
		{Queue: "neg", Handler: h, Prefetch: -1},
		{Queue: "huge", Handler: h, Prefetch: 10001},
		{Queue: "batch", BatchHandler: bh, Prefetch: 10},
	} {
		if err := c.Consume(cc); !errors.Is(err, pgflow.ErrInvalidConfig) {
			t.Errorf("Consume(%s, prefetch %d) = %v, want ErrInvalidConfig", cc.Queue, cc.Prefetch, err)
		}
	}
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "ok", Handler: h, Workers: 2, Prefetch: 10000}); err != nil {
		t.Fatal(err)
	}
}

// With every worker blocked the consumer claims exactly Prefetch messages
// ahead, and through a drain released one handler at a time it never holds
// more than Workers + Prefetch deliveries (running, waiting, or handled and
// not yet acknowledged), as the database and ConsumerStats both count them.
func TestPrefetchHoldsAtMostWorkersPlusPrefetch(t *testing.T) {
	t.Parallel()
	const workers, prefetch, total = 2, 3, 14
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	g := newGate()
	defer g.open()
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "bound", Workers: workers, Prefetch: prefetch, Handler: g.handle}); err != nil {
		t.Fatal(err)
	}
	for i := range total {
		if _, err := c.Publish(ctx, "bound", i); err != nil {
			t.Fatal(err)
		}
	}
	obs := newObserver(t, db)
	held := func() int { return obs.count("status = 'processing' AND locked_by = $1", c.ID()) }
	// A sampler watches the bound throughout.
	var most atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampler := newObserver(t, db)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampleCtx.Err() == nil {
			if n, err := sampler.tryCount("status = 'processing'"); err == nil && int64(n) > most.Load() {
				most.Store(int64(n))
			}
			for _, s := range c.ConsumerStats() {
				if int64(s.Held) > most.Load() {
					most.Store(int64(s.Held))
				}
			}
		}
	}()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for range workers {
		await(t, "a handler", g.started)
	}
	waitFor(t, "workers + prefetch held", func() bool { return held() == workers+prefetch })
	for k := 1; k <= total; k++ {
		g.next(t)
		left := total - k
		waitFor(t, fmt.Sprintf("ack %d", k), func() bool {
			return obs.count("true") == left && held() == min(workers+prefetch, left)
		})
	}
	stopSampling()
	<-sampled
	if m := most.Load(); m > workers+prefetch {
		t.Fatalf("held %d deliveries at once, want at most %d", m, workers+prefetch)
	}
	if n := len(g.order); n != total {
		t.Fatalf("%d handler runs for %d messages", n, total)
	}
}

// A prefetched message waiting for a busy worker has its lease extended by
// the heartbeat, and once it has waited half its lease it is handed back,
// not counted as a failed attempt, and another consumer takes it; the
// first consumer never runs it.
func TestPrefetchedMessageKeepsItsLeaseThenIsHandedBack(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	watch := newLogWatch()
	rec := newRecorder()
	c := newClient(t, db, pgflow.Config{Logger: slog.New(watch), Hooks: []pgflow.EventHook{rec.hook}})
	g := newGate()
	defer g.open()
	// Heartbeats every second; b, waiting, is handed back at the first
	// one after it has waited 1.5 s, so the first one extends it.
	const lease = 3 * time.Second
	q := &pgflow.QueueConfig{Name: "waiting", LeaseTimeout: pgflow.Set(lease)}
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "waiting", Declare: q, Workers: 1, Prefetch: 1, Handler: g.handle}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := c.Publish(ctx, "waiting", "a")
	if err != nil {
		t.Fatal(err)
	}
	if id := await(t, "the first handler", g.started); id != a {
		t.Fatalf("started %d, want %d", id, a)
	}
	b, err := c.Publish(ctx, "waiting", "b")
	if err != nil {
		t.Fatal(err)
	}
	obs := newObserver(t, db)
	// The lease b's claim gave it, on the server's clock: the received
	// event's queue wait is its claim moment minus visible_at.
	var received *pgflow.Event
	waitFor(t, "b received", func() bool {
		for _, e := range rec.of(pgflow.EventReceived) {
			if e.MessageID == b {
				received = &e
				return true
			}
		}
		return false
	})
	var visibleAt time.Time
	if err := obs.pool.QueryRow(ctx, fmt.Sprintf(`SELECT visible_at FROM %q.pgflow_messages WHERE id = $1`, db.Schema), b).Scan(&visibleAt); err != nil {
		t.Fatal(err)
	}
	claimed := visibleAt.Add(received.QueueWait + lease)
	waitFor(t, "b's lease extended while it waits", func() bool {
		return obs.count("id = $1 AND status = 'processing' AND locked_by = $2 AND attempt = 1 AND locked_until > $3", b, c.ID(), claimed) == 1
	})
	waitFor(t, "b handed back", func() bool {
		return obs.count("id = $1 AND status = 'pending' AND locked_by IS NULL AND retry_count = 0 AND errors = '[]'", b) == 1
	})
	await(t, "the hand-back's log", watch.on("pgflow: prefetched messages waited half their lease for a worker; handed back"))
	// The first consumer's worker is still busy, and it does not claim b
	// again: another consumer takes it.
	other := newClient(t, db, pgflow.Config{})
	done := countingConsumer(t, other, "waiting", 1)
	waitFor(t, "b handled by the other consumer", func() bool { return done.Load() == 1 && obs.count("id = $1", b) == 0 })
	g.next(t)
	waitFor(t, "a acknowledged", func() bool { return obs.count("true") == 0 })
	if g.ran(b) {
		t.Fatal("the first consumer ran b after handing it back")
	}
}

// Stop hands back at once, not counted as failed attempts, the messages
// claimed ahead that no worker has started, while it waits for the running
// handler; that handler's outcome is written and the prefetched ones never
// run.
func TestStopHandsBackPrefetchedMessagesAtOnce(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	g := newGate()
	defer g.open()
	// A lease of an hour: only Stop can hand the waiting messages back
	// within the test, not their wait bound (half a lease).
	q := &pgflow.QueueConfig{Name: "stopping", LeaseTimeout: pgflow.Set(time.Hour)}
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "stopping", Declare: q, Workers: 1, Prefetch: 3, Handler: g.handle}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := c.Publish(ctx, "stopping", "a")
	if err != nil {
		t.Fatal(err)
	}
	await(t, "the first handler", g.started)
	for i := range 3 {
		if _, err := c.Publish(ctx, "stopping", i); err != nil {
			t.Fatal(err)
		}
	}
	obs := newObserver(t, db)
	waitFor(t, "three prefetched", func() bool { return obs.count("status = 'processing'") == 4 })
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(stopCtx) }()
	// The running handler is still blocked: the three go back before it
	// returns.
	waitFor(t, "the prefetched handed back", func() bool {
		return obs.count("status = 'pending' AND locked_by IS NULL AND retry_count = 0 AND attempt = 1") == 3 &&
			obs.count("status = 'processing'") == 1
	})
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while the handler ran", err)
	default:
	}
	g.next(t)
	if err := await(t, "Stop", stopped); err != nil {
		t.Fatal(err)
	}
	if n := obs.count("id = $1", a); n != 0 {
		t.Fatal("the running handler's acknowledgement was not written")
	}
	if n := obs.count("status = 'pending' AND retry_count = 0"); n != 3 {
		t.Fatalf("%d of 3 prefetched messages pending after Stop", n)
	}
	if n := len(g.order); n != 1 {
		t.Fatalf("%d handlers ran, want only the first", n)
	}
}

// A message published with a higher priority while the consumer holds all
// it may (Workers running, Prefetch waiting) starts after at most Prefetch
// lower-priority messages: the next claim takes it, and it waits behind the
// ones already claimed. Handlers are released one at a time.
func TestHigherPriorityWaitsBehindAtMostPrefetch(t *testing.T) {
	t.Parallel()
	for _, prefetch := range []int{0, 3} {
		t.Run(fmt.Sprintf("prefetch=%d", prefetch), func(t *testing.T) {
			t.Parallel()
			const workers = 2
			db := pgflowtest.New(t)
			ctx := context.Background()
			c := newClient(t, db, pgflow.Config{})
			g := newGate()
			defer g.open()
			if err := c.Consume(pgflow.ConsumerConfig{Queue: "prio", Workers: workers, Prefetch: prefetch, Handler: g.handle}); err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				if _, err := c.Publish(ctx, "prio", i); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			for range workers {
				await(t, "a handler", g.started)
			}
			obs := newObserver(t, db)
			waitFor(t, "all held", func() bool { return obs.count("status = 'processing'") == workers+prefetch })
			urgent, err := c.Publish(ctx, "prio", "urgent", pgflow.WithPriority(pgflow.PriorityHigh))
			if err != nil {
				t.Fatal(err)
			}
			before := 0
			for {
				g.next(t)
				id := await(t, "the next handler", g.started)
				if id == urgent {
					break
				}
				before++
				if before > 20 {
					t.Fatal("the urgent message never started")
				}
			}
			if before > prefetch {
				t.Fatalf("%d lower-priority messages started after the urgent one was committed, want at most %d", before, prefetch)
			}
		})
	}
}

// A prefetched message whose lease another consumer took over while it
// waited is dropped without running: the heartbeat finds the lease lost,
// the worker skips it, and nothing is written over the new delivery.
func TestPrefetchedMessageWithLostLeaseIsNeverRun(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	watch := newLogWatch()
	c := newClient(t, db, pgflow.Config{Logger: slog.New(watch)})
	g := newGate()
	defer g.open()
	// A lease of 6 s: the heartbeat (every 2 s) finds the loss long before
	// the message has waited half a lease and would be handed back.
	q := &pgflow.QueueConfig{Name: "lost", LeaseTimeout: pgflow.Set(6 * time.Second)}
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "lost", Declare: q, Workers: 1, Prefetch: 1, Handler: g.handle}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "lost", "a"); err != nil {
		t.Fatal(err)
	}
	await(t, "the first handler", g.started)
	b, err := c.Publish(ctx, "lost", "b")
	if err != nil {
		t.Fatal(err)
	}
	obs := newObserver(t, db)
	waitFor(t, "b prefetched", func() bool {
		return obs.count("id = $1 AND status = 'processing' AND locked_by = $2", b, c.ID()) == 1
	})
	// Another consumer takes b over (as after an expiry).
	if _, err := obs.pool.Exec(ctx, fmt.Sprintf(`UPDATE %q.pgflow_messages SET attempt = attempt + 1, claim_token = claim_token + 1, locked_by = 'thief', locked_until = now() + interval '1 hour' WHERE id = $1`, db.Schema), b); err != nil {
		t.Fatal(err)
	}
	await(t, "the heartbeat to find the lease lost", watch.on("pgflow: leases taken over by another consumer; those deliveries are cancelled, their outcome not written"))
	g.next(t)
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if g.ran(b) {
		t.Fatal("the prefetched message ran after its lease was lost")
	}
	if n := obs.count("id = $1 AND status = 'processing' AND locked_by = 'thief' AND attempt = 2 AND retry_count = 0 AND errors = '[]'", b); n != 1 {
		t.Fatal("the thief's delivery was changed")
	}
}
