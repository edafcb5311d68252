package migrate_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/migrate"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pgflowtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestUpIsConcurrentSafeAndIdempotent(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	schema := "pgflow_migrate_" + time.Now().Format("150405_000000")
	t.Cleanup(func() { pgflowtest.DropSchema(t, schema) })

	const racers = 4
	var wg sync.WaitGroup
	results := make([]migrate.Result, racers)
	errs := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = migrate.Up(ctx, pool, schema)
		}()
	}
	wg.Wait()
	applied := 0
	for i := range racers {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if results[i].Version != migrate.Latest() {
			t.Fatalf("racer %d ended at version %d", i, results[i].Version)
		}
		applied += len(results[i].Applied)
	}
	if applied != migrate.Latest() {
		t.Fatalf("%d migrations applied in total by %d racers, want each once (%d)", applied, racers, migrate.Latest())
	}
	again, err := migrate.Up(ctx, pool, schema)
	if err != nil || len(again.Applied) != 0 {
		t.Fatalf("second run applied %v, err %v", again.Applied, err)
	}
	v, err := migrate.Version(ctx, pool, schema)
	if err != nil || v != migrate.Latest() {
		t.Fatalf("Version = %d, %v", v, err)
	}
	if v, err := migrate.Version(ctx, pool, "pgflow_never_installed"); err != nil || v != 0 {
		t.Fatalf("Version of an empty schema = %d, %v", v, err)
	}
}

func TestUpRejectsBadSchemaName(t *testing.T) {
	pool := newPool(t)
	if _, err := migrate.Up(context.Background(), pool, `x"; DROP SCHEMA public; --`); err == nil {
		t.Fatal("accepted a schema name with SQL in it")
	}
}

// The SQL of the guide's "Database Queries" section must run as written.
func TestGuideQueriesRunAsWritten(t *testing.T) {
	db := pgflowtest.New(t)
	ctx := context.Background()
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET search_path TO "+db.Schema); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `
		INSERT INTO pgflow_messages (queue_name, payload, priority, created_at, status) VALUES
		  ('proposals_for_consensus_queue', '{"n":1}', 0, now() - interval '3 minutes', 'pending'),
		  ('proposals_for_consensus_queue', '{"n":2}', 0, now() - interval '1 minute', 'pending'),
		  ('rollback_triggers_queue', '{"n":3}', 10, now() - interval '2 minutes', 'pending'),
		  ('rollback_triggers_queue', '{"n":4}', 10, now(), 'processing');
		INSERT INTO pgflow_dlq (message_id, queue_name, payload, error, message_created_at, created_at) VALUES
		  (90, 'metrics_to_guardian_queue', '{}', 'older', now(), now() - interval '1 hour'),
		  (91, 'metrics_to_guardian_queue', '{}', 'newer', now(), now())`)
	if err != nil {
		t.Fatal(err)
	}

	// View pending messages
	rows, err := conn.Query(ctx, `SELECT id, queue_name, payload, created_at, retry_count
FROM pgflow_messages
WHERE status = 'pending'
ORDER BY priority DESC, created_at ASC;`)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for rows.Next() {
		var id int64
		var queue string
		var payload map[string]int
		var created time.Time
		var retries int
		if err := rows.Scan(&id, &queue, &payload, &created, &retries); err != nil {
			t.Fatal(err)
		}
		order = append(order, queue[:4]+string(rune('0'+payload["n"])))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got := join(order); got != "roll3 prop1 prop2" {
		t.Fatalf("pending order = %s", got)
	}

	// View failed messages
	rows, err = conn.Query(ctx, `SELECT id, queue_name, error, created_at
FROM pgflow_dlq
ORDER BY created_at DESC;`)
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	for rows.Next() {
		var id int64
		var queue, e string
		var created time.Time
		if err := rows.Scan(&id, &queue, &e, &created); err != nil {
			t.Fatal(err)
		}
		errs = append(errs, e)
	}
	if got := join(errs); got != "newer older" {
		t.Fatalf("dlq order = %s", got)
	}

	// Queue stats
	rows, err = conn.Query(ctx, `SELECT queue_name, COUNT(*) as pending_count, MAX(created_at) as oldest
FROM pgflow_messages
WHERE status = 'pending'
GROUP BY queue_name;`)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for rows.Next() {
		var queue string
		var n int
		var oldest time.Time
		if err := rows.Scan(&queue, &n, &oldest); err != nil {
			t.Fatal(err)
		}
		counts[queue] = n
	}
	if counts["proposals_for_consensus_queue"] != 2 || counts["rollback_triggers_queue"] != 1 || len(counts) != 2 {
		t.Fatalf("stats = %v", counts)
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}
