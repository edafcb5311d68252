package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/promflow"
)

// serveMetrics exposes the run's event counters and queue gauges on addr
// (/metrics) until stop is called, so a Prometheus (or curl) can watch the
// demo as it would watch the real services.
func serveMetrics(addr string, pool *pgxpool.Pool, schema string, log io.Writer) (pgflow.EventHook, func(), error) {
	events := promflow.NewEventCollector(promflow.EventOptions{})
	queues, err := promflow.NewQueueCollector(pool, promflow.QueueOptions{Schema: schema, CacheTTL: time.Second})
	if err != nil {
		return nil, nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(events, queues)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promflow.Handler(reg))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics address: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(log, "nexus: metrics server:", err)
		}
	}()
	fmt.Fprintf(log, "nexus: Prometheus metrics on http://%s/metrics\n", ln.Addr())
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
	return events.Hook(), stop, nil
}
