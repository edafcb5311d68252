package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/config"
	"github.com/pgflow-go/pgflow/examples/nexus/centralcloud"
	"github.com/pgflow-go/pgflow/examples/nexus/singularity"
	"github.com/pgflow-go/pgflow/examples/nexus/telemetry"
	"github.com/pgflow-go/pgflow/examples/nexus/wire"
	"github.com/pgflow-go/pgflow/migrate"
)

// Options configure a run. Pool and Schema are required.
type Options struct {
	Pool *pgxpool.Pool
	// Database labels the report (a URL without its password).
	Database string
	// Schema is created (migrate.Up) if needed; use a fresh one per run.
	Schema string
	// Instances is the number of Singularity instances. Default 3.
	Instances int
	// Duration is how long the instances propose changes. Default 20 s.
	Duration time.Duration
	// Rate is proposals per second per instance. Default 10.
	Rate float64
	// InvalidRate is the share of messages sent invalid on purpose. Default
	// 0.02; negative for none.
	InvalidRate float64
	// TransientFailRate is the share of proposal deliveries CentralCloud
	// fails as if briefly unavailable (retried). Default 0.05; negative for none.
	TransientFailRate float64
	// Drain bounds the wait, after the traffic stops, for every queue to
	// empty. Default 30 s.
	Drain time.Duration
	// Progress, when set, is called about every ProgressEvery (default 1 s).
	Progress      func(Progress)
	ProgressEvery time.Duration
	// Telemetry, when set, receives every named event.
	Telemetry telemetry.Handler
	// Hooks are added to every service's pgflow client (e.g. a Prometheus
	// or OpenTelemetry collector).
	Hooks []pgflow.EventHook
	// LookupEnv reads the configs' environment. Default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	Logger    *slog.Logger
	Seed      uint64
}

// Progress is a snapshot for the live line.
type Progress struct {
	Elapsed   time.Duration
	Draining  bool
	Published int
	Handled   int
	Retried   int
	Dead      int
	InFlight  int
	Rollbacks int
}

func (o *Options) defaults() error {
	if o.Pool == nil || o.Schema == "" {
		return errors.New("demo: Pool and Schema are required")
	}
	if o.Instances == 0 {
		o.Instances = 3
	}
	if o.Instances < 1 || o.Instances > 50 {
		return fmt.Errorf("demo: instances must be 1-50, got %d", o.Instances)
	}
	if o.Duration <= 0 {
		o.Duration = 20 * time.Second
	}
	if o.Rate <= 0 {
		o.Rate = 10
	}
	if o.InvalidRate == 0 {
		o.InvalidRate = 0.02
	}
	if o.TransientFailRate == 0 {
		o.TransientFailRate = 0.05
	}
	if o.Drain <= 0 {
		o.Drain = 30 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = time.Second
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Run migrates the schema, starts CentralCloud and the Singularity
// instances in this process (each its own pgflow client, sharing the pool),
// lets the instances propose changes for Duration (or until ctx ends),
// waits for the queues to drain, stops everything and returns the report.
// Check the report's OK: it is false when a message went missing.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	start := time.Now()
	if _, err := migrate.Up(ctx, o.Pool, o.Schema); err != nil {
		return nil, err
	}
	tel := telemetry.New()
	if o.Telemetry != nil {
		tel.Attach("demo", telemetry.Prefix, o.Telemetry)
	}
	cnt := NewCounter()
	env := func(k string) (string, bool) {
		if k == "PGFLOW_SCHEMA" {
			return o.Schema, true
		}
		return o.LookupEnv(k)
	}
	newClient := func(service string, cfg *config.Config) (*pgflow.Client, error) {
		return pgflow.New(o.Pool, pgflow.Config{Schema: cfg.Schema, Logger: o.Logger,
			ID:    fmt.Sprintf("%s:%d", service, os.Getpid()),
			Hooks: append([]pgflow.EventHook{cnt.Hook, telemetry.Bridge(tel, service, ruleSet(service))}, o.Hooks...)})
	}

	ccCfg, err := centralcloud.LoadConfig("", env)
	if err != nil {
		return nil, err
	}
	ccClient, err := newClient(centralcloud.Name, ccCfg)
	if err != nil {
		return nil, err
	}
	defer ccClient.Close(context.Background())
	cc, err := centralcloud.New(ccClient, ccCfg, centralcloud.Options{TransientFailRate: max(o.TransientFailRate, 0), Seed: o.Seed})
	if err != nil {
		return nil, err
	}
	type running interface{ Stop(context.Context) error }
	var started []running
	stopAll := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var errs []error
		for i := len(started) - 1; i >= 0; i-- {
			errs = append(errs, started[i].Stop(sctx))
		}
		started = nil
		return errors.Join(errs...)
	}
	defer stopAll() //nolint:errcheck // a second call is a no-op; errors reported below

	if err := cc.Start(ctx); err != nil {
		return nil, err
	}
	started = append(started, cc)
	var instances []*singularity.Instance
	for i := 1; i <= o.Instances; i++ {
		id := singularity.InstanceID(i)
		cfg, err := singularity.LoadConfig("", id, env)
		if err != nil {
			return nil, err
		}
		client, err := newClient(id, cfg)
		if err != nil {
			return nil, err
		}
		defer client.Close(context.Background())
		seed := o.Seed
		if seed != 0 {
			seed += uint64(i)
		}
		in, err := singularity.New(client, cfg, singularity.Options{ID: id, InvalidRate: max(o.InvalidRate, 0), Seed: seed})
		if err != nil {
			return nil, err
		}
		if err := in.Start(ctx); err != nil {
			return nil, err
		}
		started = append(started, in)
		instances = append(instances, in)
	}

	// Traffic: one generator per instance, owned here.
	trafficCtx, stopTraffic := context.WithTimeout(ctx, o.Duration)
	defer stopTraffic()
	var gens sync.WaitGroup
	genErrs := make(chan error, len(instances))
	for _, in := range instances {
		gens.Go(func() {
			if err := in.Run(trafficCtx, o.Rate); err != nil {
				genErrs <- fmt.Errorf("%s: %w", in.ID(), err)
			}
		})
	}
	progress := func(draining bool) {
		if o.Progress == nil {
			return
		}
		p := cnt.Progress()
		p.Elapsed, p.Draining = time.Since(start).Truncate(100*time.Millisecond), draining
		for _, in := range instances {
			p.Rollbacks += len(in.Rollbacks())
		}
		o.Progress(p)
	}
	tick := time.NewTicker(o.ProgressEvery)
	defer tick.Stop()
	for trafficCtx.Err() == nil {
		select {
		case <-trafficCtx.Done():
		case <-tick.C:
			progress(false)
		}
	}
	gens.Wait()
	close(genErrs)
	var runErrs []error
	for err := range genErrs {
		runErrs = append(runErrs, err)
	}
	trafficTime := time.Since(start)

	// Drain: wait until no message is left in the schema (pending, backing
	// off or being handled). A handler's downstream publish commits before
	// its message is acknowledged, so an empty table means the cascade of
	// results, metrics and rollbacks has finished.
	drainFor := o.Drain
	if ctx.Err() != nil {
		drainFor = min(drainFor, 3*time.Second) // interrupted: report promptly
	}
	drainCtx, stopDrain := context.WithTimeout(context.Background(), drainFor)
	defer stopDrain()
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	lastProgress := time.Now()
	for {
		n, err := countLive(drainCtx, o.Pool, o.Schema)
		if err == nil && n == 0 {
			break
		}
		select {
		case <-drainCtx.Done():
		case <-poll.C:
			if time.Since(lastProgress) >= o.ProgressEvery {
				lastProgress = time.Now()
				progress(true)
			}
			continue
		}
		break
	}
	if err := stopAll(); err != nil {
		runErrs = append(runErrs, fmt.Errorf("stop: %w", err))
	}

	rep, err := buildReport(context.Background(), o, cnt, tel, cc, instances)
	if err != nil {
		return nil, err
	}
	rep.Traffic = trafficTime.Truncate(time.Millisecond).String()
	rep.Elapsed = time.Since(start).Truncate(time.Millisecond).String()
	for _, err := range runErrs {
		rep.Problems = append(rep.Problems, err.Error())
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

func ruleSet(service string) []telemetry.Rule {
	if service == centralcloud.Name {
		return centralcloud.TelemetryRules
	}
	return singularity.TelemetryRules
}

func countLive(ctx context.Context, pool *pgxpool.Pool, schema string) (int, error) {
	var n int
	err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "pgflow_messages"}.Sanitize()).Scan(&n)
	return n, err
}

// Counter tallies lifecycle events per base queue, by message id, so a
// redelivered message is counted once. Install Hook in a client's
// Config.Hooks.
type Counter struct {
	mu     sync.Mutex
	queues map[string]*tally
}

type tally struct {
	published     map[int64]bool
	handled       map[int64]bool
	dead          map[int64]bool
	retried       int
	publishFailed int
}

// NewCounter returns an empty Counter.
func NewCounter() *Counter { return &Counter{queues: map[string]*tally{}} }

func (c *Counter) get(queue string) *tally {
	t := c.queues[queue]
	if t == nil {
		t = &tally{published: map[int64]bool{}, handled: map[int64]bool{}, dead: map[int64]bool{}}
		c.queues[queue] = t
	}
	return t
}

// Hook counts one event.
func (c *Counter) Hook(e pgflow.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.get(wire.BaseQueue(e.Queue))
	switch e.Kind {
	case pgflow.EventPublished:
		t.published[e.MessageID] = true
	case pgflow.EventPublishFailed:
		t.publishFailed++
	case pgflow.EventCompleted:
		t.handled[e.MessageID] = true
	case pgflow.EventRetried, pgflow.EventLeaseExpired:
		t.retried++
	case pgflow.EventDeadLettered:
		t.dead[e.MessageID] = true
	}
}

// Progress totals the counts over all queues.
func (c *Counter) Progress() Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	var p Progress
	for _, t := range c.queues {
		p.Published += len(t.published)
		p.Handled += len(t.handled)
		p.Dead += len(t.dead)
		p.Retried += t.retried
	}
	p.InFlight = p.Published - p.Handled - p.Dead
	return p
}

// snapshot copies the tallies.
func (c *Counter) snapshot() map[string]tally {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]tally{}
	for q, t := range c.queues {
		cp := tally{published: map[int64]bool{}, handled: map[int64]bool{}, dead: map[int64]bool{}, retried: t.retried, publishFailed: t.publishFailed}
		for id := range t.published {
			cp.published[id] = true
		}
		for id := range t.handled {
			cp.handled[id] = true
		}
		for id := range t.dead {
			cp.dead[id] = true
		}
		out[q] = cp
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
