package deploy

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
)

// TestRulesFireAfterFor runs each alert as Prometheus's rule manager would,
// once a minute over the synthetic series, honouring its "for" duration and
// expanding its annotation templates, and checks which alerts fire at the
// end.
func TestRulesFireAfterFor(t *testing.T) {
	storage := promqltest.LoadedStorage(t, series)
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery)
	query := rules.EngineQueryFunc(engine, storage)
	want := map[string][]string{
		"PgflowDLQTooLarge":             {"orders"},
		"PgflowOldestMessageTooOld":     {"orders"},
		"PgflowQueueNoConsumer":         {"orders"},
		"PgflowHandlerErrorRatioHigh":   {"orders"},
		"PgflowLeasesExpiring":          {"orders"},
		"PgflowExpiredLeasesNotRescued": {"orders"},
		"PgflowPublishFailing":          {"orders"},
		"PgflowQueueStatsDown":          nil,
	}
	for name, r := range loadRules(t) {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
		if err != nil {
			t.Fatal(err)
		}
		rule := rules.NewAlertingRule(name, expr, time.Duration(r.For), 0,
			labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", false,
			slog.New(slog.DiscardHandler))
		for m := 0; m <= 30; m++ {
			if _, err := rule.Eval(context.Background(), 0, time.Unix(0, 0).Add(time.Duration(m)*time.Minute), query, nil, 0); err != nil {
				t.Fatalf("%s at minute %d: %v", name, m, err)
			}
		}
		var firing []string
		for _, a := range rule.ActiveAlerts() {
			if a.State != rules.StateFiring {
				continue
			}
			firing = append(firing, a.Labels.Get("queue"))
			a.Annotations.Range(func(l labels.Label) {
				if strings.Contains(l.Value, "error expanding") || strings.Contains(l.Value, "<no value>") {
					t.Errorf("%s: annotation %s did not expand: %q", name, l.Name, l.Value)
				}
			})
		}
		slices.Sort(firing)
		if !slices.Equal(firing, want[name]) {
			t.Errorf("%s firing for %q after 30 minutes, want %q", name, firing, want[name])
		}
	}
}
