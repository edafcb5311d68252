package otelpgflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/otelpgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func has(set attribute.Set, want map[string]string) bool {
	for k, v := range want {
		if got, ok := set.Value(attribute.Key(k)); !ok || got.AsString() != v {
			return false
		}
	}
	return true
}

// point returns the value of metric name at the data point whose attributes
// include want: a sum's or gauge's value, a histogram's count.
func point(t *testing.T, ms map[string]metricdata.Metrics, name string, want map[string]string) float64 {
	t.Helper()
	m, ok := ms[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			if has(p.Attributes, want) {
				return float64(p.Value)
			}
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			if has(p.Attributes, want) {
				return float64(p.Value)
			}
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			if has(p.Attributes, want) {
				return p.Value
			}
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			if has(p.Attributes, want) {
				return float64(p.Count)
			}
		}
	}
	t.Fatalf("%s: no point with %v", name, want)
	return 0
}

func TestMetricsFromEvents(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	m, err := otelpgflow.NewMetrics(otelpgflow.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []pgflow.Event{
		{Kind: pgflow.EventPublished, Queue: "q"},
		{Kind: pgflow.EventPublished, Queue: "q"},
		{Kind: pgflow.EventReceived, Queue: "q", QueueWait: time.Millisecond},
		{Kind: pgflow.EventCompleted, Queue: "q", HandlerDuration: time.Millisecond},
		{Kind: pgflow.EventRetried, Queue: "q", HandlerDuration: time.Millisecond, Err: errors.New("x")},
		{Kind: pgflow.EventDeadLettered, Queue: "q", Err: errors.New("lease")}, // after an expired lease: no handler ran
		{Kind: pgflow.EventRedriven, Queue: "q", Count: 4},
		{Kind: pgflow.EventExpired, Queue: "q", MessageID: 9},
		{Kind: pgflow.EventDLQDeleted, Queue: "q", Count: 500},
	} {
		m.Observe(e)
	}
	ms := collect(t, reader)
	q := map[string]string{"queue": "q"}
	for name, want := range map[string]float64{
		"pgflow.messages.published": 2, "pgflow.messages.received": 1, "pgflow.messages.completed": 1,
		"pgflow.messages.retried": 1, "pgflow.messages.dead_lettered": 2, "pgflow.messages.redriven": 4,
		"pgflow.messages.expired": 1, "pgflow.messages.dlq_deleted": 500,
		"pgflow.queue.wait": 1,
	} {
		if got := point(t, ms, name, q); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := point(t, ms, "pgflow.handler.duration", map[string]string{"queue": "q", "outcome": "retried"}); got != 1 {
		t.Errorf("retried handler runs %v", got)
	}
	d := ms["pgflow.handler.duration"].Data.(metricdata.Histogram[float64])
	if len(d.DataPoints) != 2 {
		t.Errorf("handler duration has %d series, want completed and retried only", len(d.DataPoints))
	}
}

func TestObserveQueues(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	ctx := context.Background()
	c, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []pgflow.PublishOption{nil, nil, pgflow.WithDelay(time.Hour)} {
		if _, err := c.Publish(ctx, "backlog", json.RawMessage(`{}`), opt); err != nil {
			t.Fatal(err)
		}
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	m, err := otelpgflow.NewMetrics(otelpgflow.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := m.ObserveQueues(db.Pool, otelpgflow.QueueGaugeOptions{Schema: db.Schema, CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister() //nolint:errcheck
	ms := collect(t, reader)
	for state, want := range map[string]float64{"ready": 2, "delayed": 1, "processing": 0} {
		if got := point(t, ms, "pgflow.queue.messages", map[string]string{"queue": "backlog", "state": state}); got != want {
			t.Errorf("%s = %v, want %v", state, got, want)
		}
	}
	if got := point(t, ms, "pgflow.dlq.messages", map[string]string{"queue": "backlog"}); got != 0 {
		t.Errorf("dlq = %v", got)
	}
	if got := point(t, ms, "pgflow.queue.oldest_ready_age", map[string]string{"queue": "backlog"}); got < 0 {
		t.Errorf("oldest ready age %v", got)
	}
}

func BenchmarkObserve(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	m, err := otelpgflow.NewMetrics(otelpgflow.WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	e := pgflow.Event{Kind: pgflow.EventCompleted, Queue: "orders", HandlerDuration: time.Millisecond}
	m.Observe(e)
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(e)
	}
}
