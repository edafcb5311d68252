package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// seedDLQ writes dead-letter rows directly: (queue, error, priority,
// dead-lettered at) per row, ids 1…n, message ids 1001…
func seedDLQ(t *testing.T, db *pgflowtest.DB, rows [][4]string) {
	t.Helper()
	for i, r := range rows {
		db.Exec(t, `INSERT INTO pgflow_queues (queue_name) VALUES ($1) ON CONFLICT DO NOTHING`, r[0])
		db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, headers, priority, error, errors, retry_count, attempts, message_created_at, created_at)
			VALUES ($1, $2, $3, '{"trace":"t1"}', $4::smallint, $5,
			        jsonb_build_array(jsonb_build_object('attempt', 1, 'error', 'first try failed', 'at', '2026-01-01T00:00:00Z'),
			                          jsonb_build_object('attempt', 2, 'error', $5::text, 'at', '2026-01-01T00:00:01Z')),
			        2, 2, '2025-12-31T23:59:00Z', $6::timestamptz)`,
			int64(1001+i), r[0], fmt.Sprintf(`{"n":%d}`, i+1), r[2], r[1], r[3])
	}
}

func dlqIDs(msgs []pgflow.DLQMessage) []int64 {
	out := []int64{}
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

func TestDLQListShowFilters(t *testing.T) {
	c, db := opsClient(t)
	ctx := context.Background()
	seedDLQ(t, db, [][4]string{
		{"a", "timeout talking to db", "0", "2026-01-01T10:00:00Z"},
		{"a", "invalid payload", "10", "2026-01-01T11:00:00Z"},
		{"b", "Timeout again", "0", "2026-01-01T12:00:00Z"},
		{"b", "50% done_x", "0", "2026-01-01T13:00:00Z"},
		{"a", "timeout", "10", "2026-01-01T14:00:00Z"},
	})
	list := func(o pgflow.DLQListOptions) []int64 {
		t.Helper()
		p, err := c.ListDLQ(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return dlqIDs(p.Messages)
	}
	ten := 10
	for _, tc := range []struct {
		name string
		o    pgflow.DLQListOptions
		want []int64
	}{
		{"all", pgflow.DLQListOptions{}, []int64{5, 4, 3, 2, 1}},
		{"queue", pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{Queue: "a"}}, []int64{5, 2, 1}},
		{"error", pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{ErrorContains: "TIMEOUT"}}, []int64{5, 3, 1}},
		{"literal wildcards", pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{ErrorContains: "50% done_"}}, []int64{4}},
		{"priority", pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{Priority: &ten}}, []int64{5, 2}},
		{"time", pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{
			Since: time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC), Until: time.Date(2026, 1, 1, 13, 0, 0, 0, time.UTC)}}, []int64{3, 2}},
		{"ids", pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{IDs: []int64{1, 4, 99}}}, []int64{4, 1}},
		{"combined", pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{Queue: "a", ErrorContains: "timeout", Priority: &ten}}, []int64{5}},
	} {
		if got := list(tc.o); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v want %v", tc.name, got, tc.want)
		}
	}
	if n, err := c.CountDLQ(ctx, pgflow.DLQFilter{Queue: "a", ErrorContains: "timeout"}); err != nil || n != 2 {
		t.Errorf("count: %d %v", n, err)
	}
	if n, err := c.CountDLQ(ctx, pgflow.DLQFilter{}); err != nil || n != 5 {
		t.Errorf("count all: %d %v", n, err)
	}
	// Pagination.
	var got []int64
	cursor := ""
	for {
		p, err := c.ListDLQ(ctx, pgflow.DLQListOptions{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, dlqIDs(p.Messages)...)
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if !slices.Equal(got, []int64{5, 4, 3, 2, 1}) {
		t.Fatalf("paged: %v", got)
	}

	m, err := c.DLQMessage(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.MessageID != 1002 || m.Queue != "a" || string(m.Payload) != `{"n": 2}` || m.Headers["trace"] != "t1" ||
		m.Priority != 10 || m.Error != "invalid payload" || m.RetryCount != 2 || m.Attempts != 2 ||
		len(m.Errors) != 2 || m.Errors[0].Error != "first try failed" || m.Errors[1].Attempt != 2 ||
		!m.DeadLetteredAt.Equal(time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)) {
		t.Fatalf("show: %+v", m)
	}
	if _, err := c.DLQMessage(ctx, 42); !errors.Is(err, pgflow.ErrDLQMessageNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

func TestDLQRedriveAndPurge(t *testing.T) {
	var events sync.Map // kind -> *atomic.Int64 (sum of Count)
	hook := func(e pgflow.Event) {
		v, _ := events.LoadOrStore(e.Kind, new(atomic.Int64))
		v.(*atomic.Int64).Add(int64(e.Count))
	}
	evCount := func(k pgflow.EventKind) int64 {
		v, ok := events.Load(k)
		if !ok {
			return 0
		}
		return v.(*atomic.Int64).Load()
	}
	c, db := opsClient(t, pgflow.Config{Hooks: []pgflow.EventHook{hook}})
	ctx := context.Background()
	var broken atomic.Bool
	broken.Store(true)
	var handled sync.Map
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "q", Workers: 4, Handler: func(_ context.Context, m *pgflow.Message) error {
		if broken.Load() {
			return pgflow.Permanent(fmt.Errorf("bug #%d", m.ID))
		}
		handled.Store(m.ID, m.RetryCount)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := range 10 {
		id, err := c.Publish(ctx, "q", map[string]int{"i": i}, pgflow.WithHeader("k", "v"), pgflow.WithPriority(i%2))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	waitFor(t, "10 dead letters", func() bool { return db.Count(t, "pgflow_dlq", "") == 10 })

	// The bug is fixed: redrive one id.
	broken.Store(false)
	p, err := c.ListDLQ(ctx, pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{Queue: "q"}})
	if err != nil || len(p.Messages) != 10 {
		t.Fatalf("list: %v %v", len(p.Messages), err)
	}
	var first pgflow.DLQMessage
	for _, m := range p.Messages {
		if m.MessageID == ids[0] {
			first = m
		}
	}
	if first.MessageID != ids[0] || !strings.Contains(first.Error, fmt.Sprintf("bug #%d", ids[0])) || len(first.Errors) != 1 {
		t.Fatalf("dead letter: %+v", first)
	}
	res, err := c.RedriveDLQ(ctx, pgflow.DLQFilter{IDs: []int64{first.ID, 9999}}, pgflow.RedriveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Redriven != 1 || res.ByQueue["q"] != 1 || !slices.Equal(res.NotFound, []int64{9999}) || len(res.Skipped) != 0 {
		t.Fatalf("redrive one: %+v", res)
	}
	waitFor(t, "redriven message handled", func() bool { _, ok := handled.Load(ids[0]); return ok })
	if rc, _ := handled.Load(ids[0]); rc.(int) != 0 {
		t.Fatalf("redriven message should start fresh, retry_count %v", rc)
	}

	// Redrive a filtered set (priority 1), rate-limited, in small chunks.
	one := 1
	res, err = c.RedriveDLQ(ctx, pgflow.DLQFilter{Queue: "q", Priority: &one}, pgflow.RedriveOptions{RatePerSecond: 1000, ChunkSize: 2})
	if err != nil || res.Redriven != 5 {
		t.Fatalf("redrive filtered: %+v %v", res, err)
	}
	waitFor(t, "6 handled", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })

	// Refuses an empty selection.
	if _, err := c.RedriveDLQ(ctx, pgflow.DLQFilter{}, pgflow.RedriveOptions{}); !errors.Is(err, pgflow.ErrInvalidOption) {
		t.Fatalf("empty filter: %v", err)
	}
	if _, err := c.PurgeDLQ(ctx, pgflow.DLQFilter{}); !errors.Is(err, pgflow.ErrInvalidOption) {
		t.Fatalf("empty purge filter: %v", err)
	}

	// Purge one, then the rest.
	p, _ = c.ListDLQ(ctx, pgflow.DLQListOptions{})
	if len(p.Messages) != 4 {
		t.Fatalf("left: %d", len(p.Messages))
	}
	pr, err := c.PurgeDLQ(ctx, pgflow.DLQFilter{IDs: []int64{p.Messages[0].ID, 777}})
	if err != nil || pr.Purged != 1 || !slices.Equal(pr.NotFound, []int64{777}) {
		t.Fatalf("purge one: %+v %v", pr, err)
	}
	pr, err = c.PurgeDLQ(ctx, pgflow.DLQFilter{All: true})
	if err != nil || pr.Purged != 3 || pr.ByQueue["q"] != 3 {
		t.Fatalf("purge all: %+v %v", pr, err)
	}
	if evCount(pgflow.EventRedriven) != 6 || evCount(pgflow.EventPurged) != 4 {
		t.Fatalf("events: redriven %d purged %d", evCount(pgflow.EventRedriven), evCount(pgflow.EventPurged))
	}
	n := 0
	handled.Range(func(_, _ any) bool { n++; return true })
	if n != 6 || db.Count(t, "pgflow_dlq", "") != 0 {
		t.Fatalf("handled %d", n)
	}
}

func TestRedriveKeepsHistoryAndSkipsLiveDedupKey(t *testing.T) {
	c, db := opsClient(t)
	ctx := context.Background()
	seedDLQ(t, db, [][4]string{{"q", "e1", "3", "2026-01-01T10:00:00Z"}, {"q", "e2", "0", "2026-01-01T10:00:00Z"}, {"q", "e3", "0", "2026-01-01T10:00:00Z"}})
	db.Exec(t, `UPDATE pgflow_dlq SET dedup_key = 'k' WHERE id IN (2, 3)`)
	// A live message holds key k now.
	live, err := c.Publish(ctx, "q", "live", pgflow.WithDedupKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.RedriveDLQ(ctx, pgflow.DLQFilter{Queue: "q"}, pgflow.RedriveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Redriven != 1 || len(res.Skipped) != 2 || res.Skipped[0].Reason != pgflow.SkipDedupKeyLive || res.Skipped[1].ID != 3 {
		t.Fatalf("redrive: %+v", res)
	}
	page, err := c.ListPending(ctx, "q", pgflow.PendingFilter{})
	if err != nil || len(page.Messages) != 2 {
		t.Fatalf("pending: %+v %v", page, err)
	}
	m := page.Messages[0] // priority 3 first
	if m.ID != 1001 || m.Priority != 3 || m.RetryCount != 0 || m.Attempt != 0 || len(m.Errors) != 2 ||
		m.Errors[1].Error != "e1" || m.Headers["trace"] != "t1" || !m.CreatedAt.Equal(time.Date(2025, 12, 31, 23, 59, 0, 0, time.UTC)) {
		t.Fatalf("redriven message: %+v", m)
	}
	// Once the live message is gone, the older DLQ entry with key k goes
	// back and the younger duplicate is skipped.
	db.Exec(t, `DELETE FROM pgflow_messages WHERE id = $1`, live)
	res, err = c.RedriveDLQ(ctx, pgflow.DLQFilter{Queue: "q"}, pgflow.RedriveOptions{})
	if err != nil || res.Redriven != 1 || len(res.Skipped) != 1 || res.Skipped[0].Reason != pgflow.SkipDedupKeyDuplicate {
		t.Fatalf("second redrive: %+v %v", res, err)
	}
}

// Redrive and purge are atomic per message: at every moment each message is
// in the DLQ, in its queue, or handled — never in two tables, never lost.
func TestRedriveAtomicUnderConcurrentConsumers(t *testing.T) {
	c, db := opsClient(t)
	ctx := context.Background()
	const n = 200
	var failures sync.Map // id -> *atomic.Int32
	var handled sync.Map  // id -> count
	var handledN atomic.Int64
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "q", Workers: 8, Handler: func(_ context.Context, m *pgflow.Message) error {
		v, _ := failures.LoadOrStore(m.ID, new(atomic.Int32))
		// Each message fails (to the DLQ) twice, then succeeds.
		if v.(*atomic.Int32).Add(1) <= 2 {
			return pgflow.Permanent(errors.New("not yet"))
		}
		if _, dup := handled.LoadOrStore(m.ID, true); dup {
			t.Errorf("message %d handled twice", m.ID)
		}
		handledN.Add(1)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var batch []pgflow.Outgoing
	for i := range n {
		batch = append(batch, pgflow.Outgoing{Queue: "q", Payload: i})
	}
	if _, err := c.PublishBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var redriven atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := c.RedriveDLQ(ctx, pgflow.DLQFilter{Queue: "q"}, pgflow.RedriveOptions{ChunkSize: 7})
				if err != nil {
					t.Error(err)
					return
				}
				redriven.Add(int64(res.Redriven))
				if res.Redriven == 0 {
					time.Sleep(2 * time.Millisecond) // be kind to a shared machine
				}
			}
		}()
	}
	checks := 0
	check := fmt.Sprintf(`SELECT count(*), count(DISTINCT id) FROM (
		SELECT message_id AS id FROM %[1]q.pgflow_dlq UNION ALL SELECT id FROM %[1]q.pgflow_messages) x`, db.Schema)
	for handledN.Load() < n {
		var total, distinct int64
		if err := db.Pool.QueryRow(ctx, check).Scan(&total, &distinct); err != nil {
			t.Fatal(err)
		}
		after := handledN.Load() // read after the snapshot: only grows
		if total != distinct {
			t.Fatalf("a message is in both the DLQ and its queue: %d rows, %d ids", total, distinct)
		}
		if distinct+after < n {
			t.Fatalf("messages lost: %d in tables + %d handled < %d", distinct, after, n)
		}
		checks++
		if checks > 100000 {
			t.Fatal("not converging")
		}
	}
	close(stop)
	wg.Wait()
	if redriven.Load() != 2*n {
		t.Fatalf("redriven %d, want %d", redriven.Load(), 2*n)
	}
	waitFor(t, "tables empty", func() bool {
		return db.Count(t, "pgflow_messages", "") == 0 && db.Count(t, "pgflow_dlq", "") == 0
	})
	t.Logf("%d consistency checks while redriving", checks)
}

func TestRedriveAndPurgeRaceEachMessageOnce(t *testing.T) {
	c, db := opsClient(t)
	ctx := context.Background()
	rows := make([][4]string, 300)
	for i := range rows {
		rows[i] = [4]string{"q", "e", "0", "2026-01-01T00:00:00Z"}
	}
	seedDLQ(t, db, rows)
	if err := c.PauseQueue(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var rr pgflow.RedriveResult
	var pr pgflow.PurgeResult
	var rerr, perr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		rr, rerr = c.RedriveDLQ(ctx, pgflow.DLQFilter{All: true}, pgflow.RedriveOptions{ChunkSize: 10})
	}()
	go func() { defer wg.Done(); pr, perr = c.PurgeDLQ(ctx, pgflow.DLQFilter{Queue: "q"}) }()
	wg.Wait()
	if rerr != nil || perr != nil {
		t.Fatal(rerr, perr)
	}
	live := db.Count(t, "pgflow_messages", "")
	left := db.Count(t, "pgflow_dlq", "")
	if rr.Redriven != live || rr.Redriven+pr.Purged+left != 300 {
		t.Fatalf("redriven %d (live %d) + purged %d + left %d != 300", rr.Redriven, live, pr.Purged, left)
	}
	t.Logf("redriven %d, purged %d, left %d", rr.Redriven, pr.Purged, left)
}
