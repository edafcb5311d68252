package pgflow_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// expiryOf returns the message's expires_at minus its visible_at (0 when it
// has no expiry).
func expiryOf(t *testing.T, db *pgflowtest.DB, id int64) time.Duration {
	t.Helper()
	var us *int64
	if err := db.Pool.QueryRow(context.Background(),
		`SELECT (extract(epoch FROM expires_at - visible_at) * 1000000)::bigint FROM `+db.Schema+`.pgflow_messages WHERE id = $1`, id).Scan(&us); err != nil {
		t.Fatal(err)
	}
	if us == nil {
		return 0
	}
	return time.Duration(*us) * time.Microsecond
}

func TestExpiryIsSetFromOptionOrQueueDefault(t *testing.T) {
	t.Parallel()
	c, db := opsClient(t, pgflow.Config{Logger: quietLogger()})
	ctx := context.Background()
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "dflt", Expiry: pgflow.Set(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	publish := func(queue string, opts ...pgflow.PublishOption) int64 {
		t.Helper()
		id, err := c.Publish(ctx, queue, map[string]int{"n": 1}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for _, tc := range []struct {
		name string
		id   int64
		want time.Duration
	}{
		{"no expiry anywhere", publish("plain"), 0},
		{"queue default", publish("dflt"), time.Hour},
		{"queue default counts from the end of a delay", publish("dflt", pgflow.WithDelay(10*time.Minute)), time.Hour},
		{"option wins over queue default", publish("dflt", pgflow.WithExpiry(5*time.Minute)), 5 * time.Minute},
		{"option on a queue without default", publish("plain", pgflow.WithExpiry(time.Minute), pgflow.WithDedupKey("k")), time.Minute},
		{"absolute time", publish("plain", pgflow.WithVisibleAt(time.Now().Add(time.Hour)), pgflow.WithExpiresAt(time.Now().Add(3*time.Hour))), 2 * time.Hour},
	} {
		got := expiryOf(t, db, tc.id)
		if d := got - tc.want; d < -time.Second || d > time.Second {
			t.Errorf("%s: expiry %v, want %v", tc.name, got, tc.want)
		}
	}

	ids, err := c.PublishBatch(ctx, []pgflow.Outgoing{
		{Queue: "dflt", Payload: 1},
		{Queue: "plain", Payload: 2, Options: []pgflow.PublishOption{pgflow.WithExpiry(2 * time.Minute)}},
		{Queue: "plain", Payload: 3},
		{Queue: "plain", Payload: 4, Options: []pgflow.PublishOption{pgflow.WithExpiry(3 * time.Minute), pgflow.WithDedupKey("b")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{time.Hour, 2 * time.Minute, 0, 3 * time.Minute} {
		if got := expiryOf(t, db, ids[i]); got-want < -time.Second || got-want > time.Second {
			t.Errorf("batch message %d: expiry %v, want %v", i, got, want)
		}
	}
	// The dedup variant of a batch.
	ids, err = c.PublishBatch(ctx, []pgflow.Outgoing{
		{Queue: "dflt", Payload: 1, Options: []pgflow.PublishOption{pgflow.WithDedupKey("c")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := expiryOf(t, db, ids[0]); got-time.Hour < -time.Second || got-time.Hour > time.Second {
		t.Errorf("batch message with dedup key: expiry %v, want the queue's 1h", got)
	}

	for _, bad := range [][]pgflow.PublishOption{
		{pgflow.WithExpiry(0)},
		{pgflow.WithExpiry(-time.Second)},
		{pgflow.WithExpiresAt(time.Time{})},
		{pgflow.WithVisibleAt(time.Now().Add(time.Hour)), pgflow.WithExpiresAt(time.Now().Add(time.Minute))},
	} {
		if _, err := c.Publish(ctx, "plain", 1, bad...); !errors.Is(err, pgflow.ErrInvalidOption) {
			t.Errorf("bad expiry accepted or wrong error: %v", err)
		}
	}
}

// claimIDs claims up to 10 messages of queue with the claim function itself.
func claimIDs(t *testing.T, db *pgflowtest.DB, queue string) []int64 {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(),
		`SELECT id FROM `+db.Schema+`.pgflow_claim($1, 10, 'test', 60000) WHERE id IS NOT NULL ORDER BY id`, queue)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
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

func TestExpiredMessageIsNotClaimedAndGoesToDLQWithReason(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c, db := opsClient(t, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}, Logger: quietLogger()})
	ctx := context.Background()
	// Priority 5 puts the expired message first in claim order.
	expired, err := c.Publish(ctx, "q", map[string]string{"k": "late"}, pgflow.WithExpiresAt(time.Now().Add(-time.Second)),
		pgflow.WithPriority(5), pgflow.WithDedupKey("late"))
	if err != nil {
		t.Fatal(err)
	}
	live, err := c.Publish(ctx, "q", map[string]string{"k": "ok"}, pgflow.WithExpiry(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := claimIDs(t, db, "q"); len(got) != 1 || got[0] != live {
		t.Fatalf("claim returned %v, want only the unexpired message %d", got, live)
	}
	res, err := c.Maintain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Expired["q"] != 1 || res.Busy {
		t.Fatalf("maintenance result %+v, want 1 expired in q", res)
	}
	if db.Count(t, "pgflow_messages", "id = $1", expired) != 0 {
		t.Fatal("expired message still live")
	}
	page, err := c.ListDLQ(ctx, pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{Queue: "q"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", len(page.Messages))
	}
	d := page.Messages[0]
	if d.MessageID != expired || d.Reason != pgflow.DLQReasonExpired || !strings.HasPrefix(d.Error, "expired: not claimed by ") ||
		d.RetryCount != 0 || d.Attempts != 0 || len(d.Errors) != 0 || d.DedupKey != "late" {
		t.Fatalf("dead letter %+v: want reason expired, error naming the expiry, no attempt counted, dedup key kept", d)
	}
	if ev := rec.of(pgflow.EventExpired); len(ev) != 1 || ev[0].MessageID != expired || ev[0].Queue != "q" {
		t.Fatalf("expired events %+v", ev)
	}
	// The dedup key is free again, as after any dead-lettering.
	again, err := c.Publish(ctx, "q", 1, pgflow.WithDedupKey("late"))
	if err != nil || again == expired {
		t.Fatalf("republish with the freed key: id %d, %v", again, err)
	}
	// A second run finds nothing.
	if res, err := c.Maintain(ctx); err != nil || len(res.Expired) != 0 {
		t.Fatalf("second maintenance: %+v, %v", res, err)
	}
}

// TestInFlightMessageIsNotExpired: a message whose expiry passes while its
// handler runs is neither interrupted nor moved; its acknowledgement
// succeeds. A failed delivery past the expiry is not retried but
// dead-lettered with reason expired and its handler's error kept; one
// before the expiry is retried as usual.
func TestInFlightMessageIsNotExpired(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c, db := opsClient(t, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}, PollInterval: 20 * time.Millisecond, DisableMaintenance: true})
	ctx := context.Background()
	if err := c.DeclareQueue(ctx, *fastQueue("f", 3)); err != nil {
		t.Fatal(err)
	}
	running := make(chan int64, 10)
	verdict := make(chan error, 10)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "f", Workers: 1, Handler: func(ctx context.Context, m *pgflow.Message) error {
		running <- m.ID
		return <-verdict
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	expireNow := func(id int64) {
		db.Exec(t, `UPDATE pgflow_messages SET expires_at = now() - interval '1 second' WHERE id = $1`, id)
	}

	// 1. Acknowledged after its expiry passed mid-delivery.
	a, err := c.Publish(ctx, "f", 1, pgflow.WithExpiry(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := <-running; got != a {
		t.Fatalf("delivered %d, want %d", got, a)
	}
	expireNow(a)
	if res, err := c.Maintain(ctx); err != nil || len(res.Expired) != 0 {
		t.Fatalf("maintenance moved an in-flight message: %+v, %v", res, err)
	}
	verdict <- nil
	waitFor(t, "the acknowledgement", func() bool { return rec.count(pgflow.EventCompleted) == 1 })
	waitFor(t, "the ack written", func() bool { return db.Count(t, "pgflow_messages", "id = $1", a) == 0 })
	if n := db.Count(t, "pgflow_dlq", "true"); n != 0 {
		t.Fatalf("%d dead letters after an acknowledged in-flight message", n)
	}

	// 2. Failed before its expiry: retried as usual.
	b, err := c.Publish(ctx, "f", 2, pgflow.WithExpiry(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := <-running; got != b {
		t.Fatalf("delivered %d, want %d", got, b)
	}
	verdict <- errors.New("first failure")
	if got := <-running; got != b {
		t.Fatalf("retry delivered %d, want %d", got, b)
	}
	// 3. The same message fails again after its expiry passed: no retry.
	expireNow(b)
	verdict <- errors.New("second failure")
	waitFor(t, "the dead letter", func() bool { return db.Count(t, "pgflow_dlq", "message_id = $1", b) == 1 })
	d, err := c.ListDLQ(ctx, pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{Queue: "f"}})
	if err != nil {
		t.Fatal(err)
	}
	m := d.Messages[0]
	if m.Reason != pgflow.DLQReasonExpired || !strings.Contains(m.Error, "its retry could not start before") ||
		!strings.Contains(m.Error, "second failure") || m.RetryCount != 2 || m.Attempts != 2 || len(m.Errors) != 2 {
		t.Fatalf("dead letter %+v: want reason expired, both failures in the history", m)
	}

	// 4. A retry whose backoff would end after the expiry is not scheduled.
	cc, err := c.Publish(ctx, "f", 3, pgflow.WithExpiry(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := <-running; got != cc {
		t.Fatalf("delivered %d, want %d", got, cc)
	}
	verdict <- pgflow.RetryAfter(time.Hour, errors.New("try much later"))
	waitFor(t, "the dead letter", func() bool { return db.Count(t, "pgflow_dlq", "message_id = $1 AND reason = 'expired'", cc) == 1 })

	// 5. A permanent error is reason failed, expiry or not.
	e, err := c.Publish(ctx, "f", 4, pgflow.WithExpiry(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	<-running
	expireNow(e)
	verdict <- pgflow.Permanent(errors.New("bad payload"))
	waitFor(t, "the dead letter", func() bool { return db.Count(t, "pgflow_dlq", "message_id = $1", e) == 1 })
	if n := db.Count(t, "pgflow_dlq", "message_id = $1 AND reason = 'failed' AND error = 'permanent: bad payload'", e); n != 1 {
		var reason, msg string
		_ = db.Pool.QueryRow(ctx, `SELECT reason, error FROM `+db.Schema+`.pgflow_dlq WHERE message_id = $1`, e).Scan(&reason, &msg)
		t.Fatalf("permanent failure buried as %q / %q", reason, msg)
	}
}

// seedOldDLQ writes n dead letters of queue, dead-lettered age ago.
func seedOldDLQ(t *testing.T, db *pgflowtest.DB, queue string, n int, age time.Duration) {
	t.Helper()
	db.Exec(t, `INSERT INTO pgflow_queues (queue_name) VALUES ($1) ON CONFLICT DO NOTHING`, queue)
	db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, error, message_created_at, created_at)
		SELECT g, $1, '{}', 'boom', now() - $3::bigint * interval '1 microsecond', now() - $3::bigint * interval '1 microsecond'
		FROM generate_series(1, $2::integer) g`, queue, n, age.Microseconds())
}

func TestDLQRetentionDeletesOldDeadLettersInBatches(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c, db := opsClient(t, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}, Logger: quietLogger()})
	ctx := context.Background()
	seedOldDLQ(t, db, "r", 1200, 48*time.Hour)
	seedOldDLQ(t, db, "r", 7, time.Hour)
	seedOldDLQ(t, db, "keep", 30, 365*24*time.Hour)
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "r", DLQRetention: pgflow.Set(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Maintain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.DLQDeleted["r"] != 1200 || res.DLQDeleted["keep"] != 0 || res.Batches != 3 {
		t.Fatalf("maintenance %+v: want 1200 of r deleted in 3 batches (500, 500, 200), none of keep", res)
	}
	if n := db.Count(t, "pgflow_dlq", "queue_name = 'r'"); n != 7 {
		t.Fatalf("%d dead letters of r left, want the 7 recent ones", n)
	}
	if n := db.Count(t, "pgflow_dlq", "queue_name = 'keep'"); n != 30 {
		t.Fatalf("%d dead letters of keep left, want all 30 (no retention)", n)
	}
	var counts []int
	for _, e := range rec.of(pgflow.EventDLQDeleted) {
		if e.Queue != "r" {
			t.Fatalf("event for queue %q", e.Queue)
		}
		counts = append(counts, e.Count)
	}
	if len(counts) != 3 || counts[0] != 500 || counts[1] != 500 || counts[2] != 200 {
		t.Fatalf("dlq_deleted events %v, want 500, 500, 200", counts)
	}
	// Counted in the queue's stats.
	if err := c.FlushStats(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.QueueStats(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if st.Windows[0].DLQDeleted != 1200 || st.DLQRetention != 24*time.Hour || st.DeadLettered != 7 {
		t.Fatalf("stats %+v (windows %+v): want 1200 deleted in the last minute, retention 24h, 7 dead letters", st, st.Windows)
	}
}

func TestMaintenanceRunsOneClientAtATime(t *testing.T) {
	t.Parallel()
	c, db := opsClient(t, pgflow.Config{Logger: quietLogger()})
	other := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	seedOldDLQ(t, db, "r", 10, 48*time.Hour)
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "r", DLQRetention: pgflow.Set(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "r", 1, pgflow.WithExpiresAt(time.Now().Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	if pgflow.MaintenanceKey(c) != pgflow.MaintenanceKey(other) {
		t.Fatal("two clients of one schema have different maintenance keys")
	}
	// Another client's maintenance transaction holds the lock.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var got bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, pgflow.MaintenanceKey(other)).Scan(&got); err != nil || !got {
		t.Fatalf("take the lock: %v %v", got, err)
	}
	res, err := c.Maintain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Busy || len(res.Expired) != 0 || len(res.DLQDeleted) != 0 {
		t.Fatalf("maintenance while another holds the lock: %+v, want busy and nothing done", res)
	}
	if n := db.Count(t, "pgflow_dlq", "true"); n != 10 {
		t.Fatalf("%d dead letters, want 10 untouched", n)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	res, err = c.Maintain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Busy || res.Expired["r"] != 1 || res.DLQDeleted["r"] != 10 {
		t.Fatalf("maintenance after the lock was released: %+v", res)
	}
	// The lock went with the transaction: no session keeps it.
	var held int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND ((classid::bigint << 32) | objid::bigint) = $1`, pgflow.MaintenanceKey(c)).Scan(&held); err != nil || held != 0 {
		t.Fatalf("%d maintenance locks still held after maintenance (%v)", held, err)
	}
}

func TestStartedClientRunsMaintenanceUntilStop(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c, db := opsClient(t, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}, MaintenanceInterval: 10 * time.Millisecond})
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := c.Publish(ctx, "s", 1, pgflow.WithExpiresAt(time.Now().Add(-time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the expired event", func() bool { return rec.count(pgflow.EventExpired) == 1 })
	if n := db.Count(t, "pgflow_dlq", "message_id = $1 AND reason = 'expired'", id); n != 1 {
		t.Fatal("expired message not in the DLQ")
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Stopped: nothing moves any more.
	id2, err := c.Publish(ctx, "s", 2, pgflow.WithExpiresAt(time.Now().Add(-time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.FlushStats(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.QueueStats(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if st.Windows[0].Expired != 1 || st.Windows[0].DeadLettered != 1 {
		t.Fatalf("windows %+v: want 1 expired, counted as dead-lettered too", st.Windows[0])
	}
	if db.Count(t, "pgflow_messages", "id = $1", id2) != 1 {
		t.Fatal("a stopped client's maintenance moved a message")
	}
}

func TestRecoverReleasesLeasesWithoutCountingAnAttempt(t *testing.T) {
	t.Parallel()
	c, db := opsClient(t, pgflow.Config{Logger: quietLogger()})
	ctx := context.Background()
	var ids []int64
	for i := range 3 {
		id, err := c.Publish(ctx, "rq", i, pgflow.WithDedupKey(string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if got := claimIDs(t, db, "rq"); len(got) != 3 {
		t.Fatalf("claimed %v", got)
	}
	// A restore brought back a dead letter with a message id above the
	// messages' sequence (as if the sequence had not been restored).
	db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, error, message_created_at)
		VALUES (1000000, 'rq', '{}', 'x', now())`)
	released, err := c.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if released["rq"] != 3 {
		t.Fatalf("released %v, want 3 of rq", released)
	}
	if n := db.Count(t, "pgflow_messages",
		"status = 'pending' AND claim_token IS NULL AND locked_by IS NULL AND retry_count = 0 AND visible_at <= now()"); n != 3 {
		t.Fatalf("%d messages pending, visible and without a counted failure, want 3", n)
	}
	if got := claimIDs(t, db, "rq"); len(got) != 3 {
		t.Fatalf("claimed %v after recover, want all 3 at once", got)
	}
	id, err := c.Publish(ctx, "rq", 9)
	if err != nil {
		t.Fatal(err)
	}
	if id <= 1000000 {
		t.Fatalf("new message id %d, want above every id in use", id)
	}
	// A dedup key held before the restore still deduplicates.
	dup, err := c.Publish(ctx, "rq", 0, pgflow.WithDedupKey("a"))
	if err != nil || dup != ids[0] {
		t.Fatalf("dedup after recover: %d, %v; want %d", dup, err, ids[0])
	}
	again, err := c.Recover(ctx)
	if err != nil || again["rq"] != 3 {
		t.Fatalf("second recover: %v, %v", again, err)
	}
}

func TestQueueLifetimeSettings(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c, _ := opsClient(t, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	ctx := context.Background()
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "l"}); err != nil {
		t.Fatal(err)
	}
	q, err := c.Queue(ctx, "l")
	if err != nil || q.DLQRetention != 0 || q.Expiry != 0 {
		t.Fatalf("defaults %+v, %v: want both off", q, err)
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "l", DLQRetention: pgflow.Set(7 * 24 * time.Hour), Expiry: pgflow.Set(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Unset fields keep what is stored.
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "l", MaxRetries: pgflow.Set(1)}); err != nil {
		t.Fatal(err)
	}
	q, err = c.Queue(ctx, "l")
	if err != nil || q.DLQRetention != 7*24*time.Hour || q.Expiry != time.Hour {
		t.Fatalf("stored %+v, %v", q, err)
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "l", Expiry: pgflow.Set(time.Duration(0))}); err != nil {
		t.Fatal(err)
	}
	var changes []string
	for _, e := range rec.of(pgflow.EventQueueChanged) {
		for _, ch := range e.Changes {
			changes = append(changes, ch.String())
		}
	}
	want := []string{"dlq_retention off -> 168h0m0s", "expiry off -> 1h0m0s", "max_retries 3 -> 1", "expiry 1h0m0s -> off"}
	if strings.Join(changes, "|") != strings.Join(want, "|") {
		t.Fatalf("changes %q, want %q", changes, want)
	}
	for _, bad := range []pgflow.QueueConfig{
		{Name: "l", DLQRetention: pgflow.Set(-time.Second)},
		{Name: "l", Expiry: pgflow.Set(time.Microsecond)},
		{Name: "l", DLQRetention: pgflow.Set(11 * 365 * 24 * time.Hour)},
	} {
		if err := c.DeclareQueue(ctx, bad); !errors.Is(err, pgflow.ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", bad, err)
		}
	}
}
