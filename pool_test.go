package pgflow_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// No call may hold a pooled connection while it waits for another from the
// same pool: with a one-connection pool such a call waits on itself until
// its context ends. Each publish path below goes to a queue that does not
// exist yet (the path that used to take a second connection to create it),
// with a deadline that only a self-wait can reach.

// onePool is a test schema whose pool has a single connection.
func onePool(t *testing.T) *pgflowtest.DB {
	t.Helper()
	return pgflowtest.New(t, pgflowtest.Options{MaxConns: 1})
}

// selfWaitDeadline bounds each publish: far longer than a publish takes,
// far shorter than the test's own timeout.
const selfWaitDeadline = 20 * time.Second

func publishCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), selfWaitDeadline)
	t.Cleanup(cancel)
	return ctx
}

func TestOneConnectionPoolPublishPathsToNewQueues(t *testing.T) {
	for _, strict := range []bool{false, true} {
		name := "auto-create"
		if strict {
			name = "strict"
		}
		t.Run(name, func(t *testing.T) {
			db := onePool(t)
			c := newClient(t, db, pgflow.Config{StrictQueues: strict})
			ctx := publishCtx(t)
			if strict {
				// StrictQueues reads the queue row instead of creating it.
				for _, q := range []string{"p", "ptx", "b", "btx"} {
					if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: q}); err != nil {
						t.Fatal(err)
					}
				}
				// A fresh client knows none of them yet.
				c = newClient(t, db, pgflow.Config{StrictQueues: true})
			}
			if _, err := c.Publish(ctx, "p", map[string]int{"n": 1}); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if _, err := c.PublishBatch(ctx, []pgflow.Outgoing{{Queue: "b", Payload: 1}, {Queue: "b", Payload: 2}}); err != nil {
				t.Fatalf("PublishBatch: %v", err)
			}
			// The caller's transaction holds the pool's only connection.
			err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
				if _, err := c.PublishTx(ctx, tx, "ptx", 1); err != nil {
					return err
				}
				_, err := c.PublishBatchTx(ctx, tx, []pgflow.Outgoing{{Queue: "btx", Payload: 1}})
				return err
			})
			if err != nil {
				t.Fatalf("PublishTx/PublishBatchTx: %v", err)
			}
			for q, want := range map[string]int{"p": 1, "b": 2, "ptx": 1, "btx": 1} {
				if got := db.Count(t, "pgflow_messages", "queue_name = $1", q); got != want {
					t.Errorf("queue %s holds %d messages, want %d", q, got, want)
				}
			}
		})
	}
}

// A queue created inside a transaction that rolls back must not be taken for
// an existing queue afterwards.
func TestQueueCreatedInRolledBackTxIsCreatedAgain(t *testing.T) {
	db := onePool(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := publishCtx(t)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishTx(ctx, tx, "fresh", 1); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_queues", "queue_name = 'fresh'"); n != 0 {
		t.Fatalf("rolled-back queue row still there: %d", n)
	}
	if _, err := c.Publish(ctx, "fresh", 1); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_queues", "queue_name = 'fresh'"); n != 1 {
		t.Fatalf("queue row after a committed publish: %d, want 1", n)
	}
	// With StrictQueues the queue now exists and can be published to.
	strict := newClient(t, db, pgflow.Config{StrictQueues: true})
	if _, err := strict.Publish(ctx, "fresh", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Publish(ctx, "never-declared", 2); !errors.Is(err, pgflow.ErrQueueNotFound) {
		t.Fatalf("strict publish to an unknown queue: %v, want ErrQueueNotFound", err)
	}
}

// A consumer and its publishers share a one-connection pool: claims, acks,
// retries, dead-lettering and the rescuer all take turns on it.
func TestOneConnectionPoolConsumes(t *testing.T) {
	db := onePool(t)
	ctx := publishCtx(t)
	rec := newRecorder()
	c := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "work", Workers: 4, Declare: fastQueue("work", 1),
		Handler: func(ctx context.Context, m *pgflow.Message) error {
			var n int
			if err := m.Decode(&n); err != nil {
				return pgflow.Permanent(err)
			}
			if n%10 == 0 {
				return errors.New("every tenth fails")
			}
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const total = 100
	for i := 1; i <= total; i++ {
		if _, err := c.Publish(ctx, "work", i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every message handled or dead-lettered", func() bool {
		return rec.count(pgflow.EventCompleted)+rec.count(pgflow.EventDeadLettered) == total
	})
	if got := rec.count(pgflow.EventDeadLettered); got != total/10 {
		t.Errorf("dead-lettered %d, want %d", got, total/10)
	}
	if got := rec.count(pgflow.EventRetried); got != total/10 {
		t.Errorf("retried %d, want %d", got, total/10)
	}
}
