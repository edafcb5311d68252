package promflow_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/promflow"
)

func ExampleEventCollector() {
	events := promflow.NewEventCollector(promflow.EventOptions{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(events)

	// In a service: pgflow.Config{Hooks: []pgflow.EventHook{events.Hook()}}.
	hook := events.Hook()
	hook(pgflow.Event{Kind: pgflow.EventPublished, Queue: "orders"})
	hook(pgflow.Event{Kind: pgflow.EventPublished, Queue: "orders"})

	fams, _ := reg.Gather()
	for _, f := range fams {
		if f.GetName() == "pgflow_messages_published_total" {
			m := f.GetMetric()[0]
			fmt.Println(f.GetName(), m.GetLabel()[0].GetValue(), m.GetCounter().GetValue())
		}
	}
	// Output: pgflow_messages_published_total orders 2
}

// A metrics endpoint with both collectors, as `pgflow serve` runs it.
func ExampleHandler() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("PGFLOW_DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	queues, err := promflow.NewQueueCollector(pool, promflow.QueueOptions{Schema: "public"})
	if err != nil {
		log.Fatal(err)
	}
	events := promflow.NewEventCollector(promflow.EventOptions{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(queues, events)

	client, err := pgflow.New(pool, pgflow.Config{Hooks: []pgflow.EventHook{events.Hook()}})
	if err != nil {
		log.Fatal(err)
	}
	_ = client
	http.Handle("/metrics", promflow.Handler(reg))
	log.Fatal(http.ListenAndServe(":9187", nil))
}
