package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow/promflow"
)

var serveFlags struct {
	metricsAddr string
	cacheTTL    time.Duration
}

var serveCmd = &cobra.Command{
	Use:   "serve",
	Short: "Serve Prometheus metrics, a health check and a read-only dashboard",
	Long: `Serve, on --metrics-addr:

  /metrics  queue gauges read from the database (depth per queue and state,
            oldest ready age, expired leases, DLQ size, paused) in the
            Prometheus text format, plus this process's Go metrics
  /healthz  200 when the database answers, 503 otherwise
  /         a read-only HTML page of the same queue gauges

The gauges come from one aggregate query whose result serves every request
for --cache-ttl. Event counters (published, completed, retried…) are
exported by the services that publish and consume (package promflow or
otelpgflow), not here. See docs/metrics.md.`,
	Example: `  pgflow serve --metrics-addr :9187
  pgflow serve --metrics-addr 127.0.0.1:9187 --cache-ttl 30s --schema pgflow`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		if serveFlags.metricsAddr == "" {
			return usagef("--metrics-addr is empty")
		}
		pool, err := openPool(ctx)
		if err != nil {
			return err
		}
		defer pool.Close()
		h, err := newServeHandler(pool, schemaName(), serveFlags.cacheTTL)
		if err != nil {
			return usagef("%v", err)
		}
		ln, err := net.Listen("tcp", serveFlags.metricsAddr)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "pgflow: serving metrics and dashboard of schema %q on http://%s/\n", schemaName(), ln.Addr())
		return serveUntilDone(ctx, ln, h)
	},
}

func init() {
	f := serveCmd.Flags()
	f.StringVar(&serveFlags.metricsAddr, "metrics-addr", ":9187", "address to listen on")
	f.DurationVar(&serveFlags.cacheTTL, "cache-ttl", 10*time.Second, "how long one read of the queue gauges serves requests (0: read every time)")
	rootCmd.AddCommand(serveCmd)
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

// newServeHandler builds the routes of `pgflow serve`. ttl 0 reads the
// database on every request.
func newServeHandler(pool *pgxpool.Pool, schema string, ttl time.Duration) (http.Handler, error) {
	if ttl == 0 {
		ttl = -1 // QueueOptions: negative disables the cache
	}
	queues, err := promflow.NewQueueCollector(pool, promflow.QueueOptions{Schema: schema, CacheTTL: ttl})
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(queues, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

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
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		snap, err := queues.Snapshot(r.Context())
		page := dashboardPage{Schema: schema, Snapshot: snap, DLQAlert: dlqAlertThreshold}
		if err != nil {
			page.Error = err.Error()
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := dashboardTmpl.Execute(w, page); err != nil {
			// Headers are gone; the client sees a truncated page.
			return
		}
	})
	return mux, nil
}

// dlqAlertThreshold mirrors the PgflowDLQTooLarge alert (more than 100
// dead-lettered messages): the dashboard marks such queues.
const dlqAlertThreshold = 100

type dashboardPage struct {
	Schema   string
	Snapshot promflow.Snapshot
	Error    string
	DLQAlert int64
}

//go:embed serve_dashboard.html
var dashboardFS embed.FS

var dashboardTmpl = template.Must(template.New("serve_dashboard.html").Funcs(template.FuncMap{
	"age": func(d time.Duration) string {
		if d <= 0 {
			return "–"
		}
		return d.Round(time.Second).String()
	},
	"ms": func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) },
}).ParseFS(dashboardFS, "serve_dashboard.html"))
