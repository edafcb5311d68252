// Package depth reads the per-queue gauges that metrics, the CLI and the
// dashboard show, with one aggregate query for all queues.
//
// # Gauges
//
// A Snapshot holds, per queue: messages by state (ready, delayed, in flight),
// the age of the oldest ready message, leases already expired, the DLQ size
// and whether the queue is paused. Read runs the QueueDepths statement of
// package query once, in a read-only transaction whose planner settings keep
// it on the partial indexes however large the table once was.
//
// # Cost
//
// Reader caches the last snapshot for a TTL, so several scrapers (or a
// Prometheus server and a dashboard) cost the database one query per TTL,
// and bounds each query with a timeout so a slow database cannot pile up
// scrapes. promflow and otelpgflow both read through it.
package depth
