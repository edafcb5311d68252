package telemetry_test

import (
	"fmt"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/examples/nexus/telemetry"
)

func ExampleBridge() {
	t := telemetry.New()
	t.Attach("log", telemetry.Prefix, func(e telemetry.Event) {
		fmt.Println(e.Service, e.Name, e.Queue, e.Metadata)
	})
	hook := telemetry.Bridge(t, "singularity-1", []telemetry.Rule{
		{Kind: pgflow.EventPublished, Queue: "proposals_for_consensus_queue", Name: "proposal_published"},
		{Kind: pgflow.EventCompleted, Queue: "consensus_results_queue", Header: "status", HeaderValue: "approved", Name: "consensus_approved"},
	})
	// What a client's hooks would see:
	hook(pgflow.Event{Kind: pgflow.EventPublished, Queue: "proposals_for_consensus_queue", MessageID: 1})
	hook(pgflow.Event{Kind: pgflow.EventReceived, Queue: "consensus_results_queue.singularity-1", MessageID: 2, Headers: map[string]string{"status": "approved"}})
	hook(pgflow.Event{Kind: pgflow.EventCompleted, Queue: "consensus_results_queue.singularity-1", MessageID: 2})
	fmt.Println(t.Counts())
	// Output:
	// singularity-1 evolution.pgflow.proposal_published proposals_for_consensus_queue map[]
	// singularity-1 evolution.pgflow.consensus_approved consensus_results_queue.singularity-1 map[status:approved]
	// map[evolution.pgflow.consensus_approved:1 evolution.pgflow.proposal_published:1]
}
