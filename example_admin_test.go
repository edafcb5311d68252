package pgflow_test

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"time"

	"github.com/pgflow-go/pgflow"
)

// exampleClient gives an example its own migrated schema; cleanup drops it.
func exampleClient() (*pgflow.Client, func()) {
	pool, name, drop := exampleDB(fmt.Sprintf("admin_%08x", rand.Uint32()))
	c, err := pgflow.New(pool, pgflow.Config{Schema: name})
	if err != nil {
		log.Fatal(err)
	}
	return c, func() {
		_ = c.Close(context.Background())
		drop()
	}
}

func ExampleClient_QueueStats() {
	c, cleanup := exampleClient()
	defer cleanup()
	ctx := context.Background()
	_, _ = c.Publish(ctx, "proposals_for_consensus_queue", map[string]string{"id": "p1"})
	_, _ = c.Publish(ctx, "proposals_for_consensus_queue", map[string]string{"id": "p2"}, pgflow.WithDelay(time.Minute))

	s, err := c.QueueStats(ctx, "proposals_for_consensus_queue")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: pending=%d delayed=%d in_flight=%d dead=%d paused=%v\n",
		s.Queue, s.Pending, s.Delayed, s.InFlight, s.DeadLettered, s.Paused)
	// Output: proposals_for_consensus_queue: pending=1 delayed=1 in_flight=0 dead=0 paused=false
}

func ExampleClient_ListPending() {
	c, cleanup := exampleClient()
	defer cleanup()
	ctx := context.Background()
	_, _ = c.Publish(ctx, "rollback_triggers_queue", "normal")
	_, _ = c.Publish(ctx, "rollback_triggers_queue", "urgent", pgflow.WithPriority(pgflow.PriorityHigh))

	page, err := c.ListPending(ctx, "rollback_triggers_queue", pgflow.PendingFilter{Limit: 10})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range page.Messages {
		fmt.Println(m.Priority, m.State, string(m.Payload))
	}
	// Output:
	// 10 ready "urgent"
	// 0 ready "normal"
}

func ExampleClient_PauseQueue() {
	c, cleanup := exampleClient()
	defer cleanup()
	ctx := context.Background()
	_ = c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "metrics_to_guardian_queue"})

	// Consumers everywhere stop claiming at their next claim…
	if err := c.PauseQueue(ctx, "metrics_to_guardian_queue"); err != nil {
		log.Fatal(err)
	}
	q, _ := c.Queue(ctx, "metrics_to_guardian_queue")
	fmt.Println("paused:", q.Paused)
	// …and resume, woken at once, after this.
	if err := c.ResumeQueue(ctx, "metrics_to_guardian_queue"); err != nil {
		log.Fatal(err)
	}
	q, _ = c.Queue(ctx, "metrics_to_guardian_queue")
	fmt.Println("paused:", q.Paused)
	// Output:
	// paused: true
	// paused: false
}

// A consumer dead-letters a message; once the bug is fixed the operator
// looks at the DLQ and redrives the queue.
func ExampleClient_RedriveDLQ() {
	c, cleanup := exampleClient()
	defer cleanup()
	ctx := context.Background()
	_ = c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "consensus_results_queue", MaxRetries: pgflow.Set(0)})
	handled := make(chan struct{}, 1)
	_ = c.Consume(pgflow.ConsumerConfig{Queue: "consensus_results_queue", Handler: func(ctx context.Context, m *pgflow.Message) error {
		handled <- struct{}{}
		return pgflow.Permanent(fmt.Errorf("unknown proposal"))
	}})
	_ = c.Start(ctx)
	_, _ = c.Publish(ctx, "consensus_results_queue", map[string]string{"proposal": "p9"})
	<-handled
	_ = c.Stop(ctx) // writes the outcome: the message is in the DLQ now

	page, _ := c.ListDLQ(ctx, pgflow.DLQListOptions{DLQFilter: pgflow.DLQFilter{Queue: "consensus_results_queue"}})
	m := page.Messages[0]
	fmt.Printf("%s: %s (%d attempt)\n", m.Queue, m.Error, m.Attempts)

	res, err := c.RedriveDLQ(ctx, pgflow.DLQFilter{Queue: "consensus_results_queue"}, pgflow.RedriveOptions{RatePerSecond: 100})
	if err != nil {
		log.Fatal(err)
	}
	s, _ := c.QueueStats(ctx, "consensus_results_queue")
	fmt.Printf("redriven=%d pending=%d dead=%d\n", res.Redriven, s.Pending, s.DeadLettered)
	// Output:
	// consensus_results_queue: permanent: unknown proposal (1 attempt)
	// redriven=1 pending=1 dead=0
}

func ExampleClient_PurgeDLQ() {
	c, cleanup := exampleClient()
	defer cleanup()
	ctx := context.Background()
	res, err := c.PurgeDLQ(ctx, pgflow.DLQFilter{Queue: "patterns_for_aggregator_queue", ErrorContains: "timeout"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("purged:", res.Purged)
	// Output: purged: 0
}
