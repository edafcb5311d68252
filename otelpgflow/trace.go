package otelpgflow

import (
	"context"
	"slices"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgflow-go/pgflow"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/pgflow-go/pgflow/otelpgflow"

// systemName is messaging.system on every span.
const systemName = "pgflow"

// AttemptKey is the span attribute holding the delivery's attempt number.
const AttemptKey = attribute.Key("pgflow.message.attempt")

type config struct {
	tp      trace.TracerProvider
	mp      metricProvider
	prop    propagation.TextMapPropagator
	newRoot bool
}

// Option configures a Tracer or Metrics.
type Option func(*config)

// WithTracerProvider sets the tracer provider. Default: the global one.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithPropagator sets how trace context is written to and read from
// headers. Default: W3C trace context and baggage (not the global
// propagator, which is a no-op until an application sets one).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.prop = p }
}

// WithNewRoot makes each process span the root of a trace of its own,
// linked to the producer's span instead of parented by it. Use it when one
// publishing trace fans out to so many messages that one trace would be
// unreadable.
func WithNewRoot() Option {
	return func(c *config) { c.newRoot = true }
}

func newConfig(opts []Option) config {
	c := config{}
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	return c
}

// Tracer creates send and process spans and carries their context in
// message headers.
type Tracer struct {
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	newRoot bool
}

// NewTracer returns a tracer. Options that do not apply to traces are
// ignored.
func NewTracer(opts ...Option) *Tracer {
	c := newConfig(opts)
	return &Tracer{tracer: c.tp.Tracer(ScopeName), prop: c.prop, newRoot: c.newRoot}
}

// defaultTracer uses the global providers; the global tracer provider
// delegates to whatever the application installs later, so one is enough.
var defaultTracer = sync.OnceValue(func() *Tracer { return NewTracer() })

// Inject returns a publish option that writes ctx's trace context (the
// current span, and baggage) into the message's headers. It starts no span:
// use it inside a span of your own, for example around PublishTx or
// PublishBatch; Publish starts a send span itself.
func (t *Tracer) Inject(ctx context.Context) pgflow.PublishOption {
	carrier := propagation.MapCarrier{}
	t.prop.Inject(ctx, carrier)
	return pgflow.WithHeaders(carrier) // no headers: a no-op option
}

// Extract returns ctx carrying the trace context and baggage found in the
// message's headers (a remote span context), or ctx itself when the
// message has none.
func (t *Tracer) Extract(ctx context.Context, m *pgflow.Message) context.Context {
	return t.prop.Extract(ctx, propagation.MapCarrier(m.Headers))
}

// StartSend starts a producer span for publishing to queue. End it after the
// publish, with EndSend to record the outcome; publish with Inject(ctx) of
// the returned context so the consumer links to this span.
func (t *Tracer) StartSend(ctx context.Context, queue string) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, "send "+queue,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String(systemName),
			semconv.MessagingDestinationName(queue),
			semconv.MessagingOperationName("send"),
			semconv.MessagingOperationTypeSend,
		))
}

// EndSend records a publish's outcome on span and ends it.
func EndSend(span trace.Span, id int64, err error) {
	if err != nil {
		recordError(span, err)
	} else {
		span.SetAttributes(semconv.MessagingMessageID(strconv.FormatInt(id, 10)))
	}
	span.End()
}

// Publish publishes one message inside a "send <queue>" producer span whose
// context travels in the message's headers.
func (t *Tracer) Publish(ctx context.Context, c *pgflow.Client, queue string, payload any, opts ...pgflow.PublishOption) (int64, error) {
	ctx, span := t.StartSend(ctx, queue)
	id, err := c.Publish(ctx, queue, payload, slices.Concat(opts, []pgflow.PublishOption{t.Inject(ctx)})...)
	EndSend(span, id, err)
	return id, err
}

// PublishTx is Publish in the caller's transaction.
func (t *Tracer) PublishTx(ctx context.Context, c *pgflow.Client, tx pgx.Tx, queue string, payload any, opts ...pgflow.PublishOption) (int64, error) {
	ctx, span := t.StartSend(ctx, queue)
	id, err := c.PublishTx(ctx, tx, queue, payload, slices.Concat(opts, []pgflow.PublishOption{t.Inject(ctx)})...)
	EndSend(span, id, err)
	return id, err
}

// WrapHandler returns a handler that runs h inside a "process <queue>"
// consumer span. The span is a child of the producer's span found in the
// message's headers (or, with WithNewRoot, a new root) and links to it; the
// headers' baggage is in the handler's context. A handler error is recorded
// on the span.
func (t *Tracer) WrapHandler(h pgflow.Handler) pgflow.Handler {
	return func(ctx context.Context, m *pgflow.Message) error {
		remote := t.Extract(context.Background(), m)
		opts := []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				semconv.MessagingSystemKey.String(systemName),
				semconv.MessagingDestinationName(m.Queue),
				semconv.MessagingOperationName("process"),
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingMessageID(strconv.FormatInt(m.ID, 10)),
				AttemptKey.Int(m.Attempt),
			),
		}
		parent := ctx
		if b := baggage.FromContext(remote); b.Len() > 0 {
			parent = baggage.ContextWithBaggage(parent, b)
		}
		if sc := trace.SpanContextFromContext(remote); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
			if t.newRoot {
				opts = append(opts, trace.WithNewRoot())
			} else {
				parent = trace.ContextWithRemoteSpanContext(parent, sc)
			}
		}
		ctx, span := t.tracer.Start(parent, "process "+m.Queue, opts...)
		defer span.End()
		err := h(ctx, m)
		if err != nil {
			recordError(span, err)
		}
		return err
	}
}

func recordError(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
}

// errorType classifies an error for error.type with low cardinality:
// "permanent" for pgflow.Permanent errors, else "_OTHER" (the semantic
// conventions' fallback).
func errorType(err error) string {
	if pgflow.IsPermanent(err) {
		return "permanent"
	}
	return "_OTHER"
}

// Inject is NewTracer().Inject with the global tracer provider.
func Inject(ctx context.Context) pgflow.PublishOption { return defaultTracer().Inject(ctx) }

// WrapHandler is NewTracer().WrapHandler with the global tracer provider.
func WrapHandler(h pgflow.Handler) pgflow.Handler { return defaultTracer().WrapHandler(h) }

// Publish is NewTracer().Publish with the global tracer provider.
func Publish(ctx context.Context, c *pgflow.Client, queue string, payload any, opts ...pgflow.PublishOption) (int64, error) {
	return defaultTracer().Publish(ctx, c, queue, payload, opts...)
}
