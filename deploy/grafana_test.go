package deploy

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
)

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// grafanaVars stands in for the variables Grafana substitutes.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$queue", ".*")

// TestGrafanaDashboards loads every dashboard, checks its shape, parses each
// query with the PromQL parser and runs it against the synthetic series of
// rules_test.go.
func TestGrafanaDashboards(t *testing.T) {
	files, err := filepath.Glob("grafana/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	storage := promqltest.LoadedStorage(t, series)
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery)
	at := time.Unix(0, 0).Add(25 * time.Minute)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: needs a uid and a title", f)
		}
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		if !vars["datasource"] || !vars["queue"] {
			t.Errorf("%s: needs the datasource and queue variables", f)
		}
		ids := map[int]bool{}
		queries := 0
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d used twice", f, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W == 0 {
				t.Errorf("%s: panel %q has no position", f, p.Title)
			}
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel %q must use the ${datasource} variable", f, p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				expr := grafanaVars.Replace(tg.Expr)
				if _, err := parser.NewParser(parser.Options{}).ParseExpr(expr); err != nil {
					t.Errorf("%s: panel %q: %v", f, p.Title, err)
					continue
				}
				q, err := engine.NewInstantQuery(context.Background(), storage, nil, expr, at)
				if err != nil {
					t.Errorf("%s: panel %q: %v", f, p.Title, err)
					continue
				}
				if res := q.Exec(context.Background()); res.Err != nil {
					t.Errorf("%s: panel %q: %v", f, p.Title, res.Err)
				}
				q.Close()
			}
		}
		if queries == 0 {
			t.Errorf("%s: no queries", f)
		}
	}
}
