package otelpgflow

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/depth"
	"github.com/pgflow-go/pgflow/internal/query"
)

type metricProvider = metric.MeterProvider

// WithMeterProvider sets the meter provider. Default: the global one.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// Attribute keys on every pgflow instrument. They are the label names of
// package promflow's metrics, so both export paths produce the same series.
const (
	QueueKey   = attribute.Key("queue")
	OutcomeKey = attribute.Key("outcome")
	StateKey   = attribute.Key("state")
)

// The event kinds counted, in a fixed order (index into queueInstruments).
var kinds = [...]pgflow.EventKind{
	pgflow.EventPublished, pgflow.EventPublishFailed, pgflow.EventReceived,
	pgflow.EventCompleted, pgflow.EventRetried, pgflow.EventDeadLettered,
	pgflow.EventLeaseExpired, pgflow.EventRedriven, pgflow.EventPurged,
	pgflow.EventExpired, pgflow.EventDLQDeleted,
}

// Metrics records pgflow events as OpenTelemetry instruments:
//
//	pgflow.messages.<event>   counter per event kind ({message}), attribute queue
//	pgflow.handler.duration   histogram (s), attributes queue, outcome
//	pgflow.queue.wait         histogram (s), attribute queue
//	pgflow.queue.settings_changed  counter ({declaration}), attribute queue
type Metrics struct {
	meter     metric.Meter
	counters  [len(kinds)]metric.Int64Counter
	handler   metric.Float64Histogram
	queueWait metric.Float64Histogram
	changes   metric.Int64Counter // queue_changed: not a message kind

	queues sync.Map // queue -> *queueOpts
}

// queueOpts are one queue's measurement options, built once so that an event
// costs a map lookup and the SDK's own work.
type queueOpts struct {
	add                              []metric.AddOption
	wait                             []metric.RecordOption
	completed, retried, deadLettered []metric.RecordOption
}

// NewMetrics creates the instruments on the meter provider (default: the
// global one).
func NewMetrics(opts ...Option) (*Metrics, error) {
	c := newConfig(opts)
	m := &Metrics{meter: c.mp.Meter(ScopeName)}
	var err error
	for i, k := range kinds {
		m.counters[i], err = m.meter.Int64Counter("pgflow.messages."+string(k),
			metric.WithUnit("{message}"), metric.WithDescription("pgflow messages "+string(k)+" (see docs/metrics.md)."))
		if err != nil {
			return nil, err
		}
	}
	buckets := metric.WithExplicitBucketBoundaries(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300)
	if m.handler, err = m.meter.Float64Histogram("pgflow.handler.duration", metric.WithUnit("s"), buckets,
		metric.WithDescription("How long handlers ran, by outcome (completed, retried, dead_lettered).")); err != nil {
		return nil, err
	}
	if m.queueWait, err = m.meter.Float64Histogram("pgflow.queue.wait", metric.WithUnit("s"), buckets,
		metric.WithDescription("How long messages waited between becoming visible and being claimed.")); err != nil {
		return nil, err
	}
	if m.changes, err = m.meter.Int64Counter("pgflow.queue.settings_changed", metric.WithUnit("{declaration}"),
		metric.WithDescription("Declarations that changed a queue's stored settings.")); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) opts(queue string) *queueOpts {
	if o, ok := m.queues.Load(queue); ok {
		return o.(*queueOpts)
	}
	q := QueueKey.String(queue)
	set := attribute.NewSet(q)
	outcome := func(k pgflow.EventKind) []metric.RecordOption {
		return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(q, OutcomeKey.String(string(k))))}
	}
	o := &queueOpts{
		add:          []metric.AddOption{metric.WithAttributeSet(set)},
		wait:         []metric.RecordOption{metric.WithAttributeSet(set)},
		completed:    outcome(pgflow.EventCompleted),
		retried:      outcome(pgflow.EventRetried),
		deadLettered: outcome(pgflow.EventDeadLettered),
	}
	actual, _ := m.queues.LoadOrStore(queue, o)
	return actual.(*queueOpts)
}

// Hook returns the event hook to put in pgflow.Config.Hooks.
func (m *Metrics) Hook() pgflow.EventHook { return m.Observe }

// Observe records one event.
func (m *Metrics) Observe(e pgflow.Event) {
	ctx := context.Background()
	o := m.opts(e.Queue)
	for i, k := range kinds {
		if k != e.Kind {
			continue
		}
		n := int64(1)
		if (k == pgflow.EventRedriven || k == pgflow.EventPurged || k == pgflow.EventDLQDeleted) && e.Count > 0 {
			n = int64(e.Count)
		}
		m.counters[i].Add(ctx, n, o.add...)
		if k == pgflow.EventExpired {
			// An expired message is in the DLQ: dead-lettered too, as in promflow.
			m.counters[5].Add(ctx, 1, o.add...)
		}
		break
	}
	switch e.Kind {
	case pgflow.EventQueueChanged:
		m.changes.Add(ctx, 1, o.add...)
	case pgflow.EventReceived:
		m.queueWait.Record(ctx, max(e.QueueWait.Seconds(), 0), o.wait...)
	case pgflow.EventCompleted:
		m.handler.Record(ctx, e.HandlerDuration.Seconds(), o.completed...)
	case pgflow.EventRetried:
		if e.HandlerDuration > 0 {
			m.handler.Record(ctx, e.HandlerDuration.Seconds(), o.retried...)
		}
	case pgflow.EventDeadLettered:
		if e.HandlerDuration > 0 { // not after an expired lease: no handler ran
			m.handler.Record(ctx, e.HandlerDuration.Seconds(), o.deadLettered...)
		}
	}
}

// QueueGaugeOptions configure ObserveQueues.
type QueueGaugeOptions struct {
	// Schema holds pgflow's tables. Default "public".
	Schema string
	// CacheTTL is how long one read of the database serves collections.
	// Default 10 s; a negative value reads on every collection.
	CacheTTL time.Duration
	// Timeout bounds one read. Default 15 s (a read costs about 1 s per
	// million pending rows; docs/metrics.md).
	Timeout time.Duration
}

// ObserveQueues registers gauges read from the database at each collection:
//
//	pgflow.queue.messages          {message}, attributes queue, state (ready, delayed, processing)
//	pgflow.queue.oldest_ready_age  s, attribute queue
//	pgflow.queue.expired_leases    {message}, attribute queue
//	pgflow.queue.paused            1 or 0, attribute queue
//	pgflow.dlq.messages            {message}, attribute queue
//
// Call it in one process per database (the reads are the same everywhere).
// Unregister the returned registration to stop.
func (m *Metrics) ObserveQueues(pool *pgxpool.Pool, opts QueueGaugeOptions) (metric.Registration, error) {
	if opts.Schema == "" {
		opts.Schema = "public"
	}
	q, err := query.Load(opts.Schema)
	if err != nil {
		return nil, err
	}
	switch {
	case opts.CacheTTL == 0:
		opts.CacheTTL = 10 * time.Second
	case opts.CacheTTL < 0:
		opts.CacheTTL = 0
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 15 * time.Second
	}
	reader := depth.NewReader(pool, q, opts.CacheTTL, opts.Timeout)
	msgs, err := m.meter.Int64ObservableGauge("pgflow.queue.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages in the queue by state: ready, delayed, processing."))
	if err != nil {
		return nil, err
	}
	oldest, err := m.meter.Float64ObservableGauge("pgflow.queue.oldest_ready_age", metric.WithUnit("s"),
		metric.WithDescription("How long the oldest ready message has been claimable; 0 when none is ready."))
	if err != nil {
		return nil, err
	}
	expired, err := m.meter.Int64ObservableGauge("pgflow.queue.expired_leases", metric.WithUnit("{message}"),
		metric.WithDescription("Processing messages whose lease ran out and that no running client has taken back yet."))
	if err != nil {
		return nil, err
	}
	paused, err := m.meter.Int64ObservableGauge("pgflow.queue.paused",
		metric.WithDescription("1 when the queue is paused, else 0."))
	if err != nil {
		return nil, err
	}
	dlq, err := m.meter.Int64ObservableGauge("pgflow.dlq.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Dead-lettered messages whose source is the queue."))
	if err != nil {
		return nil, err
	}
	return m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		snap, err := reader.Get(ctx)
		if err != nil {
			return err
		}
		for _, s := range snap.Queues {
			q := QueueKey.String(s.Queue)
			byQueue := metric.WithAttributes(q)
			o.ObserveInt64(msgs, s.Ready, metric.WithAttributes(q, StateKey.String("ready")))
			o.ObserveInt64(msgs, s.Delayed, metric.WithAttributes(q, StateKey.String("delayed")))
			o.ObserveInt64(msgs, s.Processing, metric.WithAttributes(q, StateKey.String("processing")))
			o.ObserveFloat64(oldest, s.OldestReadyAge.Seconds(), byQueue)
			o.ObserveInt64(expired, s.ExpiredLeases, byQueue)
			o.ObserveInt64(paused, b2i(s.Paused), byQueue)
			o.ObserveInt64(dlq, s.DLQ, byQueue)
		}
		return nil
	}, msgs, oldest, expired, paused, dlq)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
