package pgflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func TestPublishStoresMessage(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	id, err := c.Publish(ctx, "orders", map[string]any{"order": 7}, pgflow.WithHeader("trace", "abc"))
	if err != nil {
		t.Fatal(err)
	}
	var queue, status string
	var payload, headers map[string]any
	var prio, retries int
	err = db.Pool.QueryRow(ctx, `SELECT queue_name, status, payload, headers, priority, retry_count FROM `+db.Schema+`.pgflow_messages WHERE id = $1`, id).
		Scan(&queue, &status, &payload, &headers, &prio, &retries)
	if err != nil {
		t.Fatal(err)
	}
	if queue != "orders" || status != "pending" || payload["order"] != float64(7) || headers["trace"] != "abc" || prio != 0 || retries != 0 {
		t.Fatalf("stored row = %s %s %v %v %d %d", queue, status, payload, headers, prio, retries)
	}
	// The queue was created on first use with default settings.
	qi, err := c.Queue(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if qi.MaxRetries != 3 || qi.RetryDelay != time.Second || qi.LeaseTimeout != 30*time.Second {
		t.Fatalf("default queue settings = %+v", qi)
	}
}

func TestPublishTxCommitsWithCaller(t *testing.T) {
	t.Parallel()
	// Two connections: the test holds one in its transaction and counts
	// rows on the other.
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishTx(ctx, tx, "tx_queue", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("uncommitted message visible outside the transaction: %d rows", n)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("rollback left %d messages", n)
	}

	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := c.PublishTx(ctx, tx, "tx_queue", map[string]int{"n": 2})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_messages", "payload->>'n' = '2'"); n != 1 {
		t.Fatalf("committed publish: %d rows, want 1", n)
	}
}

func TestPublishBatch(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	// More than one statement's worth, to cross the internal chunking.
	const n = 12001
	msgs := make([]pgflow.Outgoing, n)
	for i := range msgs {
		msgs[i] = pgflow.Outgoing{Queue: "bulk", Payload: map[string]int{"seq": i}}
	}
	msgs[5].Options = []pgflow.PublishOption{pgflow.WithPriority(5)}
	ids, err := c.PublishBatch(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != n {
		t.Fatalf("%d ids for %d messages", len(ids), n)
	}
	// Ids come back in input order: check a sample against the stored payloads.
	for _, i := range []int{0, 1, 5, 4999, 5000, 10000, n - 1} {
		var seq, prio int
		if err := db.Pool.QueryRow(ctx, `SELECT (payload->>'seq')::int, priority FROM `+db.Schema+`.pgflow_messages WHERE id = $1`, ids[i]).Scan(&seq, &prio); err != nil {
			t.Fatal(err)
		}
		if seq != i {
			t.Fatalf("ids[%d] holds seq %d", i, seq)
		}
		if want := map[bool]int{true: 5, false: 0}[i == 5]; prio != want {
			t.Fatalf("ids[%d] priority %d, want %d", i, prio, want)
		}
	}
	if got := db.Count(t, "pgflow_messages", ""); got != n {
		t.Fatalf("%d rows stored, want %d", got, n)
	}
}

func TestPublishBatchIsAllOrNothing(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	_, err := c.PublishBatch(context.Background(), []pgflow.Outgoing{
		{Queue: "q", Payload: 1},
		{Queue: "q", Payload: json.RawMessage(`{bad`)},
	})
	if !errors.Is(err, pgflow.ErrInvalidPayload) || !strings.Contains(err.Error(), "message 1 of the batch") {
		t.Fatalf("err = %v", err)
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("%d rows written by a failed batch", n)
	}
}

func TestDedupKey(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	first, err := c.Publish(ctx, "dedup", map[string]int{"v": 1}, pgflow.WithDedupKey("order-42"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Publish(ctx, "dedup", map[string]int{"v": 2}, pgflow.WithDedupKey("order-42"))
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatalf("second publish returned %d, want the existing %d", second, first)
	}
	// Same key on another queue is another message.
	other, err := c.Publish(ctx, "dedup_other", 1, pgflow.WithDedupKey("order-42"))
	if err != nil || other == first {
		t.Fatalf("other queue: id %d err %v", other, err)
	}
	// Batches dedup against stored messages and within themselves.
	ids, err := c.PublishBatch(ctx, []pgflow.Outgoing{
		{Queue: "dedup", Payload: 3, Options: []pgflow.PublishOption{pgflow.WithDedupKey("order-42")}},
		{Queue: "dedup", Payload: 4, Options: []pgflow.PublishOption{pgflow.WithDedupKey("order-43")}},
		{Queue: "dedup", Payload: 5, Options: []pgflow.PublishOption{pgflow.WithDedupKey("order-43")}},
		{Queue: "dedup", Payload: 6},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != first || ids[1] != ids[2] || ids[3] == ids[1] {
		t.Fatalf("batch ids = %v (first = %d)", ids, first)
	}
	if n := db.Count(t, "pgflow_messages", "queue_name = 'dedup'"); n != 3 {
		t.Fatalf("%d messages on dedup, want 3", n)
	}
	if n := db.Count(t, "pgflow_messages", "payload = '1'::jsonb OR payload = '{\"v\": 1}'::jsonb"); n != 2 {
		t.Fatalf("the original payloads must be kept untouched; found %d", n)
	}

	// Once the message is done, the key is free again.
	done := make(chan struct{}, 10)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "dedup", Workers: 2, Handler: func(ctx context.Context, m *pgflow.Message) error {
		done <- struct{}{}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		<-done
	}
	waitFor(t, "acks", func() bool { return db.Count(t, "pgflow_messages", "queue_name = 'dedup'") == 0 })
	again, err := c.Publish(ctx, "dedup", 7, pgflow.WithDedupKey("order-42"))
	if err != nil || again == first {
		t.Fatalf("after ack: id %d (first %d) err %v", again, first, err)
	}
}

func TestDelayedPublish(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	id, err := c.Publish(ctx, "later", 1, pgflow.WithDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var secs float64
	if err := db.Pool.QueryRow(ctx, `SELECT extract(epoch FROM visible_at - now()) FROM `+db.Schema+`.pgflow_messages WHERE id = $1`, id).Scan(&secs); err != nil {
		t.Fatal(err)
	}
	if secs < 3590 || secs > 3601 {
		t.Fatalf("visible in %.0f s, want about 3600", secs)
	}
	at := time.Now().Add(2 * time.Hour)
	id2, err := c.Publish(ctx, "later", 2, pgflow.WithVisibleAt(at))
	if err != nil {
		t.Fatal(err)
	}
	var stored time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT visible_at FROM `+db.Schema+`.pgflow_messages WHERE id = $1`, id2).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if d := stored.Sub(at); d < -time.Millisecond || d > time.Millisecond {
		t.Fatalf("visible_at %v, want %v", stored, at)
	}
	// A consumer must not take them before their time.
	idle := idleSignal(c, "later", false)
	handled := make(chan int64, 3)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "later", Handler: func(ctx context.Context, m *pgflow.Message) error {
		handled <- m.ID
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Asleep: it has claimed all it could, and left both.
	await(t, "consumer idle", idle)
	if n := db.Count(t, "pgflow_messages", "status = 'pending' AND attempt = 0"); n != 2 {
		t.Fatalf("%d of 2 delayed messages claimed before their time", 2-n)
	}
	// Make them due now and publish a marker: the consumer handles all three.
	db.Exec(t, `UPDATE pgflow_messages SET visible_at = now() - interval '1 second' WHERE id = $1`, id)
	if _, err := c.Publish(ctx, "later", 3); err != nil {
		t.Fatal(err)
	}
	got := map[int64]bool{<-handled: true, <-handled: true}
	if !got[id] || got[id2] {
		t.Fatalf("handled %v; want the due message %d and the marker, not %d", got, id, id2)
	}
	// Stop returns once every claimed message was handled and its outcome
	// written: the message due in two hours was never claimed.
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if len(handled) != 0 {
		t.Fatalf("handled %d more", <-handled)
	}
	if n := db.Count(t, "pgflow_messages", "id = $1 AND status = 'pending' AND attempt = 0", id2); n != 1 {
		t.Fatal("the message delayed by two hours was claimed")
	}
}

func TestPriorityOrder(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "prio", Priority: pgflow.Set(1)}); err != nil {
		t.Fatal(err)
	}
	var msgs []pgflow.Outgoing
	for i := range 30 {
		var opts []pgflow.PublishOption
		switch i % 3 {
		case 0:
			opts = append(opts, pgflow.WithPriority(pgflow.PriorityHigh))
		case 1:
			opts = append(opts, pgflow.WithPriority(pgflow.PriorityLow))
		} // i%3 == 2: the queue's default, 1
		msgs = append(msgs, pgflow.Outgoing{Queue: "prio", Payload: i, Options: opts})
	}
	if _, err := c.PublishBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	var order []int
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "prio", Workers: 1, MaxBatch: 4, Handler: func(ctx context.Context, m *pgflow.Message) error {
		<-mu
		order = append(order, m.Priority)
		mu <- struct{}{}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all handled", func() bool {
		<-mu
		defer func() { mu <- struct{}{} }()
		return len(order) == 30
	})
	for i := 1; i < len(order); i++ {
		if order[i] > order[i-1] {
			t.Fatalf("priority order broken at %d: %v", i, order)
		}
	}
	if order[0] != pgflow.PriorityHigh || order[29] != pgflow.PriorityLow || order[15] != 1 {
		t.Fatalf("order = %v", order)
	}
}

// Per-message options in a batch: priority (or the queue's default), delay,
// absolute visible_at, and dedup key, each set on some rows and not others.
func TestPublishBatchPerMessageOptions(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "opts", Priority: pgflow.Set(2)}); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(2 * time.Hour).Truncate(time.Microsecond)
	for _, withDedup := range []bool{false, true} {
		dedup := func(k string) []pgflow.PublishOption {
			if withDedup {
				return []pgflow.PublishOption{pgflow.WithDedupKey(k)}
			}
			return nil
		}
		ids, err := c.PublishBatch(ctx, []pgflow.Outgoing{
			{Queue: "opts", Payload: 0, Options: dedup("a")},
			{Queue: "opts", Payload: 1, Options: append(dedup("b"), pgflow.WithPriority(-3), pgflow.WithDelay(time.Hour))},
			{Queue: "opts", Payload: 2, Options: append(dedup("c"), pgflow.WithVisibleAt(at))},
		})
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			prio    int
			waitS   float64
			visible time.Time
			key     *string
		}
		var got []row
		for _, id := range ids {
			var r row
			if err := db.Pool.QueryRow(ctx, `SELECT priority, extract(epoch FROM visible_at - now()), visible_at, dedup_key FROM `+db.Schema+`.pgflow_messages WHERE id = $1`, id).
				Scan(&r.prio, &r.waitS, &r.visible, &r.key); err != nil {
				t.Fatal(err)
			}
			got = append(got, r)
		}
		if got[0].prio != 2 || got[1].prio != -3 || got[2].prio != 2 {
			t.Fatalf("dedup=%v priorities %d %d %d, want 2 -3 2", withDedup, got[0].prio, got[1].prio, got[2].prio)
		}
		if got[0].waitS > 1 || got[1].waitS < 3590 || got[1].waitS > 3601 || !got[2].visible.Equal(at) {
			t.Fatalf("dedup=%v visibility %+v (want now, +1h, %v)", withDedup, got, at)
		}
		if (got[0].key != nil) != withDedup {
			t.Fatalf("dedup=%v stored key %v", withDedup, got[0].key)
		}
		db.Exec(t, `DELETE FROM pgflow_messages`)
	}
}

// A batch for one queue without options (sent as one array of payloads, in
// one statement and its implicit transaction) keeps the semantics of every
// other batch: ids in input order, the queue's default priority, empty
// headers, visible at once, and all or nothing when the server rejects a
// row.
func TestPublishBatchOneQueue(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "one", Priority: pgflow.Set(7)}); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	msgs := make([]pgflow.Outgoing, n)
	for i := range msgs {
		msgs[i] = pgflow.Outgoing{Queue: "one", Payload: map[string]int{"seq": i}}
	}
	ids, err := c.PublishBatch(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != n {
		t.Fatalf("%d ids for %d messages", len(ids), n)
	}
	rows := db.Count(t, "pgflow_messages", "queue_name = 'one' AND priority = 7 AND headers = '{}' AND visible_at <= now() AND status = 'pending'")
	if rows != n {
		t.Fatalf("%d of %d rows with the queue's priority, empty headers, visible, pending", rows, n)
	}
	for i, id := range ids {
		var seq int
		if err := db.Pool.QueryRow(ctx, `SELECT (payload->>'seq')::int FROM `+db.Schema+`.pgflow_messages WHERE id = $1`, id).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		if seq != i {
			t.Fatalf("ids[%d] holds seq %d", i, seq)
		}
	}
	// Valid JSON that jsonb refuses (a NUL character): the server fails the
	// statement, and none of the batch is stored.
	bad := []pgflow.Outgoing{{Queue: "one", Payload: 1}, {Queue: "one", Payload: json.RawMessage(`{"a":"\u0000"}`)}, {Queue: "one", Payload: 3}}
	if _, err := c.PublishBatch(ctx, bad); err == nil {
		t.Fatal("a batch with a payload jsonb refuses was accepted")
	}
	if got := db.Count(t, "pgflow_messages", ""); got != n {
		t.Fatalf("%d rows after the failed batch, want %d", got, n)
	}
}
