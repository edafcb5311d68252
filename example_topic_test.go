package pgflow_test

import (
	"context"
	"fmt"

	"github.com/pgflow-go/pgflow"
)

// Every queue subscribed to a topic gets its own copy of each publish, in
// one statement: all of them or none.
func ExampleClient_PublishTopic() {
	pool, schemaName, cleanup := exampleDB("topics")
	defer cleanup()
	ctx := context.Background()
	client, _ := pgflow.New(pool, pgflow.Config{Schema: schemaName})
	defer client.Close(ctx)

	for _, q := range []string{"profiles.instance-1", "profiles.instance-2"} {
		if _, err := client.Subscribe(ctx, "safety-profiles", q); err != nil {
			fmt.Println(err)
		}
	}
	sent, err := client.PublishTopic(ctx, "safety-profiles", map[string]string{"profile": "strict"})
	if err != nil {
		fmt.Println(err)
	}
	for _, m := range sent {
		fmt.Println(m.Queue)
	}
	_, err = client.PublishTopic(ctx, "nobody-listens", "x")
	fmt.Println(err)
	// Output:
	// profiles.instance-1
	// profiles.instance-2
	// pgflow: publish to topic nobody-listens: pgflow: topic has no subscribers (subscribe a queue first, or pass AllowNoSubscribers)
}
