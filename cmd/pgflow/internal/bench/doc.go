// Package bench runs pgflow's benchmark workloads (W1–W5, described in
// docs/performance.md and below) and prints one JSON object per run plus a
// summary per workload, in the JSON-lines shape that River's benchmark
// harness prints, so the two can be compared line by line
// (docs/bench/compare.py).
//
// # Workloads
//
//	W1  enqueue N messages in batches, then drain them with each worker count
//	    (with --batch-size, by a batch handler: workers calls of up to
//	    batch-size messages each)
//	W1sql  W1's drain by the Go client, then by a plain pgx program on the
//	    SQL API (pgflow_claim, pgflow_ack per batch and per message), back
//	    to back, with the ratios (not part of "all")
//	W2  goroutines publishing one message per transaction, no consumer
//	W3  pickup latency (publish to handler start) at a fixed rate
//	W4  producers flat out while a consumer runs
//	W5  W4's shape at a fixed rate while a transaction pins the xmin horizon
//	    during the middle third
//
// # Measuring
//
// Latencies are recorded into HDR histograms (bounded memory whatever the
// run length); publish timestamps live in a fixed-size ring indexed by
// sequence number, so memory does not grow with the number of messages
// either. The HDR histogram dependency is why this package lives in the CLI's
// module and not in the library's.
//
// # Isolation
//
// A run uses a database of its own (bench_pgflow by default), empties
// pgflow's tables and CHECKPOINTs before every run, and holds an advisory
// lock so that two benchmarks never share the database.
package bench
