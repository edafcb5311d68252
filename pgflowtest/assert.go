package pgflowtest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/schema"
)

// Queued is a message waiting (or in flight) in a test schema.
type Queued struct {
	ID       int64
	Queue    string
	Payload  json.RawMessage
	Headers  map[string]string
	Priority int
	Status   string
	DedupKey *string
}

// Messages returns the messages of queue in claim order (priority, then
// visible_at, then id): what your code published and no consumer finished.
func (db *DB) Messages(t testing.TB, queue string) []Queued {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT id, queue_name, payload, headers, priority, status, dedup_key
		FROM `+schema.Quote(db.Schema)+`.pgflow_messages WHERE queue_name = $1
		ORDER BY priority DESC, visible_at, id`, queue)
	if err != nil {
		t.Fatalf("pgflowtest: read messages of %s: %v", queue, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Queued, error) {
		var q Queued
		var prio int16
		err := r.Scan(&q.ID, &q.Queue, &q.Payload, &q.Headers, &prio, &q.Status, &q.DedupKey)
		q.Priority = int(prio)
		return q, err
	})
	if err != nil {
		t.Fatalf("pgflowtest: read messages of %s: %v", queue, err)
	}
	return out
}

// RequirePublished fails the test unless queue holds exactly n messages, and
// returns them. Each payload is decoded into a fresh T for comparison.
func RequirePublished[T any](t testing.TB, db *DB, queue string, n int) []T {
	t.Helper()
	msgs := db.Messages(t, queue)
	if len(msgs) != n {
		t.Fatalf("pgflowtest: queue %s holds %d messages, want %d", queue, len(msgs), n)
	}
	out := make([]T, len(msgs))
	for i, m := range msgs {
		if err := json.Unmarshal(m.Payload, &out[i]); err != nil {
			t.Fatalf("pgflowtest: message %d of %s: payload %s does not decode: %v", m.ID, queue, m.Payload, err)
		}
	}
	return out
}
