// Package singularity is the example's Singularity service, of which many
// instances run.
//
// # Publishing
//
// Each instance's agents propose code changes to CentralCloud
// for consensus; an approved change is applied and its execution metrics go
// to Guardian, and a change that worked becomes a discovered pattern for the
// aggregator.
//
// # Consuming
//
// The instance consumes its own partition of the three
// CentralCloud → Singularity queues: consensus results, rollback triggers
// (high priority: a critical rollback overtakes everything queued before it)
// and safety profile updates, which gate what its agents may propose.
package singularity
