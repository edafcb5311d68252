package wire_test

import (
	"testing"
	"time"

	"github.com/pgflow-go/pgflow/examples/nexus/wire"
)

func TestValidate(t *testing.T) {
	m := &wire.Metrics{ErrorRate: 0.01, LatencyP95Ms: 100, SuccessRate: 0.99}
	for _, tc := range []struct {
		name string
		v    interface{ Validate() error }
		want string
	}{
		{"proposal ok", &wire.ProposalForConsensus{ProposalID: "p", InstanceID: "i", AgentType: "security", CodeChange: wire.CodeChange{File: "f"}, ImpactScore: 0.5, RiskScore: 0.2, ProposedAt: time.Now()}, ""},
		{"proposal bad", &wire.ProposalForConsensus{AgentType: "x", RiskScore: -1}, `invalid proposal_for_consensus: proposal_id is missing; instance_id is missing; agent_type "x" is not one of refactoring, performance, security, test_generation; code_change.file is missing; risk_score -1 is outside [0,1]`},
		{"result bad", &wire.ConsensusResult{ProposalID: "p", InstanceID: "i", Status: "maybe", Confidence: 2}, `invalid consensus_result: status "maybe" is neither approved nor rejected; votes are missing; confidence 2 is outside [0,1]`},
		{"metrics ok", &wire.ExecutionMetrics{InstanceID: "i", ProposalID: "p", AgentType: "a", MetricsBefore: m, MetricsAfter: m}, ""},
		{"metrics bad", &wire.ExecutionMetrics{InstanceID: "i", ProposalID: "p", AgentType: "a", MetricsBefore: &wire.Metrics{}}, `invalid execution_metrics: metrics_before.latency_p95_ms 0 must be positive; metrics_after is missing`},
		{"rollback bad", &wire.RollbackTrigger{ProposalID: "p", InstanceID: "i", Severity: "meh"}, `invalid rollback_trigger: reason is missing; threshold.metric is missing; severity "meh" is neither critical nor warning`},
	} {
		err := tc.v.Validate()
		got := ""
		if err != nil {
			got = err.Error()
			if !wire.IsValidation(err) {
				t.Errorf("%s: not a ValidationError", tc.name)
			}
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}
