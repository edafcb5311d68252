package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/schema"
	"github.com/pgflow-go/pgflow/migrate"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// exampleDB gives each example a schema of its own on the test database, as
// `pgflow init --schema ...` would, and drops it afterwards.
func exampleDB(name string) (*pgxpool.Pool, string, func()) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgflowtest.DatabaseURL())
	if err != nil {
		log.Fatal(err)
	}
	s := fmt.Sprintf("pgflow_example_%s_%d", name, os.Getpid())
	if _, err := migrate.Up(ctx, pool, s); err != nil {
		log.Fatal(err)
	}
	return pool, s, func() {
		_, _ = pool.Exec(ctx, "DROP SCHEMA "+schema.Quote(s)+" CASCADE")
		pool.Close()
	}
}

// Publish a message and handle it with a consumer.
func Example() {
	pool, schemaName, cleanup := exampleDB("basic")
	defer cleanup()
	ctx := context.Background()

	client, err := pgflow.New(pool, pgflow.Config{Schema: schemaName})
	if err != nil {
		log.Fatal(err)
	}
	type Proposal struct {
		ProposalID string  `json:"proposal_id"`
		RiskScore  float64 `json:"risk_score"`
	}
	done := make(chan struct{})
	err = client.Consume(pgflow.ConsumerConfig{
		Queue:   "proposals_for_consensus_queue",
		Workers: 2,
		Handler: func(ctx context.Context, m *pgflow.Message) error {
			var p Proposal
			if err := m.Decode(&p); err != nil {
				return pgflow.Permanent(err) // malformed: straight to the DLQ
			}
			fmt.Printf("received %s (risk %.1f), attempt %d\n", p.ProposalID, p.RiskScore, m.Attempt)
			close(done)
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := client.Publish(ctx, "proposals_for_consensus_queue", Proposal{ProposalID: "p-1", RiskScore: 0.2}); err != nil {
		log.Fatal(err)
	}
	<-done
	if err := client.Close(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: received p-1 (risk 0.2), attempt 1
}

// PublishTx writes the message in the caller's transaction: it exists only
// if the transaction commits.
func ExampleClient_PublishTx() {
	pool, schemaName, cleanup := exampleDB("tx")
	defer cleanup()
	ctx := context.Background()
	client, _ := pgflow.New(pool, pgflow.Config{Schema: schemaName})
	defer client.Close(ctx)

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// ... the service's own writes in tx ...
		_, err := client.PublishTx(ctx, tx, "metrics_to_guardian_queue", map[string]any{"instance_id": "i-1"})
		if err != nil {
			return err
		}
		return errors.New("validation failed") // roll back: nothing is queued
	})
	fmt.Println("transaction:", err)

	var n int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM `+schemaName+`.pgflow_messages`).Scan(&n)
	fmt.Println("queued messages:", n)
	// Output:
	// transaction: validation failed
	// queued messages: 0
}

// Options set priority, delay, deduplication and headers.
func ExampleClient_Publish_options() {
	pool, schemaName, cleanup := exampleDB("opts")
	defer cleanup()
	ctx := context.Background()
	client, _ := pgflow.New(pool, pgflow.Config{Schema: schemaName})
	defer client.Close(ctx)

	first, _ := client.Publish(ctx, "rollback_triggers_queue", map[string]any{"reason": "error rate"},
		pgflow.WithPriority(pgflow.PriorityHigh),
		pgflow.WithDedupKey("rollback:instance-7"),
		pgflow.WithHeader("instance_id", "instance-7"))
	again, _ := client.Publish(ctx, "rollback_triggers_queue", map[string]any{"reason": "error rate"},
		pgflow.WithDedupKey("rollback:instance-7"))
	_, err := client.Publish(ctx, "rollback_triggers_queue", 1, pgflow.WithDelay(-time.Second))

	fmt.Println("deduplicated:", first == again)
	fmt.Println(err)
	// Output:
	// deduplicated: true
	// pgflow: negative delay: delay "-1s": must be zero or positive
}

// Declare a queue's retry and lease settings; after MaxRetries retries a
// failing message moves to pgflow_dlq with every attempt's error.
func ExampleClient_DeclareQueue() {
	pool, schemaName, cleanup := exampleDB("declare")
	defer cleanup()
	ctx := context.Background()
	client, _ := pgflow.New(pool, pgflow.Config{Schema: schemaName})
	defer client.Close(ctx)

	err := client.DeclareQueue(ctx, pgflow.QueueConfig{
		Name:         "guardian_safety_profiles_queue",
		MaxRetries:   pgflow.Set(3),
		RetryDelay:   pgflow.Set(time.Second), // 1 s, 2 s, 4 s (with jitter), capped by MaxRetryDelay
		LeaseTimeout: pgflow.Set(30 * time.Second),
	})
	if err != nil {
		log.Fatal(err)
	}
	q, _ := client.Queue(ctx, "guardian_safety_profiles_queue")
	fmt.Println(q.Name, q.MaxRetries, q.RetryDelay, q.MaxRetryDelay, q.LeaseTimeout)
	// Output: guardian_safety_profiles_queue 3 1s 5m0s 30s
}

// A typed handler: HandleJSON decodes each payload into the handler's type;
// a payload that does not decode goes to the dead-letter queue at once.
func ExampleHandleJSON() {
	pool, schemaName, cleanup := exampleDB("typed")
	defer cleanup()
	ctx := context.Background()

	client, err := pgflow.New(pool, pgflow.Config{Schema: schemaName})
	if err != nil {
		log.Fatal(err)
	}
	type Invoice struct {
		Number string `json:"number"`
		Cents  int64  `json:"cents"`
	}
	done := make(chan struct{})
	err = client.Consume(pgflow.ConsumerConfig{
		Queue:   "invoices",
		Timeout: 30 * time.Second,
		Handler: pgflow.HandleJSON(func(ctx context.Context, m *pgflow.Message, inv Invoice) error {
			fmt.Printf("invoice %s: %d cents\n", inv.Number, inv.Cents)
			close(done)
			return nil
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := client.Publish(ctx, "invoices", Invoice{Number: "F-7", Cents: 1250}); err != nil {
		log.Fatal(err)
	}
	<-done
	if err := client.Close(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: invoice F-7: 1250 cents
}

// Ask whether a pool's connections pass through a pooler such as PgBouncer
// (pgflow.Connect does so by itself).
func ExampleDetectPooler() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgflowtest.DatabaseURL())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	pooled, err := pgflow.DetectPooler(ctx, pool)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("through a pooler:", pooled)
	// Output: through a pooler: false
}

// A batch handler receives up to BatchSize messages at once and reports an
// outcome per message.
func ExampleBatchHandler() {
	pool, schemaName, cleanup := exampleDB("batch")
	defer cleanup()
	ctx := context.Background()

	client, err := pgflow.New(pool, pgflow.Config{Schema: schemaName})
	if err != nil {
		log.Fatal(err)
	}
	type Sample struct {
		Instance string  `json:"instance"`
		CPU      float64 `json:"cpu"`
	}
	var batch []pgflow.Outgoing
	for i, cpu := range []float64{0.5, -1, 0.7} {
		batch = append(batch, pgflow.Outgoing{Queue: "metrics", Payload: Sample{Instance: fmt.Sprint("i-", i), CPU: cpu}})
	}
	if _, err := client.PublishBatch(ctx, batch); err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	err = client.Consume(pgflow.ConsumerConfig{
		Queue:     "metrics",
		BatchSize: 100,
		BatchHandler: func(ctx context.Context, msgs []*pgflow.Message) error {
			errs := make(pgflow.BatchErrors, len(msgs))
			sum, n := 0.0, 0
			for i, m := range msgs {
				var s Sample
				if err := m.Decode(&s); err != nil || s.CPU < 0 {
					errs[i] = pgflow.Permanent(fmt.Errorf("bad sample %s", m.Payload))
					continue
				}
				sum, n = sum+s.CPU, n+1
			}
			fmt.Printf("%d messages, %d samples, mean cpu %.1f\n", len(msgs), n, sum/float64(n))
			close(done)
			return errs // the bad sample goes to the dead-letter queue, the others are acknowledged
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	<-done
	if err := client.Close(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: 3 messages, 2 samples, mean cpu 0.6
}

// Cheap handlers and few workers: Prefetch lets each claim take up to
// Workers + Prefetch messages, so a backlog drains with fewer claims.
func ExampleConsumerConfig_prefetch() {
	pool, schemaName, cleanup := exampleDB("prefetch")
	defer cleanup()
	ctx := context.Background()

	client, err := pgflow.New(pool, pgflow.Config{Schema: schemaName})
	if err != nil {
		log.Fatal(err)
	}
	var batch []pgflow.Outgoing
	for i := range 100 {
		batch = append(batch, pgflow.Outgoing{Queue: "thumbnails", Payload: i})
	}
	if _, err := client.PublishBatch(ctx, batch); err != nil {
		log.Fatal(err)
	}
	var handled atomic.Int32
	done := make(chan struct{})
	err = client.Consume(pgflow.ConsumerConfig{
		Queue:   "thumbnails",
		Workers: 2,
		// Up to 18 more claimed while both workers are busy: they wait in
		// memory with their leases extended, go back to the queue if they
		// wait half a lease, and at Stop.
		Prefetch: 18,
		Handler: func(ctx context.Context, m *pgflow.Message) error {
			if handled.Add(1) == 100 {
				close(done)
			}
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	<-done
	if err := client.Close(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("handled", handled.Load())
	// Output: handled 100
}
