package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/pgbouncer"
	"github.com/pgflow-go/pgflow/internal/pgcluster"
	"github.com/pgflow-go/pgflow/migrate"
)

// The guide's six queues (examples/nexus): three that every instance
// shares as competing consumers (Singularity → CentralCloud in the guide)
// and three partitioned per instance ("<queue>.<instance>", CentralCloud →
// Singularity).
var (
	fleetShared      = []string{"proposals_for_consensus_queue", "metrics_to_guardian_queue", "patterns_for_aggregator_queue"}
	fleetPartitioned = []string{"consensus_results_queue", "rollback_triggers_queue", "guardian_safety_profiles_queue"}
)

// FleetConfig configures the fleet workload: Instances consumer processes,
// each consuming the six queues, against a throwaway server.
type FleetConfig struct {
	Instances int
	// Conns is each process's pool size (pgxpool MaxConns); its LISTEN
	// connection, unless PollOnly or through a transaction pooler, is one
	// more.
	Conns int
	// Workers per queue and process.
	Workers int
	// Rate is messages/s over all queues; Duration how long they are
	// published.
	Rate     int
	Duration time.Duration
	// MaxConnections is the throwaway server's max_connections.
	MaxConnections int
	// Pooler is "", "transaction" or "session": consumers connect through
	// a PgBouncer in that pool mode with PoolSize server connections.
	Pooler   string
	PoolSize int
	// PollOnly and PollInterval are the consumers' pgflow settings.
	PollOnly     bool
	PollInterval time.Duration
	JSONOnly     bool
}

// DefaultFleetConfig is 50 instances at 500 messages/s for 20 s.
func DefaultFleetConfig() FleetConfig {
	return FleetConfig{Instances: 50, Conns: 1, Workers: 1, Rate: 500, Duration: 20 * time.Second, MaxConnections: 100, PoolSize: 20}
}

// fleetChildEnv carries a child's configuration (JSON) from RunFleet to the
// process it starts (`pgflow bench fleet-child`).
const fleetChildEnv = "PGFLOW_BENCH_FLEET_CHILD"

type fleetChild struct {
	DSN          string        `json:"dsn"`
	Index        int           `json:"index"`
	Conns        int           `json:"conns"`
	Workers      int           `json:"workers"`
	PollOnly     bool          `json:"poll_only"`
	PollInterval time.Duration `json:"poll_interval"`
}

type fleetReport struct {
	Handled   int64   `json:"handled"`
	LatencyUS []int64 `json:"latency_us"`
	Error     string  `json:"error,omitempty"`
}

type fleetPayload struct {
	T int64 `json:"t"` // publish time, unix ns
}

// RunFleetChild is one consumer process of the fleet workload: it consumes
// its six queues, prints "ready" once started, and when standard input
// closes stops and prints its report (one JSON line).
func RunFleetChild(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var cfg fleetChild
	if err := json.Unmarshal([]byte(os.Getenv(fleetChildEnv)), &cfg); err != nil {
		return fmt.Errorf("fleet-child: %s: %w", fleetChildEnv, err)
	}
	rep := fleetReport{}
	err := func() error {
		pc, err := pgxpool.ParseConfig(cfg.DSN)
		if err != nil {
			return err
		}
		pc.MaxConns = int32(cfg.Conns)
		pc.ConnConfig.RuntimeParams["application_name"] = "pgflow-fleet-consumer"
		pcfg := pgflow.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
			PollOnly: cfg.PollOnly, PollInterval: cfg.PollInterval, ID: fmt.Sprintf("fleet-%d", cfg.Index), DisableStatsCounters: true}
		pool, err := pgflow.OpenPool(ctx, pc, &pcfg)
		if err != nil {
			return err
		}
		defer pool.Close()
		c, err := pgflow.New(pool, pcfg)
		if err != nil {
			return err
		}
		var mu sync.Mutex
		var handled atomic.Int64
		h := func(_ context.Context, m *pgflow.Message) error {
			now := time.Now().UnixNano()
			var p fleetPayload
			if err := m.Decode(&p); err != nil {
				return pgflow.Permanent(err)
			}
			handled.Add(1)
			mu.Lock()
			rep.LatencyUS = append(rep.LatencyUS, (now-p.T)/1000)
			mu.Unlock()
			return nil
		}
		for _, q := range fleetQueues(cfg.Index) {
			if err := c.Consume(pgflow.ConsumerConfig{Queue: q, Workers: cfg.Workers, Handler: h}); err != nil {
				return err
			}
		}
		if err := c.Start(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "ready")
		_, _ = io.Copy(io.Discard, stdin) // until the parent closes it
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Close(sctx); err != nil {
			return err
		}
		rep.Handled = handled.Load()
		return nil
	}()
	if err != nil {
		rep.Error = err.Error()
	}
	b, _ := json.Marshal(rep)
	fmt.Fprintln(stdout, string(b))
	return err
}

// fleetQueues are instance i's six queues.
func fleetQueues(i int) []string {
	qs := slices.Clone(fleetShared)
	for _, q := range fleetPartitioned {
		qs = append(qs, fmt.Sprintf("%s.instance-%d", q, i))
	}
	return qs
}

// RunFleet runs the fleet workload on a throwaway cluster (internal/pgcluster,
// max_connections = MaxConnections) and, with Pooler set, a PgBouncer in
// front of it: it starts Instances consumer processes (this binary, `bench
// fleet-child`), publishes Rate messages/s for Duration spread evenly over
// every queue from a connection of its own, waits for the backlog to drain,
// and reports the server connections in use (consumers only), handled/s,
// pickup latency (publish to handler start) and the server's CPU time.
func RunFleet(ctx context.Context, cfg FleetConfig, stdout io.Writer) error {
	human := func(format string, a ...any) {
		if !cfg.JSONOnly {
			fmt.Fprintf(stdout, "# "+format+"\n", a...)
		}
	}
	if !pgcluster.Available() {
		return errors.New("fleet: PostgreSQL server binaries (initdb, pg_ctl) not installed")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cl, err := pgcluster.StartWith(ctx, pgcluster.Options{MaxConnections: cfg.MaxConnections,
		Settings: []string{"shared_buffers=256MB", "synchronous_commit=on"}})
	if err != nil {
		return err
	}
	defer cl.Remove()
	serverURL := cl.URL("postgres")
	human("throwaway server on port %d, max_connections=%d", cl.Port, cfg.MaxConnections)

	pc, err := pgxpool.ParseConfig(serverURL)
	if err != nil {
		return err
	}
	pc.MaxConns = 4
	pc.ConnConfig.RuntimeParams["application_name"] = "pgflow-fleet-publisher"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool, "public"); err != nil {
		return err
	}
	pub, err := pgflow.New(pool, pgflow.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})), DisableStatsCounters: true})
	if err != nil {
		return err
	}
	defer pub.Close(context.Background())
	var queues []string
	for i := 0; i < cfg.Instances; i++ {
		for _, q := range fleetQueues(i) {
			if !slices.Contains(queues, q) {
				queues = append(queues, q)
			}
		}
	}
	for _, q := range queues {
		if err := pub.DeclareQueue(ctx, pgflow.QueueConfig{Name: q}); err != nil {
			return err
		}
	}

	consumerURL := serverURL
	if cfg.Pooler != "" {
		b, err := pgbouncer.Start(ctx, pgbouncer.Options{Mode: pgbouncer.Mode(cfg.Pooler), Server: fmt.Sprintf("127.0.0.1:%d", cl.Port),
			PoolSize: cfg.PoolSize, MaxClientConn: 4 * cfg.Instances * (cfg.Conns + 1)})
		if err != nil {
			return err
		}
		defer b.Stop()
		if consumerURL, err = b.URL(serverURL); err != nil {
			return err
		}
		human("pgbouncer pool_mode=%s default_pool_size=%d on port %d", cfg.Pooler, cfg.PoolSize, b.Port)
	}

	// Start the consumer processes.
	type child struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		lines  *bufio.Scanner
		stderr *strings.Builder
	}
	children := make([]*child, 0, cfg.Instances)
	defer func() {
		for _, ch := range children {
			_ = ch.cmd.Process.Kill()
			_ = ch.cmd.Wait()
		}
	}()
	for i := 0; i < cfg.Instances; i++ {
		env, _ := json.Marshal(fleetChild{DSN: consumerURL, Index: i, Conns: cfg.Conns, Workers: cfg.Workers, PollOnly: cfg.PollOnly, PollInterval: cfg.PollInterval})
		cmd := exec.Command(self, "bench", "fleet-child")
		cmd.Env = append(os.Environ(), fleetChildEnv+"="+string(env))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		ch := &child{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(out), stderr: &strings.Builder{}}
		ch.lines.Buffer(make([]byte, 1<<20), 64<<20)
		cmd.Stderr = ch.stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		children = append(children, ch)
	}
	started := 0
	var startErrs []string
	for i, ch := range children {
		if ch.lines.Scan() && ch.lines.Text() == "ready" {
			started++
			continue
		}
		startErrs = append(startErrs, fmt.Sprintf("instance %d: %s %s", i, ch.lines.Text(), strings.TrimSpace(ch.stderr.String())))
	}
	if started < cfg.Instances {
		human("%d of %d consumer processes started; first failures: %s", started, cfg.Instances, strings.Join(startErrs[:min(3, len(startErrs))], " | "))
		return fmt.Errorf("fleet: %d of %d consumer processes could not start", cfg.Instances-started, cfg.Instances)
	}
	human("%d consumer processes started (pool %d each, %d worker(s) per queue, 6 queues each)", started, cfg.Conns, cfg.Workers)

	// Sample consumer connections and server CPU while publishing.
	cpu0, err := clusterCPU(cl)
	if err != nil {
		return err
	}
	var connSamples []int
	stopSample := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			var n int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
				AND application_name <> 'pgflow-fleet-publisher'`).Scan(&n); err == nil {
				connSamples = append(connSamples, n)
			}
			select {
			case <-stopSample:
				return
			case <-t.C:
			}
		}
	}()
	t0 := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	published := 0
	for time.Since(t0) < cfg.Duration {
		<-tick.C
		due := int(float64(cfg.Rate) * time.Since(t0).Seconds())
		if due <= published {
			continue
		}
		batch := make([]pgflow.Outgoing, 0, due-published)
		now := time.Now().UnixNano()
		for ; published < due; published++ {
			batch = append(batch, pgflow.Outgoing{Queue: queues[published%len(queues)], Payload: fleetPayload{T: now}})
		}
		if _, err := pub.PublishBatch(ctx, batch); err != nil {
			tick.Stop()
			return err
		}
	}
	tick.Stop()
	pubDur := time.Since(t0)
	// Drain.
	for {
		var left int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM public.pgflow_messages").Scan(&left); err != nil {
			return err
		}
		if left == 0 {
			break
		}
		if time.Since(t0) > cfg.Duration+60*time.Second {
			return fmt.Errorf("fleet: %d messages left 60 s after the last publish", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wall := time.Since(t0)
	close(stopSample)
	<-sampled
	cpu1, err := clusterCPU(cl)
	if err != nil {
		return err
	}

	var handled int64
	var lat []int64
	var clientCPU time.Duration // the consumer processes', over their whole life
	var childErrs []string
	for i, ch := range children {
		_ = ch.stdin.Close()
		var rep fleetReport
		if ch.lines.Scan() {
			if err := json.Unmarshal(ch.lines.Bytes(), &rep); err != nil {
				rep.Error = err.Error()
			}
		} else {
			rep.Error = "no report: " + strings.TrimSpace(ch.stderr.String())
		}
		if rep.Error != "" {
			childErrs = append(childErrs, fmt.Sprintf("instance %d: %s", i, rep.Error))
		}
		handled += rep.Handled
		lat = append(lat, rep.LatencyUS...)
		_ = ch.cmd.Wait()
		if st := ch.cmd.ProcessState; st != nil {
			clientCPU += st.UserTime() + st.SystemTime()
		}
	}
	children = nil
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1000
	}
	slices.Sort(connSamples)
	maxConns, medConns := 0, 0
	if len(connSamples) > 0 {
		maxConns, medConns = connSamples[len(connSamples)-1], connSamples[len(connSamples)/2]
	}
	cpuSec := (cpu1 - cpu0).Seconds()
	mode := "direct"
	if cfg.Pooler != "" {
		mode = "pgbouncer-" + cfg.Pooler
	}
	wake := "listen"
	if cfg.PollOnly || cfg.Pooler == "transaction" {
		wake = "poll"
	}
	run := map[string]any{
		"type": "run", "workload": "fleet", "system": "pgflow", "connection": mode, "wakeup": wake,
		"instances": cfg.Instances, "pool_per_process": cfg.Conns, "workers_per_queue": cfg.Workers,
		"queues": len(queues), "rate": cfg.Rate, "duration_s": round2(pubDur.Seconds()), "published": published, "handled": handled,
		"handled_per_s": round2(float64(handled) / wall.Seconds()), "pickup_p50_ms": round2(pct(0.50)), "pickup_p99_ms": round2(pct(0.99)),
		"server_conns_max": maxConns, "server_conns_median": medConns, "max_connections": cfg.MaxConnections,
		"server_cpu_s": round2(cpuSec), "server_cpu_cores": round2(cpuSec / wall.Seconds()),
		"consumer_processes_cpu_s": round2(clientCPU.Seconds()), "host_cpus": runtime.NumCPU(),
		"poll_interval": durOr(cfg.PollInterval, "default"), "child_errors": len(childErrs),
	}
	if cfg.Pooler != "" {
		run["pgbouncer_pool_size"] = cfg.PoolSize
	}
	human("fleet %s (%s): %d instances x 6 queues, pool %d/process: published %d in %.1fs, handled %d = %.0f/s; pickup p50 %.1f ms p99 %.1f ms; consumer server connections max %d median %d (of %d); server CPU %.1fs = %.2f cores; consumer processes CPU %.1fs over their life",
		mode, wake, cfg.Instances, cfg.Conns, published, pubDur.Seconds(), handled, float64(handled)/wall.Seconds(), pct(0.5), pct(0.99),
		maxConns, medConns, cfg.MaxConnections, cpuSec, cpuSec/wall.Seconds(), clientCPU.Seconds())
	b, _ := json.Marshal(run)
	fmt.Fprintln(stdout, string(b))
	if len(childErrs) > 0 {
		return fmt.Errorf("fleet: %d consumer processes failed: %s", len(childErrs), strings.Join(childErrs[:min(3, len(childErrs))], " | "))
	}
	if handled < int64(published) {
		return fmt.Errorf("fleet: %d published, %d handled", published, handled)
	}
	return nil
}

// clusterCPU is the CPU time the cluster's processes have used: the
// postmaster's own and that of its children that exited (cutime, cstime),
// plus that of its children still running.
func clusterCPU(cl *pgcluster.Cluster) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(cl.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	pm, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		return 0, err
	}
	const hz = 100 // USER_HZ on Linux
	ticks := func(pid int, withChildren bool) (int64, int, bool) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, 0, false
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		// f[0] is field 3 (state); utime 14, stime 15, cutime 16, cstime 17, ppid 4.
		ppid, _ := strconv.Atoi(f[1])
		var t int64
		for _, i := range []int{11, 12} {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			t += v
		}
		if withChildren {
			for _, i := range []int{13, 14} {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				t += v
			}
		}
		return t, ppid, true
	}
	total, _, ok := ticks(pm, true)
	if !ok {
		return 0, fmt.Errorf("fleet: no /proc/%d", pm)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pm {
			continue
		}
		if t, ppid, ok := ticks(pid, false); ok && ppid == pm {
			total += t
		}
	}
	return time.Duration(total) * time.Second / hz, nil
}
