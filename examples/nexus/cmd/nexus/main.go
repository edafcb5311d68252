package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/config"
	"github.com/pgflow-go/pgflow/examples/nexus/centralcloud"
	"github.com/pgflow-go/pgflow/examples/nexus/demo"
	"github.com/pgflow-go/pgflow/examples/nexus/singularity"
	"github.com/pgflow-go/pgflow/examples/nexus/telemetry"
	"github.com/pgflow-go/pgflow/migrate"
)

var flags struct {
	metricsAddr string
	databaseURL string
	schema      string
	duration    time.Duration
	json        bool
	quiet       bool
	events      bool
	verbose     bool

	instances   int
	rate        float64
	invalidRate float64
	failRate    float64
	keepSchema  bool

	// separate-process mode (own variables: flag defaults differ)
	configPath  string
	instanceID  int
	svcSchema   string
	svcDuration time.Duration
	svcFailRate float64
}

var rootCmd = &cobra.Command{
	Use:   "nexus",
	Short: "Run the example's CentralCloud and Singularity services on pgflow",
	Long: `Runs CentralCloud plus --instances Singularity instances in this process, each a
pgflow client configured from its pgflow.yaml, for --duration or until Ctrl-C.
Then waits for the queues to drain and prints a per-queue report; exits 1 if
any published message is not accounted for (handled, dead-lettered or still in
flight). The run uses a fresh schema, dropped at exit unless --keep-schema.`,
	Args:          cobra.NoArgs,
	SilenceUsage:  true,
	SilenceErrors: true,
	RunE:          runAll,
}

var centralCmd = &cobra.Command{
	Use:   "centralcloud",
	Short: "Run only CentralCloud (separate-process mode)",
	Args:  cobra.NoArgs,
	RunE:  func(cmd *cobra.Command, _ []string) error { return runService(cmd, false) },
}

var singularityCmd = &cobra.Command{
	Use:   "singularity",
	Short: "Run only one Singularity instance (separate-process mode)",
	Args:  cobra.NoArgs,
	RunE:  func(cmd *cobra.Command, _ []string) error { return runService(cmd, true) },
}

func init() {
	pf := rootCmd.PersistentFlags()
	pf.StringVar(&flags.databaseURL, "database-url", "", "PostgreSQL URL (default $PGFLOW_DATABASE_URL, else the local server)")
	pf.BoolVar(&flags.json, "json", false, "print the final report as JSON")
	pf.StringVar(&flags.metricsAddr, "metrics-addr", "", "serve Prometheus metrics (events and queue gauges) on this address, e.g. :9187")
	pf.BoolVarP(&flags.quiet, "quiet", "q", false, "no live progress line")
	pf.BoolVar(&flags.events, "events", false, "print every evolution.pgflow.* telemetry event")
	pf.BoolVarP(&flags.verbose, "verbose", "v", false, "log pgflow warnings (retries, lost connections)")
	pf.Float64Var(&flags.rate, "rate", 10, "proposals per second per Singularity instance")
	pf.Float64Var(&flags.invalidRate, "invalid-rate", 0.02, "share of messages sent invalid on purpose (they must reach the DLQ); 0 for none")

	f := rootCmd.Flags()
	f.IntVarP(&flags.instances, "instances", "n", 3, "Singularity instances")
	f.DurationVarP(&flags.duration, "duration", "d", 20*time.Second, "how long the instances propose changes")
	f.Float64Var(&flags.failRate, "fail-rate", 0.05, "share of proposal deliveries CentralCloud fails transiently (they are retried); 0 for none")
	f.StringVar(&flags.schema, "schema", "", "schema for this run (default a fresh nexus_run_<time>_<random>)")
	f.BoolVar(&flags.keepSchema, "keep-schema", false, "keep the run's schema at exit (to inspect the DLQ)")

	for _, c := range []*cobra.Command{centralCmd, singularityCmd} {
		c.Flags().StringVar(&flags.configPath, "config", "", "pgflow.yaml to use instead of the built-in one")
		c.Flags().StringVar(&flags.svcSchema, "schema", "", "schema shared by the services (default $PGFLOW_SCHEMA, else the config's: nexus_demo)")
		c.Flags().DurationVarP(&flags.svcDuration, "duration", "d", 0, "stop after this long (default: until Ctrl-C)")
		rootCmd.AddCommand(c)
	}
	centralCmd.Flags().Float64Var(&flags.svcFailRate, "fail-rate", 0, "share of proposal deliveries failed transiently (retried)")
	singularityCmd.Flags().IntVar(&flags.instanceID, "instance-id", 1, "this instance's number: it is singularity-<N>")
}

func logger() *slog.Logger {
	level := slog.LevelError
	if flags.verbose {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// liveLine rewrites one status line on a terminal, or prints a line each
// time otherwise.
func liveLine(w *os.File) func(string) {
	fi, err := w.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return func(s string) {
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", s)
		} else {
			fmt.Fprintln(w, s)
		}
	}
}

func endLive(w *os.File) {
	if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		fmt.Fprintln(w)
	}
}

func printEvent(e telemetry.Event) {
	fmt.Fprintf(os.Stderr, "%s %-14s %-45s #%d %v\n", e.Time.Format("15:04:05.000"), e.Service, e.Name, e.MessageID, e.Metadata)
}

func databaseURL() string {
	if flags.databaseURL != "" {
		return flags.databaseURL
	}
	return os.Getenv("PGFLOW_DATABASE_URL")
}

// openPool opens a pool of maxConns; behind a pooler such as PgBouncer it
// prepares no statements and sets cfg.TransactionPooling (pgflow.OpenPool).
func openPool(ctx context.Context, url string, maxConns int32, cfg *pgflow.Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("bad database url: %w", err)
	}
	pc.MaxConns = maxConns
	pool, err := pgflow.OpenPool(ctx, pc, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", demo.Redact(url), err)
	}
	return pool, nil
}

func runAll(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	errw := os.Stderr
	db, err := demo.OpenDatabase(ctx, databaseURL(), true, errw)
	if err != nil {
		return err
	}
	defer func() {
		if err := db.Close(); err != nil {
			fmt.Fprintln(errw, "nexus: removing the throwaway cluster:", err)
		}
	}()
	pool, err := openPool(ctx, db.URL, 8, &pgflow.Config{})
	if err != nil {
		return err
	}
	defer pool.Close()
	schema := flags.schema
	if schema == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		schema = "nexus_run_" + time.Now().UTC().Format("20060102_150405") + "_" + hex.EncodeToString(b)
	}
	keep := "dropped at exit; --keep-schema keeps it"
	if flags.keepSchema || flags.schema != "" {
		keep = "kept"
	}
	fmt.Fprintf(errw, "nexus: CentralCloud + %d Singularity instances for %s on %s, schema %s (%s)\n",
		flags.instances, flags.duration, db.Redacted(), schema, keep)
	if !flags.keepSchema && flags.schema == "" {
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := pool.Exec(dctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
				fmt.Fprintln(errw, "nexus: dropping the schema:", err)
			}
		}()
	}
	opts := demo.Options{
		Pool: pool, Database: db.Redacted(), Schema: schema,
		Instances: flags.instances, Duration: flags.duration, Rate: flags.rate,
		InvalidRate: orNone(flags.invalidRate), TransientFailRate: orNone(flags.failRate),
		Logger: logger(),
	}
	if !flags.quiet {
		live := liveLine(errw)
		opts.Progress = func(p demo.Progress) { live(p.String()) }
	}
	if flags.events {
		opts.Telemetry = printEvent
	}
	if flags.metricsAddr != "" {
		hook, stop, err := serveMetrics(flags.metricsAddr, pool, schema, errw)
		if err != nil {
			return err
		}
		defer stop()
		opts.Hooks = append(opts.Hooks, hook)
	}
	rep, err := demo.Run(ctx, opts)
	if !flags.quiet {
		endLive(errw)
	}
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if flags.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.WriteText(out)
	}
	if !rep.OK {
		return errors.New("messages unaccounted for: " + strings.Join(rep.Problems, "; "))
	}
	return nil
}

// orNone maps the flag's 0 ("none") to the demo's negative "none".
func orNone(f float64) float64 {
	if f == 0 {
		return -1
	}
	return f
}

// runService runs one service as its own process, until --duration or
// Ctrl-C.
func runService(cmd *cobra.Command, isSingularity bool) error {
	ctx := cmd.Context()
	errw := os.Stderr
	lookup := os.LookupEnv
	if flags.svcSchema != "" {
		lookup = func(k string) (string, bool) {
			if k == "PGFLOW_SCHEMA" {
				return flags.svcSchema, true
			}
			return os.LookupEnv(k)
		}
	}
	name := centralcloud.Name
	var cfg *config.Config
	var err error
	if isSingularity {
		name = singularity.InstanceID(flags.instanceID)
		cfg, err = singularity.LoadConfig(flags.configPath, name, lookup)
	} else {
		cfg, err = centralcloud.LoadConfig(flags.configPath, lookup)
	}
	if err != nil {
		return err
	}
	url := databaseURL()
	if url == "" && flags.configPath != "" {
		url = cfg.DatabaseURL
	}
	db, err := demo.OpenDatabase(ctx, url, false, errw)
	if err != nil {
		return err
	}
	var pooling pgflow.Config
	pool, err := openPool(ctx, db.URL, 4, &pooling)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool, cfg.Schema); err != nil {
		return err
	}
	tel := telemetry.New()
	if flags.events {
		tel.Attach("print", telemetry.Prefix, printEvent)
	}
	cnt := demo.NewCounter()
	rules := centralcloud.TelemetryRules
	if isSingularity {
		rules = singularity.TelemetryRules
	}
	client, err := pgflow.New(pool, pgflow.Config{Schema: cfg.Schema, Logger: logger(), ID: fmt.Sprintf("%s:%d", name, os.Getpid()),
		TransactionPooling: pooling.TransactionPooling,
		Hooks:              []pgflow.EventHook{cnt.Hook, telemetry.Bridge(tel, name, rules)}})
	if err != nil {
		return err
	}
	defer client.Close(context.Background())

	runCtx := ctx
	if flags.svcDuration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, flags.svcDuration)
		defer cancel()
	}
	type service interface {
		Start(context.Context) error
		Stop(context.Context) error
	}
	var svc service
	var inst *singularity.Instance
	if isSingularity {
		inst, err = singularity.New(client, cfg, singularity.Options{ID: name, InvalidRate: max(flags.invalidRate, 0)})
		svc = inst
	} else {
		svc, err = centralcloud.New(client, cfg, centralcloud.Options{TransientFailRate: max(flags.svcFailRate, 0)})
	}
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(errw, "nexus: %s running on %s, schema %s; Ctrl-C to stop\n", name, db.Redacted(), cfg.Schema)

	genCtx, stopGen := context.WithCancel(runCtx)
	defer stopGen()
	genDone := make(chan error, 1)
	if inst != nil {
		go func() { genDone <- inst.Run(genCtx, flags.rate) }()
	} else {
		genDone <- nil
	}
	live := liveLine(errw)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	var genErr error
	genRunning := inst != nil
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case genErr = <-genDone:
			genRunning = false
			if genErr != nil {
				break loop // publishing failed for good: stop
			}
		case <-tick.C:
			if !flags.quiet {
				p := cnt.Progress()
				p.Elapsed = time.Since(start).Truncate(time.Second)
				live(p.String())
			}
		}
	}
	stopGen()
	if genRunning {
		genErr = <-genDone
	}
	if !flags.quiet {
		endLive(errw)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	stopErr := svc.Stop(sctx)

	counts := cnt.QueueCounts()
	out := cmd.OutOrStdout()
	if flags.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"service": name, "schema": cfg.Schema, "queues": counts}); err != nil {
			return err
		}
	} else {
		writeCounts(out, name, counts)
	}
	return errors.Join(genErr, stopErr)
}

func writeCounts(w io.Writer, name string, counts []demo.QueueReport) {
	fmt.Fprintf(w, "\n%s: what this process saw (the other side of each queue is the other process's)\n\n", name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "queue\tpublished\thandled\tretried\tdead-lettered\t")
	for _, q := range counts {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", q.Queue, q.Published, q.Handled, q.Retried, q.DeadLettered)
	}
	tw.Flush()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nexus:", err)
		os.Exit(1)
	}
}
