package pgflow

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/query"
)

// TestExplainOpsQueries fills pgflow_messages and pgflow_dlq with
// PGFLOW_EXPLAIN_ROWS rows each (e.g. 1000000) and logs the plans of the
// operations statements, as run (custom plans for the actual parameters).
// A one-off measurement for docs/operations.md, skipped by default:
//
//	PGFLOW_EXPLAIN_ROWS=1000000 go test -run TestExplainOpsQueries -v -timeout 30m .
func TestExplainOpsQueries(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PGFLOW_EXPLAIN_ROWS"))
	if n <= 0 {
		t.Skip("set PGFLOW_EXPLAIN_ROWS to run")
	}
	c, db := newPlanClient(t)
	ctx := context.Background()
	start := time.Now()
	// 10 queues; q0 holds 60 %, the rest share 40 %. 2 % in flight, 10 %
	// delayed, 5 % retrying with an error, priorities 0/5/10.
	db.Exec(t, `INSERT INTO pgflow_queues (queue_name) SELECT 'q' || g FROM generate_series(0, 9) g`)
	db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload, priority, status, retry_count, attempt, visible_at, locked_by, locked_until, errors, created_at)
		SELECT CASE WHEN i % 10 < 6 THEN 'q0' ELSE 'q' || (1 + i % 9) END,
		       jsonb_build_object('i', i),
		       (ARRAY[0, 0, 0, 5, 10])[1 + i % 5],
		       CASE WHEN i % 50 = 0 THEN 'processing' ELSE 'pending' END,
		       CASE WHEN i % 20 = 1 THEN 1 ELSE 0 END,
		       CASE WHEN i % 20 = 1 OR i % 50 = 0 THEN 1 ELSE 0 END,
		       CASE WHEN i % 10 = 3 OR i % 20 = 1 THEN now() + interval '1 hour' ELSE now() - (i || ' milliseconds')::interval END,
		       CASE WHEN i % 50 = 0 THEN 'worker-' || (i % 7) END,
		       CASE WHEN i % 50 = 0 THEN now() + interval '30 seconds' END,
		       CASE WHEN i % 20 = 1 THEN jsonb_build_array(jsonb_build_object('attempt', 1, 'error', 'error kind ' || (i % 1000), 'at', now())) ELSE '[]' END,
		       now() - ((`+strconv.Itoa(n)+` - i) || ' milliseconds')::interval
		FROM generate_series(1, `+strconv.Itoa(n)+`) i`)
	db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, priority, error, errors, retry_count, attempts, message_created_at, created_at)
		SELECT i, CASE WHEN i % 10 < 6 THEN 'q0' ELSE 'q' || (1 + i % 9) END, jsonb_build_object('i', i),
		       (ARRAY[0, 0, 0, 5, 10])[1 + i % 5], 'error kind ' || (i % 1000), '[]', 4, 4,
		       now() - interval '31 days', now() - ((`+strconv.Itoa(n)+` - i) || ' seconds')::interval
		FROM generate_series(1, `+strconv.Itoa(n)+`) i`)
	// Autovacuum keeps these tables vacuumed (0001 sets aggressive settings on
	// pgflow_messages); VACUUM sets the visibility map as it would.
	db.Exec(t, `VACUUM ANALYZE pgflow_messages`)
	db.Exec(t, `VACUUM ANALYZE pgflow_dlq`)
	t.Logf("filled %d + %d rows in %v", n, n, time.Since(start).Round(time.Millisecond))

	dayAgo := time.Now().Add(-24 * time.Hour)
	weekAgo := time.Now().Add(-7 * 24 * time.Hour)
	prio10 := int16(10)
	var maxID int64
	if err := db.Pool.QueryRow(ctx, c.q.Get(query.MaxDLQID)).Scan(&maxID); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		stmt string
		args []any
	}{
		{"QueueStats one queue (q0, 600k live rows)", query.QueueMessageStats, []any{"q0"}},
		{"QueueStats DLQ part (q0)", query.QueueDLQStats, []any{"q0"}},
		{"QueueStats small queue (q5)", query.QueueMessageStats, []any{"q5"}},
		{"QueueStats all queues", query.QueueMessageStats, []any{nil}},
		{"QueueStats DLQ part, all queues", query.QueueDLQStats, []any{nil}},
		{"ListPending q0 first page", query.ListPending, []any{"q0", 100, nil, nil, nil, nil, nil, nil, nil, nil, nil}},
		{"ListPending q0 deep page (cursor)", query.ListPending, []any{"q0", 100, int16(0), time.Now().Add(-time.Minute), int64(500000), nil, nil, nil, nil, nil, nil}},
		{"ListPending q0 priority 10", query.ListPending, []any{"q0", 100, nil, nil, nil, prio10, nil, nil, nil, nil, nil}},
		{"ListPending q0 created in last day", query.ListPending, []any{"q0", 100, nil, nil, nil, nil, dayAgo, nil, nil, nil, nil}},
		{"ListPending q0 error text", query.ListPending, []any{"q0", 100, nil, nil, nil, nil, nil, nil, "%kind 42%", nil, nil}},
		{"ListDLQ first page", query.ListDLQ, []any{nil, nil, nil, nil, nil, nil, 100, nil, nil}},
		{"ListDLQ queue q5", query.ListDLQ, []any{nil, "q5", nil, nil, nil, nil, 100, nil, nil}},
		{"ListDLQ queue q5 deep page", query.ListDLQ, []any{nil, "q5", nil, nil, nil, nil, 100, time.Now().Add(-5 * 24 * time.Hour), int64(1 << 40)}},
		{"ListDLQ time range (a day, a week ago)", query.ListDLQ, []any{nil, nil, weekAgo.Add(-24 * time.Hour), weekAgo, nil, nil, 100, nil, nil}},
		{"ListDLQ error text (1 in 1000)", query.ListDLQ, []any{nil, nil, nil, nil, "%kind 42%", nil, 100, nil, nil}},
		{"ListDLQ priority 10", query.ListDLQ, []any{nil, nil, nil, nil, nil, prio10, 100, nil, nil}},
		{"ListDLQ by ids", query.ListDLQ, []any{[]int64{5, 500, 500000}, nil, nil, nil, nil, nil, 100, nil, nil}},
		{"CountDLQ queue q5", query.CountDLQ, []any{nil, "q5", nil, nil, nil, nil}},
		{"RedriveDLQ chunk of queue q5", query.RedriveDLQ, []any{nil, "q5", nil, nil, nil, nil, 500, int64(0), maxID}},
		{"RedriveDLQ one id", query.RedriveDLQ, []any{[]int64{777}, nil, nil, nil, nil, nil, 500, int64(0), maxID}},
		{"PurgeDLQ chunk, all", query.PurgeDLQ, []any{nil, nil, nil, nil, nil, nil, 500, int64(0), maxID}},
	}
	var summary []string
	for _, tc := range cases {
		// In a transaction rolled back afterwards: EXPLAIN ANALYZE runs
		// redrive and purge for real.
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tc.stmt == query.QueueMessageStats || tc.stmt == query.QueueDLQStats { // as QueueStats runs them
			if _, err := tx.Exec(ctx, c.q.Get(query.QueueDepthsSettings)); err != nil {
				t.Fatal(err)
			}
		}
		args := append([]any{pgx.QueryExecModeExec}, tc.args...)
		rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) "+c.q.Get(tc.stmt), args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_ = tx.Rollback(ctx)
		t.Logf("=== %s\n%s", tc.name, strings.Join(lines, "\n"))
		var idx []string
		exec := ""
		for _, l := range lines {
			l = strings.TrimSpace(l)
			if i := strings.Index(l, " using "); i >= 0 {
				idx = append(idx, strings.Fields(l[i+7:])[0])
			}
			if strings.HasPrefix(l, "Bitmap Index Scan on ") {
				idx = append(idx, strings.Fields(l)[4]+" (bitmap)")
			}
			if i := strings.Index(l, "Seq Scan on "); i >= 0 {
				idx = append(idx, "SEQ SCAN "+strings.Fields(l[i:])[3])
			}
			if strings.HasPrefix(l, "Execution Time:") {
				exec = strings.TrimPrefix(l, "Execution Time: ")
			}
		}
		summary = append(summary, "| "+tc.name+" | "+strings.Join(dedupe(idx), ", ")+" | "+exec+" |")
	}
	t.Logf("summary:\n%s", strings.Join(summary, "\n"))

	// Wall time of the API calls, best of 3 (EXPLAIN ANALYZE's per-row
	// timing inflates scans of many rows), with the statement as shipped
	// and, for comparison, without the seqscan/parallel settings.
	best := func(f func() error) time.Duration {
		b := time.Duration(1 << 62)
		for range 3 {
			st := time.Now()
			if err := f(); err != nil {
				t.Fatal(err)
			}
			b = min(b, time.Since(st))
		}
		return b
	}
	plain := func(q any) func() error {
		return func() error {
			rows, err := db.Pool.Query(ctx, c.q.Get(query.QueueMessageStats), pgx.QueryExecModeExec, q)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		}
	}
	for _, q := range []string{"q0", "q5", ""} {
		api := best(func() error {
			if q == "" {
				_, err := c.AllQueueStats(ctx)
				return err
			}
			_, err := c.QueueStats(ctx, q)
			return err
		})
		var arg any = q
		if q == "" {
			arg = nil
		}
		t.Logf("wall: QueueStats(%q) %v as shipped, %v with the planner's default plan", q, api.Round(time.Millisecond), best(plain(arg)).Round(time.Millisecond))
	}
}

func dedupe(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
