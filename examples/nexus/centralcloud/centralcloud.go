package centralcloud

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/config"
	"github.com/pgflow-go/pgflow/examples/nexus/telemetry"
	"github.com/pgflow-go/pgflow/examples/nexus/wire"
)

// ConfigYAML is CentralCloud's pgflow.yaml.
//
//go:embed pgflow.yaml
var ConfigYAML []byte

// Name is the service name in telemetry.
const Name = "centralcloud"

// Handler names used by pgflow.yaml.
const (
	HandleProposal = "handle_proposal_for_consensus"
	HandleMetrics  = "handle_execution_metrics"
	HandlePattern  = "handle_pattern_discovered"
)

// TelemetryRules are CentralCloud's application events.
var TelemetryRules = []telemetry.Rule{
	{Kind: pgflow.EventReceived, Queue: wire.ProposalsQueue, Name: "proposal_received"},
	{Kind: pgflow.EventReceived, Queue: wire.MetricsQueue, Name: "metrics_received"},
	{Kind: pgflow.EventReceived, Queue: wire.PatternsQueue, Name: "pattern_received"},
	{Kind: pgflow.EventPublished, Queue: wire.ConsensusQueue, Name: "consensus_result_published"},
	{Kind: pgflow.EventPublished, Queue: wire.RollbackQueue, Name: "rollback_trigger_published"},
	{Kind: pgflow.EventPublished, Queue: wire.SafetyProfilesQueue, Name: "profile_update_published"},
}

// Thresholds past which Guardian orders a rollback.
const (
	// ErrorRateIncrease: error_rate after minus before; critical, high priority.
	ErrorRateIncrease = 0.08
	// LatencyIncrease: latency_p95 after over before; a warning at normal priority.
	LatencyIncrease = 1.5
)

// RollbackExpiry is how long a rollback trigger waits for its instance to
// claim it before it is dead-lettered instead of delivered late.
const RollbackExpiry = 10 * time.Minute

// LoadConfig reads the embedded pgflow.yaml (or path, if not empty).
func LoadConfig(path string, lookupEnv func(string) (string, bool)) (*config.Config, error) {
	opts := config.Options{Handlers: config.Handlers{HandleProposal: nil, HandlePattern: nil},
		BatchHandlers: config.BatchHandlers{HandleMetrics: nil}, LookupEnv: lookupEnv}
	if path != "" {
		return config.Load(path, opts)
	}
	return config.Parse(ConfigYAML, "centralcloud/pgflow.yaml", opts)
}

// Options tune CentralCloud.
type Options struct {
	// TransientFailRate is the share of proposal deliveries that fail as if
	// the vote store were briefly unavailable (they are retried).
	TransientFailRate float64
	// Seed makes the simulation repeatable (0: random).
	Seed uint64
}

// CentralCloud runs consensus, Guardian (metrics → rollbacks, safety
// profiles) and the pattern aggregator.
type CentralCloud struct {
	svc  *config.Service
	opts Options

	mu        sync.Mutex
	rng       *rand.Rand
	proposals map[string]*proposalRecord
	instances map[string]bool
	// recent error-rate deltas per instance and agent type, newest last
	recent   map[string]map[string][]float64
	patterns map[string]*patternStats // by agent type
	profiles map[string]wire.SafetyProfile
	stats    Stats
}

type proposalRecord struct {
	proposal wire.ProposalForConsensus
	result   *wire.ConsensusResult // decided; kept so a redelivery publishes the same decision
}

type patternStats struct {
	n          int
	successSum float64
}

// Stats are CentralCloud's domain counters.
type Stats struct {
	Proposals      int `json:"proposals"`
	Approved       int `json:"approved"`
	Rejected       int `json:"rejected"`
	Rollbacks      int `json:"rollbacks"`
	Critical       int `json:"rollbacks_critical"`
	ProfileUpdates int `json:"profile_updates"`
	Patterns       int `json:"patterns"`
	TransientFails int `json:"transient_failures_injected"`
}

// New registers CentralCloud's consumers on client and starts its producers.
func New(client *pgflow.Client, cfg *config.Config, opts Options) (*CentralCloud, error) {
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	cc := &CentralCloud{
		opts:      opts,
		rng:       rand.New(rand.NewPCG(seed, 0xCC)),
		proposals: map[string]*proposalRecord{},
		instances: map[string]bool{},
		recent:    map[string]map[string][]float64{},
		patterns:  map[string]*patternStats{},
		profiles:  map[string]wire.SafetyProfile{},
	}
	for _, at := range wire.AgentTypes {
		cc.profiles[at] = wire.SafetyProfile{Version: 1, MaxRiskScore: 0.7, MaxImpactScore: 0.9, RequireConsensus: true}
	}
	svc, err := config.NewService(client, cfg, cc.Handlers(), cc.BatchHandlers())
	if err != nil {
		return nil, err
	}
	cc.svc = svc
	return cc, nil
}

// Handlers are the handlers pgflow.yaml names.
func (cc *CentralCloud) Handlers() config.Handlers {
	return config.Handlers{
		HandleProposal: cc.handleProposal,
		HandlePattern:  cc.handlePattern,
	}
}

// BatchHandlers are the batch handlers pgflow.yaml names (entries with
// batch_size).
func (cc *CentralCloud) BatchHandlers() config.BatchHandlers {
	return config.BatchHandlers{HandleMetrics: cc.handleMetrics}
}

// Start starts the consumers.
func (cc *CentralCloud) Start(ctx context.Context) error { return cc.svc.Start(ctx) }

// Stop stops the consumers, then flushes and closes the producers.
func (cc *CentralCloud) Stop(ctx context.Context) error { return cc.svc.Stop(ctx) }

// Stats returns the domain counters.
func (cc *CentralCloud) Stats() Stats {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.stats
}

func permanent(err error) error {
	if wire.IsValidation(err) {
		return pgflow.Permanent(err)
	}
	return err
}

func (cc *CentralCloud) publish(ctx context.Context, entry, instance string, payload any, opts ...pgflow.PublishOption) error {
	p := cc.svc.Producer(entry)
	if p == nil {
		return fmt.Errorf("centralcloud: no producer %q in pgflow.yaml", entry)
	}
	_, err := p.PublishTo(ctx, wire.InstanceQueue(p.Queue(), instance), payload, opts...)
	return err
}

// handleProposal records a proposal, decides by a vote of the instances
// over their recent metrics, and sends the result to the proposer. A new
// instance first gets the current safety profiles.
func (cc *CentralCloud) handleProposal(ctx context.Context, m *pgflow.Message) error {
	var p wire.ProposalForConsensus
	if err := wire.Decode("proposal_for_consensus", m.Payload, &p); err != nil {
		return permanent(err)
	}
	cc.mu.Lock()
	if cc.opts.TransientFailRate > 0 && cc.rng.Float64() < cc.opts.TransientFailRate {
		cc.stats.TransientFails++
		cc.mu.Unlock()
		return errors.New("vote store unavailable (simulated); will retry")
	}
	newInstance := !cc.instances[p.InstanceID]
	cc.instances[p.InstanceID] = true
	rec := cc.proposals[p.ProposalID]
	if rec == nil {
		rec = &proposalRecord{proposal: p}
		cc.proposals[p.ProposalID] = rec
		cc.stats.Proposals++
	}
	if rec.result == nil {
		r := cc.vote(p)
		rec.result = &r
		if r.Status == wire.StatusApproved {
			cc.stats.Approved++
		} else {
			cc.stats.Rejected++
		}
	}
	result := *rec.result
	profiles := cc.profilesLocked()
	cc.mu.Unlock()

	if newInstance {
		for _, at := range wire.AgentTypes {
			u := wire.SafetyProfileUpdate{InstanceID: p.InstanceID, AgentType: at, SafetyProfile: profiles[at], Reason: "initial profile for a new instance"}
			if err := cc.publish(ctx, "safety_profiles", p.InstanceID, u); err != nil {
				cc.forget(p.InstanceID)
				return err
			}
		}
	}
	return cc.publish(ctx, "consensus_results", p.InstanceID, result, pgflow.WithHeader("status", result.Status),
		pgflow.WithDedupKey("result:"+p.ProposalID))
}

func (cc *CentralCloud) forget(instance string) {
	cc.mu.Lock()
	delete(cc.instances, instance)
	cc.mu.Unlock()
}

func (cc *CentralCloud) profilesLocked() map[string]wire.SafetyProfile {
	out := make(map[string]wire.SafetyProfile, len(cc.profiles))
	for k, v := range cc.profiles {
		out[k] = v
	}
	return out
}

// vote asks every known instance: an instance approves when the proposal's
// risk is within the agent type's profile and its own recent changes of that
// agent type did not raise its error rate by more than half the rollback
// threshold on average.
func (cc *CentralCloud) vote(p wire.ProposalForConsensus) wire.ConsensusResult {
	voters := make([]string, 0, len(cc.instances))
	for id := range cc.instances {
		voters = append(voters, id)
	}
	sort.Strings(voters)
	profile := cc.profiles[p.AgentType]
	var votes []wire.Vote
	approvals := 0
	for _, v := range voters {
		deltas := cc.recent[v][p.AgentType]
		mean := 0.0
		for _, d := range deltas {
			mean += d
		}
		if len(deltas) > 0 {
			mean /= float64(len(deltas))
		}
		vote := wire.Vote{Voter: v, Approve: true, Reason: "within profile and recent metrics healthy"}
		switch {
		case p.RiskScore > profile.MaxRiskScore:
			vote = wire.Vote{Voter: v, Reason: fmt.Sprintf("risk %.2f above profile limit %.2f", p.RiskScore, profile.MaxRiskScore)}
		case p.ImpactScore > profile.MaxImpactScore:
			vote = wire.Vote{Voter: v, Reason: fmt.Sprintf("impact %.2f above profile limit %.2f", p.ImpactScore, profile.MaxImpactScore)}
		case mean > ErrorRateIncrease/2:
			vote = wire.Vote{Voter: v, Reason: fmt.Sprintf("recent %s changes raised error rate by %.3f on average", p.AgentType, mean)}
		}
		if vote.Approve {
			approvals++
		}
		votes = append(votes, vote)
	}
	status := wire.StatusRejected
	if approvals*2 > len(votes) {
		status = wire.StatusApproved
	}
	confidence := math.Abs(float64(2*approvals-len(votes))) / float64(len(votes))
	return wire.ConsensusResult{ProposalID: p.ProposalID, InstanceID: p.InstanceID, AgentType: p.AgentType,
		Status: status, Votes: votes, Confidence: confidence, DecidedAt: time.Now().UTC()}
}

// handleMetrics is Guardian, a batch handler: it takes up to batch_size
// metrics messages at once, records every instance's recent error-rate
// deltas under one lock, and orders a rollback for each change that crossed
// a threshold. Each message has its own outcome: an invalid payload is
// dead-lettered, a rollback whose publish failed is retried (the trigger is
// deduplicated by proposal), the others are acknowledged.
func (cc *CentralCloud) handleMetrics(ctx context.Context, msgs []*pgflow.Message) error {
	errs := make(pgflow.BatchErrors, len(msgs))
	ems := make([]*wire.ExecutionMetrics, len(msgs))
	for i, m := range msgs {
		var em wire.ExecutionMetrics
		if err := wire.Decode("execution_metrics", m.Payload, &em); err != nil {
			errs[i] = permanent(err)
			continue
		}
		ems[i] = &em
	}
	cc.mu.Lock()
	for _, em := range ems {
		if em == nil {
			continue
		}
		cc.instances[em.InstanceID] = true
		byType := cc.recent[em.InstanceID]
		if byType == nil {
			byType = map[string][]float64{}
			cc.recent[em.InstanceID] = byType
		}
		window := append(byType[em.AgentType], em.MetricsAfter.ErrorRate-em.MetricsBefore.ErrorRate)
		if len(window) > 10 {
			window = window[len(window)-10:]
		}
		byType[em.AgentType] = window
	}
	cc.mu.Unlock()
	for i, em := range ems {
		if em != nil {
			errs[i] = cc.guard(ctx, em)
		}
	}
	return errs
}

// guard orders a rollback when em's change crossed a threshold.
func (cc *CentralCloud) guard(ctx context.Context, em *wire.ExecutionMetrics) error {
	delta := em.MetricsAfter.ErrorRate - em.MetricsBefore.ErrorRate
	latency := em.MetricsAfter.LatencyP95Ms / em.MetricsBefore.LatencyP95Ms
	var trig *wire.RollbackTrigger
	switch {
	case delta > ErrorRateIncrease:
		trig = &wire.RollbackTrigger{Severity: wire.SeverityCritical,
			Reason:    fmt.Sprintf("error rate rose by %.3f after %s", delta, em.ProposalID),
			Threshold: wire.Threshold{Metric: "error_rate_increase", Limit: ErrorRateIncrease, Observed: delta}}
	case latency > LatencyIncrease:
		trig = &wire.RollbackTrigger{Severity: wire.SeverityWarning,
			Reason:    fmt.Sprintf("p95 latency grew %.1fx after %s", latency, em.ProposalID),
			Threshold: wire.Threshold{Metric: "latency_p95_ratio", Limit: LatencyIncrease, Observed: latency}}
	}
	if trig == nil {
		return nil
	}
	trig.ProposalID, trig.InstanceID, trig.AgentType, trig.TriggeredAt = em.ProposalID, em.InstanceID, em.AgentType, time.Now().UTC()
	var opts []pgflow.PublishOption
	if trig.Severity == wire.SeverityWarning {
		// The producer's default is high (pgflow.yaml); warnings can wait.
		opts = append(opts, pgflow.WithPriority(pgflow.PriorityNormal))
	}
	// A rollback acted on long after its metrics is more likely to harm than
	// help: one that no Singularity instance claimed within RollbackExpiry
	// goes to the dead-letter queue (reason expired) for an operator instead.
	opts = append(opts, pgflow.WithDedupKey("rollback:"+em.ProposalID), pgflow.WithExpiry(RollbackExpiry))
	if err := cc.publish(ctx, "rollback_triggers", em.InstanceID, trig, opts...); err != nil {
		return err
	}
	cc.mu.Lock()
	cc.stats.Rollbacks++
	if trig.Severity == wire.SeverityCritical {
		cc.stats.Critical++
	}
	cc.mu.Unlock()
	return nil
}

// handlePattern aggregates patterns per agent type; when an agent type's
// success rate moves the safety profile's risk limit by 0.05 or more, the new
// profile is broadcast to every instance through wire.SafetyProfilesTopic.
func (cc *CentralCloud) handlePattern(ctx context.Context, m *pgflow.Message) error {
	var p wire.PatternDiscovered
	if err := wire.Decode("pattern_discovered", m.Payload, &p); err != nil {
		return permanent(err)
	}
	cc.mu.Lock()
	cc.stats.Patterns++
	st := cc.patterns[p.AgentType]
	if st == nil {
		st = &patternStats{}
		cc.patterns[p.AgentType] = st
	}
	st.n++
	st.successSum += p.SuccessRate
	rate := st.successSum / float64(st.n)
	prof := cc.profiles[p.AgentType]
	limit := math.Round((0.3+0.6*rate)*100) / 100 // 0.3 … 0.9
	n := st.n
	changed := false
	if st.n >= 3 && math.Abs(limit-prof.MaxRiskScore) >= 0.05 {
		prof.Version++
		prof.MaxRiskScore = limit
		cc.profiles[p.AgentType] = prof
		changed = true
	}
	cc.mu.Unlock()
	if !changed {
		return nil
	}
	// One publish to the topic reaches every instance's queue; before any
	// instance subscribed there is nobody to tell (a new instance gets the
	// current profiles with its first consensus result).
	u := wire.SafetyProfileUpdate{InstanceID: wire.Broadcast, AgentType: p.AgentType, SafetyProfile: prof,
		Reason: fmt.Sprintf("%s success rate %.2f over %d patterns", p.AgentType, rate, n)}
	sent, err := cc.svc.Client.PublishTopic(ctx, wire.SafetyProfilesTopic, u, pgflow.AllowNoSubscribers())
	if err != nil {
		return err
	}
	cc.mu.Lock()
	cc.stats.ProfileUpdates += len(sent)
	cc.mu.Unlock()
	return nil
}
