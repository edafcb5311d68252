package pgflow_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/pgflow-go/pgflow"
)

func ExampleWithExpiry() {
	c, cleanup := exampleClient()
	defer cleanup()
	ctx := context.Background()
	// A rollback acted on long after the metrics that caused it does more
	// harm than good: unclaimed for 10 minutes, it goes to the DLQ instead.
	_, err := c.Publish(ctx, "rollback_triggers_queue", map[string]string{"to": "v41"},
		pgflow.WithPriority(pgflow.PriorityHigh), pgflow.WithExpiry(10*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	// One already past its expiry is never delivered.
	_, err = c.Publish(ctx, "rollback_triggers_queue", map[string]string{"to": "v40"},
		pgflow.WithExpiresAt(time.Now().Add(-time.Second)))
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Maintain(ctx) // started clients do this every 5 s
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("expired:", res.Expired["rollback_triggers_queue"])
	page, err := c.ListDLQ(ctx, pgflow.DLQListOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range page.Messages {
		fmt.Println(m.Reason, string(m.Payload))
	}
	// Output:
	// expired: 1
	// expired {"to": "v40"}
}

func ExampleQueueConfig_lifetimes() {
	c, cleanup := exampleClient()
	defer cleanup()
	ctx := context.Background()
	err := c.DeclareQueue(ctx, pgflow.QueueConfig{
		Name:         "rollback_triggers_queue",
		Expiry:       pgflow.Set(15 * time.Minute),   // default expiry of its messages
		DLQRetention: pgflow.Set(7 * 24 * time.Hour), // dead letters kept a week
	})
	if err != nil {
		log.Fatal(err)
	}
	q, err := c.Queue(ctx, "rollback_triggers_queue")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(q.Expiry, q.DLQRetention)
	// Output: 15m0s 168h0m0s
}

func ExampleClient_Recover() {
	c, cleanup := exampleClient()
	defer cleanup()
	ctx := context.Background()
	// Run once on a database restored from a backup, before its consumers
	// start: leases of the backup's consumers are handed back at once.
	released, err := c.Recover(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("released:", len(released))
	// Output: released: 0
}
