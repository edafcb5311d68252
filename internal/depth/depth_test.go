package depth_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow/internal/depth"
	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func find(t *testing.T, s depth.Snapshot, queue string) depth.QueueStats {
	t.Helper()
	for _, q := range s.Queues {
		if q.Queue == queue {
			return q
		}
	}
	t.Fatalf("queue %s not in snapshot %+v", queue, s.Queues)
	return depth.QueueStats{}
}

func TestReadStates(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	db.Exec(t, `INSERT INTO pgflow_queues (queue_name, paused) VALUES ('a', false), ('p', true), ('empty', false)`)
	db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload, visible_at) VALUES
		('a', '{}', now() - interval '90 seconds'), ('a', '{}', now()), ('a', '{}', now() + interval '1 hour')`)
	db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload, status, locked_by, locked_until, attempt) VALUES
		('a', '{}', 'processing', 'c', now() + interval '1 minute', 1),
		('a', '{}', 'processing', 'c', now() - interval '1 minute', 1)`)
	// A DLQ row for a queue that has no definition (deleted since).
	db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, error, message_created_at) VALUES (1, 'gone', '{}', 'x', now())`)

	snap, err := depth.Read(context.Background(), db.Pool, query.MustLoad(db.Schema))
	if err != nil {
		t.Fatal(err)
	}
	a := find(t, snap, "a")
	if a.Ready != 2 || a.Delayed != 1 || a.Processing != 2 || a.ExpiredLeases != 1 || a.DLQ != 0 || a.Paused {
		t.Errorf("a = %+v", a)
	}
	if a.OldestReadyAge < 90*time.Second {
		t.Errorf("oldest ready age %v, want at least 90s", a.OldestReadyAge)
	}
	if p := find(t, snap, "p"); !p.Paused || p.Ready != 0 || p.OldestReadyAge != 0 {
		t.Errorf("p = %+v", p)
	}
	if e := find(t, snap, "empty"); e != (depth.QueueStats{Queue: "empty"}) {
		t.Errorf("empty = %+v", e)
	}
	if g := find(t, snap, "gone"); g.DLQ != 1 {
		t.Errorf("gone = %+v", g)
	}
}

func TestReaderCaches(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 4})
	ctx := context.Background()
	q := query.MustLoad(db.Schema)
	db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload) VALUES ('a', '{}')`)

	cached := depth.NewReader(db.Pool, q, time.Hour, 0)
	first, err := cached.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload) VALUES ('a', '{}')`)
	// Concurrent callers inside the TTL all get the first read.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			s, err := cached.Get(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			// Not find: it may call t.Fatal, which a goroutine must not.
			ready := int64(-1)
			for _, q := range s.Queues {
				if q.Queue == "a" {
					ready = q.Ready
				}
			}
			if !s.ReadAt.Equal(first.ReadAt) || ready != 1 {
				t.Errorf("cached read changed: %+v", s)
			}
		})
	}
	wg.Wait()

	fresh, err := depth.NewReader(db.Pool, q, 0, time.Minute).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := find(t, fresh, "a").Ready; got != 2 {
		t.Errorf("uncached reader sees %d ready, want 2", got)
	}
}
