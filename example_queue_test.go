package pgflow_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/pgflow-go/pgflow"
)

// A declaration writes only the settings it Sets; Set(0) is an explicit zero
// (no retries: a failing message goes to the DLQ after one delivery). The
// other settings keep what is stored, and a change to an existing queue is
// logged (and emitted as a queue_changed event).
func ExampleQueueConfig() {
	pool, schemaName, cleanup := exampleDB("queueconfig")
	defer cleanup()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{} // keep the output stable
		}
		return a
	}}))
	client, _ := pgflow.New(pool, pgflow.Config{Schema: schemaName, Logger: logger})
	defer client.Close(ctx)

	// A new queue: a 5-minute lease, the defaults for the rest.
	if err := client.DeclareQueue(ctx, pgflow.QueueConfig{Name: "reports", LeaseTimeout: pgflow.Set(5 * time.Minute)}); err != nil {
		fmt.Println(err)
	}
	// Later, elsewhere: no retries. The lease stays as it is.
	if err := client.DeclareQueue(ctx, pgflow.QueueConfig{Name: "reports", MaxRetries: pgflow.Set(0)}); err != nil {
		fmt.Println(err)
	}
	q, _ := client.Queue(ctx, "reports")
	fmt.Println(q.MaxRetries, q.RetryDelay, q.LeaseTimeout)
	// Output:
	// level=WARN msg="pgflow: queue settings changed" queue=reports max_retries="3 -> 0"
	// 0 1s 5m0s
}
