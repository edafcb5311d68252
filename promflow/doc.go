// Package promflow exports pgflow metrics to Prometheus.
//
// It is a module of its own (github.com/pgflow-go/pgflow/promflow), so that
// programs using pgflow without Prometheus do not download its client.
//
// # Collectors
//
// Two collectors cover the two sources of metrics:
//
//   - EventCollector counts lifecycle events and observes handler durations
//     and queue waits. Register its Hook in pgflow.Config.Hooks of every
//     process that publishes or consumes; each process exports its own
//     counters.
//   - QueueCollector reads gauges from the database at scrape time: depth per
//     queue and state, age of the oldest ready message, expired leases and
//     DLQ size. One aggregate query serves all queues, and its result is
//     cached for CacheTTL so that several scrapers, or a dashboard, cost the
//     database one query per TTL. Run it in one place (for example
//     `pgflow serve --metrics-addr :9187`), not in every consumer.
//
// # Serving
//
// Handler serves a registry in the Prometheus text format. The metric names
// and the alerts built on them are described in docs/metrics.md and
// deploy/prometheus/alerts.yml.
package promflow
