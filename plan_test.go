package pgflow

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// TestHotPathGenericPlans checks the plans PostgreSQL uses for the
// statements inside the state functions (migration 0004), which run with
// plan_cache_mode = force_generic_plan: the generic plan, made without the
// parameter values, estimates LIMIT $2 at a tenth of the table, yet must
// still reach every row through an index, whether it was made while the
// table was empty or while it held a backlog. auto_explain logs the plan of
// every statement the functions run (log_nested_statements) as a notice.
func TestHotPathGenericPlans(t *testing.T) {
	c, db := newPlanClient(t)
	ctx := context.Background()

	check := func(state string) {
		t.Helper()
		var mu sync.Mutex
		var notices []string
		cfg := db.Pool.Config().ConnConfig.Copy()
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			mu.Lock()
			notices = append(notices, n.Message)
			mu.Unlock()
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, s := range []string{
			`LOAD 'auto_explain'`,
			`SET auto_explain.log_min_duration = 0`,
			`SET auto_explain.log_nested_statements = on`,
			`SET auto_explain.log_level = notice`,
			`SET search_path = ` + pgx.Identifier{db.Schema}.Sanitize(),
		} {
			if _, err := conn.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck
		// Messages to act on, in a queue of their own, rolled back at the end.
		if _, err := tx.Exec(ctx, `INSERT INTO pgflow_messages (queue_name, payload) SELECT 'plan', '{}' FROM generate_series(1, 6)`); err != nil {
			t.Fatal(err)
		}
		claim := func(stmt string, args ...any) (ids, tokens []int64) {
			t.Helper()
			rows, err := tx.Query(ctx, c.q.Get(stmt), args...)
			if err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
			defer rows.Close()
			for rows.Next() {
				var id, token *int64
				if err := rows.Scan(&id, nil, nil, nil, nil, nil, nil, nil, nil, &token, nil); err != nil {
					t.Fatal(err)
				}
				if id != nil {
					ids, tokens = append(ids, *id), append(tokens, *token)
				}
			}
			if rows.Err() != nil {
				t.Fatalf("%s: %v", stmt, rows.Err())
			}
			return ids, tokens
		}
		ids, tokens := claim(query.ClaimMessages, "plan", 4, "consumer", 30000)
		ids2, _ := claim(query.ClaimMessagesAfter, "plan", 4, "consumer", 30000, int16(0), time.Now().Add(-time.Hour), int64(0))
		if len(ids) != 4 || len(ids2) != 2 {
			t.Fatalf("claimed %d then %d, want 4 then 2", len(ids), len(ids2))
		}
		exec := func(stmt string, args ...any) {
			t.Helper()
			rows, err := tx.Query(ctx, c.q.Get(stmt), args...)
			if err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
			rows.Close()
			if rows.Err() != nil {
				t.Fatalf("%s: %v", stmt, rows.Err())
			}
		}
		exec(query.AckMessages, ids[:1], tokens[:1])
		exec(query.FailMessages, ids[1:2], tokens[1:2], []string{"e"}, []int64{10}, []bool{false})
		exec(query.FailMessages, ids[2:3], tokens[2:3], []string{"e"}, []int64{10}, []bool{true})
		exec(query.ExtendLeases, ids[3:], tokens[3:], 30000)
		exec(query.ReleaseMessages, ids[3:], tokens[3:])
		if _, err := tx.Exec(ctx, `UPDATE pgflow_messages SET locked_until = now() - interval '1 second' WHERE id = ANY($1)`, ids2); err != nil {
			t.Fatal(err)
		}
		exec(query.RescueExpiredLeases, 100)

		mu.Lock()
		defer mu.Unlock()
		// The functions' statements name the table with its schema; the
		// test's own statements above do not.
		qualified := pgx.Identifier{db.Schema}.Sanitize() + ".pgflow_messages"
		inner := 0
		for _, n := range notices {
			if !strings.Contains(n, qualified) {
				continue
			}
			inner++
			t.Logf("%s:\n%s", state, n)
			for _, bad := range []string{"Seq Scan on pgflow_messages", "Bitmap Heap Scan on pgflow_messages", "Hash Join", "Merge Join"} {
				if strings.Contains(n, bad) {
					t.Errorf("%s: plan with %s:\n%s", state, bad, n)
				}
			}
		}
		// claim (2 claims, the paused check, the next-visible probe), ack,
		// fail x2 (lock + settle), extend, release, rescue (pick + settle).
		if inner < 10 {
			t.Errorf("%s: only %d plans of statements on pgflow_messages logged; auto_explain saw:\n%s", state, inner, strings.Join(notices, "\n---\n"))
		}
	}

	check("empty table, never analyzed")

	// A backlog over several queues, with priorities, delays and messages in
	// flight, stored out of claim order so the index is poorly correlated.
	db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload, priority, status, attempt, visible_at, locked_until)
		SELECT 'q' || (i % 4), '{}', (ARRAY[0, 0, 5])[1 + i % 3],
		       CASE WHEN i % 20 = 0 THEN 'processing' ELSE 'pending' END,
		       CASE WHEN i % 20 = 0 THEN 1 ELSE 0 END,
		       now() - ((i * 7919) % 100000) * interval '1 millisecond' + CASE WHEN i % 10 = 3 THEN interval '1 hour' ELSE interval '0' END,
		       CASE WHEN i % 20 = 0 THEN now() + interval '30 seconds' END
		FROM generate_series(1, 60000) i`)
	db.Exec(t, `ANALYZE pgflow_messages`)
	check(fmt.Sprintf("60,000 rows analyzed (%s)", time.Now().Format(time.TimeOnly)))
}

// newPlanClient returns a client on a schema of its own (two connections,
// no stats counters), for tests that look at plans; closed when t ends.
func newPlanClient(t *testing.T) (*Client, *pgflowtest.DB) {
	t.Helper()
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	c, err := New(db.Pool, Config{Schema: db.Schema, DisableStatsCounters: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c, db
}
