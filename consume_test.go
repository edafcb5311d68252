package pgflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

type attemptRecord struct {
	Attempt int    `json:"attempt"`
	Error   string `json:"error"`
}

type dlqRow struct {
	messageID            int64
	queue, lastError     string
	payload, headers     map[string]any
	errors               []attemptRecord
	retryCount, attempts int
}

func readDLQ(t *testing.T, db *pgflowtest.DB) []dlqRow {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT message_id, queue_name, error, payload, headers, errors, retry_count, attempts FROM `+db.Schema+`.pgflow_dlq ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dlqRow, error) {
		var d dlqRow
		var errs []byte
		err := r.Scan(&d.messageID, &d.queue, &d.lastError, &d.payload, &d.headers, &errs, &d.retryCount, &d.attempts)
		if err == nil {
			err = json.Unmarshal(errs, &d.errors)
		}
		return d, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRetryScheduleFollowsBackoff(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	// Long delays: each failure leaves the message waiting, and we read the
	// schedule from visible_at instead of sleeping through it.
	q := &pgflow.QueueConfig{Name: "sched", MaxRetries: pgflow.Set(5), RetryDelay: pgflow.Set(10 * time.Second), MaxRetryDelay: pgflow.Set(25 * time.Second)}
	calls := make(chan int, 10)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "sched", Declare: q, Handler: func(ctx context.Context, m *pgflow.Message) error {
		calls <- m.RetryCount
		return errors.New("downstream unavailable")
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := c.Publish(ctx, "sched", 1)
	if err != nil {
		t.Fatal(err)
	}
	// Exact backoff for failure n (1-based): 10 s, 20 s, 25 s (capped), 25 s;
	// with jitter the delay lies in [d/2, d].
	for n, full := range []float64{10, 20, 25, 25} {
		if got := <-calls; got != n {
			t.Fatalf("delivery %d saw retry_count %d", n+1, got)
		}
		var retries int
		var wait float64
		waitFor(t, "failure recorded", func() bool {
			err := db.Pool.QueryRow(ctx, `SELECT retry_count, extract(epoch FROM visible_at - now()) FROM `+db.Schema+`.pgflow_messages WHERE id = $1`, id).Scan(&retries, &wait)
			return err == nil && retries == n+1
		})
		if wait < full/2-1 || wait > full+0.1 {
			t.Fatalf("after failure %d the message waits %.2f s, want within [%.1f, %.1f]", n+1, wait, full/2, full)
		}
		// Fast-forward: make it due now.
		db.Exec(t, `UPDATE pgflow_messages SET visible_at = now() WHERE id = $1`, id)
		if _, err := c.Publish(ctx, "sched_nudge", 0); err != nil { // any publish; the poll also finds it
			t.Fatal(err)
		}
	}
}

func TestDeadLetterAfterMaxRetries(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	rec := newRecorder()
	c := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	ctx := context.Background()
	var deliveries atomic.Int32
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "flaky", Declare: fastQueue("flaky", 2), Handler: func(ctx context.Context, m *pgflow.Message) error {
		deliveries.Add(1)
		return fmt.Errorf("boom on attempt %d", m.Attempt)
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := c.Publish(ctx, "flaky", map[string]string{"k": "v"}, pgflow.WithHeader("h", "1"), pgflow.WithPriority(3), pgflow.WithDedupKey("d1"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letter", func() bool { return db.Count(t, "pgflow_dlq", "") == 1 })
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("message still in pgflow_messages after dead-lettering (%d rows)", n)
	}
	if d := deliveries.Load(); d != 3 {
		t.Fatalf("%d deliveries, want 3 (1 + max_retries 2)", d)
	}
	d := readDLQ(t, db)[0]
	if d.messageID != id || d.queue != "flaky" || d.payload["k"] != "v" || d.headers["h"] != "1" || d.attempts != 3 || d.retryCount != 3 {
		t.Fatalf("dlq row = %+v", d)
	}
	if d.lastError != "boom on attempt 3" || len(d.errors) != 3 {
		t.Fatalf("dlq errors = %q %+v", d.lastError, d.errors)
	}
	for i, e := range d.errors {
		if e.Attempt != i+1 || e.Error != fmt.Sprintf("boom on attempt %d", i+1) {
			t.Fatalf("error history[%d] = %+v", i, e)
		}
	}
	var prio int
	var dedup string
	if err := db.Pool.QueryRow(ctx, `SELECT priority, dedup_key FROM `+db.Schema+`.pgflow_dlq`).Scan(&prio, &dedup); err != nil || prio != 3 || dedup != "d1" {
		t.Fatalf("priority %d dedup %q err %v", prio, dedup, err)
	}
	waitFor(t, "events", func() bool { return rec.count(pgflow.EventDeadLettered) == 1 })
	if n := rec.count(pgflow.EventRetried); n != 2 {
		t.Fatalf("%d retried events, want 2", n)
	}
}

func TestPermanentErrorSkipsRetries(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	var deliveries atomic.Int32
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "strict", Declare: fastQueue("strict", 5), Handler: func(ctx context.Context, m *pgflow.Message) error {
		deliveries.Add(1)
		return pgflow.Permanent(errors.New("schema violation: missing field proposal_id"))
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "strict", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letter", func() bool { return db.Count(t, "pgflow_dlq", "") == 1 })
	d := readDLQ(t, db)[0]
	if deliveries.Load() != 1 || d.attempts != 1 || !strings.Contains(d.lastError, "missing field proposal_id") {
		t.Fatalf("deliveries %d, dlq %+v", deliveries.Load(), d)
	}
}

func TestPanicIsAnErrorWithStack(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	var calls atomic.Int32
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "panicky", Declare: fastQueue("panicky", 0), Handler: func(ctx context.Context, m *pgflow.Message) error {
		if calls.Add(1) == 1 {
			panic("index out of range in resize")
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "panicky", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "panicky", map[string]int{"n": 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letter", func() bool { return db.Count(t, "pgflow_dlq", "") == 1 })
	waitFor(t, "the other message", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
	d := readDLQ(t, db)[0]
	if !strings.Contains(d.lastError, "handler panicked: index out of range in resize") || !strings.Contains(d.lastError, "consume_test.go") {
		t.Fatalf("stored error lacks the panic and its stack: %q", d.lastError)
	}
}

func TestRetryAfterOverridesBackoff(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	seen := make(chan struct{}, 1)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "later", Handler: func(ctx context.Context, m *pgflow.Message) error {
		seen <- struct{}{}
		return pgflow.RetryAfter(90*time.Minute, errors.New("rate limited"))
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, _ := c.Publish(ctx, "later", 1)
	<-seen
	var wait float64
	waitFor(t, "retry recorded", func() bool {
		err := db.Pool.QueryRow(ctx, `SELECT extract(epoch FROM visible_at - now()) FROM `+db.Schema+`.pgflow_messages WHERE id = $1 AND retry_count = 1`, id).Scan(&wait)
		return err == nil
	})
	if wait < 5390 || wait > 5401 {
		t.Fatalf("retry in %.0f s, want 5400", wait)
	}
}

func TestAckTxCommitsWithHandlerWrites(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	db.Exec(t, `CREATE TABLE ledger (message_id bigint PRIMARY KEY, amount int)`)
	var calls atomic.Int32
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "pay", Declare: fastQueue("pay", 3), Handler: func(ctx context.Context, m *pgflow.Message) error {
		n := calls.Add(1)
		return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO `+db.Schema+`.ledger VALUES ($1, 100)`, m.ID); err != nil {
				return err
			}
			if err := c.AckTx(ctx, tx, m); err != nil {
				return err
			}
			if n == 1 {
				return errors.New("crash before commit") // rolls back both
			}
			return nil
		})
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "pay", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "message done", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
	if n := db.Count(t, "ledger", ""); n != 1 || calls.Load() != 2 {
		t.Fatalf("ledger rows %d after %d calls; want exactly one write", n, calls.Load())
	}
	// A stale delivery cannot ack.
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		return c.AckTx(ctx, tx, &pgflow.Message{ID: 424242, Attempt: 1})
	})
	if !errors.Is(err, pgflow.ErrLeaseLost) {
		t.Fatalf("AckTx of an unknown delivery: %v", err)
	}
}

func TestPausedQueueIsNotClaimed(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{PollInterval: 20 * time.Millisecond})
	ctx := context.Background()
	// Each idle is the end of a claim that found nothing to take.
	var idles atomic.Int64
	pgflow.SetTestHooks(c, func(q string, _ bool) {
		if q == "p" {
			idles.Add(1)
		}
	}, nil)
	handled := make(chan struct{}, 1)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "p", Handler: func(ctx context.Context, m *pgflow.Message) error {
		handled <- struct{}{}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `UPDATE pgflow_queues SET paused = true WHERE queue_name = 'p'`)
	if _, err := c.Publish(ctx, "p", 1); err != nil {
		t.Fatal(err)
	}
	// Two more idles: at least one whole claim began after the publish
	// committed and left the message where it was.
	after := idles.Load() + 2
	waitFor(t, "claims after the publish", func() bool { return idles.Load() >= after })
	select {
	case <-handled:
		t.Fatal("a paused queue was consumed")
	default:
	}
	if n := db.Count(t, "pgflow_messages", "status = 'pending' AND attempt = 0"); n != 1 {
		t.Fatalf("%d pending unclaimed messages in the paused queue, want 1", n)
	}
	db.Exec(t, `UPDATE pgflow_queues SET paused = false WHERE queue_name = 'p'`)
	select {
	case <-handled:
	case <-time.After(30 * time.Second):
		t.Fatal("not consumed after resume")
	}
}

// TestConsumersShareWorkExactlyOnce drains 20,000 messages with three
// clients (separate pools, as separate processes would have) and checks every
// message was handled exactly once.
func TestConsumersShareWorkExactlyOnce(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	const n = 20000
	pub := newClient(t, db, pgflow.Config{})
	msgs := make([]pgflow.Outgoing, n)
	for i := range msgs {
		msgs[i] = pgflow.Outgoing{Queue: "drain", Payload: map[string]int{"seq": i}}
	}
	if _, err := pub.PublishBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := make(map[int]int, n)
	var total atomic.Int64
	handler := func(ctx context.Context, m *pgflow.Message) error {
		var p struct{ Seq int }
		if err := m.Decode(&p); err != nil {
			return err
		}
		mu.Lock()
		seen[p.Seq]++
		mu.Unlock()
		total.Add(1)
		return nil
	}
	for i := range 3 {
		other := pgflowtest.NewPoolOn(t, db, 6)
		c, err := pgflow.New(other, pgflow.Config{Schema: db.Schema, Logger: quietLogger(), ID: fmt.Sprintf("consumer-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Consume(pgflow.ConsumerConfig{Queue: "drain", Workers: 8, Handler: handler}); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
	}
	waitFor(t, "drain", func() bool { return total.Load() >= n && db.Count(t, "pgflow_messages", "") == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Fatalf("%d distinct messages handled, want %d", len(seen), n)
	}
	for seq, k := range seen {
		if k != 1 {
			t.Fatalf("message %d handled %d times", seq, k)
		}
	}
	if total.Load() != n {
		t.Fatalf("%d deliveries for %d messages", total.Load(), n)
	}
}
