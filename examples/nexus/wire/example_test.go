package wire_test

import (
	"fmt"

	"github.com/pgflow-go/pgflow/examples/nexus/wire"
)

func ExampleDecode() {
	var p wire.PatternDiscovered
	err := wire.Decode("pattern_discovered", []byte(`{"pattern_id": "pat-1", "instance_id": "singularity-1",
		"agent_type": "refactoring", "pattern_type": "extract_function", "code_pattern": "defp x(...)",
		"success_rate": 1.3, "occurrences": 2}`), &p)
	fmt.Println(err)
	err = wire.Decode("pattern_discovered", []byte(`{"pattern_id": "pat-1", "colour": "red"}`), &p)
	fmt.Println(err)
	fmt.Println(wire.InstanceQueue(wire.RollbackQueue, "singularity-2"), wire.BaseQueue("rollback_triggers_queue.singularity-2"))
	// Output:
	// invalid pattern_discovered: success_rate 1.3 is outside [0,1]
	// invalid pattern_discovered: not a pattern_discovered payload: json: unknown field "colour"
	// rollback_triggers_queue.singularity-2 rollback_triggers_queue
}
