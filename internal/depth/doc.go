// Package depth reads the per-queue gauges (depth by state, oldest ready
// age, DLQ size) with one aggregate query, and caches the result so that
// many scrapers cost the database one query per TTL.
package depth
