package pgflow_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/schema"
)

// Three hand-written monitoring queries, as docs/operations.md shows them:
// they must keep running as written against pgflow's tables.
const (
	sqlViewPending = `SELECT id, queue_name, payload, created_at, retry_count
FROM pgflow_messages
WHERE status = 'pending'
ORDER BY priority DESC, created_at ASC;`
	sqlViewFailed = `SELECT id, queue_name, error, created_at
FROM pgflow_dlq
ORDER BY created_at DESC;`
	sqlQueueStats = `SELECT queue_name, COUNT(*) as pending_count, MAX(created_at) as oldest
FROM pgflow_messages
WHERE status = 'pending'
GROUP BY queue_name;`
)

func TestDirectSQLQueriesRunAsWritten(t *testing.T) {
	c, db := opsClient(t)
	ctx := context.Background()
	id1, _ := c.Publish(ctx, "proposals_for_consensus_queue", map[string]string{"p": "1"})
	id2, _ := c.Publish(ctx, "rollback_triggers_queue", map[string]string{"r": "1"}, pgflow.WithPriority(pgflow.PriorityHigh))
	id3, _ := c.Publish(ctx, "proposals_for_consensus_queue", map[string]string{"p": "2"})
	id4, _ := c.Publish(ctx, "proposals_for_consensus_queue", map[string]string{"p": "3"})
	db.Exec(t, `UPDATE pgflow_messages SET created_at = '2026-01-01T00:00:01Z' WHERE id = $1`, id1)
	db.Exec(t, `UPDATE pgflow_messages SET created_at = '2026-01-01T00:00:03Z' WHERE id = $1`, id2)
	db.Exec(t, `UPDATE pgflow_messages SET created_at = '2026-01-01T00:00:02Z', retry_count = 1 WHERE id = $1`, id3)
	db.Exec(t, `UPDATE pgflow_messages SET status = 'processing', locked_by = 'x', locked_until = now() WHERE id = $1`, id4)
	seedDLQ(t, db, [][4]string{
		{"metrics_to_guardian_queue", "older failure", "0", "2026-01-01T10:00:00Z"},
		{"patterns_for_aggregator_queue", "newer failure", "0", "2026-01-01T11:00:00Z"},
	})

	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET search_path TO "+schema.Quote(db.Schema)); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET search_path") //nolint:errcheck

	// View pending messages: high priority first, then oldest first; the
	// in-flight message is not pending.
	rows, err := conn.Query(ctx, sqlViewPending)
	if err != nil {
		t.Fatal(err)
	}
	type pending struct {
		id         int64
		queue      string
		payload    json.RawMessage
		created    time.Time
		retryCount int
	}
	var got []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.id, &p.queue, &p.payload, &p.created, &p.retryCount); err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(got) != 3 || got[0].id != id2 || got[1].id != id1 || got[2].id != id3 || got[2].retryCount != 1 ||
		got[0].queue != "rollback_triggers_queue" || string(got[1].payload) != `{"p": "1"}` {
		t.Fatalf("view pending: %+v", got)
	}

	// View failed messages: newest first.
	rows, err = conn.Query(ctx, sqlViewFailed)
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	for rows.Next() {
		var id int64
		var q, e string
		var at time.Time
		if err := rows.Scan(&id, &q, &e, &at); err != nil {
			t.Fatal(err)
		}
		errs = append(errs, q+": "+e)
	}
	if len(errs) != 2 || errs[0] != "patterns_for_aggregator_queue: newer failure" || errs[1] != "metrics_to_guardian_queue: older failure" {
		t.Fatalf("view failed: %v", errs)
	}

	// Queue stats. Note: the query labels MAX(created_at) "oldest"; it is the
	// newest pending message's time. QueueStats.OldestReadyAge is the real
	// oldest.
	rows, err = conn.Query(ctx, sqlQueueStats)
	if err != nil {
		t.Fatal(err)
	}
	stats := map[string]int64{}
	newest := map[string]time.Time{}
	for rows.Next() {
		var q string
		var n int64
		var at time.Time
		if err := rows.Scan(&q, &n, &at); err != nil {
			t.Fatal(err)
		}
		stats[q], newest[q] = n, at
	}
	if len(stats) != 2 || stats["proposals_for_consensus_queue"] != 2 || stats["rollback_triggers_queue"] != 1 ||
		!newest["proposals_for_consensus_queue"].Equal(time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC)) {
		t.Fatalf("queue stats: %v %v", stats, newest)
	}
}
