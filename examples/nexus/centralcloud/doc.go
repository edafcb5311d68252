// Package centralcloud is the example's CentralCloud service: it consumes the
// instances' proposals, execution metrics and discovered patterns, and
// publishes consensus results, rollback triggers (high priority) and safety
// profile updates back to the instance concerned.
//
// # Roles
//
//   - Consensus: every proposal is recorded and decided by a vote of the
//     known instances over their recent metrics for the proposal's agent type
//     and the agent type's safety profile.
//   - Guardian (a batch handler: up to batch_size metrics per call, recorded
//     under one lock): metrics whose error rate rose past ErrorRateIncrease trigger a
//     critical rollback at high priority; a p95 latency past LatencyIncrease
//     a warning at normal priority.
//   - Aggregator: patterns' success rates tune each agent type's safety
//     profile, broadcast to every instance when it changes.
//
// # Bad input
//
// Every payload is validated; an invalid one is returned as
// pgflow.Permanent and lands in the dead-letter queue with the reason.
package centralcloud
