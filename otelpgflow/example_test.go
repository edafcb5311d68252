package otelpgflow_test

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/otelpgflow"
)

// A consumer's handler, wrapped, runs in a span that continues the trace
// found in the message's headers.
func ExampleTracer_WrapHandler() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tr := otelpgflow.NewTracer(otelpgflow.WithTracerProvider(tp))

	handle := tr.WrapHandler(func(ctx context.Context, m *pgflow.Message) error {
		fmt.Println("handler's trace:", trace.SpanContextFromContext(ctx).TraceID())
		return nil
	})
	// What a consumer receives from a producer that published with
	// tr.Publish or tr.Inject(ctx).
	m := &pgflow.Message{ID: 42, Queue: "orders", Attempt: 1, Headers: map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}}
	_ = handle(context.Background(), m)

	s := exp.GetSpans()[0]
	fmt.Println(s.Name, "parent:", s.Parent.SpanID())
	// Output:
	// handler's trace: 4bf92f3577b34da6a3ce929d0e0e4736
	// process orders parent: 00f067aa0ba902b7
}

// Wiring both halves into a client: publish through the tracer, consume
// through a wrapped handler.
func ExampleTracer_Publish() {
	ctx := context.Background()
	tr := otelpgflow.NewTracer() // global tracer provider
	c, err := pgflow.Connect(ctx, os.Getenv("PGFLOW_DATABASE_URL"), pgflow.Config{})
	if err != nil {
		return
	}
	defer c.Close(ctx) //nolint:errcheck
	_ = c.Consume(pgflow.ConsumerConfig{Queue: "orders", Handler: tr.WrapHandler(
		func(ctx context.Context, m *pgflow.Message) error { return nil })})
	_, _ = tr.Publish(ctx, c, "orders", map[string]string{"sku": "A-1"})
}

func ExampleMetrics() {
	reader := sdkmetric.NewManualReader()
	m, _ := otelpgflow.NewMetrics(otelpgflow.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	// In a service: pgflow.Config{Hooks: []pgflow.EventHook{m.Hook()}}.
	hook := m.Hook()
	hook(pgflow.Event{Kind: pgflow.EventPublished, Queue: "orders"})
	hook(pgflow.Event{Kind: pgflow.EventPublished, Queue: "orders"})

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(context.Background(), &rm)
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			if sum, ok := md.Data.(metricdata.Sum[int64]); ok && md.Name == "pgflow.messages.published" {
				q, _ := sum.DataPoints[0].Attributes.Value(attribute.Key("queue"))
				fmt.Println(md.Name, q.AsString(), sum.DataPoints[0].Value)
			}
		}
	}
	// Output: pgflow.messages.published orders 2
}
