package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow/cmd/pgflow/internal/bench"
)

var (
	benchCfg = bench.DefaultConfig()
	fleetCfg = bench.DefaultFleetConfig()
)

var benchCmd = &cobra.Command{
	Use:   "bench w1|w1sql|w2|w3|w4|w5|all|setup|fleet",
	Short: "Run the benchmark workloads (W1-W5) against pgflow",
	Long: `Run pgflow's benchmark workloads (docs/performance.md) against pgflow,
printing one JSON object per run and a "type":"summary" line per workload
(median/min/max over reps), in the same shape as the River harness.

  w1  enqueue N messages in batches, then drain with each worker count
  w1sql  w1's drain by the Go client, then by a plain pgx program on the SQL
      API (pgflow_claim of up to 10 per connection with one array pgflow_ack
      per claim; then one connection per worker with pgflow_ack per
      message), back to back, with each drain's ratio to the Go client's
      (not part of "all")
  w2  goroutines publishing one message per transaction, no consumer
  w3  pickup latency (publish -> handler start) at a fixed rate
  w4  producers flat out while a consumer runs
  w5  W4's shape at a fixed rate while a transaction pins the xmin horizon
      during the middle third
  fleet  --fleet-instances consumer processes (default 50), each consuming
      the guide's six queues, on a throwaway server of its own
      (max_connections --fleet-max-connections, default 100), directly or
      through a PgBouncer (--fleet-pooler transaction|session): server
      connections used, handled/s, pickup p50/p99 and server CPU at --rate
      messages/s for --duration; --dsn is not used

The benchmark uses its own database (--dsn, created if missing; default
bench_pgflow) and empties pgflow's tables and CHECKPOINTs before every run:
never point it at a database whose pgflow data you want to keep.`,
	Example: `  pgflow bench all --out /tmp/pgflow.jsonl
  pgflow bench w3 --reps 3 --rate 500 --duration 20s
  pgflow bench w1 --n 100000 --workers 10,100 --json
  pgflow bench w1sql --n 100000 --workers 10,100 --reps 2`,
	Args:      cobra.ExactArgs(1),
	ValidArgs: []string{"w1", "w1sql", "w2", "w3", "w4", "w5", "all", "setup", "fleet"},
	RunE: func(cmd *cobra.Command, args []string) error {
		f := cmd.Flags()
		switch args[0] {
		case "fleet-child": // one of fleet's consumer processes
			return bench.RunFleetChild(cmd.Context(), os.Stdin, cmd.OutOrStdout())
		case "fleet":
			fleetCfg.JSONOnly = globals.json
			fleetCfg.PollOnly, fleetCfg.PollInterval = benchCfg.PollOnly, benchCfg.PollInterval
			if f.Changed("duration") {
				fleetCfg.Duration = benchDuration
			}
			if f.Changed("rate") {
				fleetCfg.Rate = benchRate
			}
			return bench.RunFleet(cmd.Context(), fleetCfg, cmd.OutOrStdout())
		}
		workers, err := parseIntList(benchWorkers)
		if err != nil {
			return usagef("--workers: %v", err)
		}
		benchCfg.Workers = workers
		benchCfg.JSONOnly = globals.json
		if globals.schema != "" {
			benchCfg.Schema = globals.schema
		}
		// The generic knobs override every workload they apply to.
		if f.Changed("duration") {
			benchCfg.W2Dur, benchCfg.W3Dur, benchCfg.W4Dur, benchCfg.W5Dur = benchDuration, benchDuration, benchDuration, benchDuration
		}
		if f.Changed("rate") {
			benchCfg.W3Rate, benchCfg.W5Rate = benchRate, benchRate
		}
		if f.Changed("consumer-workers") {
			benchCfg.W3Workers, benchCfg.W4Workers, benchCfg.W5Workers = benchConsumerWorkers, benchConsumerWorkers, benchConsumerWorkers
		}
		if benchCPUProfile != "" {
			pf, err := os.Create(benchCPUProfile)
			if err != nil {
				return err
			}
			defer pf.Close()
			if err := pprof.StartCPUProfile(pf); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		err = bench.Run(cmd.Context(), benchCfg, args[0], cmd.OutOrStdout())
		if err != nil && strings.HasPrefix(err.Error(), "unknown workload") {
			return usagef("%v", err)
		}
		return err
	},
}

var (
	benchWorkers         string
	benchDuration        = benchCfg.W3Dur
	benchRate            int
	benchConsumerWorkers int
	benchCPUProfile      string
)

func parseIntList(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("bad value %q", p)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	return out, nil
}

func init() {
	c := &benchCfg
	f := benchCmd.Flags()
	f.StringVar(&c.DSN, "dsn", c.DSN, "benchmark database URL (created if missing; its pgflow tables are emptied)")
	f.IntVar(&c.Pool, "pool", c.Pool, "pgxpool MaxConns (the River harness uses 32)")
	f.IntVar(&c.Reps, "reps", c.Reps, "repetitions per workload")
	f.BoolVar(&c.Checkpoint, "checkpoint", c.Checkpoint, "CHECKPOINT after emptying the tables before each run")
	f.StringVarP(&c.OutFile, "out", "o", "", "also append the JSON lines to this file")
	f.BoolVar(&c.PollOnly, "poll-only", false, "pgflow PollOnly (no LISTEN/NOTIFY)")
	f.DurationVar(&c.PollInterval, "poll-interval", 0, "pgflow PollInterval (0 = default)")
	f.DurationVar(&c.NotifyDebounce, "notify-debounce", 0, "pgflow NotifyDebounce (0 = default)")
	f.BoolVar(&c.SplitPublisher, "split-publisher", false, "publish through a second client, so consumers are woken by NOTIFY only")

	f.StringVar(&benchCPUProfile, "cpuprofile", "", "write a Go CPU profile of the whole run to this file")
	f.IntVar(&fleetCfg.Instances, "fleet-instances", fleetCfg.Instances, "fleet: consumer processes")
	f.IntVar(&fleetCfg.Conns, "fleet-pool", fleetCfg.Conns, "fleet: pgxpool MaxConns of each process (LISTEN takes one more unless --poll-only or through a transaction pooler)")
	f.IntVar(&fleetCfg.Workers, "fleet-workers", fleetCfg.Workers, "fleet: workers per queue and process")
	f.IntVar(&fleetCfg.MaxConnections, "fleet-max-connections", fleetCfg.MaxConnections, "fleet: the throwaway server's max_connections")
	f.StringVar(&fleetCfg.Pooler, "fleet-pooler", "", "fleet: connect consumers through a PgBouncer in this pool_mode (transaction or session)")
	f.IntVar(&fleetCfg.PoolSize, "fleet-bouncer-pool", fleetCfg.PoolSize, "fleet: the PgBouncer's default_pool_size")
	f.IntVar(&c.N, "n", c.N, "W1: number of messages")
	f.IntVar(&c.Batch, "batch", c.Batch, "W1: PublishBatch size")
	f.StringVar(&benchWorkers, "workers", "10,100", "W1: consumer worker counts, comma-separated")
	f.IntVar(&c.MaxBatch, "max-batch", 0, "the consumers' MaxBatch, the most messages one claim takes (0: pgflow's default)")
	f.IntVar(&c.Prefetch, "prefetch", 0, "the consumers' Prefetch, messages claimed ahead of free workers (handlers of one message only; ignored with --batch-size)")
	f.IntVar(&c.BatchSize, "batch-size", 0, "W1: drain with a batch handler receiving up to this many messages per call (0: a handler per message); --workers then counts calls running at once")
	f.DurationVar(&benchDuration, "duration", benchDuration, "W2-W5: duration of each (overrides the per-workload flags)")
	f.IntVar(&benchRate, "rate", 0, "W3 and W5: messages/s (overrides --w3-rate and --w5-rate)")
	f.IntVar(&benchConsumerWorkers, "consumer-workers", 0, "W3-W5: consumer workers (overrides the per-workload flags)")
	f.IntVar(&c.W2Goroutines, "w2-goroutines", c.W2Goroutines, "W2: publishing goroutines")
	f.DurationVar(&c.W2Dur, "w2-dur", c.W2Dur, "W2: duration")
	f.IntVar(&c.W3Rate, "w3-rate", c.W3Rate, "W3: messages/s")
	f.DurationVar(&c.W3Dur, "w3-dur", c.W3Dur, "W3: duration")
	f.IntVar(&c.W3Workers, "w3-workers", c.W3Workers, "W3: consumer workers")
	f.IntVar(&c.W3Inserters, "w3-inserters", c.W3Inserters, "W3: goroutines performing the scheduled publishes")
	f.IntVar(&c.W4Producers, "w4-producers", c.W4Producers, "W4: publishing goroutines")
	f.IntVar(&c.W4Workers, "w4-workers", c.W4Workers, "W4: consumer workers")
	f.DurationVar(&c.W4Dur, "w4-dur", c.W4Dur, "W4: duration")
	f.IntVar(&c.W5Rate, "w5-rate", c.W5Rate, "W5: messages/s, all publishers together")
	f.DurationVar(&c.W5Dur, "w5-dur", c.W5Dur, "W5: duration, whole seconds divisible by 3 (xmin pinned in the middle third)")
	f.IntVar(&c.W5Workers, "w5-workers", c.W5Workers, "W5: consumer workers")
	f.IntVar(&c.W5Inserters, "w5-inserters", c.W5Inserters, "W5: goroutines performing the scheduled publishes")
	rootCmd.AddCommand(benchCmd)
}
