package promflow

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgflow-go/pgflow/internal/depth"
	"github.com/pgflow-go/pgflow/internal/query"
)

// QueueStats is one queue's gauges as read from the database.
type QueueStats = depth.QueueStats

// Snapshot is the result of one read of every queue's gauges.
type Snapshot = depth.Snapshot

// QueueOptions configure a QueueCollector.
type QueueOptions struct {
	// Schema holds pgflow's tables. Default "public".
	Schema string
	// Namespace prefixes every metric name. Default "pgflow".
	Namespace string
	// CacheTTL is how long one read of the database serves scrapes.
	// Default 10 s; a negative value reads on every scrape.
	CacheTTL time.Duration
	// Timeout bounds one read. Default 15 s (a read costs about 1 s per
	// million pending rows; docs/metrics.md).
	Timeout time.Duration
	// ConstLabels are added to every series.
	ConstLabels prometheus.Labels
}

// QueueCollector exports gauges read from the database at scrape time.
type QueueCollector struct {
	reader *depth.Reader

	depth, oldest, dlq, expired, paused *prometheus.Desc
	up, took                            *prometheus.Desc
}

// NewQueueCollector returns a collector reading pool's pgflow tables.
func NewQueueCollector(pool *pgxpool.Pool, opts QueueOptions) (*QueueCollector, error) {
	if opts.Schema == "" {
		opts.Schema = "public"
	}
	q, err := query.Load(opts.Schema)
	if err != nil {
		return nil, err
	}
	if opts.Namespace == "" {
		opts.Namespace = "pgflow"
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
	name := func(n string) string { return prometheus.BuildFQName(opts.Namespace, "", n) }
	cl := opts.ConstLabels
	return &QueueCollector{
		reader: depth.NewReader(pool, q, opts.CacheTTL, opts.Timeout),
		depth: prometheus.NewDesc(name("queue_messages"),
			"Messages in the queue by state: ready (claimable now), delayed (waiting for a delay or a retry backoff), processing (leased).",
			[]string{"queue", "state"}, cl),
		oldest: prometheus.NewDesc(name("queue_oldest_ready_age_seconds"),
			"How long the oldest ready message has been claimable; 0 when none is ready.",
			[]string{"queue"}, cl),
		dlq: prometheus.NewDesc(name("dlq_messages"),
			"Dead-lettered messages whose source is the queue.",
			[]string{"queue"}, cl),
		expired: prometheus.NewDesc(name("queue_expired_leases"),
			"Processing messages whose lease ran out and that no running client has taken back yet.",
			[]string{"queue"}, cl),
		paused: prometheus.NewDesc(name("queue_paused"),
			"1 when the queue is paused (consumers claim nothing), else 0.",
			[]string{"queue"}, cl),
		up: prometheus.NewDesc(name("queue_stats_up"),
			"1 when the last read of the queue gauges succeeded, else 0.",
			nil, cl),
		took: prometheus.NewDesc(name("queue_stats_read_seconds"),
			"How long the last read of the queue gauges took in the database.",
			nil, cl),
	}, nil
}

// Snapshot returns the gauges, from the cache when it is fresh.
func (qc *QueueCollector) Snapshot(ctx context.Context) (Snapshot, error) {
	return qc.reader.Get(ctx)
}

// Describe implements prometheus.Collector.
func (qc *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{qc.depth, qc.oldest, qc.dlq, qc.expired, qc.paused, qc.up, qc.took} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A failed read exports only
// queue_stats_up 0, so that stale depths are never reported as current.
func (qc *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	snap, err := qc.reader.Get(context.Background())
	if err != nil {
		ch <- prometheus.MustNewConstMetric(qc.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(qc.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(qc.took, prometheus.GaugeValue, snap.Took.Seconds())
	for _, s := range snap.Queues {
		ch <- prometheus.MustNewConstMetric(qc.depth, prometheus.GaugeValue, float64(s.Ready), s.Queue, "ready")
		ch <- prometheus.MustNewConstMetric(qc.depth, prometheus.GaugeValue, float64(s.Delayed), s.Queue, "delayed")
		ch <- prometheus.MustNewConstMetric(qc.depth, prometheus.GaugeValue, float64(s.Processing), s.Queue, "processing")
		ch <- prometheus.MustNewConstMetric(qc.oldest, prometheus.GaugeValue, s.OldestReadyAge.Seconds(), s.Queue)
		ch <- prometheus.MustNewConstMetric(qc.dlq, prometheus.GaugeValue, float64(s.DLQ), s.Queue)
		ch <- prometheus.MustNewConstMetric(qc.expired, prometheus.GaugeValue, float64(s.ExpiredLeases), s.Queue)
		ch <- prometheus.MustNewConstMetric(qc.paused, prometheus.GaugeValue, b2f(s.Paused), s.Queue)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves g in the Prometheus text (or OpenMetrics) format. A
// collector that fails does not fail the scrape: the others are still
// served.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
