package pgflow

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// TestHotPathGenericPlans checks the plans PostgreSQL may cache for the
// consumer's statements. They run as prepared statements, so after five
// executions the server may switch to a generic plan, made without the
// parameter values; it estimates LIMIT $2 at a tenth of the table. The
// generic plan must still reach every row through an index, whether it was
// made while the table was empty or while it held a backlog.
func TestHotPathGenericPlans(t *testing.T) {
	c, db := newPlanClient(t)
	ctx := context.Background()

	stmts := []struct {
		settings, name, args string
	}{
		{query.ClaimSettings, query.ClaimMessages, "'q0', 100, 'consumer', 30000"},
		{query.ClaimSettings, query.ClaimMessagesAfter, "'q0', 100, 'consumer', 30000, 0::smallint, now(), 0::bigint"},
		{query.HotPathSettings, query.AckMessages, "ARRAY[1, 2]::bigint[], ARRAY[1, 1]::int[]"},
		{query.HotPathSettings, query.FailMessages, "ARRAY[1]::bigint[], ARRAY[1]::int[], ARRAY['e'], ARRAY[10]::bigint[], ARRAY[false]"},
		{query.HotPathSettings, query.ExtendLeases, "ARRAY[1, 2]::bigint[], ARRAY[1, 1]::int[], 30000"},
		{query.HotPathSettings, query.ReleaseMessages, "ARRAY[1, 2]::bigint[], ARRAY[1, 1]::int[]"},
	}
	check := func(state string) {
		t.Helper()
		conn, err := db.Pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck
		if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
			t.Fatal(err)
		}
		for i, s := range stmts {
			// As the consumer runs them: the settings first, in the same
			// transaction (see hotpath.go).
			if _, err := tx.Exec(ctx, c.q.Get(s.settings)); err != nil {
				t.Fatal(err)
			}
			p := fmt.Sprintf("plan_probe_%d", i)
			if _, err := tx.Exec(ctx, "PREPARE "+p+" AS "+c.q.Get(s.name)); err != nil {
				t.Fatalf("%s: prepare: %v", s.name, err)
			}
			rows, err := tx.Query(ctx, "EXPLAIN EXECUTE "+p+"("+s.args+")")
			if err != nil {
				t.Fatalf("%s: explain: %v", s.name, err)
			}
			var plan []string
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			t.Logf("%s, generic plan of %s:\n%s", state, s.name, text)
			for _, bad := range []string{"Seq Scan on pgflow_messages", "Bitmap Heap Scan on pgflow_messages", "Hash Join", "Merge Join"} {
				if strings.Contains(text, bad) {
					t.Errorf("%s, generic plan with %s: %s\n%s", state, s.name, bad, text)
				}
			}
			if _, err := tx.Exec(ctx, "DEALLOCATE "+p); err != nil {
				t.Fatal(err)
			}
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
