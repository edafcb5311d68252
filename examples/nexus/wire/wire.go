package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The six queues. CentralCloud → Singularity queues are partitioned
// per instance (see InstanceQueue).
const (
	ProposalsQueue      = "proposals_for_consensus_queue"  // Singularity → CentralCloud
	ConsensusQueue      = "consensus_results_queue"        // CentralCloud → Singularity
	MetricsQueue        = "metrics_to_guardian_queue"      // Singularity → CentralCloud
	PatternsQueue       = "patterns_for_aggregator_queue"  // Singularity → CentralCloud
	RollbackQueue       = "rollback_triggers_queue"        // CentralCloud → Singularity, high priority
	SafetyProfilesQueue = "guardian_safety_profiles_queue" // CentralCloud → Singularity
)

// SafetyProfilesTopic is the topic CentralCloud broadcasts safety profiles
// on: every Singularity instance subscribes its own partition of
// SafetyProfilesQueue to it when it starts, so one publish reaches every
// instance, each copy with its own retries.
const SafetyProfilesTopic = "guardian_safety_profiles"

// Broadcast is the instance_id of a message for every instance.
const Broadcast = "broadcast"

// QueueInfo describes one of the six queues.
type QueueInfo struct {
	Name      string
	Direction string
	Purpose   string
	Workers   string
	Priority  string
}

// Queues lists the six queues, in a fixed order.
var Queues = []QueueInfo{
	{ProposalsQueue, "Singularity → CentralCloud", "Send proposals for voting", "2-3", "Normal"},
	{ConsensusQueue, "CentralCloud → Singularity", "Send voting results", "2", "Normal"},
	{MetricsQueue, "Singularity → CentralCloud", "Send execution metrics", "2", "Normal"},
	{PatternsQueue, "Singularity → CentralCloud", "Send discovered patterns", "1", "Normal"},
	{RollbackQueue, "CentralCloud → Singularity", "Send rollback signals", "1", "High"},
	{SafetyProfilesQueue, "CentralCloud → Singularity", "Send safety updates", "1", "Normal"},
}

// InstanceQueue is the partition of a CentralCloud → Singularity queue that
// one instance consumes: "<queue>.<instance>".
func InstanceQueue(queue, instanceID string) string { return queue + "." + instanceID }

// BaseQueue strips an instance partition: "rollback_triggers_queue.singularity-2"
// → "rollback_triggers_queue".
func BaseQueue(queue string) string {
	base, _, _ := strings.Cut(queue, ".")
	return base
}

// AgentTypes are the kinds of agent that propose code changes.
var AgentTypes = []string{"refactoring", "performance", "security", "test_generation"}

// ValidationError is a payload that can never be handled: handlers send it
// to the dead-letter queue at once (pgflow.Permanent).
type ValidationError struct {
	Kind     string // payload kind, e.g. "proposal_for_consensus"
	Problems []string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Kind, strings.Join(e.Problems, "; "))
}

type checker struct{ problems []string }

func (c *checker) add(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}
func (c *checker) required(name, v string) {
	if strings.TrimSpace(v) == "" {
		c.add("%s is missing", name)
	}
}
func (c *checker) unit(name string, v float64) {
	if math.IsNaN(v) || v < 0 || v > 1 {
		c.add("%s %v is outside [0,1]", name, v)
	}
}
func (c *checker) err(kind string) error {
	if len(c.problems) == 0 {
		return nil
	}
	return &ValidationError{Kind: kind, Problems: c.problems}
}

// Decode unmarshals a payload strictly (unknown fields are an error) and
// validates it. Every error it returns is a *ValidationError.
func Decode[T interface{ Validate() error }](kind string, data []byte, v T) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &ValidationError{Kind: kind, Problems: []string{"not a " + kind + " payload: " + err.Error()}}
	}
	return v.Validate()
}

// CodeChange is the change an agent proposes.
type CodeChange struct {
	File         string `json:"file"`
	Summary      string `json:"summary"`
	LinesAdded   int    `json:"lines_added"`
	LinesRemoved int    `json:"lines_removed"`
}

// ProposalForConsensus travels on proposals_for_consensus_queue.
type ProposalForConsensus struct {
	ProposalID  string     `json:"proposal_id"`
	InstanceID  string     `json:"instance_id"`
	AgentType   string     `json:"agent_type"`
	CodeChange  CodeChange `json:"code_change"`
	ImpactScore float64    `json:"impact_score"`
	RiskScore   float64    `json:"risk_score"`
	ProposedAt  time.Time  `json:"proposed_at"`
}

// Validate checks the proposal.
func (p *ProposalForConsensus) Validate() error {
	var c checker
	c.required("proposal_id", p.ProposalID)
	c.required("instance_id", p.InstanceID)
	if !slices.Contains(AgentTypes, p.AgentType) {
		c.add("agent_type %q is not one of %s", p.AgentType, strings.Join(AgentTypes, ", "))
	}
	c.required("code_change.file", p.CodeChange.File)
	if p.CodeChange.LinesAdded < 0 || p.CodeChange.LinesRemoved < 0 {
		c.add("code_change line counts must not be negative")
	}
	c.unit("impact_score", p.ImpactScore)
	c.unit("risk_score", p.RiskScore)
	return c.err("proposal_for_consensus")
}

// Vote is one instance's vote on a proposal.
type Vote struct {
	Voter   string `json:"voter"`
	Approve bool   `json:"approve"`
	Reason  string `json:"reason"`
}

// Consensus statuses.
const (
	StatusApproved = "approved"
	StatusRejected = "rejected"
)

// ConsensusResult travels on consensus_results_queue.<instance>.
type ConsensusResult struct {
	ProposalID string    `json:"proposal_id"`
	InstanceID string    `json:"instance_id"`
	AgentType  string    `json:"agent_type"`
	Status     string    `json:"status"`
	Votes      []Vote    `json:"votes"`
	Confidence float64   `json:"confidence"`
	DecidedAt  time.Time `json:"decided_at"`
}

// Validate checks the result.
func (r *ConsensusResult) Validate() error {
	var c checker
	c.required("proposal_id", r.ProposalID)
	c.required("instance_id", r.InstanceID)
	if r.Status != StatusApproved && r.Status != StatusRejected {
		c.add("status %q is neither approved nor rejected", r.Status)
	}
	if len(r.Votes) == 0 {
		c.add("votes are missing")
	}
	c.unit("confidence", r.Confidence)
	return c.err("consensus_result")
}

// Metrics are an instance's measurements around a change.
type Metrics struct {
	ErrorRate    float64 `json:"error_rate"`
	LatencyP95Ms float64 `json:"latency_p95_ms"`
	SuccessRate  float64 `json:"success_rate"`
}

func (m *Metrics) check(c *checker, prefix string) {
	c.unit(prefix+".error_rate", m.ErrorRate)
	c.unit(prefix+".success_rate", m.SuccessRate)
	if m.LatencyP95Ms <= 0 {
		c.add("%s.latency_p95_ms %v must be positive", prefix, m.LatencyP95Ms)
	}
}

// ExecutionMetrics travels on metrics_to_guardian_queue.
type ExecutionMetrics struct {
	InstanceID    string    `json:"instance_id"`
	ProposalID    string    `json:"proposal_id"`
	AgentType     string    `json:"agent_type"`
	MetricsBefore *Metrics  `json:"metrics_before"`
	MetricsAfter  *Metrics  `json:"metrics_after"`
	MeasuredAt    time.Time `json:"measured_at"`
}

// Validate checks the metrics.
func (m *ExecutionMetrics) Validate() error {
	var c checker
	c.required("instance_id", m.InstanceID)
	c.required("proposal_id", m.ProposalID)
	c.required("agent_type", m.AgentType)
	if m.MetricsBefore == nil {
		c.add("metrics_before is missing")
	} else {
		m.MetricsBefore.check(&c, "metrics_before")
	}
	if m.MetricsAfter == nil {
		c.add("metrics_after is missing")
	} else {
		m.MetricsAfter.check(&c, "metrics_after")
	}
	return c.err("execution_metrics")
}

// PatternDiscovered travels on patterns_for_aggregator_queue.
type PatternDiscovered struct {
	PatternID   string  `json:"pattern_id"`
	InstanceID  string  `json:"instance_id"`
	AgentType   string  `json:"agent_type"`
	PatternType string  `json:"pattern_type"`
	CodePattern string  `json:"code_pattern"`
	SuccessRate float64 `json:"success_rate"`
	Occurrences int     `json:"occurrences"`
}

// Validate checks the pattern.
func (p *PatternDiscovered) Validate() error {
	var c checker
	c.required("pattern_id", p.PatternID)
	c.required("instance_id", p.InstanceID)
	c.required("agent_type", p.AgentType)
	c.required("pattern_type", p.PatternType)
	c.required("code_pattern", p.CodePattern)
	c.unit("success_rate", p.SuccessRate)
	if p.Occurrences < 1 {
		c.add("occurrences %d must be at least 1", p.Occurrences)
	}
	return c.err("pattern_discovered")
}

// Threshold is the limit a metric crossed.
type Threshold struct {
	Metric   string  `json:"metric"`
	Limit    float64 `json:"limit"`
	Observed float64 `json:"observed"`
}

// Rollback severities: critical ones are published at high priority.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
)

// RollbackTrigger travels on rollback_triggers_queue.<instance>.
type RollbackTrigger struct {
	ProposalID  string    `json:"proposal_id"`
	InstanceID  string    `json:"instance_id"`
	AgentType   string    `json:"agent_type"`
	Reason      string    `json:"reason"`
	Severity    string    `json:"severity"`
	Threshold   Threshold `json:"threshold"`
	TriggeredAt time.Time `json:"triggered_at"`
}

// Validate checks the trigger.
func (r *RollbackTrigger) Validate() error {
	var c checker
	c.required("proposal_id", r.ProposalID)
	c.required("instance_id", r.InstanceID)
	c.required("reason", r.Reason)
	c.required("threshold.metric", r.Threshold.Metric)
	if r.Severity != SeverityCritical && r.Severity != SeverityWarning {
		c.add("severity %q is neither critical nor warning", r.Severity)
	}
	return c.err("rollback_trigger")
}

// SafetyProfile bounds what an agent type may propose.
type SafetyProfile struct {
	Version          int     `json:"version"`
	MaxRiskScore     float64 `json:"max_risk_score"`
	MaxImpactScore   float64 `json:"max_impact_score"`
	RequireConsensus bool    `json:"require_consensus"`
}

// SafetyProfileUpdate travels on guardian_safety_profiles_queue.<instance>:
// addressed to that instance (its initial profiles), or to every instance
// (instance_id "broadcast", through SafetyProfilesTopic).
type SafetyProfileUpdate struct {
	InstanceID    string        `json:"instance_id"`
	AgentType     string        `json:"agent_type"`
	SafetyProfile SafetyProfile `json:"safety_profile"`
	Reason        string        `json:"reason"`
}

// Validate checks the update.
func (u *SafetyProfileUpdate) Validate() error {
	var c checker
	c.required("instance_id", u.InstanceID)
	if !slices.Contains(AgentTypes, u.AgentType) {
		c.add("agent_type %q is not one of %s", u.AgentType, strings.Join(AgentTypes, ", "))
	}
	if u.SafetyProfile.Version < 1 {
		c.add("safety_profile.version %d must be at least 1", u.SafetyProfile.Version)
	}
	c.unit("safety_profile.max_risk_score", u.SafetyProfile.MaxRiskScore)
	c.unit("safety_profile.max_impact_score", u.SafetyProfile.MaxImpactScore)
	return c.err("safety_profile_update")
}

// IsValidation reports whether err is (or wraps) a *ValidationError.
func IsValidation(err error) bool {
	var v *ValidationError
	return errors.As(err, &v)
}
