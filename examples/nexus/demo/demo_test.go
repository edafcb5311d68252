package demo_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/config"
	"github.com/pgflow-go/pgflow/examples/nexus/demo"
	"github.com/pgflow-go/pgflow/examples/nexus/singularity"
	"github.com/pgflow-go/pgflow/examples/nexus/wire"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelError}))
}

func noEnv(string) (string, bool) { return "", false }

func TestRunEndToEnd(t *testing.T) {
	db := pgflowtest.New(t)
	var progress int
	rep, err := demo.Run(context.Background(), demo.Options{
		Pool: db.Pool, Database: "test", Schema: db.Schema,
		Instances: 3, Duration: 3 * time.Second, Rate: 15,
		InvalidRate: 0.08, TransientFailRate: 0.1, Seed: 42,
		Progress:  func(demo.Progress) { progress++ },
		LookupEnv: noEnv, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.WriteText(&out)
	t.Log(out.String())
	if !rep.OK {
		t.Fatalf("report not OK: %v", rep.Problems)
	}
	if len(rep.Queues) != 6 {
		t.Fatalf("%d queues in the report", len(rep.Queues))
	}
	for _, q := range rep.Queues {
		if q.Published == 0 || q.Handled == 0 {
			t.Errorf("%s carried nothing: %+v", q.Queue, q)
		}
		if q.Lost != 0 || q.Published != q.Handled+q.DeadLettered+q.InFlight {
			t.Errorf("%s: published %d != handled %d + dead-lettered %d + in flight %d", q.Queue, q.Published, q.Handled, q.DeadLettered, q.InFlight)
		}
	}
	// Invalid payloads reached the DLQ with a clear error, and only they.
	kinds := map[string]bool{}
	for _, e := range rep.DLQ {
		if !strings.HasPrefix(e.Error, "permanent: invalid ") {
			t.Errorf("unexpected DLQ entry %+v", e)
		}
		kinds[wire.BaseQueue(e.Queue)] = true
	}
	if len(kinds) == 0 {
		t.Fatal("no invalid payload reached the dead-letter queue")
	}
	if db.Count(t, "pgflow_dlq", "error LIKE 'permanent: invalid %'") != len(rep.DLQ) {
		t.Fatal("DLQ rows and report disagree")
	}
	if rep.Total.Retried == 0 {
		t.Error("no retries although CentralCloud fails 10% of proposal deliveries")
	}
	if rep.Rollbacks.Handled == 0 {
		t.Error("no rollback was triggered")
	}
	for _, name := range []string{"proposal_published", "consensus_approved", "rollback_completed", "profile_updated",
		"proposal_received", "consensus_result_published", "rollback_trigger_published", "profile_update_published",
		"metrics_published", "pattern_published", "metrics_received", "pattern_received"} {
		if rep.Telemetry["evolution.pgflow."+name] == 0 {
			t.Errorf("no %s event", name)
		}
	}
	if progress == 0 {
		t.Error("no progress reported")
	}
}

// A critical rollback published behind warnings is handled first.
func TestCriticalRollbackOvertakesQueuedWarnings(t *testing.T) {
	_, cfg, client := instanceSetup(t, 9)
	ctx := context.Background()
	id := singularity.InstanceID(9)
	queue := wire.InstanceQueue(wire.RollbackQueue, id)
	publish := func(n int, severity string, prio int) {
		trig := wire.RollbackTrigger{ProposalID: fmt.Sprintf("p%d", n), InstanceID: id, AgentType: "performance",
			Reason: severity, Severity: severity, Threshold: wire.Threshold{Metric: "m", Limit: 1, Observed: 2}}
		if _, err := client.Publish(ctx, queue, trig, pgflow.WithPriority(prio)); err != nil {
			t.Fatal(err)
		}
	}
	// Normal traffic queues first, then the critical rollback.
	for i := range 5 {
		publish(i, wire.SeverityWarning, pgflow.PriorityNormal)
	}
	publish(99, wire.SeverityCritical, pgflow.PriorityHigh)

	in, err := singularity.New(client, cfg, singularity.Options{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer in.Stop(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for len(in.Rollbacks()) < 6 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := in.Rollbacks()
	if len(got) != 6 {
		t.Fatalf("%d rollbacks handled, want 6", len(got))
	}
	if got[0].ProposalID != "p99" || got[0].Priority != pgflow.PriorityHigh {
		t.Fatalf("first rollback handled: %+v, want the critical p99", got[0])
	}
	for i, r := range got[1:] {
		if r.ProposalID != fmt.Sprintf("p%d", i) {
			t.Fatalf("warnings out of order: %+v", got)
		}
	}
}

// An invalid payload goes to the DLQ with a clear error; the rest flow.
func TestInvalidPayloadIsDeadLettered(t *testing.T) {
	db, cfg, client := instanceSetup(t, 1)
	ctx := context.Background()
	id := singularity.InstanceID(1)
	queue := wire.InstanceQueue(wire.SafetyProfilesQueue, id)
	good := wire.SafetyProfileUpdate{InstanceID: id, AgentType: "security", Reason: "r",
		SafetyProfile: wire.SafetyProfile{Version: 2, MaxRiskScore: 0.5, MaxImpactScore: 0.8}}
	if _, err := client.Publish(ctx, queue, map[string]any{"instance_id": id, "agent_type": "astrology", "safety_profile": map[string]any{"version": 0, "max_risk_score": 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Publish(ctx, queue, good); err != nil {
		t.Fatal(err)
	}
	in, err := singularity.New(client, cfg, singularity.Options{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for (in.Stats().ProfileUpdates < 1 || db.Count(t, "pgflow_dlq", "") < 1) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if in.Stats().ProfileUpdates != 1 {
		t.Fatal("the valid update was not applied")
	}
	want := `permanent: invalid safety_profile_update: agent_type "astrology" is not one of refactoring, performance, security, test_generation; safety_profile.version 0 must be at least 1; safety_profile.max_risk_score 2 is outside [0,1]`
	if db.Count(t, "pgflow_dlq", "error = $1 AND attempts = 1", want) != 1 {
		var got string
		_ = db.Pool.QueryRow(ctx, "SELECT error FROM "+db.Schema+".pgflow_dlq").Scan(&got)
		t.Fatalf("DLQ error %q, want %q", got, want)
	}
}

// instanceSetup loads Singularity instance n's built-in config into a fresh
// test schema and returns a client on it, closed when the test ends.
func instanceSetup(t *testing.T, n int) (*pgflowtest.DB, *config.Config, *pgflow.Client) {
	t.Helper()
	db := pgflowtest.New(t)
	env := func(k string) (string, bool) {
		if k == "PGFLOW_SCHEMA" {
			return db.Schema, true
		}
		return "", false
	}
	cfg, err := singularity.LoadConfig("", singularity.InstanceID(n), env)
	if err != nil {
		t.Fatal(err)
	}
	client, err := pgflow.New(db.Pool, pgflow.Config{Schema: cfg.Schema, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(context.Background()) })
	return db, cfg, client
}

// A safety profile published once to the topic reaches every instance:
// each subscribed its own profile queue when it started.
func TestSafetyProfileBroadcastReachesEveryInstance(t *testing.T) {
	db, cfg1, client := instanceSetup(t, 1)
	ctx := context.Background()
	env := func(k string) (string, bool) {
		if k == "PGFLOW_SCHEMA" {
			return db.Schema, true
		}
		return "", false
	}
	cfg2, err := singularity.LoadConfig("", singularity.InstanceID(2), env)
	if err != nil {
		t.Fatal(err)
	}
	client2, err := pgflow.New(db.Pool, pgflow.Config{Schema: cfg2.Schema, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client2.Close(context.Background()) })
	var instances []*singularity.Instance
	for i, c := range []struct {
		client *pgflow.Client
		cfg    *config.Config
	}{{client, cfg1}, {client2, cfg2}} {
		in, err := singularity.New(c.client, c.cfg, singularity.Options{ID: singularity.InstanceID(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		if err := in.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = in.Stop(context.Background()) })
		instances = append(instances, in)
	}
	u := wire.SafetyProfileUpdate{InstanceID: wire.Broadcast, AgentType: "security", Reason: "tightened",
		SafetyProfile: wire.SafetyProfile{Version: 2, MaxRiskScore: 0.4, MaxImpactScore: 0.8}}
	sent, err := client.PublishTopic(ctx, wire.SafetyProfilesTopic, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(sent) != 2 || sent[0].Queue != wire.InstanceQueue(wire.SafetyProfilesQueue, "singularity-1") ||
		sent[1].Queue != wire.InstanceQueue(wire.SafetyProfilesQueue, "singularity-2") {
		t.Fatalf("PublishTopic = %+v, want one copy per instance's queue", sent)
	}
	deadline := time.Now().Add(30 * time.Second)
	for (instances[0].Stats().ProfileUpdates < 1 || instances[1].Stats().ProfileUpdates < 1) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for i, in := range instances {
		if got := in.Stats().ProfileUpdates; got != 1 {
			t.Fatalf("instance %d installed %d profile updates, want 1", i+1, got)
		}
	}
	if n := db.Count(t, "pgflow_dlq", ""); n != 0 {
		t.Fatalf("%d dead letters: a broadcast must not look misrouted", n)
	}
}
