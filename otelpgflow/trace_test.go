package otelpgflow_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/otelpgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// process is one side of the test: its own client and its own tracer
// provider, sharing only the database with the other side, as two services
// would.
type process struct {
	client   *pgflow.Client
	exporter *tracetest.InMemoryExporter
	provider *sdktrace.TracerProvider
	tracer   *otelpgflow.Tracer
}

func newProcess(t *testing.T, db *pgflowtest.DB, opts ...otelpgflow.Option) *process {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	c, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return &process{client: c, exporter: exp, provider: tp,
		tracer: otelpgflow.NewTracer(append([]otelpgflow.Option{otelpgflow.WithTracerProvider(tp)}, opts...)...)}
}

func spanNamed(t *testing.T, exp *tracetest.InMemoryExporter, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span %q among %d", name, len(exp.GetSpans()))
	return tracetest.SpanStub{}
}

func attr(s tracetest.SpanStub, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// publishAndConsume publishes one message from producer inside a parent
// span, consumes it on consumer, and returns what the handler saw.
func publishAndConsume(t *testing.T, producer, consumer *process, handlerErr error) (sawBaggage string) {
	t.Helper()
	ctx := context.Background()
	got := make(chan string, 1)
	err := consumer.client.Consume(pgflow.ConsumerConfig{Queue: "orders", Handler: consumer.tracer.WrapHandler(
		func(ctx context.Context, m *pgflow.Message) error {
			got <- baggage.FromContext(ctx).Member("tenant").Value()
			return handlerErr
		}),
		Declare: &pgflow.QueueConfig{MaxRetries: pgflow.Set(0)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.client.Start(ctx); err != nil {
		t.Fatal(err)
	}

	member, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(member)
	pctx := baggage.ContextWithBaggage(ctx, bag)
	pctx, parent := producer.provider.Tracer("app").Start(pctx, "checkout")
	if _, err := producer.tracer.Publish(pctx, producer.client, "orders", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	select {
	case sawBaggage = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("message not consumed")
	}
	// The process span ends when the wrapped handler returns, after the
	// send above; Stop waits for the handler.
	if err := consumer.client.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	return sawBaggage
}

func TestTraceContextTravelsInHeaders(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 4})
	producer, consumer := newProcess(t, db), newProcess(t, db)
	if b := publishAndConsume(t, producer, consumer, nil); b != "acme" {
		t.Errorf("handler saw baggage tenant=%q, want acme", b)
	}

	checkout := spanNamed(t, producer.exporter, "checkout")
	send := spanNamed(t, producer.exporter, "send orders")
	process := spanNamed(t, consumer.exporter, "process orders")

	if send.Parent.SpanID() != checkout.SpanContext.SpanID() {
		t.Error("send span is not a child of the caller's span")
	}
	if send.SpanKind != trace.SpanKindProducer || process.SpanKind != trace.SpanKindConsumer {
		t.Errorf("kinds: send %v, process %v", send.SpanKind, process.SpanKind)
	}
	if process.SpanContext.TraceID() != send.SpanContext.TraceID() {
		t.Error("process span is in another trace than the send span")
	}
	if process.Parent.SpanID() != send.SpanContext.SpanID() || !process.Parent.IsRemote() {
		t.Errorf("process span's parent is %v, want the remote send span %v", process.Parent.SpanID(), send.SpanContext.SpanID())
	}
	if len(process.Links) != 1 || process.Links[0].SpanContext.SpanID() != send.SpanContext.SpanID() {
		t.Errorf("process span links %v, want the send span", process.Links)
	}
	id := attr(send, "messaging.message.id").AsString()
	if id == "" || attr(process, "messaging.message.id").AsString() != id {
		t.Errorf("message ids: send %q, process %q", id, attr(process, "messaging.message.id").AsString())
	}
	for _, s := range []tracetest.SpanStub{send, process} {
		if got := attr(s, "messaging.destination.name").AsString(); got != "orders" {
			t.Errorf("%s: destination %q", s.Name, got)
		}
		if got := attr(s, "messaging.system").AsString(); got != "pgflow" {
			t.Errorf("%s: system %q", s.Name, got)
		}
	}
	if got := attr(process, otelpgflow.AttemptKey).AsInt64(); got != 1 {
		t.Errorf("attempt %d, want 1", got)
	}
	if process.Status.Code != codes.Unset {
		t.Errorf("process status %v", process.Status)
	}
}

func TestNewRootLinksOnly(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 4})
	producer, consumer := newProcess(t, db), newProcess(t, db, otelpgflow.WithNewRoot())
	publishAndConsume(t, producer, consumer, pgflow.Permanent(errors.New("rejected")))

	send := spanNamed(t, producer.exporter, "send orders")
	process := spanNamed(t, consumer.exporter, "process orders")
	if process.SpanContext.TraceID() == send.SpanContext.TraceID() || process.Parent.IsValid() {
		t.Error("with WithNewRoot the process span should start its own trace")
	}
	if len(process.Links) != 1 || process.Links[0].SpanContext.TraceID() != send.SpanContext.TraceID() {
		t.Errorf("process span links %v, want the send span", process.Links)
	}
	if process.Status.Code != codes.Error || len(process.Events) == 0 {
		t.Errorf("handler error not recorded: status %v, events %v", process.Status, process.Events)
	}
	if got := attr(process, "error.type").AsString(); got != "permanent" {
		t.Errorf("error.type %q", got)
	}
}

func TestWrapHandlerWithoutTraceContext(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	h := otelpgflow.NewTracer(otelpgflow.WithTracerProvider(tp)).WrapHandler(func(ctx context.Context, m *pgflow.Message) error {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			t.Error("handler context has no span")
		}
		return nil
	})
	if err := h(context.Background(), &pgflow.Message{ID: 7, Queue: "q", Attempt: 2}); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Parent.IsValid() || len(spans[0].Links) != 0 {
		t.Fatalf("want one root span without links, got %+v", spans)
	}
}
