package singularity

import (
	"context"
	_ "embed"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/config"
	"github.com/pgflow-go/pgflow/examples/nexus/telemetry"
	"github.com/pgflow-go/pgflow/examples/nexus/wire"
)

// ConfigYAML is Singularity's pgflow.yaml.
//
//go:embed pgflow.yaml
var ConfigYAML []byte

// Handler names used by pgflow.yaml.
const (
	HandleConsensusResult = "handle_consensus_result"
	HandleRollbackTrigger = "handle_rollback_trigger"
	HandleSafetyProfile   = "handle_safety_profile_update"
)

// TelemetryRules are Singularity's application events (publish_failed is
// added by the bridge).
var TelemetryRules = []telemetry.Rule{
	{Kind: pgflow.EventPublished, Queue: wire.ProposalsQueue, Name: "proposal_published"},
	{Kind: pgflow.EventPublished, Queue: wire.MetricsQueue, Name: "metrics_published"},
	{Kind: pgflow.EventPublished, Queue: wire.PatternsQueue, Name: "pattern_published"},
	{Kind: pgflow.EventCompleted, Queue: wire.ConsensusQueue, Header: "status", HeaderValue: wire.StatusApproved, Name: "consensus_approved"},
	{Kind: pgflow.EventCompleted, Queue: wire.ConsensusQueue, Header: "status", HeaderValue: wire.StatusRejected, Name: "consensus_rejected"},
	{Kind: pgflow.EventCompleted, Queue: wire.RollbackQueue, Name: "rollback_completed"},
	{Kind: pgflow.EventCompleted, Queue: wire.SafetyProfilesQueue, Name: "profile_updated"},
}

// InstanceID names instance n (1-based).
func InstanceID(n int) string { return fmt.Sprintf("singularity-%d", n) }

// LoadConfig reads the embedded pgflow.yaml (or path, if not empty) for
// instance id: SINGULARITY_INSTANCE_ID is set to id on top of lookupEnv.
func LoadConfig(path, id string, lookupEnv func(string) (string, bool)) (*config.Config, error) {
	env := func(k string) (string, bool) {
		if k == "SINGULARITY_INSTANCE_ID" {
			return id, true
		}
		return lookupEnv(k)
	}
	opts := config.Options{Handlers: config.Handlers{HandleConsensusResult: nil, HandleRollbackTrigger: nil, HandleSafetyProfile: nil}, LookupEnv: env}
	if path != "" {
		return config.Load(path, opts)
	}
	return config.Parse(ConfigYAML, "singularity/pgflow.yaml", opts)
}

// Options tune an instance.
type Options struct {
	ID string
	// InvalidRate is the share of published messages deliberately made
	// invalid, to show them reach the dead-letter queue.
	InvalidRate float64
	// Seed makes the simulation repeatable (0: random).
	Seed uint64
}

// Instance is one Singularity instance.
type Instance struct {
	id   string
	svc  *config.Service
	opts Options

	mu       sync.Mutex
	rng      *rand.Rand
	seq      int
	baseline wire.Metrics
	profiles map[string]wire.SafetyProfile
	applied  map[string]applied
	risk     map[string]float64 // proposals awaiting their result
	byType   map[string]*typeRecord
	rollback []Rollback
	stats    Stats
}

type applied struct {
	agentType string
	after     wire.Metrics
}

type typeRecord struct{ applied, rolledBack int }

// Rollback is a rollback this instance carried out, in handling order.
type Rollback struct {
	ProposalID string
	MessageID  int64
	Severity   string
	Priority   int
	// WasApplied is false when the change was unknown (already rolled back).
	WasApplied bool
}

// Stats are an instance's domain counters.
type Stats struct {
	Proposed       int `json:"proposed"`
	Blocked        int `json:"blocked_by_safety_profile"`
	Approved       int `json:"approved"`
	Rejected       int `json:"rejected"`
	RolledBack     int `json:"rolled_back"`
	ProfileUpdates int `json:"profile_updates"`
	InvalidSent    int `json:"invalid_sent"`
}

// New registers the instance's consumers on client and starts its
// producers.
func New(client *pgflow.Client, cfg *config.Config, opts Options) (*Instance, error) {
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	in := &Instance{
		id:       opts.ID,
		opts:     opts,
		rng:      rand.New(rand.NewPCG(seed, 0x5106)),
		baseline: wire.Metrics{ErrorRate: 0.01, LatencyP95Ms: 120, SuccessRate: 0.99},
		profiles: map[string]wire.SafetyProfile{},
		applied:  map[string]applied{},
		risk:     map[string]float64{},
		byType:   map[string]*typeRecord{},
	}
	svc, err := config.NewService(client, cfg, in.Handlers())
	if err != nil {
		return nil, err
	}
	in.svc = svc
	return in, nil
}

// ID returns the instance id.
func (in *Instance) ID() string { return in.id }

// Handlers are the handlers pgflow.yaml names.
func (in *Instance) Handlers() config.Handlers {
	return config.Handlers{
		HandleConsensusResult: in.handleConsensusResult,
		HandleRollbackTrigger: in.handleRollbackTrigger,
		HandleSafetyProfile:   in.handleSafetyProfile,
	}
}

// Start starts the consumers.
func (in *Instance) Start(ctx context.Context) error { return in.svc.Start(ctx) }

// Stop stops the consumers, then flushes and closes the producers.
func (in *Instance) Stop(ctx context.Context) error { return in.svc.Stop(ctx) }

// Stats returns the domain counters.
func (in *Instance) Stats() Stats {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.stats
}

// Rollbacks returns the rollbacks carried out, in handling order.
func (in *Instance) Rollbacks() []Rollback {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Rollback(nil), in.rollback...)
}

// Run proposes changes at rate per second until ctx ends.
func (in *Instance) Run(ctx context.Context, rate float64) error {
	if rate <= 0 {
		return fmt.Errorf("singularity: rate must be positive, got %v", rate)
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// A publish in progress finishes even if ctx ends meanwhile: giving up
		// on it would leave its outcome unknown.
		if err := in.ProposeOnce(context.WithoutCancel(ctx)); err != nil {
			return err
		}
	}
}

func (in *Instance) publish(ctx context.Context, entry string, payload any, opts ...pgflow.PublishOption) error {
	p := in.svc.Producer(entry)
	if p == nil {
		return fmt.Errorf("singularity: no producer %q in pgflow.yaml", entry)
	}
	_, err := p.Publish(ctx, payload, opts...)
	return err
}

// ProposeOnce has an agent propose one change, unless the agent type's
// safety profile rules it out. Now and then (InvalidRate) it sends an
// invalid message instead.
func (in *Instance) ProposeOnce(ctx context.Context) error {
	in.mu.Lock()
	in.seq++
	if in.opts.InvalidRate > 0 && in.rng.Float64() < in.opts.InvalidRate {
		in.stats.InvalidSent++
		kind := in.rng.IntN(3)
		seq := in.seq
		in.mu.Unlock()
		return in.sendInvalid(ctx, kind, seq)
	}
	at := wire.AgentTypes[in.rng.IntN(len(wire.AgentTypes))]
	p := wire.ProposalForConsensus{
		ProposalID: fmt.Sprintf("%s-p%d", in.id, in.seq),
		InstanceID: in.id,
		AgentType:  at,
		CodeChange: wire.CodeChange{
			File:         fmt.Sprintf("lib/%s/module_%d.ex", at, in.rng.IntN(40)),
			Summary:      fmt.Sprintf("%s agent: rewrite hot path", at),
			LinesAdded:   1 + in.rng.IntN(120),
			LinesRemoved: in.rng.IntN(80),
		},
		ImpactScore: round2(0.1 + 0.8*in.rng.Float64()),
		RiskScore:   round2(in.rng.Float64()),
		ProposedAt:  time.Now().UTC(),
	}
	prof, ok := in.profiles[at]
	if ok && p.RiskScore > prof.MaxRiskScore+0.2 {
		in.stats.Blocked++
		in.mu.Unlock()
		return nil
	}
	in.stats.Proposed++
	in.risk[p.ProposalID] = p.RiskScore
	in.mu.Unlock()
	return in.publish(ctx, "proposals_for_consensus", p)
}

func (in *Instance) sendInvalid(ctx context.Context, kind, seq int) error {
	switch kind {
	case 0:
		return in.publish(ctx, "proposals_for_consensus", map[string]any{
			"proposal_id": fmt.Sprintf("%s-p%d", in.id, seq), "instance_id": in.id, "agent_type": "performance",
			"code_change": map[string]any{"file": "lib/x.ex"}, "impact_score": 0.4, "risk_score": 1.7,
		})
	case 1:
		return in.publish(ctx, "metrics_to_guardian", map[string]any{
			"instance_id": in.id, "proposal_id": fmt.Sprintf("%s-p%d", in.id, seq), "agent_type": "security",
			"metrics_before": in.baseline,
		})
	default:
		return in.publish(ctx, "patterns_for_aggregator", map[string]any{
			"pattern_id": fmt.Sprintf("%s-pat%d", in.id, seq), "instance_id": in.id, "agent_type": "refactoring",
			"pattern_type": "extract_function", "code_pattern": "defp extracted(...)", "success_rate": 1.3, "occurrences": 2,
		})
	}
}

func round2(f float64) float64 { return float64(int(f*100+0.5)) / 100 }

func (in *Instance) misrouted(got string) error {
	if got != in.id {
		return pgflow.Permanent(fmt.Errorf("message for instance %q delivered to %q", got, in.id))
	}
	return nil
}

// handleConsensusResult applies an approved change, measures it and reports
// the metrics to Guardian (and, if it went well, the pattern to the
// aggregator).
func (in *Instance) handleConsensusResult(ctx context.Context, m *pgflow.Message) error {
	var r wire.ConsensusResult
	if err := wire.Decode("consensus_result", m.Payload, &r); err != nil {
		return pgflow.Permanent(err)
	}
	if err := in.misrouted(r.InstanceID); err != nil {
		return err
	}
	in.mu.Lock()
	risk, known := in.risk[r.ProposalID]
	delete(in.risk, r.ProposalID)
	if !known {
		risk = 0.5
	}
	if r.Status == wire.StatusRejected {
		in.stats.Rejected++
		in.mu.Unlock()
		return nil
	}
	a, again := in.applied[r.ProposalID]
	if !again {
		// Riskier changes go wrong more often and worse.
		before := in.baseline
		after := wire.Metrics{
			ErrorRate:    round4(before.ErrorRate + risk*risk*0.25*in.rng.Float64()),
			LatencyP95Ms: round2(before.LatencyP95Ms * (1 + risk*risk*1.5*in.rng.Float64())),
		}
		after.SuccessRate = round4(1 - after.ErrorRate)
		a = applied{agentType: r.AgentType, after: after}
		in.applied[r.ProposalID] = a
		tr := in.typeRecord(r.AgentType)
		tr.applied++
		in.stats.Approved++
	}
	tr := *in.typeRecord(r.AgentType)
	before := in.baseline
	in.mu.Unlock()

	em := wire.ExecutionMetrics{InstanceID: in.id, ProposalID: r.ProposalID, AgentType: r.AgentType,
		MetricsBefore: &before, MetricsAfter: &a.after, MeasuredAt: time.Now().UTC()}
	if err := in.publish(ctx, "metrics_to_guardian", em, pgflow.WithDedupKey("metrics:"+r.ProposalID)); err != nil {
		return err
	}
	if a.after.ErrorRate-before.ErrorRate > 0.04 {
		return nil // not a pattern worth sharing
	}
	pat := wire.PatternDiscovered{
		PatternID: "pattern:" + r.ProposalID, InstanceID: in.id, AgentType: r.AgentType,
		PatternType: r.AgentType + "_rewrite", CodePattern: "def " + r.AgentType + "_hot_path(...)",
		SuccessRate: round4(float64(tr.applied-tr.rolledBack) / float64(tr.applied)), Occurrences: tr.applied,
	}
	return in.publish(ctx, "patterns_for_aggregator", pat, pgflow.WithDedupKey(pat.PatternID))
}

func round4(f float64) float64 { return float64(int(f*10000+0.5)) / 10000 }

func (in *Instance) typeRecord(at string) *typeRecord {
	tr := in.byType[at]
	if tr == nil {
		tr = &typeRecord{}
		in.byType[at] = tr
	}
	return tr
}

// handleRollbackTrigger reverts the change Guardian named.
func (in *Instance) handleRollbackTrigger(ctx context.Context, m *pgflow.Message) error {
	var t wire.RollbackTrigger
	if err := wire.Decode("rollback_trigger", m.Payload, &t); err != nil {
		return pgflow.Permanent(err)
	}
	if err := in.misrouted(t.InstanceID); err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	a, ok := in.applied[t.ProposalID]
	if ok {
		delete(in.applied, t.ProposalID)
		in.typeRecord(a.agentType).rolledBack++
		in.stats.RolledBack++
	}
	in.rollback = append(in.rollback, Rollback{ProposalID: t.ProposalID, MessageID: m.ID, Severity: t.Severity, Priority: m.Priority, WasApplied: ok})
	return nil
}

// handleSafetyProfile installs a newer safety profile, addressed to this
// instance or broadcast to all.
func (in *Instance) handleSafetyProfile(ctx context.Context, m *pgflow.Message) error {
	var u wire.SafetyProfileUpdate
	if err := wire.Decode("safety_profile_update", m.Payload, &u); err != nil {
		return pgflow.Permanent(err)
	}
	if u.InstanceID != wire.Broadcast {
		if err := in.misrouted(u.InstanceID); err != nil {
			return err
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if cur, ok := in.profiles[u.AgentType]; !ok || u.SafetyProfile.Version > cur.Version {
		in.profiles[u.AgentType] = u.SafetyProfile
		in.stats.ProfileUpdates++
	}
	return nil
}
