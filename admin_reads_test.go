package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func consoleReadsClient(t *testing.T) (*pgflow.Client, *pgflowtest.DB) {
	t.Helper()
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 4})
	c, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema, DisableStatsCounters: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c, db
}

func TestMessageByIDStates(t *testing.T) {
	c, db := consoleReadsClient(t)
	ctx := context.Background()
	ready, err := c.Publish(ctx, "orders", map[string]int{"n": 1}, pgflow.WithHeader("traceparent", "00-abc-def-01"), pgflow.WithPriority(3))
	if err != nil {
		t.Fatal(err)
	}
	delayed, err := c.Publish(ctx, "orders", map[string]int{"n": 2}, pgflow.WithDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// A leased message with one failure behind it, written as a consumer would.
	db.Exec(t, `INSERT INTO pgflow_messages (id, queue_name, payload, status, attempt, retry_count, locked_by, locked_until, errors)
		VALUES (9001, 'orders', '{"n":3}', 'processing', 2, 1, 'worker-1', now() + interval '30 seconds',
		        '[{"attempt":1,"error":"timeout talking to the bank","at":"2026-01-02T03:04:05Z"}]')`)

	m, err := c.Message(ctx, ready)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != "ready" || m.Queue != "orders" || m.Priority != 3 || m.Headers["traceparent"] != "00-abc-def-01" || string(m.Payload) != `{"n": 1}` {
		t.Fatalf("ready message read back as %+v", m)
	}
	if m, err = c.Message(ctx, delayed); err != nil || m.State != "delayed" {
		t.Fatalf("delayed message: %+v, %v", m, err)
	}
	m, err = c.Message(ctx, 9001)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != "in_flight" || m.LockedBy != "worker-1" || m.LeaseUntil.Before(m.At) || m.Attempt != 2 ||
		len(m.Errors) != 1 || m.Errors[0].Error != "timeout talking to the bank" {
		t.Fatalf("in-flight message read back as %+v", m)
	}
	if _, err := c.Message(ctx, 424242); !errors.Is(err, pgflow.ErrMessageNotFound) {
		t.Fatalf("unknown id: %v, want ErrMessageNotFound", err)
	}
}

func TestQueueStatsSeriesBinsAndFills(t *testing.T) {
	c, db := consoleReadsClient(t)
	ctx := context.Background()
	db.Exec(t, `INSERT INTO pgflow_queues (queue_name) VALUES ('a'), ('b')`)
	// Two minutes ago and now for a; 3 hours ago (outside 1 h) for a; now for b.
	db.Exec(t, `INSERT INTO pgflow_queue_stats (queue_name, bucket, handled, failed, dead_lettered) VALUES
		('a', date_trunc('minute', now()) - interval '2 minutes', 5, 1, 0),
		('a', date_trunc('minute', now()), 7, 2, 1),
		('a', date_trunc('minute', now()) - interval '3 hours', 100, 100, 100),
		('b', date_trunc('minute', now()), 11, 0, 0)`)

	s, err := c.QueueStatsSeries(ctx, "a", time.Hour, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	d := s.Dense("a")
	if len(d) != 60 {
		t.Fatalf("%d bins, want 60", len(d))
	}
	if got := d[59]; got.Handled != 7 || got.Failed != 2 || got.DeadLettered != 1 {
		t.Fatalf("current bin %+v", got)
	}
	if got := d[57]; got.Handled != 5 || got.Failed != 1 {
		t.Fatalf("bin of two minutes ago %+v", got)
	}
	var total int64
	for _, p := range d {
		total += p.Handled
	}
	if total != 12 {
		t.Fatalf("handled over the hour %d, want 12 (the 3 h old bucket is outside)", total)
	}

	all, err := c.QueueStatsSeries(ctx, "", 24*time.Hour, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var a, b int64
	for _, p := range all.Dense("a") {
		a += p.Handled
	}
	for _, p := range all.Dense("b") {
		b += p.Handled
	}
	if len(all.Dense("a")) != 96 || a != 112 || b != 11 {
		t.Fatalf("24 h series: %d bins, a=%d b=%d", len(all.Dense("a")), a, b)
	}

	for _, bad := range []struct{ w, s time.Duration }{{time.Hour, 30 * time.Second}, {48 * time.Hour, time.Hour}, {time.Minute, time.Hour}} {
		if _, err := c.QueueStatsSeries(ctx, "a", bad.w, bad.s); !errors.Is(err, pgflow.ErrInvalidOption) {
			t.Errorf("window %v step %v: %v, want ErrInvalidOption", bad.w, bad.s, err)
		}
	}
	if _, err := c.QueueStatsSeries(ctx, "bad name!", time.Hour, time.Minute); !errors.Is(err, pgflow.ErrInvalidQueueName) {
		t.Errorf("bad queue name: %v", err)
	}
}

// QueueStats reads the live messages' counts and the DLQ's on two
// connections and joins them per queue.
func TestQueueStatsJoinsMessageAndDeadLetterCounts(t *testing.T) {
	c, db := consoleReadsClient(t)
	ctx := context.Background()
	db.Exec(t, `INSERT INTO pgflow_queues (queue_name, paused) VALUES ('a', false), ('b', true), ('empty', false)`)
	db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload, visible_at, retry_count) VALUES
		('a', '{}', now() - interval '5 seconds', 0), ('a', '{}', now() + interval '1 hour', 0),
		('a', '{}', now() + interval '1 hour', 2), ('b', '{}', now(), 0)`)
	db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload, status, attempt, locked_by, locked_until)
		VALUES ('a', '{}', 'processing', 1, 'w1', now() + interval '10 seconds')`)
	db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, error, message_created_at, created_at) VALUES
		(1, 'a', '{}', 'x', now(), now() - interval '1 minute'), (2, 'a', '{}', 'y', now(), now()), (3, 'b', '{}', 'z', now(), now())`)
	db.Exec(t, `INSERT INTO pgflow_queue_stats (queue_name, bucket, handled, failed, dead_lettered)
		VALUES ('a', date_trunc('minute', now()), 4, 1, 1)`)

	all, err := c.AllQueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type figures struct {
		paused                                           bool
		pending, delayed, retrying, inFlight, dead, hour int64
		consumers                                        string
	}
	got := map[string]figures{}
	for _, s := range all {
		got[s.Queue] = figures{s.Paused, int64(s.Pending), int64(s.Delayed), int64(s.Retrying), int64(s.InFlight),
			s.DeadLettered, s.Windows[len(s.Windows)-1].Handled, fmt.Sprint(s.Consumers)}
	}
	want := map[string]figures{
		"a":     {false, 1, 1, 1, 1, 2, 4, "[w1]"},
		"b":     {true, 1, 0, 0, 0, 1, 0, "[]"},
		"empty": {false, 0, 0, 0, 0, 0, 0, "[]"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("AllQueueStats:\n got %+v\nwant %+v", got, want)
	}
	one, err := c.QueueStats(ctx, "a")
	if err != nil || one.DeadLettered != 2 || one.Pending != 1 || one.Retrying != 1 || one.Delayed != 1 ||
		one.LastDeadLetteredAt.IsZero() || one.OldestReadyAge < 4*time.Second {
		t.Fatalf("one queue: %+v %v", one, err)
	}
	counts, err := c.DeadLetterCounts(ctx, "")
	if err != nil || len(counts) != 2 || counts["a"].Count != 2 || counts["b"].Count != 1 || counts["a"].Newest.IsZero() {
		t.Fatalf("dead-letter counts: %+v %v", counts, err)
	}
	if counts, err := c.DeadLetterCounts(ctx, "b"); err != nil || len(counts) != 1 || counts["b"].Count != 1 {
		t.Fatalf("dead-letter count of b: %+v %v", counts, err)
	}
	if _, err := c.QueueStats(ctx, "missing"); !errors.Is(err, pgflow.ErrQueueNotFound) {
		t.Fatalf("missing queue: %v", err)
	}
	if _, err := c.QueueStats(ctx, "bad name"); !errors.Is(err, pgflow.ErrInvalidQueueName) {
		t.Fatalf("bad name: %v", err)
	}
}
