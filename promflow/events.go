package promflow

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgflow-go/pgflow"
)

// DefaultBuckets are the histogram buckets in seconds, from 1 ms to 5 min.
var DefaultBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// EventOptions configure an EventCollector.
type EventOptions struct {
	// Namespace prefixes every metric name. Default "pgflow".
	Namespace string
	// Buckets for the handler duration and queue wait histograms, in
	// seconds. Default DefaultBuckets.
	Buckets []float64
	// ConstLabels are added to every series (for example the schema or the
	// service name).
	ConstLabels prometheus.Labels
}

// EventCollector turns pgflow events into counters and histograms. It is a
// prometheus.Collector; register it, and put Hook in pgflow.Config.Hooks.
type EventCollector struct {
	counters  map[pgflow.EventKind]*prometheus.CounterVec
	handler   *prometheus.HistogramVec
	queueWait *prometheus.HistogramVec
	// changes counts queue_changed events: not messages, so not in kinds.
	changes *prometheus.CounterVec
	// gone counts consumer_gone events: consumers, not messages, and of no
	// queue. A vector without labels, so that its series appears with the
	// first event, as every other series here does.
	gone *prometheus.CounterVec

	queues sync.Map // queue name -> *queueInstruments
}

// queueInstruments are one queue's series, bound once so that an event costs
// a map lookup and an atomic add.
type queueInstruments struct {
	counters            [numKinds]prometheus.Counter
	handlerCompleted    prometheus.Observer
	handlerRetried      prometheus.Observer
	handlerDeadLettered prometheus.Observer
	queueWait           prometheus.Observer
}

// The event kinds counted, in a fixed order (index into queueInstruments).
var kinds = [...]pgflow.EventKind{
	pgflow.EventPublished, pgflow.EventPublishFailed, pgflow.EventReceived,
	pgflow.EventCompleted, pgflow.EventRetried, pgflow.EventDeadLettered,
	pgflow.EventLeaseExpired, pgflow.EventRedriven, pgflow.EventPurged,
	pgflow.EventHandlerStuck, pgflow.EventExpired, pgflow.EventDLQDeleted,
}

const numKinds = len(kinds)

// Indexes into kinds and queueInstruments.counters.
const (
	iPublished = iota
	iPublishFailed
	iReceived
	iCompleted
	iRetried
	iDeadLettered
	iLeaseExpired
	iRedriven
	iPurged
	iHandlerStuck
	iExpired
	iDLQDeleted
)

var kindHelp = map[pgflow.EventKind]string{
	pgflow.EventPublished:     "Messages committed to the queue.",
	pgflow.EventPublishFailed: "Publish calls that returned an error.",
	pgflow.EventReceived:      "Messages claimed by a consumer (deliveries, including redeliveries).",
	pgflow.EventCompleted:     "Deliveries whose handler succeeded (the message was acknowledged).",
	pgflow.EventRetried:       "Deliveries that failed and were scheduled for a retry.",
	pgflow.EventDeadLettered:  "Messages moved to the dead-letter queue (handler failure or expired lease with no retries left, or expired unclaimed).",
	pgflow.EventLeaseExpired:  "Deliveries whose lease ran out and that the rescuer took back.",
	pgflow.EventRedriven:      "Dead-lettered messages sent back to their queue.",
	pgflow.EventPurged:        "Dead-lettered messages deleted.",
	pgflow.EventHandlerStuck:  "Handlers still running past their timeout and grace period; their leases are no longer extended.",
	pgflow.EventExpired:       "Messages moved to the dead-letter queue (reason expired) because no consumer claimed them before their expiry; also counted in dead_lettered.",
	pgflow.EventDLQDeleted:    "Dead-lettered messages deleted because they were older than their queue's dlq_retention.",
}

// NewEventCollector returns a collector with no series yet: a queue's series
// appear with its first event.
func NewEventCollector(opts EventOptions) *EventCollector {
	ns := opts.Namespace
	if ns == "" {
		ns = "pgflow"
	}
	buckets := opts.Buckets
	if len(buckets) == 0 {
		buckets = DefaultBuckets
	}
	ec := &EventCollector{counters: map[pgflow.EventKind]*prometheus.CounterVec{}}
	for _, k := range kinds {
		ec.counters[k] = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "messages_" + string(k) + "_total",
			Help: kindHelp[k], ConstLabels: opts.ConstLabels,
		}, []string{"queue"})
	}
	ec.handler = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Name: "handler_duration_seconds",
		Help:        "How long handlers ran, by outcome (completed, retried, dead_lettered).",
		Buckets:     buckets,
		ConstLabels: opts.ConstLabels,
	}, []string{"queue", "outcome"})
	ec.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Name: "queue_wait_seconds",
		Help:        "How long messages waited between becoming visible and being claimed (database clock).",
		Buckets:     buckets,
		ConstLabels: opts.ConstLabels,
	}, []string{"queue"})
	ec.changes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "queue_settings_changed_total",
		Help:        "Declarations that changed a queue's stored settings (each is logged with the old and new values).",
		ConstLabels: opts.ConstLabels,
	}, []string{"queue"})
	ec.gone = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "consumers_gone_total",
		Help:        "Consumers this process found gone (session ended, heartbeat stopped) and whose messages it took back.",
		ConstLabels: opts.ConstLabels,
	}, nil)
	return ec
}

func (ec *EventCollector) instruments(queue string) *queueInstruments {
	if qi, ok := ec.queues.Load(queue); ok {
		return qi.(*queueInstruments)
	}
	qi := &queueInstruments{
		handlerCompleted:    ec.handler.WithLabelValues(queue, string(pgflow.EventCompleted)),
		handlerRetried:      ec.handler.WithLabelValues(queue, string(pgflow.EventRetried)),
		handlerDeadLettered: ec.handler.WithLabelValues(queue, string(pgflow.EventDeadLettered)),
		queueWait:           ec.queueWait.WithLabelValues(queue),
	}
	for i, k := range kinds {
		qi.counters[i] = ec.counters[k].WithLabelValues(queue)
	}
	actual, _ := ec.queues.LoadOrStore(queue, qi)
	return actual.(*queueInstruments)
}

// Hook returns the event hook to put in pgflow.Config.Hooks.
func (ec *EventCollector) Hook() pgflow.EventHook { return ec.Observe }

// Observe records one event. It does not allocate once the queue has been
// seen.
func (ec *EventCollector) Observe(e pgflow.Event) {
	switch e.Kind {
	case pgflow.EventQueueChanged:
		ec.changes.WithLabelValues(e.Queue).Inc()
		return
	case pgflow.EventConsumerGone:
		ec.gone.WithLabelValues().Inc()
		return
	}
	qi := ec.instruments(e.Queue)
	switch e.Kind {
	case pgflow.EventPublished:
		qi.counters[iPublished].Inc()
	case pgflow.EventPublishFailed:
		qi.counters[iPublishFailed].Inc()
	case pgflow.EventReceived:
		qi.counters[iReceived].Inc()
		qi.queueWait.Observe(max(e.QueueWait.Seconds(), 0))
	case pgflow.EventCompleted:
		qi.counters[iCompleted].Inc()
		qi.handlerCompleted.Observe(e.HandlerDuration.Seconds())
	case pgflow.EventRetried:
		qi.counters[iRetried].Inc()
		if e.HandlerDuration > 0 {
			qi.handlerRetried.Observe(e.HandlerDuration.Seconds())
		}
	case pgflow.EventDeadLettered:
		qi.counters[iDeadLettered].Inc()
		// A message dead-lettered by an expired lease has no handler run.
		if e.HandlerDuration > 0 {
			qi.handlerDeadLettered.Observe(e.HandlerDuration.Seconds())
		}
	case pgflow.EventLeaseExpired:
		qi.counters[iLeaseExpired].Inc()
	case pgflow.EventRedriven:
		qi.counters[iRedriven].Add(float64(count(e)))
	case pgflow.EventPurged:
		qi.counters[iPurged].Add(float64(count(e)))
	case pgflow.EventHandlerStuck:
		qi.counters[iHandlerStuck].Inc()
	case pgflow.EventExpired:
		qi.counters[iExpired].Inc()
		qi.counters[iDeadLettered].Inc()
	case pgflow.EventDLQDeleted:
		qi.counters[iDLQDeleted].Add(float64(count(e)))
	}
}

// count is a batch event's size; events that carry no Count stand for one
// message.
func count(e pgflow.Event) int {
	if e.Count > 0 {
		return e.Count
	}
	return 1
}

// Describe implements prometheus.Collector.
func (ec *EventCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, k := range kinds {
		ec.counters[k].Describe(ch)
	}
	ec.handler.Describe(ch)
	ec.queueWait.Describe(ch)
	ec.changes.Describe(ch)
	ec.gone.Describe(ch)
}

// Collect implements prometheus.Collector.
func (ec *EventCollector) Collect(ch chan<- prometheus.Metric) {
	for _, k := range kinds {
		ec.counters[k].Collect(ch)
	}
	ec.handler.Collect(ch)
	ec.queueWait.Collect(ch)
	ec.changes.Collect(ch)
	ec.gone.Collect(ch)
}
