package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/schema"
	"github.com/pgflow-go/pgflow/migrate"
)

// Queue is the one queue every workload uses.
const Queue = "bench"

// Config holds every knob; DefaultConfig matches the River harness's
// defaults.
type Config struct {
	DSN        string
	Schema     string
	Pool       int
	Reps       int
	Checkpoint bool
	OutFile    string
	// JSONOnly drops the human-readable "#" lines from standard output.
	JSONOnly bool

	// pgflow settings; zero values are pgflow's defaults.
	PollOnly       bool
	PollInterval   time.Duration
	NotifyDebounce time.Duration
	// SplitPublisher publishes through a second client, so consumers are
	// woken by NOTIFY only (not by the in-process shortcut).
	SplitPublisher bool
	// TransactionPooling sets pgflow's Config.TransactionPooling; it is
	// also set when the DSN turns out to reach a pooler.
	TransactionPooling bool

	// W1
	N       int
	Batch   int
	Workers []int
	// BatchSize, when above 0, drains W1 with a batch handler receiving up
	// to BatchSize messages per call; Workers is then the number of calls
	// running at once.
	BatchSize int
	// MaxBatch, when above 0, is the consumers' ConsumerConfig.MaxBatch.
	MaxBatch int
	// Prefetch is the consumers' ConsumerConfig.Prefetch (handlers of one
	// message: W1 without BatchSize, W3-W5).
	Prefetch int
	// W2
	W2Goroutines int
	W2Dur        time.Duration
	// W3
	W3Rate      int
	W3Dur       time.Duration
	W3Workers   int
	W3Inserters int
	// W4
	W4Producers int
	W4Workers   int
	W4Dur       time.Duration
	// W5
	W5Rate      int
	W5Dur       time.Duration
	W5Workers   int
	W5Inserters int
}

// DefaultConfig returns the shared workloads' parameters.
func DefaultConfig() Config {
	return Config{
		DSN:    "postgres://postgres@127.0.0.1:5432/bench_pgflow?sslmode=disable",
		Schema: "public", Pool: 32, Reps: 2, Checkpoint: true,
		N: 100000, Batch: 1000, Workers: []int{10, 100},
		W2Goroutines: 8, W2Dur: 10 * time.Second,
		W3Rate: 500, W3Dur: 20 * time.Second, W3Workers: 100, W3Inserters: 8,
		W4Producers: 4, W4Workers: 50, W4Dur: 20 * time.Second,
		W5Rate: 2000, W5Dur: 60 * time.Second, W5Workers: 50, W5Inserters: 8,
	}
}

// Workloads lists the valid workload names in the order "all" runs them
// (the River harness's order).
var Workloads = []string{"w2", "w3", "w4", "w5", "w1"}

// Runner runs workloads against one database.
type Runner struct {
	cfg    Config
	stdout io.Writer
	out    *os.File
	outMu  sync.Mutex
	pool   *pgxpool.Pool
	msgs   string // quoted schema.pgflow_messages
	// lockPID is the backend holding the one-benchmark-at-a-time lock.
	lockPID uint32
	// pooling: connections pass through a transaction-mode pooler.
	pooling bool
}

// padLen makes the payload ~200 bytes, as in the River harness.
const padLen = 180

var pad = strings.Repeat("x", padLen)

type payload struct {
	Seq int64  `json:"seq"`
	Pad string `json:"pad"`
}

// Run runs the workload ("w1".."w5", "all" or "setup").
func Run(ctx context.Context, cfg Config, workload string, stdout io.Writer) error {
	switch workload {
	case "w1", "w1sql", "w2", "w3", "w4", "w5", "all", "setup":
	default:
		return fmt.Errorf("unknown workload %q: want w1, w1sql, w2, w3, w4, w5, all or setup", workload)
	}
	if secs := int(cfg.W5Dur / time.Second); (workload == "w5" || workload == "all") &&
		(cfg.W5Dur != time.Duration(secs)*time.Second || secs < 3 || secs%3 != 0) {
		return fmt.Errorf("W5: duration must be whole seconds divisible by 3, got %s", cfg.W5Dur)
	}
	if cfg.Reps < 1 {
		return fmt.Errorf("reps must be at least 1")
	}
	r := &Runner{cfg: cfg, stdout: stdout}
	if cfg.OutFile != "" {
		f, err := os.OpenFile(cfg.OutFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		r.out = f
	}
	if err := ensureDatabase(ctx, cfg.DSN, r.human); err != nil {
		return err
	}
	// One benchmark per database and schema at a time: a second one would
	// consume the first one's messages.
	lock, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		return err
	}
	defer lock.Close(context.Background())
	// The lock is held by a transaction open for the whole run (not by the
	// session), so it also holds, and goes, through a transaction-mode
	// pooler such as PgBouncer, which pins the server connection to the
	// open transaction.
	var locked bool
	if _, err := lock.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	// The simple protocol: an extended-protocol portal stays open until the
	// transaction ends and keeps its snapshot, which would pin the xmin
	// horizon for the whole run (dead rows pile up and claims slow down).
	if err := lock.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock(hashtext('pgflow-bench:' || $1)), pg_backend_pid()",
		pgx.QueryExecModeSimpleProtocol, cfg.Schema).Scan(&locked, &r.lockPID); err != nil {
		return err
	}
	if !locked {
		return fmt.Errorf("another pgflow bench is running on this database and schema")
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return err
	}
	pc.MaxConns = int32(cfg.Pool)
	// Behind a pooler: no prepared statements, clients with
	// TransactionPooling (pgflow.OpenPool finds out).
	pcfg := pgflow.Config{TransactionPooling: cfg.TransactionPooling}
	r.pool, err = pgflow.OpenPool(ctx, pc, &pcfg)
	if err != nil {
		return err
	}
	r.pooling = pcfg.TransactionPooling
	if r.pooling {
		r.human("connections pass through a pooler: TransactionPooling (no prepared statements, no LISTEN)")
	}
	defer r.pool.Close()
	res, err := migrate.Up(ctx, r.pool, cfg.Schema)
	if err != nil {
		return err
	}
	for _, m := range res.Applied {
		r.human("pgflow migration applied: %04d_%s", m.Version, m.Name)
	}
	r.msgs = schema.Quote(cfg.Schema) + ".pgflow_messages"
	if err := r.meta(ctx, workload); err != nil {
		return err
	}
	steps := []string{workload}
	if workload == "all" {
		steps = Workloads
	}
	for _, w := range steps {
		var err error
		switch w {
		case "w1":
			err = r.doW1(ctx)
		case "w1sql":
			err = r.doW1SQL(ctx)
		case "w2":
			err = r.doW2(ctx)
		case "w3":
			err = r.doW3(ctx)
		case "w4":
			err = r.doW4(ctx)
		case "w5":
			err = r.doW5(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", strings.ToUpper(w), err)
		}
	}
	return r.clean(ctx)
}

func (r *Runner) meta(ctx context.Context, cmd string) error {
	var pgVersion, syncCommit string
	if err := r.pool.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion); err != nil {
		return err
	}
	if err := r.pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&syncCommit); err != nil {
		return err
	}
	p, _ := json.Marshal(payload{Seq: 123456, Pad: pad})
	c := r.newClientConfig()
	r.emit(map[string]any{
		"type": "meta", "cmd": cmd, "system": "pgflow", "pgflow_version": moduleVersion(),
		"go_version": runtime.Version(), "pg_version": pgVersion, "synchronous_commit": syncCommit,
		"gomaxprocs": runtime.GOMAXPROCS(0), "pool_max_conns": r.cfg.Pool, "payload_bytes": len(p),
		"reps": r.cfg.Reps, "listen_notify": !c.PollOnly, "poll_interval": durOr(c.PollInterval, "default"),
		"notify_debounce": durOr(c.NotifyDebounce, "default"), "split_publisher": r.cfg.SplitPublisher,
		"time": time.Now().UTC().Format(time.RFC3339),
	})
	r.human("pgflow %s, Go %s, PostgreSQL %s, payload %d bytes, LISTEN/NOTIFY %v, pool %d, split publisher %v",
		moduleVersion(), runtime.Version(), pgVersion, len(p), !c.PollOnly, r.cfg.Pool, r.cfg.SplitPublisher)
	return nil
}

func durOr(d time.Duration, def string) string {
	if d == 0 {
		return def
	}
	return d.String()
}

func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == "github.com/pgflow-go/pgflow" && bi.Main.Version != "" {
			return bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/pgflow-go/pgflow" {
				return d.Version
			}
		}
	}
	return "devel"
}

func (r *Runner) emit(v map[string]any) {
	b, _ := json.Marshal(v)
	r.outMu.Lock()
	defer r.outMu.Unlock()
	fmt.Fprintln(r.stdout, string(b))
	if r.out != nil {
		_, _ = r.out.Write(append(b, '\n'))
	}
}

func (r *Runner) human(format string, a ...any) {
	if r.cfg.JSONOnly {
		return
	}
	r.outMu.Lock()
	defer r.outMu.Unlock()
	fmt.Fprintf(r.stdout, "# "+format+"\n", a...)
}

// ensureDatabase creates the DSN's database (through the "postgres"
// database of the same server) if it does not exist.
func ensureDatabase(ctx context.Context, dsn string, human func(string, ...any)) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		return fmt.Errorf("the benchmark DSN must name a database")
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname=$1)", pgx.QueryExecModeExec, name).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return err
		}
		human("created database %s", name)
	}
	return nil
}

// clean empties pgflow's tables and CHECKPOINTs, before every run.
func (r *Runner) clean(ctx context.Context) error {
	s := schema.Quote(r.cfg.Schema)
	if _, err := r.pool.Exec(ctx, "TRUNCATE "+s+".pgflow_messages, "+s+".pgflow_dlq"); err != nil {
		return err
	}
	if _, err := r.pool.Exec(ctx, "DELETE FROM "+s+".pgflow_queues"); err != nil {
		return err
	}
	if r.cfg.Checkpoint {
		if _, err := r.pool.Exec(ctx, "CHECKPOINT"); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) newClientConfig() pgflow.Config {
	return pgflow.Config{
		Schema:             r.cfg.Schema,
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		PollOnly:           r.cfg.PollOnly,
		TransactionPooling: r.pooling,
		PollInterval:       r.cfg.PollInterval,
		NotifyDebounce:     r.cfg.NotifyDebounce,
	}
}

// recorder counts handler invocations and records pickup latency (publish
// to handler start).
type recorder struct {
	base    time.Time
	sent    *ring
	handled atomic.Int64
	// onStart, when set, gets the handler start time and the latency (or -1
	// when the publish time is unknown).
	onStart func(start int64, lat time.Duration)
}

func newRecorder(total int) *recorder {
	return &recorder{base: time.Now(), sent: newRing(total)}
}

func (r *recorder) now() int64 { return int64(time.Since(r.base)) }

func (r *recorder) handler(_ context.Context, m *pgflow.Message) error {
	t := r.now()
	if r.onStart != nil {
		lat := time.Duration(-1)
		if seq, ok := parseSeq(m.Payload); ok {
			if s := r.sent.get(seq); s != 0 {
				lat = time.Duration(t - s)
			}
		}
		r.onStart(t, lat)
	}
	r.handled.Add(1)
	return nil
}

// batchHandler is handler for each message of a batch.
func (r *recorder) batchHandler(ctx context.Context, msgs []*pgflow.Message) error {
	for _, m := range msgs {
		_ = r.handler(ctx, m)
	}
	return nil
}

var seqKey = []byte(`"seq":`)

// parseSeq reads the "seq" number of a payload without a full decode.
func parseSeq(p []byte) (int64, bool) {
	i := bytes.Index(p, seqKey)
	if i < 0 {
		return 0, false
	}
	rest := bytes.TrimLeft(p[i+len(seqKey):], " ")
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n, err == nil
}

// message is what the workloads publish: a struct that pgflow marshals, as
// the River harness hands River its job args.
func message(seq int64) payload { return payload{Seq: seq, Pad: pad} }

// body is message's JSON.
func body(seq int64) json.RawMessage {
	b, _ := json.Marshal(payload{Seq: seq, Pad: pad})
	return b
}

// clients returns the consuming client (with workers>0) and the publishing
// client, which is the same one unless SplitPublisher.
func (r *Runner) clients(ctx context.Context, workers, batchSize int, rec *recorder) (cons, pub *pgflow.Client, err error) {
	cons, err = pgflow.New(r.pool, r.newClientConfig())
	if err != nil {
		return nil, nil, err
	}
	if workers > 0 {
		cc := pgflow.ConsumerConfig{Queue: Queue, Workers: workers, Handler: rec.handler}
		if batchSize > 0 || r.cfg.MaxBatch > 0 {
			cc.MaxBatch = r.cfg.MaxBatch
		}
		if batchSize > 0 {
			cc.Handler, cc.BatchHandler, cc.BatchSize = nil, rec.batchHandler, batchSize
		} else {
			cc.Prefetch = r.cfg.Prefetch
		}
		if err := cons.Consume(cc); err != nil {
			return nil, nil, err
		}
	}
	pub = cons
	if r.cfg.SplitPublisher {
		if pub, err = pgflow.New(r.pool, r.newClientConfig()); err != nil {
			return nil, nil, err
		}
	}
	// Create the queue up front, as River's queue exists by configuration.
	if err := pub.DeclareQueue(ctx, pgflow.QueueConfig{Name: Queue}); err != nil {
		return nil, nil, err
	}
	return cons, pub, nil
}

func closeClients(cons, pub *pgflow.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_ = cons.Close(ctx)
	if pub != cons {
		_ = pub.Close(ctx)
	}
}

// backlog counts the rows left in pgflow_messages.
func (r *Runner) backlog(ctx context.Context) (int64, error) {
	var n int64
	err := r.pool.QueryRow(ctx, "SELECT count(*) FROM "+r.msgs).Scan(&n)
	return n, err
}

func (r *Runner) autovacCounts(ctx context.Context) (int64, int64, error) {
	var av, aa int64
	err := r.pool.QueryRow(ctx, `SELECT autovacuum_count, autoanalyze_count FROM pg_stat_user_tables
		WHERE relid = $1::regclass`, r.msgs).Scan(&av, &aa)
	return av, aa, err
}

// summary emits median/min/max of the given numeric fields over runs.
func (r *Runner) summary(workload string, extra map[string]any, runs []map[string]any, fields ...string) {
	out := map[string]any{"type": "summary", "workload": workload, "reps": len(runs), "system": "pgflow"}
	for k, v := range extra {
		out[k] = v
	}
	var parts []string
	for _, f := range fields {
		var xs []float64
		for _, run := range runs {
			switch v := run[f].(type) {
			case float64:
				xs = append(xs, v)
			case int:
				xs = append(xs, float64(v))
			case int64:
				xs = append(xs, float64(v))
			}
		}
		if len(xs) == 0 {
			continue
		}
		sort.Float64s(xs)
		med := xs[len(xs)/2]
		if len(xs)%2 == 0 {
			med = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
		}
		out[f+"_median"] = round2(med)
		out[f+"_min"] = round2(xs[0])
		out[f+"_max"] = round2(xs[len(xs)-1])
		parts = append(parts, fmt.Sprintf("%s=%.2f [%.2f..%.2f]", f, med, xs[0], xs[len(xs)-1]))
	}
	r.human("SUMMARY %s %v: %s", workload, extra, strings.Join(parts, " "))
	r.emit(out)
}

// flushBackendStats closes the pool's connections and waits until no other
// client backend is connected to the database: a backend flushes its table
// statistics on exit, an idle one may hold them for up to 10 s.
func (r *Runner) flushBackendStats(ctx context.Context) {
	r.pool.Reset()
	if r.pooling {
		// The pooler keeps its server connections: nothing to wait for.
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var others int
		if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid <> $1`, int64(r.lockPID)).Scan(&others); err != nil || others == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.human("warning: %d other backends still connected to the database; table stats may lag", others)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
