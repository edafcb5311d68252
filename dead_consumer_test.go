package pgflow_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/internal/schema"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// judgeReady waits until c's consumer registration may judge others: it has
// heartbeated without a gap for the 3 s pgflow_rescue_dead asks of a judge.
func judgeReady(t *testing.T, db *pgflowtest.DB, c *pgflow.Client) {
	t.Helper()
	waitFor(t, "the judge's registration 3 s old", func() bool {
		return db.Count(t, "pgflow_consumers", "consumer = $1 AND up_since <= now() - interval '3 seconds'", c.ID()) == 1
	})
}

// redeliveryAfterKill runs a consumer process holding three messages in
// handlers that never return, SIGKILLs it, and returns how long after the
// kill the last of them was handled by another consumer. txPool runs the process with TransactionPooling:
// no session lock, the heartbeat alone tells it is gone.
func redeliveryAfterKill(t *testing.T, txPool bool) time.Duration {
	db := pgflowtest.New(t)
	ctx := context.Background()
	rec := newRecorder()
	// The judge: a consuming client of another queue, started first, so
	// that its registration is old enough to judge when the kill comes.
	judge := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	countingConsumer(t, judge, "idle", 1)

	// A lease of 5 minutes: a redelivery within a minute cannot be its
	// expiry (detection does not depend on it; the default is 30 s).
	if err := judge.DeclareQueue(ctx, pgflow.QueueConfig{Name: "crash", LeaseTimeout: pgflow.Set(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	const held = 3
	ids := map[int64]bool{}
	for range held {
		id, err := judge.Publish(ctx, "crash", map[string]string{"job": "resize-image"})
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	env := []string{"PGFLOW_HELPER_SCHEMA=" + db.Schema, "PGFLOW_HELPER_WORKERS=3"}
	if txPool {
		env = append(env, "PGFLOW_HELPER_TXPOOL=1")
	}
	p := pgflowtest.StartProcess(t, "TestHelperConsumerProcess", env...)
	victim := p.Next("ID ")
	for range held {
		p.Next("HANDLING ")
	}
	wantLock := "lock_key IS NOT NULL"
	if txPool {
		wantLock = "lock_key IS NULL"
	}
	waitFor(t, "the victim registered, "+wantLock, func() bool {
		return db.Count(t, "pgflow_consumers", "consumer = $1 AND "+wantLock, victim) == 1
	})

	// The survivor consumes the same queue; everything is held by the
	// victim, so it gets only what comes back.
	survivor := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	var mu sync.Mutex
	got := map[int64]time.Time{}
	all := make(chan struct{})
	if err := survivor.Consume(pgflow.ConsumerConfig{Queue: "crash", Workers: held, Handler: func(ctx context.Context, m *pgflow.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Attempt != 2 || !ids[m.ID] {
			t.Errorf("survivor got message %d attempt %d, want a redelivery (attempt 2) of %v", m.ID, m.Attempt, ids)
		}
		got[m.ID] = time.Now()
		if len(got) == held {
			close(all)
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := survivor.Start(ctx); err != nil {
		t.Fatal(err)
	}
	judgeReady(t, db, judge)

	killed := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.Cmd.Wait()
	await(t, "the victim's messages redelivered", all)
	var last time.Time
	for _, at := range got {
		if at.After(last) {
			last = at
		}
	}
	took := last.Sub(killed)

	waitFor(t, "acknowledged", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
	if n := rec.count(pgflow.EventLeaseExpired); n != held {
		t.Errorf("%d lease_expired events, want %d", n, held)
	}
	gone := rec.of(pgflow.EventConsumerGone)
	if len(gone) != 1 || gone[0].Consumer != victim || gone[0].Count != held {
		t.Errorf("consumer_gone events %+v, want one for %s with count %d", gone, victim, held)
	} else {
		t.Logf("kill -> consumer_gone: %v", gone[0].Time.Sub(killed).Round(time.Millisecond))
	}
	waitFor(t, "the victim's registration deleted", func() bool {
		return db.Count(t, "pgflow_consumers", "consumer = $1", victim) == 0
	})
	return took
}

// A consumer process killed with SIGKILL while three handlers run: its
// session ends with it, and another consumer gets the messages back within
// about two seconds (sessionExpiry plus the rescuer's tick) on a machine
// that is not overloaded, not at the end of the lease. The bound asserted
// is generous (a loaded test machine, one-connection pools); the figure is
// logged.
func TestKilledConsumerMessagesComeBackInSeconds(t *testing.T) {
	t.Parallel()
	took := redeliveryAfterKill(t, false)
	t.Logf("kill -> redelivery of all held messages: %v", took.Round(time.Millisecond))
	if took > time.Minute {
		t.Fatalf("redelivered %v after the kill, want a few seconds (the lease is 5 min)", took)
	}
}

// Under TransactionPooling there is no session lock: a killed consumer is
// found gone by its heartbeat alone, 3 s after its last one.
func TestKilledConsumerFoundByHeartbeatUnderTransactionPooling(t *testing.T) {
	t.Parallel()
	took := redeliveryAfterKill(t, true)
	t.Logf("kill -> redelivery (heartbeat only): %v", took.Round(time.Millisecond))
	if took > time.Minute {
		t.Fatalf("redelivered %v after the kill, want a few seconds (the lease is 5 min)", took)
	}
}

// holdOne starts c consuming queue with a handler that signals when it
// starts and holds the message until release is closed; it returns the
// channels that report the start and the handler's context cause.
func holdOne(t *testing.T, c *pgflow.Client, queue string, release <-chan struct{}) (started chan *pgflow.Message, cause chan error) {
	t.Helper()
	started, cause = make(chan *pgflow.Message, 4), make(chan error, 4)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: queue, Handler: func(ctx context.Context, m *pgflow.Message) error {
		started <- m
		select {
		case <-release:
		case <-ctx.Done():
		}
		cause <- context.Cause(ctx)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return started, cause
}

// rescuesNothingFor calls judge.RescueExpired (which judges consumers too)
// every 100 ms for d and fails if it ever takes a message back.
func rescuesNothingFor(t *testing.T, judge *pgflow.Client, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if n, err := judge.RescueExpired(context.Background()); err != nil || n != 0 {
			t.Fatalf("RescueExpired took back %d messages (err %v) from a live consumer", n, err)
		}
	}
}

// A live consumer whose handler runs far longer than the dead-consumer
// window (1 s heartbeat expiry) keeps its message: it is delivered once,
// and acknowledged by the handler that had it.
func TestLiveConsumerWithLongHandlerKeepsItsLease(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	rec := newRecorder()
	judge := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	countingConsumer(t, judge, "other", 1)
	judgeReady(t, db, judge)

	holder := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	release := make(chan struct{})
	started, cause := holdOne(t, holder, "long", release)
	if _, err := holder.Publish(ctx, "long", 1); err != nil {
		t.Fatal(err)
	}
	m := await(t, "the handler's start", started)
	// Three times the window, with the background rescuers of both
	// clients and explicit judgements running throughout.
	rescuesNothingFor(t, judge, 3*time.Second)
	close(release)
	if err := await(t, "the handler's end", cause); err != nil {
		t.Fatalf("the live handler's context ended with %v", err)
	}
	waitFor(t, "acknowledged", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
	if n := rec.count(pgflow.EventLeaseExpired) + rec.count(pgflow.EventConsumerGone); n != 0 {
		t.Fatalf("%d lease_expired/consumer_gone events for a live consumer", n)
	}
	if m.Attempt != 1 {
		t.Fatalf("attempt %d", m.Attempt)
	}
}

// A live consumer whose own session is cut (its backend terminated) keeps
// its message: its heartbeat goes on through the pool, and its session
// comes back with a new lock.
func TestConsumerWhoseSessionDropsKeepsItsLease(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	rec := newRecorder()
	judge := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	countingConsumer(t, judge, "other", 1)
	judgeReady(t, db, judge)

	holder := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	release := make(chan struct{})
	started, cause := holdOne(t, holder, "held", release)
	if _, err := holder.Publish(ctx, "held", 1); err != nil {
		t.Fatal(err)
	}
	await(t, "the handler's start", started)
	lockKey := func() int64 {
		var k *int64
		if err := db.Pool.QueryRow(ctx, `SELECT lock_key FROM `+schema.Quote(db.Schema)+`.pgflow_consumers WHERE consumer = $1`, holder.ID()).Scan(&k); err != nil || k == nil {
			return 0
		}
		return *k
	}
	waitFor(t, "the holder's session lock", func() bool { return lockKey() != 0 })
	before := lockKey()
	var terminated bool
	if err := db.Pool.QueryRow(ctx, `SELECT pg_terminate_backend(l.pid) FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = $1`, before).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("terminating the holder's session: %v %v", terminated, err)
	}
	waitFor(t, "a new session lock", func() bool { k := lockKey(); return k != 0 && k != before })
	rescuesNothingFor(t, judge, 2*time.Second)
	close(release)
	if err := await(t, "the handler's end", cause); err != nil {
		t.Fatalf("the handler's context ended with %v", err)
	}
	waitFor(t, "acknowledged", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
	if n := rec.count(pgflow.EventLeaseExpired); n != 0 {
		t.Fatalf("%d lease_expired events for a live consumer", n)
	}
}

// A live consumer taken for gone (here: its registration made stale and
// lockless in the judge's transaction, as if its session and heartbeats had
// been lost for an hour) loses its message: the attempt counts, its handler
// sees ErrLeaseLost at its next lease extension (its outcome is not
// written), and it registers again and gets the message anew.
func TestConsumerTakenForGoneRegistersAgainAndLosesItsLease(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	logs := newLogWatch()

	holder := newClient(t, db, pgflow.Config{Logger: slog.New(logs)})
	if err := holder.DeclareQueue(ctx, pgflow.QueueConfig{Name: "held", LeaseTimeout: pgflow.Set(900 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
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

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, `UPDATE `+schema.Quote(db.Schema)+`.pgflow_consumers SET seen_at = now() - interval '1 hour', lock_key = NULL WHERE consumer = $1`, holder.ID()); err != nil {
		t.Fatal(err)
	}
	// A judge of its own in the same transaction: under a loaded machine a
	// real client's heartbeat can have a gap that holds its judging back.
	const judgeID = 1
	if _, err := tx.Exec(ctx, `INSERT INTO `+schema.Quote(db.Schema)+`.pgflow_consumers (id, consumer, expiry_ms, up_since) VALUES ($1, 'judge', 1000, now() - interval '1 minute')`, judgeID); err != nil {
		t.Fatal(err)
	}
	var rescued int64
	var gone string
	if err := tx.QueryRow(ctx, `SELECT id, consumer FROM `+schema.Quote(db.Schema)+`.pgflow_rescue_dead($1, 100)`, judgeID).Scan(&rescued, &gone); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if rescued != id || gone != holder.ID() {
		t.Fatalf("rescued %d of %s, want %d of %s", rescued, gone, id, holder.ID())
	}
	if err := await(t, "the handler's cancellation", cause); !errors.Is(err, pgflow.ErrLeaseLost) {
		t.Fatalf("handler's context cause %v, want ErrLeaseLost", err)
	}
	await(t, "registering again", logs.on("pgflow: this client was taken for gone (its database session and heartbeats were lost); its messages went to other consumers, and it registered again"))
	if n := db.Count(t, "pgflow_consumers", "consumer = $1", holder.ID()); n != 1 {
		t.Fatalf("%d registrations of the holder", n)
	}
	// The holder claims it again itself (attempt 2): the failed attempt
	// was counted once.
	m := await(t, "the redelivery", started)
	if m.ID != id || m.Attempt != 2 || m.RetryCount != 1 {
		t.Fatalf("redelivered %d attempt %d retry_count %d", m.ID, m.Attempt, m.RetryCount)
	}
	if !strings.Contains(lastErrorOf(t, db, id), "is gone") {
		t.Fatalf("errors %q", lastErrorOf(t, db, id))
	}
}

// lastErrorOf is the last recorded error of a live message.
func lastErrorOf(t *testing.T, db *pgflowtest.DB, id int64) string {
	t.Helper()
	var s string
	if err := db.Pool.QueryRow(context.Background(), `SELECT errors->-1->>'error' FROM `+schema.Quote(db.Schema)+`.pgflow_messages WHERE id = $1`, id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// pgflow_rescue_dead's rule, on hand-made registrations: a lockless
// registration whose heartbeat is older than its expiry is gone, and its
// consumer's messages are settled as an expired lease is (attempt counted,
// registration deleted); but only once the judge has heartbeated without a
// gap for 3 s (after a restart or failover every heartbeat is old), and
// not while another registration of the same consumer id is alive. A
// heartbeat after a gap restarts the judge's up_since.
func TestRescueDeadRule(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	id, err := c.Publish(ctx, "q", 1)
	if err != nil {
		t.Fatal(err)
	}
	q := schema.Quote(db.Schema)
	db.Exec(t, `UPDATE pgflow_messages SET status = 'processing', attempt = 1, locked_by = 'victim', claim_token = 7,
		locked_until = now() + interval '30 seconds' WHERE id = $1`, id)
	db.Exec(t, `INSERT INTO pgflow_consumers (id, consumer, lock_key, expiry_ms, up_since, seen_at) VALUES
		(1, 'judge', NULL, 1000, now(), now()),
		(2, 'victim', NULL, 1000, now() - interval '1 hour', now() - interval '10 seconds'),
		(3, 'victim', NULL, 1000, now() - interval '1 hour', now())`)
	rescue := func() []int64 {
		db.Exec(t, `UPDATE pgflow_consumers SET seen_at = now() WHERE id = 1`) // the judge's heartbeat
		rows, err := db.Pool.Query(ctx, `SELECT id FROM `+q+`.pgflow_rescue_dead(1, 100)`)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := rescue(); len(got) != 0 {
		t.Fatalf("a judge up for less than 3 s took back %v", got)
	}
	db.Exec(t, `UPDATE pgflow_consumers SET up_since = now() - interval '4 seconds' WHERE id = 1`)
	if got := rescue(); len(got) != 0 {
		t.Fatalf("took back %v while another registration of the consumer is alive", got)
	}
	if n := db.Count(t, "pgflow_consumers", "id = 2"); n != 0 {
		t.Fatal("the gone registration of a consumer that is alive elsewhere was kept")
	}
	db.Exec(t, `UPDATE pgflow_consumers SET seen_at = now() - interval '10 seconds' WHERE id = 3`)
	if got := rescue(); len(got) != 1 || got[0] != id {
		t.Fatalf("took back %v, want [%d]", got, id)
	}
	if n := db.Count(t, "pgflow_messages", "id = $1 AND status = 'pending' AND retry_count = 1 AND claim_token IS NULL AND locked_by IS NULL", id); n != 1 {
		t.Fatal("the message was not settled as a failed attempt")
	}
	if n := db.Count(t, "pgflow_consumers", "consumer = 'victim'"); n != 0 {
		t.Fatal("the gone registration was kept")
	}

	// A registration whose heartbeat is old but whose session lock is held
	// is alive; once the lock goes, it is gone.
	id2, err := c.Publish(ctx, "q", 2)
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `UPDATE pgflow_messages SET status = 'processing', attempt = 1, locked_by = 'locked', claim_token = 8,
		locked_until = now() + interval '30 seconds' WHERE id = $1`, id2)
	// A session of its own (PGFLOW_TEST_MAX_CONNS=1 leaves db.Pool one).
	session, err := pgflowtest.NewPoolOn(t, db, 1).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Release()
	const key = 4611686018427387905 // both halves non-zero
	if _, err := session.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `INSERT INTO pgflow_consumers (id, consumer, lock_key, expiry_ms, seen_at) VALUES (4, 'locked', $1, 1000, now() - interval '10 seconds')`, key)
	if got := rescue(); len(got) != 0 {
		t.Fatalf("took back %v from a registration whose session lock is held", got)
	}
	if _, err := session.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
		t.Fatal(err)
	}
	// Taken back by this judgement, or (when it ran first and held the
	// one-judge-at-a-time lock) by a client's own rescuer.
	waitFor(t, "the message taken back once the session lock is gone", func() bool {
		if got := rescue(); len(got) == 1 && got[0] == id2 {
			return true
		}
		return db.Count(t, "pgflow_messages", "id = $1 AND status = 'pending'", id2) == 1
	})

	// A heartbeat (the client's own statement) after a gap longer than twice
	// the expiry restarts up_since; one without a gap keeps it.
	beat := func() float64 {
		var inserted bool
		if err := db.Pool.QueryRow(ctx, query.MustLoad(db.Schema).Get(query.RegisterConsumer), 1, "judge", nil, 1000).Scan(&inserted); err != nil || inserted {
			t.Fatalf("heartbeat: inserted %v, %v", inserted, err)
		}
		var s float64
		if err := db.Pool.QueryRow(ctx, `SELECT extract(epoch FROM now() - up_since) FROM `+q+`.pgflow_consumers WHERE id = 1`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	db.Exec(t, `UPDATE pgflow_consumers SET seen_at = now(), up_since = now() - interval '4 seconds' WHERE id = 1`)
	if up := beat(); up < 3 {
		t.Fatalf("up_since %.1f s ago after a heartbeat without a gap, want kept (4 s)", up)
	}
	db.Exec(t, `UPDATE pgflow_consumers SET seen_at = now() - interval '3 seconds' WHERE id = 1`)
	if up := beat(); up > 1 {
		t.Fatalf("up_since %.1f s ago after a 3 s gap, want restarted", up)
	}
}
