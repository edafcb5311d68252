// Package telemetry turns pgflow's lifecycle events into the example's named
// application events, such as "evolution.pgflow.proposal_published" for a
// proposal published.
//
// # Bridge
//
// Bridge returns a pgflow.EventHook: install it in the client's
// Config.Hooks and every matching publish, receipt or completion is
// re-emitted under its application name to the handlers attached with
// Attach, with the queue, message id and timings as metadata.
package telemetry
