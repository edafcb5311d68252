// Package otelpgflow instruments pgflow with OpenTelemetry: traces whose
// context travels in message headers, and metrics from lifecycle events and
// from the database.
//
// It is a module of its own (github.com/pgflow-go/pgflow/otelpgflow), so that
// programs using pgflow without OpenTelemetry do not download its SDK.
//
// # Traces
//
// A producer's trace context is written into the message's headers as W3C
// traceparent/tracestate (and baggage) entries; the consumer reads it back,
// so its "process" span joins the producer's trace even in another process:
//
//	tr := otelpgflow.NewTracer()
//	id, err := tr.Publish(ctx, client, "orders", order) // "send orders" span + headers
//	// or, inside a span of your own, for PublishTx/PublishBatch:
//	client.PublishTx(ctx, tx, "orders", order, tr.Inject(ctx))
//
//	client.Consume(pgflow.ConsumerConfig{Queue: "orders", Handler: tr.WrapHandler(handle)})
//
// The process span is a child of the producer's span and links to it; with
// WithNewRoot it starts a trace of its own and only links.
//
// # Metrics
//
// Metrics turns events into counters and histograms (put its Hook in
// pgflow.Config.Hooks), and ObserveQueues adds gauges read from the database.
// Instrument and attribute names mirror package promflow's metrics, so that
// through an OpenTelemetry Prometheus exporter they come out with the same
// names (pgflow_messages_published_total, pgflow_handler_duration_seconds,
// pgflow_queue_messages…) and the alert rules and dashboards under deploy/
// work for both.
package otelpgflow
