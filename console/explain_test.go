package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/console"
	"github.com/pgflow-go/pgflow/internal/query"
)

// TestConsoleAtScale is the evidence of docs/console.md: with 1 M pending
// messages and 1 M dead letters in one queue, every page's API answers in
// well under 200 ms and every statement behind it reads an index. It takes
// a few minutes to fill the tables, so it runs only when asked:
//
//	PGFLOW_CONSOLE_SCALE=1000000 go test -run TestConsoleAtScale -v ./console
func TestConsoleAtScale(t *testing.T) {
	var n int
	if _, err := fmt.Sscan(os.Getenv("PGFLOW_CONSOLE_SCALE"), &n); err != nil || n <= 0 {
		t.Skip("set PGFLOW_CONSOLE_SCALE=1000000 to run")
	}
	e := newEnv(t, console.Options{AdminToken: adminToken})
	ctx := context.Background()
	start := time.Now()
	e.db.Exec(t, `INSERT INTO pgflow_queues (queue_name) VALUES ('big'), ('small')`)
	// n pending in 'big': priorities 0-2, visible over the last day, one in
	// 50 with an error history (retried earlier); 100 of them delayed.
	e.db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload, priority, visible_at, created_at, retry_count, errors)
		SELECT 'big', jsonb_build_object('n', i, 'body', repeat('x', 64)), (i % 3)::smallint,
		       now() - (i % 86400) * interval '1 second', now() - (i % 86400) * interval '1 second',
		       CASE WHEN i % 50 = 0 THEN 1 ELSE 0 END,
		       CASE WHEN i % 50 = 0 THEN jsonb_build_array(jsonb_build_object('attempt', 1, 'error', 'timeout ' || i, 'at', now())) ELSE '[]' END
		FROM generate_series(1, $1::int) i`, n)
	e.db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload, visible_at)
		SELECT 'big', '{}', now() + i * interval '1 minute' FROM generate_series(1, 100) i`)
	e.db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload, status, attempt, locked_by, locked_until)
		SELECT 'big', '{}', 'processing', 1, 'worker-' || (i % 4), now() + interval '30 seconds' FROM generate_series(1, 40) i`)
	// n dead letters of 'big', spread over the last week, 5 error kinds.
	e.db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, error, errors, attempts, message_created_at, created_at)
		SELECT 10000000 + i, 'big', jsonb_build_object('n', i), (ARRAY['card declined', 'timeout calling bank', 'bad address', 'rate limited', 'panic: nil map'])[1 + i % 5] || ' #' || i,
		       '[]', 4, now() - interval '8 days', now() - (i % 604800) * interval '1 second'
		FROM generate_series(1, $1::int) i`, n)
	e.db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload) SELECT 'small', '{}' FROM generate_series(1, 10)`)
	e.db.Exec(t, `INSERT INTO pgflow_queue_stats (queue_name, bucket, handled, failed, dead_lettered)
		SELECT q, date_trunc('minute', now()) - i * interval '1 minute', 1000, 10, 1
		FROM unnest(ARRAY['big', 'small']) q, generate_series(0, 1439) i`)
	e.db.Exec(t, `VACUUM ANALYZE pgflow_messages`)
	e.db.Exec(t, `VACUUM ANALYZE pgflow_dlq`)
	e.db.Exec(t, `VACUUM ANALYZE pgflow_queue_stats`)
	t.Logf("filled %d pending + %d dead letters in %v", n, n, time.Since(start).Round(time.Second))

	var someID, someDLQ int64
	if err := e.db.Pool.QueryRow(ctx, `SELECT max(id) FROM `+e.db.Schema+`.pgflow_messages WHERE queue_name = 'big'`).Scan(&someID); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Pool.QueryRow(ctx, `SELECT max(id) / 2 FROM `+e.db.Schema+`.pgflow_dlq`).Scan(&someDLQ); err != nil {
		t.Fatal(err)
	}

	// Every page and API read, timed end to end through the handler
	// (median of 5, after one warm-up).
	var pageCursor string
	{
		r := e.do(t, req{method: "GET", path: "/api/queues/big/messages?state=pending"})
		var l listed
		r.json(t, &l)
		pageCursor = l.NextCursor
	}
	var dlqCursor string
	{
		r := e.do(t, req{method: "GET", path: "/api/dlq?queue=big"})
		var l listed
		r.json(t, &l)
		dlqCursor = l.NextCursor
	}
	paths := []string{
		"/", "/api/queues",
		"/queues/big", "/queues/big?tab=dead", "/queues/big?tab=delayed", "/queues/big?tab=in_flight",
		"/api/queues/big",
		"/api/queues/big/messages?state=pending",
		"/api/queues/big/messages?state=pending&cursor=" + pageCursor,
		"/api/queues/big/messages?state=pending&priority=1",
		"/api/queues/big/messages?state=pending&since=1h",
		"/api/queues/big/messages?state=pending&error=timeout",
		"/api/queues/big/messages?state=delayed",
		"/api/queues/big/messages?state=in_flight",
		"/api/queues/big/messages?state=dead",
		"/api/dlq?queue=big",
		"/api/dlq?queue=big&cursor=" + dlqCursor,
		"/api/dlq?queue=big&since=1h",
		"/api/dlq?queue=big&error=declined",
		"/api/dlq/count?queue=big",
		"/api/dlq/count?queue=big&since=1h",
		"/api/queues/big/series?window=24h",
		fmt.Sprintf("/messages/%d", someID), fmt.Sprintf("/api/messages/%d", someID),
		fmt.Sprintf("/dlq/%d", someDLQ), fmt.Sprintf("/api/dlq/%d", someDLQ),
	}
	// A second console that counts for every page (StatsMaxAge < 0), to show
	// what the counts cost on their own.
	always, err := console.New(e.client, console.Options{StatsMaxAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer always.Close()
	alwaysSrv := httptest.NewServer(always)
	defer alwaysSrv.Close()
	timeIt := func(base, p string) (median, worst time.Duration) {
		get := func() {
			res, err := http.Get(base + p)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d", p, res.StatusCode)
			}
		}
		get() // warm-up
		var ds []time.Duration
		for range 5 {
			t0 := time.Now()
			get()
			ds = append(ds, time.Since(t0))
		}
		slices.Sort(ds)
		return ds[2], ds[4]
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n| request | default: median (max) | counting for every page: median (max) |\n|---|---:|---:|\n")
	for _, p := range paths {
		m, w := timeIt(e.srv.URL, p)
		am, aw := timeIt(alwaysSrv.URL, p)
		shown := p
		if i := strings.Index(shown, "cursor="); i >= 0 {
			shown = shown[:i] + "cursor=…"
		}
		fmt.Fprintf(&report, "| `GET %s` | %.1f ms (%.1f) | %.1f ms (%.1f) |\n", shown, ms(m), ms(w), ms(am), ms(aw))
	}
	t.Log(report.String())

	// The plans.
	set := query.MustLoad(e.db.Schema)
	now := time.Now()
	type stmt struct {
		label, name string
		settings    bool
		args        []any
		// scans marks the one read no index serves (ILIKE '%…%' on the
		// error history of pending messages); docs/console.md says so.
		scans bool
	}
	stmts := []stmt{
		{"overview: message counts, every queue", query.QueueMessageStats, true, []any{nil}, false},
		{"overview: dead-letter counts, every queue (at the same time)", query.QueueDLQStats, true, []any{nil}, false},
		{"queue page: message counts", query.QueueMessageStats, true, []any{"big"}, false},
		{"queue page: dead-letter count (at the same time)", query.QueueDLQStats, true, []any{"big"}, false},
		{"overview: sparklines, 1 h per minute", query.StatsSeries, false, []any{nil, int64(3600), int64(60)}, false},
		{"queue: chart, 24 h per 15 min", query.StatsSeries, false, []any{"big", int64(86400), int64(900)}, false},
		{"pending tab, first page", query.ListPending, false, []any{"big", 100, nil, nil, nil, nil, nil, nil, nil, nil, now}, false},
		{"pending tab, deep page (cursor)", query.ListPending, false, []any{"big", 100, int16(1), now.Add(-12 * time.Hour), int64(0), nil, nil, nil, nil, nil, now}, false},
		{"pending tab, priority filter", query.ListPending, false, []any{"big", 100, nil, nil, nil, int16(1), nil, nil, nil, nil, now}, false},
		{"pending tab, error filter", query.ListPending, false, []any{"big", 100, nil, nil, nil, nil, nil, nil, "%timeout%", nil, now}, true},
		{"delayed tab", query.ListPending, false, []any{"big", 100, nil, nil, nil, nil, nil, nil, nil, now, nil}, false},
		{"in-flight tab", query.ListInFlight, false, []any{"big", 100}, false},
		{"dead-letter tab, first page", query.ListDLQ, false, []any{nil, "big", nil, nil, nil, nil, 100, nil, nil}, false},
		{"dead-letter tab, deep page (cursor)", query.ListDLQ, false, []any{nil, "big", nil, nil, nil, nil, 100, now.Add(-84 * time.Hour), int64(1 << 40)}, false},
		{"dead-letter tab, last hour", query.ListDLQ, false, []any{nil, "big", now.Add(-time.Hour), nil, nil, nil, 100, nil, nil}, false},
		{"dead-letter tab, error filter", query.ListDLQ, false, []any{nil, "big", nil, nil, "%declined%", nil, 100, nil, nil}, false},
		{"purge/redrive confirmation: count of a filtered selection (last hour)", query.CountDLQ, false, []any{nil, "big", now.Add(-time.Hour), nil, nil, nil}, false},
		{"message page", query.GetMessage, false, []any{someID}, false},
		{"dead-letter page", query.GetDLQ, false, []any{someDLQ}, false},
	}
	var plans strings.Builder
	for _, s := range stmts {
		plan, err := explain(ctx, e, set, s.name, s.settings, s.args)
		if err != nil {
			t.Fatalf("%s: %v", s.label, err)
		}
		fmt.Fprintf(&plans, "\n### %s (%s)\n\n```\n%s```\n", s.label, s.name, plan)
		if !s.scans && (strings.Contains(plan, "Seq Scan on pgflow_messages") || strings.Contains(plan, "Seq Scan on pgflow_dlq")) {
			t.Errorf("%s reads a table sequentially:\n%s", s.label, plan)
		}
	}
	t.Log(plans.String())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// explain runs EXPLAIN (ANALYZE, BUFFERS) of a named statement with its
// arguments, in a read-only transaction that is rolled back, with the
// settings the call itself uses.
func explain(ctx context.Context, e *env, set *query.Set, name string, settings bool, args []any) (string, error) {
	tx, err := e.db.Pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return "", err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if settings {
		if _, err := tx.Exec(ctx, set.Get(query.QueueDepthsSettings)); err != nil {
			return "", err
		}
	}
	all := append([]any{pgx.QueryExecModeDescribeExec}, args...)
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "+set.Get(name), all...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return "", err
		}
		b.WriteString(line + "\n")
	}
	return b.String(), rows.Err()
}
