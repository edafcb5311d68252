package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/console"
	"github.com/pgflow-go/pgflow/promflow"
)

var serveFlags struct {
	metricsAddr    string
	cacheTTL       time.Duration
	adminTokenFile string
	readTokenFile  string
}

var serveCmd = &cobra.Command{
	Use:   "serve",
	Short: "Serve the console, Prometheus metrics and a health check",
	Long: `Serve, on --metrics-addr (127.0.0.1:9187 by default, this machine only):

  /         the console: every queue, its messages and dead letters, charts,
            and (with the admin token) pause, resume, redrive, purge and
            publish; its JSON API is under /api/ (docs/console.md)
  /metrics  queue gauges read from the database (depth per queue and state,
            oldest ready age, expired leases, DLQ size, paused) in the
            Prometheus text format, plus this process's Go metrics
  /healthz  200 when the database answers, 503 otherwise

The console is read-only unless an admin token is configured: put a random
token (16+ characters) in a file and pass --admin-token-file, or set
PGFLOW_ADMIN_TOKEN. Then log in with it in the browser, or send
"Authorization: Bearer <token>" from scripts. --read-token-file (or
PGFLOW_READ_TOKEN) makes reading need a token too. Every action is logged
with who did it.

The gauges come from one aggregate query whose result serves every request
for --cache-ttl. Event counters (published, completed, retried…) are
exported by the services that publish and consume (package promflow or
otelpgflow), not here. See docs/metrics.md.`,
	Example: `  pgflow serve                                   # http://127.0.0.1:9187/, read-only
  head -c 32 /dev/urandom | base64 > ~/.pgflow-admin && chmod 600 ~/.pgflow-admin
  pgflow serve --admin-token-file ~/.pgflow-admin
  PGFLOW_READ_TOKEN=... pgflow serve --metrics-addr 0.0.0.0:9187 --admin-token-file /run/secrets/pgflow-admin`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		if serveFlags.metricsAddr == "" {
			return usagef("--metrics-addr is empty")
		}
		admin, err := serveToken("--admin-token-file", serveFlags.adminTokenFile, "PGFLOW_ADMIN_TOKEN")
		if err != nil {
			return err
		}
		read, err := serveToken("--read-token-file", serveFlags.readTokenFile, "PGFLOW_READ_TOKEN")
		if err != nil {
			return err
		}
		pool, err := openPool(ctx)
		if err != nil {
			return err
		}
		defer pool.Close()
		h, closeFn, err := newServeHandler(pool, schemaName(), serveFlags.cacheTTL, console.Options{AdminToken: admin, ReadToken: read})
		if err != nil {
			return usagef("%v", err)
		}
		defer closeFn()
		ln, err := net.Listen("tcp", serveFlags.metricsAddr)
		if err != nil {
			return err
		}
		mode := "read-only (no admin token)"
		if admin != "" {
			mode = "admin token configured"
		}
		if read == "" && !isLoopback(ln.Addr()) {
			slog.Warn("pgflow serve: listening beyond this machine and anyone who reaches it can read every message; set --read-token-file", "addr", ln.Addr().String())
		}
		fmt.Fprintf(cmd.OutOrStdout(), "pgflow: serving the console (%s), metrics and health check of schema %q on http://%s/\n", mode, schemaName(), ln.Addr())
		return serveUntilDone(ctx, ln, h)
	},
}

func init() {
	f := serveCmd.Flags()
	f.StringVar(&serveFlags.metricsAddr, "metrics-addr", "127.0.0.1:9187", "address to listen on (0.0.0.0:9187 or :9187 for every interface)")
	f.DurationVar(&serveFlags.cacheTTL, "cache-ttl", 10*time.Second, "how long one read of the queue gauges serves /metrics (0: read every time)")
	f.StringVar(&serveFlags.adminTokenFile, "admin-token-file", "", "file holding the console's admin token (or set PGFLOW_ADMIN_TOKEN); without one the console is read-only")
	f.StringVar(&serveFlags.readTokenFile, "read-token-file", "", "file holding a read-only token that reading then needs (or set PGFLOW_READ_TOKEN); without one anyone who reaches the console may read")
	rootCmd.AddCommand(serveCmd)
}

// serveToken reads a token from its file flag or its environment variable
// (not both: which one wins would be a guess).
func serveToken(flag, file, env string) (string, error) {
	fromEnv := os.Getenv(env)
	switch {
	case file != "" && fromEnv != "":
		return "", usagef("both %s and %s are set; use one", flag, env)
	case fromEnv != "":
		return strings.TrimSpace(fromEnv), nil
	case file == "":
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", usagef("%s: %v", flag, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", usagef("%s: %s is empty", flag, file)
	}
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
		slog.Warn("pgflow serve: the token file is readable by other users; chmod 600 it", "file", file)
	}
	return tok, nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// serveUntilDone serves h on ln until ctx is cancelled, then shuts down
// gracefully.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newServeHandler builds the routes of `pgflow serve`: /metrics, /healthz
// and the console at /. ttl 0 reads the database on every scrape. The
// returned func stops the console and closes its client.
func newServeHandler(pool *pgxpool.Pool, schema string, ttl time.Duration, o console.Options) (http.Handler, func(), error) {
	if ttl == 0 {
		ttl = -1 // QueueOptions: negative disables the cache
	}
	queues, err := promflow.NewQueueCollector(pool, promflow.QueueOptions{Schema: schema, CacheTTL: ttl})
	if err != nil {
		return nil, nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(queues, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// The console's client only publishes (and pauses, redrives…): no
	// consumers, no delivery counters of its own.
	client, err := pgflow.New(pool, pgflow.Config{Schema: schema, DisableStatsCounters: true, TransactionPooling: globals.transactionPooling})
	if err != nil {
		return nil, nil, err
	}
	ui, err := console.New(client, o)
	if err != nil {
		_ = client.Close(context.Background())
		return nil, nil, err
	}
	closeFn := func() {
		ui.Close()
		_ = client.Close(context.Background())
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promflow.Handler(reg))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := pool.Ping(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "database unreachable: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/", ui)
	return mux, closeFn, nil
}
