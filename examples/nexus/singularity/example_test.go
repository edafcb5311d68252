package singularity_test

import (
	"fmt"

	"github.com/pgflow-go/pgflow/examples/nexus/singularity"
)

func ExampleLoadConfig() {
	noEnv := func(string) (string, bool) { return "", false }
	cfg, err := singularity.LoadConfig("", singularity.InstanceID(2), noEnv)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range cfg.Producers {
		fmt.Println("publishes to", p.QueueName, "workers", p.Workers)
	}
	for _, c := range cfg.Consumers {
		fmt.Println("consumes", c.QueueName, "workers", c.Workers, "with", c.Handler)
	}
	// Output:
	// publishes to proposals_for_consensus_queue workers 2
	// publishes to metrics_to_guardian_queue workers 2
	// publishes to patterns_for_aggregator_queue workers 1
	// consumes consensus_results_queue.singularity-2 workers 2 with handle_consensus_result
	// consumes rollback_triggers_queue.singularity-2 workers 1 with handle_rollback_trigger
	// consumes guardian_safety_profiles_queue.singularity-2 workers 1 with handle_safety_profile_update
}
