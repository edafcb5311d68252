package producer_test

import (
	"context"
	"fmt"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
	"github.com/pgflow-go/pgflow/producer"
)

func Example() {
	ctx := context.Background()
	client, err := pgflow.Connect(ctx, pgflowtest.DatabaseURL(), pgflow.Config{Schema: exampleSchema()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close(ctx)

	// A pgflow.yaml producer entry: workers 2, max_retries 3, retry_delay_ms 1000.
	p, err := producer.New(client, producer.Config{
		Queue:      "proposals_for_consensus_queue",
		Workers:    2,
		MaxRetries: 3,
		RetryDelay: time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	id, err := p.Publish(ctx, map[string]any{"proposal_id": "p-1", "impact_score": 0.4})
	fmt.Println(id > 0, err)
	fmt.Println(p.Close(ctx), p.Stats().Published)
	// Output:
	// true <nil>
	// <nil> 1
}
