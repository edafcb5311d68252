package promflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
	"github.com/pgflow-go/pgflow/promflow"
)

// scrape fetches url and parses it with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return fams
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func mustValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string, expect float64) {
	t.Helper()
	got, ok := value(t, fams, name, want)
	if !ok {
		t.Errorf("%s%v: no such series", name, want)
		return
	}
	if got != expect {
		t.Errorf("%s%v = %v, want %v", name, want, got, expect)
	}
}

func TestScrapeEventsAndGauges(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 4})
	ctx := context.Background()

	events := promflow.NewEventCollector(promflow.EventOptions{})
	handled := make(chan pgflow.EventKind, 16)
	c, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema, Hooks: []pgflow.EventHook{
		events.Hook(),
		func(e pgflow.Event) {
			if e.Kind == pgflow.EventCompleted || e.Kind == pgflow.EventDeadLettered {
				handled <- e.Kind
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Consume(pgflow.ConsumerConfig{Queue: "work", Workers: 2, Handler: func(ctx context.Context, m *pgflow.Message) error {
		var p struct{ OK bool }
		if err := m.Decode(&p); err != nil {
			return err
		}
		if !p.OK {
			return pgflow.Permanent(errors.New("bad order"))
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []bool{true, false, true} {
		if _, err := c.Publish(ctx, "work", map[string]bool{"ok": ok}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		select {
		case <-handled:
		case <-time.After(30 * time.Second):
			t.Fatal("messages were not handled")
		}
	}
	// A queue with a backlog and no consumer: two ready, one delayed.
	for range 2 {
		if _, err := c.Publish(ctx, "backlog", json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Publish(ctx, "backlog", json.RawMessage(`{}`), pgflow.WithDelay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}

	queues, err := promflow.NewQueueCollector(db.Pool, promflow.QueueOptions{Schema: db.Schema, CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(events, queues)
	srv := httptest.NewServer(promflow.Handler(reg))
	defer srv.Close()
	fams := scrape(t, srv.URL)

	work := map[string]string{"queue": "work"}
	mustValue(t, fams, "pgflow_messages_published_total", work, 3)
	mustValue(t, fams, "pgflow_messages_received_total", work, 3)
	mustValue(t, fams, "pgflow_messages_completed_total", work, 2)
	mustValue(t, fams, "pgflow_messages_dead_lettered_total", work, 1)
	mustValue(t, fams, "pgflow_handler_duration_seconds", map[string]string{"queue": "work", "outcome": "completed"}, 2)
	mustValue(t, fams, "pgflow_handler_duration_seconds", map[string]string{"queue": "work", "outcome": "dead_lettered"}, 1)
	mustValue(t, fams, "pgflow_queue_wait_seconds", work, 3)
	mustValue(t, fams, "pgflow_messages_published_total", map[string]string{"queue": "backlog"}, 3)
	// A queue's series start at zero with its first event, so rate() sees
	// the first increase and "nothing received" is a 0, not a missing series.
	mustValue(t, fams, "pgflow_messages_received_total", map[string]string{"queue": "backlog"}, 0)

	mustValue(t, fams, "pgflow_queue_stats_up", nil, 1)
	mustValue(t, fams, "pgflow_dlq_messages", work, 1)
	mustValue(t, fams, "pgflow_queue_messages", map[string]string{"queue": "work", "state": "ready"}, 0)
	mustValue(t, fams, "pgflow_queue_oldest_ready_age_seconds", work, 0)
	backlog := map[string]string{"queue": "backlog"}
	mustValue(t, fams, "pgflow_queue_messages", map[string]string{"queue": "backlog", "state": "ready"}, 2)
	mustValue(t, fams, "pgflow_queue_messages", map[string]string{"queue": "backlog", "state": "delayed"}, 1)
	mustValue(t, fams, "pgflow_queue_messages", map[string]string{"queue": "backlog", "state": "processing"}, 0)
	mustValue(t, fams, "pgflow_dlq_messages", backlog, 0)
	mustValue(t, fams, "pgflow_queue_paused", backlog, 0)
	mustValue(t, fams, "pgflow_queue_expired_leases", backlog, 0)
	if age, _ := value(t, fams, "pgflow_queue_oldest_ready_age_seconds", backlog); age < 0 {
		t.Errorf("oldest ready age %v is negative", age)
	}

	checkDeployFilesNameExportedMetrics(t, fams)
}

// checkDeployFilesNameExportedMetrics fails when the alert rules or a
// dashboard use a pgflow metric name that the scrape did not contain, so a
// rename cannot silently break them.
func checkDeployFilesNameExportedMetrics(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	files, _ := filepath.Glob("../deploy/grafana/*.json")
	files = append(files, "../deploy/prometheus/alerts.yml")
	name := regexp.MustCompile(`pgflow_[a-z_]+`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range name.FindAllString(string(b), -1) {
			if fams[n] != nil || strings.HasSuffix(n, "_") { // "pgflow_queue_*" in a comment
				continue
			}
			base := n
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if f := fams[base]; f != nil && f.GetType() == dto.MetricType_HISTOGRAM {
				continue
			}
			t.Errorf("%s uses %s, which pgflow does not export", f, n)
		}
	}
}

func TestQueueCollectorReportsDown(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	// A schema without pgflow's tables: the read fails.
	queues, err := promflow.NewQueueCollector(db.Pool, promflow.QueueOptions{Schema: "pgflow_no_such_schema", CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(queues)
	srv := httptest.NewServer(promflow.Handler(reg))
	defer srv.Close()
	fams := scrape(t, srv.URL)
	mustValue(t, fams, "pgflow_queue_stats_up", nil, 0)
	if _, ok := fams["pgflow_queue_messages"]; ok {
		t.Error("depth reported although the read failed")
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	ec := promflow.NewEventCollector(promflow.EventOptions{})
	events := []pgflow.Event{
		{Kind: pgflow.EventPublished, Queue: "q"},
		{Kind: pgflow.EventReceived, Queue: "q", QueueWait: time.Millisecond},
		{Kind: pgflow.EventCompleted, Queue: "q", HandlerDuration: time.Millisecond},
		{Kind: pgflow.EventRetried, Queue: "q", HandlerDuration: time.Millisecond, Err: errors.New("x")},
	}
	for _, e := range events {
		ec.Observe(e) // binds the queue's series
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, e := range events {
			ec.Observe(e)
		}
	})
	if allocs != 0 {
		t.Errorf("Observe allocates %v times per run", allocs)
	}
}

func TestBatchEventsCountMessages(t *testing.T) {
	ec := promflow.NewEventCollector(promflow.EventOptions{Namespace: "x", ConstLabels: prometheus.Labels{"schema": "s"}})
	ec.Observe(pgflow.Event{Kind: pgflow.EventRedriven, Queue: "q", Count: 5})
	ec.Observe(pgflow.Event{Kind: pgflow.EventRedriven, Queue: "q"})
	ec.Observe(pgflow.Event{Kind: pgflow.EventPurged, Queue: "q", Count: 7})
	ec.Observe(pgflow.Event{Kind: pgflow.EventDLQDeleted, Queue: "q", Count: 500})
	ec.Observe(pgflow.Event{Kind: pgflow.EventDLQDeleted, Queue: "q", Count: 3})
	ec.Observe(pgflow.Event{Kind: pgflow.EventExpired, Queue: "q", MessageID: 1})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(ec)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	qs := map[string]string{"queue": "q", "schema": "s"}
	mustValue(t, byName, "x_messages_redriven_total", qs, 6)
	mustValue(t, byName, "x_messages_purged_total", qs, 7)
	mustValue(t, byName, "x_messages_dlq_deleted_total", qs, 503)
	mustValue(t, byName, "x_messages_expired_total", qs, 1)
	mustValue(t, byName, "x_messages_dead_lettered_total", qs, 1) // an expired message is in the DLQ
	mustValue(t, byName, "x_messages_published_total", qs, 0)
}

func BenchmarkObserve(b *testing.B) {
	ec := promflow.NewEventCollector(promflow.EventOptions{})
	e := pgflow.Event{Kind: pgflow.EventCompleted, Queue: "orders", HandlerDuration: time.Millisecond}
	ec.Observe(e)
	b.ReportAllocs()
	for b.Loop() {
		ec.Observe(e)
	}
}

// TestEveryKindCounted sends one event of each kind and checks it lands in
// its own counter.
func TestEveryKindCounted(t *testing.T) {
	ec := promflow.NewEventCollector(promflow.EventOptions{})
	kinds := []pgflow.EventKind{
		pgflow.EventPublished, pgflow.EventPublishFailed, pgflow.EventReceived,
		pgflow.EventCompleted, pgflow.EventRetried, pgflow.EventDeadLettered,
		pgflow.EventLeaseExpired, pgflow.EventRedriven, pgflow.EventPurged,
		pgflow.EventHandlerStuck,
	}
	for i, k := range kinds {
		for range i + 1 {
			ec.Observe(pgflow.Event{Kind: k, Queue: "q"})
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(ec)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	for i, k := range kinds {
		mustValue(t, byName, "pgflow_messages_"+string(k)+"_total", map[string]string{"queue": "q"}, float64(i+1))
	}
}
