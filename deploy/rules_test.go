package deploy

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
)

const rulesFile = "prometheus/alerts.yml"

func loadRules(t *testing.T) map[string]rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation,
		parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	rules := map[string]rulefmt.Rule{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			rules[r.Alert] = r
		}
	}
	return rules
}

// TestRulesParse parses the file with Prometheus's rule loader (what
// `promtool check rules` does) and checks what every alert must carry.
func TestRulesParse(t *testing.T) {
	rules := loadRules(t)
	for _, name := range []string{
		"PgflowDLQTooLarge", "PgflowOldestMessageTooOld", "PgflowQueueNoConsumer",
		"PgflowHandlerErrorRatioHigh", "PgflowLeasesExpiring", "PgflowExpiredLeasesNotRescued",
		"PgflowPublishFailing", "PgflowQueueStatsDown",
	} {
		if _, ok := rules[name]; !ok {
			t.Errorf("alert %s is missing", name)
		}
	}
	for name, r := range rules {
		if !slices.Contains([]string{"warning", "critical"}, r.Labels["severity"]) {
			t.Errorf("%s: severity %q", name, r.Labels["severity"])
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: needs a summary and a description", name)
		}
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && !strings.HasPrefix(vs.Name, "pgflow_") {
				t.Errorf("%s: selects %q, not a pgflow metric", name, vs.Name)
			}
			return nil
		})
	}
}

// series are synthetic samples in Prometheus's test notation, one a minute
// (a load block ends at the first blank line, hence none inside).
const series = `
load 1m
	pgflow_dlq_messages{instance="serve", queue="orders"}   0+10x30
	pgflow_dlq_messages{instance="serve", queue="quiet"}    3x30
	pgflow_queue_oldest_ready_age_seconds{instance="serve", queue="orders"}  0+60x30
	pgflow_queue_oldest_ready_age_seconds{instance="serve", queue="quiet"}   0x30
	pgflow_queue_oldest_ready_age_seconds{instance="serve", queue="paused"}  0+60x30
	pgflow_queue_messages{instance="serve", queue="orders",    state="ready"}      50x30
	pgflow_queue_messages{instance="serve", queue="orders",    state="processing"} 0x30
	pgflow_queue_messages{instance="serve", queue="busy",      state="ready"}      50x30
	pgflow_queue_messages{instance="serve", queue="busy",      state="processing"} 0x30
	pgflow_queue_messages{instance="serve", queue="paused",    state="ready"}      50x30
	pgflow_queue_messages{instance="serve", queue="paused",    state="processing"} 0x30
	pgflow_queue_messages{instance="serve", queue="quiet",     state="ready"}      0x30
	pgflow_queue_messages{instance="serve", queue="quiet",     state="processing"} 0x30
	pgflow_queue_paused{instance="serve", queue="orders"} 0x30
	pgflow_queue_paused{instance="serve", queue="busy"}   0x30
	pgflow_queue_paused{instance="serve", queue="paused"} 1x30
	pgflow_queue_paused{instance="serve", queue="quiet"}  0x30
	pgflow_messages_received_total{instance="app1", queue="busy"}   0+30x30
	pgflow_messages_received_total{instance="app1", queue="orders"} 5x30
	pgflow_handler_duration_seconds_count{instance="app1", queue="orders", outcome="completed"}     0+60x30
	pgflow_handler_duration_seconds_count{instance="app1", queue="orders", outcome="retried"}       0+30x30
	pgflow_handler_duration_seconds_count{instance="app2", queue="orders", outcome="dead_lettered"} 0+6x30
	pgflow_handler_duration_seconds_count{instance="app1", queue="busy",   outcome="completed"}     0+100x30
	pgflow_handler_duration_seconds_count{instance="app1", queue="busy",   outcome="retried"}       0+1x30
	pgflow_handler_duration_seconds_count{instance="app1", queue="quiet",  outcome="retried"}       0x20 1x10
	pgflow_messages_lease_expired_total{instance="app1", queue="orders"} 0x20 1x10
	pgflow_messages_lease_expired_total{instance="app1", queue="busy"}   2x30
	pgflow_queue_expired_leases{instance="serve", queue="orders"} 4x30
	pgflow_queue_expired_leases{instance="serve", queue="busy"}   0x30
	pgflow_messages_publish_failed_total{instance="app1", queue="orders"} 0+1x30
	pgflow_messages_publish_failed_total{instance="app1", queue="busy"}   7x30
	pgflow_queue_stats_up{instance="serve"} 1x30
`

// TestRulesFire evaluates every alert's expression over synthetic series at
// minute 25 and checks which queues it selects: each alert fires for the
// queue built to trip it and stays silent for the healthy, paused or quiet
// ones. (The rules' "for" durations are not evaluated here.)
func TestRulesFire(t *testing.T) {
	rules := loadRules(t)
	storage := promqltest.LoadedStorage(t, series)
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery)
	at := time.Unix(0, 0).Add(25 * time.Minute)

	want := map[string][]string{
		"PgflowDLQTooLarge":             {"orders"},
		"PgflowOldestMessageTooOld":     {"orders"}, // not paused
		"PgflowQueueNoConsumer":         {"orders"}, // busy has claims, paused is paused, quiet is empty
		"PgflowHandlerErrorRatioHigh":   {"orders"}, // busy fails 1%, quiet has too few runs
		"PgflowLeasesExpiring":          {"orders"},
		"PgflowExpiredLeasesNotRescued": {"orders"},
		"PgflowPublishFailing":          {"orders"},
		"PgflowQueueStatsDown":          nil,
	}
	for name, queues := range want {
		r, ok := rules[name]
		if !ok {
			t.Errorf("no alert %s", name)
			continue
		}
		q, err := engine.NewInstantQuery(context.Background(), storage, nil, r.Expr, at)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		res := q.Exec(context.Background())
		if res.Err != nil {
			t.Errorf("%s: %v", name, res.Err)
			continue
		}
		vec, err := res.Vector()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var got []string
		for _, s := range vec {
			got = append(got, s.Metric.Get("queue"))
			if s.Metric.Has("instance") {
				t.Errorf("%s: result keeps the instance label (%v): alerts would repeat per exporter", name, s.Metric)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, queues) {
			t.Errorf("%s fires for %q, want %q", name, got, queues)
		}
		q.Close()
	}
}

// TestStatsDownFiresWhenAbsent checks the absent() arm of PgflowQueueStatsDown.
func TestStatsDownFiresWhenAbsent(t *testing.T) {
	r := loadRules(t)["PgflowQueueStatsDown"]
	storage := promqltest.LoadedStorage(t, "load 1m\n\tpgflow_dlq_messages{queue=\"x\"} 0x10\n")
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery)
	q, err := engine.NewInstantQuery(context.Background(), storage, nil, r.Expr, time.Unix(0, 0).Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	vec, err := q.Exec(context.Background()).Vector()
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 {
		t.Fatalf("got %v, want one sample", vec)
	}
}
