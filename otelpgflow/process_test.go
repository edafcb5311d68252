package otelpgflow_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/otelpgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// TestHelperTracedConsumer is not a test: TestTraceAcrossProcesses runs the
// test binary again with this test selected, as the consuming service.
func TestHelperTracedConsumer(t *testing.T) {
	schema := os.Getenv("OTELPGFLOW_HELPER_SCHEMA")
	if schema == "" {
		t.Skip("helper process only")
	}
	ctx := context.Background()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	tr := otelpgflow.NewTracer(otelpgflow.WithTracerProvider(tp))
	c, err := pgflow.Connect(ctx, pgflowtest.DatabaseURL(), pgflow.Config{Schema: schema})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	done := make(chan struct{})
	err = c.Consume(pgflow.ConsumerConfig{Queue: "orders", Handler: tr.WrapHandler(func(ctx context.Context, m *pgflow.Message) error {
		s := trace.SpanFromContext(ctx).(sdktrace.ReadOnlySpan)
		link := ""
		if l := s.Links(); len(l) > 0 {
			link = l[0].SpanContext.SpanID().String()
		}
		fmt.Printf("SPAN %s %s %s %s\n", s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), link)
		close(done)
		return nil
	})})
	if err == nil {
		err = c.Start(ctx)
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY")
	<-done
	_ = c.Close(ctx)
}

// TestTraceAcrossProcesses publishes from this process and consumes in
// another OS process: the consumer's span continues the producer's trace,
// with nothing shared but the database row.
func TestTraceAcrossProcesses(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	ctx := context.Background()
	proc := pgflowtest.StartProcess(t, "TestHelperTracedConsumer", "OTELPGFLOW_HELPER_SCHEMA="+db.Schema)
	next := proc.Next
	next("READY")

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	c, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otelpgflow.NewTracer(otelpgflow.WithTracerProvider(tp)).Publish(ctx, c, "orders", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	send := spanNamed(t, exp, "send orders")
	got := next("SPAN ")
	want := fmt.Sprintf("process orders %s %s %s", send.SpanContext.TraceID(), send.SpanContext.SpanID(), send.SpanContext.SpanID())
	if got != want {
		t.Errorf("consumer process span: %q\nwant (name trace parent link): %q", got, want)
	}
}
