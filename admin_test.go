package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// opsClient returns a client on a fresh schema, closed when the test ends.
func opsClient(t *testing.T, cfg ...pgflow.Config) (*pgflow.Client, *pgflowtest.DB) {
	t.Helper()
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 6})
	var c0 pgflow.Config
	if len(cfg) > 0 {
		c0 = cfg[0]
	}
	c0.Schema = db.Schema
	c, err := pgflow.New(db.Pool, c0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c, db
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestQueueStats(t *testing.T) {
	c, db := opsClient(t)
	ctx := context.Background()
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "orders", MaxRetries: pgflow.Set(5)}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "empty"}); err != nil {
		t.Fatal(err)
	}
	pub := must[int64](t)
	ready1 := pub(c.Publish(ctx, "orders", map[string]int{"n": 1}))
	pub(c.Publish(ctx, "orders", map[string]int{"n": 2}))
	pub(c.Publish(ctx, "orders", map[string]int{"n": 3}, pgflow.WithDelay(time.Hour)))
	retrying := pub(c.Publish(ctx, "orders", map[string]int{"n": 4}))
	inflight := pub(c.Publish(ctx, "orders", map[string]int{"n": 5}))
	inflight2 := pub(c.Publish(ctx, "orders", map[string]int{"n": 6}))
	db.Exec(t, `UPDATE pgflow_messages SET visible_at = now() - interval '10 minutes' WHERE id = $1`, ready1)
	db.Exec(t, `UPDATE pgflow_messages SET retry_count = 1, visible_at = now() + interval '1 minute' WHERE id = $1`, retrying)
	db.Exec(t, `UPDATE pgflow_messages SET status = 'processing', attempt = 1, locked_by = 'worker-a', locked_until = now() + interval '1 minute' WHERE id = $1`, inflight)
	db.Exec(t, `UPDATE pgflow_messages SET status = 'processing', attempt = 1, locked_by = 'worker-b', locked_until = now() + interval '1 minute' WHERE id = $1`, inflight2)
	db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, error, message_created_at) VALUES (100, 'orders', '{}', 'boom', now()), (101, 'orders', '{}', 'boom', now())`)
	db.Exec(t, `INSERT INTO pgflow_queue_stats (queue_name, bucket, handled, failed, dead_lettered) VALUES
		('orders', date_trunc('minute', now()), 7, 2, 1),
		('orders', date_trunc('minute', now()) - interval '3 minutes', 10, 0, 0),
		('orders', date_trunc('minute', now()) - interval '30 minutes', 100, 5, 5),
		('orders', date_trunc('minute', now()) - interval '2 hours', 1000, 50, 50)`)

	s, err := c.QueueStats(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if s.Pending != 2 || s.Delayed != 1 || s.Retrying != 1 || s.InFlight != 2 || s.DeadLettered != 2 || s.MaxRetries != 5 {
		t.Fatalf("counts: %+v", s)
	}
	if s.OldestReadyAge < 10*time.Minute || s.OldestReadyAge > 11*time.Minute {
		t.Fatalf("oldest ready age %v, want about 10m", s.OldestReadyAge)
	}
	slices.Sort(s.Consumers)
	if !slices.Equal(s.Consumers, []string{"worker-a", "worker-b"}) {
		t.Fatalf("consumers %v", s.Consumers)
	}
	want := []pgflow.StatsWindow{
		{Window: time.Minute, Handled: 7, Failed: 2, DeadLettered: 1},
		{Window: 5 * time.Minute, Handled: 17, Failed: 2, DeadLettered: 1},
		{Window: time.Hour, Handled: 117, Failed: 7, DeadLettered: 6},
	}
	if !slices.Equal(s.Windows, want) {
		t.Fatalf("windows %+v, want %+v", s.Windows, want)
	}
	if s.LastDeadLetteredAt.IsZero() || s.At.IsZero() {
		t.Fatalf("times: %+v", s)
	}

	all, err := c.AllQueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Queue != "empty" || all[1].Queue != "orders" || all[0].Pending != 0 || all[0].Consumers == nil {
		t.Fatalf("all stats: %+v", all)
	}
	if _, err := c.QueueStats(ctx, "nope"); !errors.Is(err, pgflow.ErrQueueNotFound) {
		t.Fatalf("unknown queue: %v", err)
	}
	fl, err := c.ListInFlight(ctx, "orders", 0)
	if err != nil || len(fl) != 2 || fl[0].Attempt != 1 || fl[0].LeaseLeft <= 0 || fl[0].LockedBy == "" {
		t.Fatalf("in flight: %+v %v", fl, err)
	}
	db.Exec(t, `UPDATE pgflow_messages SET locked_until = now() - interval '5 seconds' WHERE id = $1`, inflight2)
	fl, err = c.ListInFlight(ctx, "orders", 1)
	if err != nil || len(fl) != 1 || fl[0].ID != inflight2 || fl[0].LeaseLeft >= 0 || fl[0].LockedBy != "worker-b" {
		t.Fatalf("expired lease first: %+v %v", fl, err)
	}
	qs, err := c.ListQueues(ctx)
	if err != nil || len(qs) != 2 || qs[1].Name != "orders" || qs[1].MaxRetries != 5 {
		t.Fatalf("list queues: %+v %v", qs, err)
	}
}

func TestListPendingPagesInClaimOrder(t *testing.T) {
	c, db := opsClient(t)
	ctx := context.Background()
	var batch []pgflow.Outgoing
	prios := []int{0, 10, -10, 0, 10, 5}
	for i := range 30 {
		batch = append(batch, pgflow.Outgoing{Queue: "q", Payload: map[string]int{"i": i},
			Options: []pgflow.PublishOption{pgflow.WithPriority(prios[i%len(prios)])}})
	}
	ids, err := c.PublishBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	// Same visible_at for all but a few, so the id tiebreak matters too.
	db.Exec(t, `UPDATE pgflow_messages SET visible_at = '2026-01-01T00:00:00Z'`)
	db.Exec(t, `UPDATE pgflow_messages SET visible_at = '2025-12-31T00:00:00Z' WHERE id = ANY($1)`, []int64{ids[3], ids[7]})
	// An in-flight message is not pending.
	db.Exec(t, `UPDATE pgflow_messages SET status = 'processing', locked_by = 'x', locked_until = now() + interval '1 minute' WHERE id = $1`, ids[29])
	var want []int64
	rows, err := db.Pool.Query(ctx, fmt.Sprintf(`SELECT id FROM %q.pgflow_messages WHERE status = 'pending' ORDER BY priority DESC, visible_at, id`, db.Schema))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		want = append(want, id)
	}
	var got []int64
	cursor := ""
	pages := 0
	for {
		page, err := c.ListPending(ctx, "q", pgflow.PendingFilter{Limit: 4, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, m := range page.Messages {
			got = append(got, m.ID)
			if m.State != "ready" || m.Queue != "q" {
				t.Fatalf("message %+v", m)
			}
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if !slices.Equal(got, want) || len(got) != 29 || pages != 8 {
		t.Fatalf("pages=%d\n got %v\nwant %v", pages, got, want)
	}

	// Filters.
	ten := 10
	page, err := c.ListPending(ctx, "q", pgflow.PendingFilter{Priority: &ten})
	if err != nil || len(page.Messages) != 10 {
		t.Fatalf("priority filter: %d %v", len(page.Messages), err)
	}
	db.Exec(t, `UPDATE pgflow_messages SET retry_count = 1, visible_at = now() + interval '1 hour',
		errors = '[{"attempt":1,"error":"connection REFUSED by 10%_host","at":"2026-01-01T00:00:00Z"}]' WHERE id = $1`, ids[0])
	page, err = c.ListPending(ctx, "q", pgflow.PendingFilter{ErrorContains: "refused by 10%_"})
	if err != nil || len(page.Messages) != 1 || page.Messages[0].ID != ids[0] || page.Messages[0].State != "retrying" ||
		len(page.Messages[0].Errors) != 1 || page.Messages[0].Errors[0].Attempt != 1 {
		t.Fatalf("error filter: %+v %v", page.Messages, err)
	}
	if page, _ := c.ListPending(ctx, "q", pgflow.PendingFilter{ErrorContains: "refused by 10%x"}); len(page.Messages) != 0 {
		t.Fatalf("LIKE wildcards must be literal: %+v", page.Messages)
	}
	db.Exec(t, `UPDATE pgflow_messages SET created_at = '2020-01-01T00:00:00Z' WHERE id = ANY($1)`, []int64{ids[1], ids[2]})
	page, err = c.ListPending(ctx, "q", pgflow.PendingFilter{CreatedBefore: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil || len(page.Messages) != 2 {
		t.Fatalf("created filter: %+v %v", page.Messages, err)
	}
	page, err = c.ListPending(ctx, "q", pgflow.PendingFilter{VisibleBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil || len(page.Messages) != 2 || page.Messages[0].ID != ids[7] {
		t.Fatalf("visible filter: %+v %v", page.Messages, err)
	}
	if _, err := c.ListPending(ctx, "q", pgflow.PendingFilter{Cursor: "garbage"}); !errors.Is(err, pgflow.ErrInvalidOption) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, err := c.ListPending(ctx, "q", pgflow.PendingFilter{Limit: 5000}); !errors.Is(err, pgflow.ErrInvalidOption) {
		t.Fatalf("bad limit: %v", err)
	}
}

func TestPauseResume(t *testing.T) {
	c, _ := opsClient(t)
	ctx := context.Background()
	got := make(chan int64, 10)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "jobs", Handler: func(_ context.Context, m *pgflow.Message) error {
		got <- m.ID
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "jobs"}); err != nil {
		t.Fatal(err)
	}
	if err := c.PauseQueue(ctx, "jobs"); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.QueueStats(ctx, "jobs"); !s.Paused {
		t.Fatal("not paused")
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := c.Publish(ctx, "jobs", "x")
	if err != nil {
		t.Fatal(err)
	}
	// The claim refuses a paused queue: the message stays ready however
	// often the consumer looks (it was woken by the publish).
	pgflow.ClaimPausedForTest(t, c, "jobs")
	if s, _ := c.QueueStats(ctx, "jobs"); s.Pending != 1 || s.InFlight != 0 {
		t.Fatalf("paused queue was consumed: %+v", s)
	}
	if err := c.ResumeQueue(ctx, "jobs"); err != nil {
		t.Fatal(err)
	}
	select {
	case gid := <-got:
		if gid != id {
			t.Fatalf("got %d want %d", gid, id)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("not delivered after resume")
	}
	if err := c.PauseQueue(ctx, "missing"); !errors.Is(err, pgflow.ErrQueueNotFound) {
		t.Fatalf("pause missing: %v", err)
	}
	if err := c.ResumeQueue(ctx, "bad name!"); !errors.Is(err, pgflow.ErrInvalidQueueName) {
		t.Fatalf("resume bad name: %v", err)
	}
}

func TestStatsCountersFromEvents(t *testing.T) {
	c, _ := opsClient(t)
	ctx := context.Background()
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "w", MaxRetries: pgflow.Set(1), RetryDelay: pgflow.Set(time.Millisecond), MaxRetryDelay: pgflow.Set(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 100)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "w", Workers: 2, Handler: func(_ context.Context, m *pgflow.Message) error {
		defer func() { done <- struct{}{} }()
		var p struct{ Fail bool }
		_ = m.Decode(&p)
		if p.Fail {
			return errors.New("nope")
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := c.Publish(ctx, "w", map[string]bool{"Fail": i < 2}); err != nil {
			t.Fatal(err)
		}
	}
	// 3 successes + 2 messages × 2 deliveries each.
	for range 7 {
		<-done
	}
	waitFor(t, "two dead letters", func() bool {
		s, _ := c.QueueStats(ctx, "w")
		return s.DeadLettered == 2
	})
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.FlushStats(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := c.QueueStats(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range s.Windows {
		if w.Handled != 3 || w.Failed != 4 || w.DeadLettered != 2 {
			t.Fatalf("window %v: %+v", w.Window, w)
		}
	}
}
