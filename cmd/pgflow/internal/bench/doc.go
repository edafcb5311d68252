// Package bench runs the shared benchmark workloads (W1–W5 of
// shared/bench/WORKLOADS.md) against pgflow and prints one JSON object per
// run plus a summary per workload, in the shape the River harness prints, so
// the two can be compared line by line.
//
// Latencies are recorded into HDR histograms (bounded memory whatever the run
// length); publish timestamps live in a fixed-size ring indexed by sequence
// number, so memory does not grow with the number of messages either.
package bench
