package config_test

import (
	"context"
	"fmt"
	"os"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/config"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func Example() {
	ctx := context.Background()
	os.Setenv("EXAMPLE_DATABASE_URL", pgflowtest.DatabaseURL())
	os.Setenv("EXAMPLE_SCHEMA", exampleSchema())
	src := `
database_url: ${EXAMPLE_DATABASE_URL}
schema: ${EXAMPLE_SCHEMA}
producers:
  rollback_triggers:
    queue_name: rollback_triggers_queue
    workers: ${PGFLOW_ROLLBACK_WORKERS:-1}
    max_retries: 3
    retry_delay_ms: 1000
    priority: high
consumers:
  rollback_triggers:
    queue_name: rollback_triggers_queue
    workers: 1
    handler: handle_rollback_trigger
    max_retries: 3
    retry_delay_ms: 1000
    priority: high
`
	done := make(chan string, 1)
	handlers := config.Handlers{
		"handle_rollback_trigger": func(ctx context.Context, m *pgflow.Message) error {
			done <- fmt.Sprintf("rollback %s at priority %d", m.Payload, m.Priority)
			return nil
		},
	}
	cfg, err := config.Parse([]byte(src), "pgflow.yaml", config.Options{Handlers: handlers})
	if err != nil {
		fmt.Println(err)
		return
	}
	client, err := cfg.Connect(ctx, pgflow.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close(ctx)
	svc, err := config.NewService(client, cfg, handlers)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := svc.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := svc.Producer("rollback_triggers").Publish(ctx, map[string]string{"reason": "error rate"}); err != nil {
		fmt.Println(err)
	}
	fmt.Println(<-done)
	fmt.Println(svc.Stop(ctx))
	// Output:
	// rollback {"reason": "error rate"} at priority 10
	// <nil>
}

func ExampleParse_problems() {
	src := `
database_url: postgres://localhost/singularity
consumers:
  rollback_triggers:
    queue_name: rollback_triggers_queue
    workers: 0
    handler: Singularity.Evolution.Pgflow.Consumers
    handler_method: handle_rollback_trigger
`
	_, err := config.Parse([]byte(src), "pgflow.yaml", config.Options{Handlers: config.Handlers{}})
	fmt.Println(err)
	// Output:
	// pgflow.yaml: 3 problems:
	//   line 6: consumers.rollback_triggers.workers: must be at least 1, got 0
	//   line 7: consumers.rollback_triggers.handler: handler "Singularity.Evolution.Pgflow.Consumers" is not registered (registered: none)
	//   line 8: consumers.rollback_triggers.handler_method: unknown key: pgflow names a handler with one key; register the method under a name and write handler: <name>
}
