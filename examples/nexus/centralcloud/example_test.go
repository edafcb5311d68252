package centralcloud_test

import (
	"fmt"

	"github.com/pgflow-go/pgflow/examples/nexus/centralcloud"
)

func ExampleLoadConfig() {
	env := func(k string) (string, bool) {
		if k == "PGFLOW_PROPOSALS_WORKERS" {
			return "5", true // large scale
		}
		return "", false
	}
	cfg, err := centralcloud.LoadConfig("", env)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range cfg.Consumers {
		fmt.Println("consumes", c.QueueName, "workers", c.Workers, "with", c.Handler)
	}
	fmt.Println("rollback priority", *cfg.Producers[1].Priority)
	// Output:
	// consumes proposals_for_consensus_queue workers 5 with handle_proposal_for_consensus
	// consumes metrics_to_guardian_queue workers 2 with handle_execution_metrics
	// consumes patterns_for_aggregator_queue workers 1 with handle_pattern_discovered
	// rollback priority 10
}
