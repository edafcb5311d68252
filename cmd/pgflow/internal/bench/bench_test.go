package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow/pgflowtest"
)

func TestParseSeq(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{`{"seq":42,"pad":"x"}`, 42, true},
		{`{"pad": "xxx", "seq": 123456}`, 123456, true}, // jsonb's key order and spacing
		{`{"pad":"x"}`, 0, false},
		{`{"seq":"a"}`, 0, false},
	} {
		got, ok := parseSeq([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseSeq(%s) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if got, ok := parseSeq(body(7)); got != 7 || !ok {
		t.Errorf("parseSeq(body(7)) = %d, %v", got, ok)
	}
}

func TestPayloadSize(t *testing.T) {
	// ~200 bytes, as the shared workloads ask.
	if n := len(body(123456)); n < 190 || n > 210 {
		t.Fatalf("payload is %d bytes", n)
	}
}

func TestRingBoundedAndWraps(t *testing.T) {
	r := newRing(10_000_000)
	if len(r.slots) != 1<<20 {
		t.Fatalf("ring has %d slots, want %d", len(r.slots), 1<<20)
	}
	r.set(5, 11)
	r.set(5+1<<20, 22) // same slot
	if got := r.get(5); got != 22 {
		t.Fatalf("get = %d, want the newer 22", got)
	}
	if small := newRing(10); len(small.slots) != 1024 {
		t.Fatalf("small ring has %d slots", len(small.slots))
	}
}

func TestHistPercentiles(t *testing.T) {
	h := newHist()
	if h.pct(99) != 0 {
		t.Fatal("empty histogram should report 0")
	}
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	for _, tc := range []struct{ p, want float64 }{{50, 500}, {99, 990}, {100, 1000}} {
		if got := h.pct(tc.p); got < tc.want*0.999 || got > tc.want*1.001 {
			t.Errorf("p%v = %v ms, want %v", tc.p, got, tc.want)
		}
	}
	if h.count() != 1000 {
		t.Fatalf("count = %d", h.count())
	}
}

func TestSummaryShape(t *testing.T) {
	var out bytes.Buffer
	r := &Runner{cfg: Config{JSONOnly: true}, stdout: &out}
	runs := []map[string]any{{"x": 1.0}, {"x": 3.0}, {"x": int64(2)}, {"x": 10.0}}
	r.summary("W9", map[string]any{"max_workers": 5}, runs, "x", "missing")
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got["type"] != "summary" || got["workload"] != "W9" || got["x_median"] != 2.5 || got["x_min"] != 1.0 || got["x_max"] != 10.0 {
		t.Fatalf("summary = %v", got)
	}
	if _, ok := got["missing_median"]; ok {
		t.Fatal("a field no run has must not be summarised")
	}
	if strings.Contains(out.String(), "# ") {
		t.Fatal("JSONOnly must drop the human lines")
	}
}

// TestRunSmoke runs W1 and W2 with tiny parameters in a test schema and
// checks the JSON lines (no timing is asserted).
func TestRunSmoke(t *testing.T) {
	db := pgflowtest.New(t)
	cfg := DefaultConfig()
	cfg.DSN, cfg.Schema, cfg.Pool, cfg.Reps, cfg.Checkpoint, cfg.JSONOnly = db.URL, db.Schema, 8, 1, false, true
	cfg.N, cfg.Batch, cfg.Workers = 300, 100, []int{4}
	cfg.W2Goroutines, cfg.W2Dur = 2, 300*time.Millisecond
	for _, w := range []string{"w1", "w2"} {
		var out bytes.Buffer
		if err := Run(context.Background(), cfg, w, &out); err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		kinds := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var o map[string]any
			if err := json.Unmarshal([]byte(line), &o); err != nil {
				t.Fatalf("%s: not JSON: %q", w, line)
			}
			kinds[o["type"].(string)]++
			if o["type"] == "run" && w == "w1" && o["handler_invocations"] != float64(300) {
				t.Errorf("w1 handled %v of 300", o["handler_invocations"])
			}
		}
		if kinds["meta"] != 1 || kinds["run"] != 1 || kinds["summary"] != 1 {
			t.Errorf("%s: lines %v, want one meta, run and summary", w, kinds)
		}
	}
	// W1 drained with prefetch: every message handled once.
	cfg.Prefetch = 8
	var pout bytes.Buffer
	if err := Run(context.Background(), cfg, "w1", &pout); err != nil {
		t.Fatalf("w1 with prefetch: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(pout.String()), "\n") {
		var o map[string]any
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if o["type"] == "run" && (o["handler_invocations"] != float64(300) || o["prefetch"] != float64(8)) {
			t.Errorf("w1 with prefetch: run %v", o)
		}
	}
	// W1 drained by a batch handler (no prefetch): every message handled
	// once.
	cfg.BatchSize = 50
	var out bytes.Buffer
	if err := Run(context.Background(), cfg, "w1", &out); err != nil {
		t.Fatalf("w1 with a batch handler: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var o map[string]any
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if o["type"] == "run" && (o["handler_invocations"] != float64(300) || o["batch_size"] != float64(50)) {
			t.Errorf("w1 with a batch handler: run %v", o)
		}
	}
	if err := Run(context.Background(), cfg, "w9", &bytes.Buffer{}); err == nil {
		t.Error("unknown workload accepted")
	}
}

// TestW1SQLSmoke runs w1sql with tiny parameters: every drain, Go and SQL
// API, handles all messages once, and the ratio line is printed (no
// timing is asserted).
func TestW1SQLSmoke(t *testing.T) {
	db := pgflowtest.New(t)
	cfg := DefaultConfig()
	cfg.DSN, cfg.Schema, cfg.Pool, cfg.Reps, cfg.Checkpoint, cfg.JSONOnly = db.URL, db.Schema, 8, 1, false, true
	cfg.N, cfg.Batch, cfg.Workers = 300, 100, []int{4}
	var out bytes.Buffer
	if err := Run(context.Background(), cfg, "w1sql", &out); err != nil {
		t.Fatal(err)
	}
	runs := map[string]float64{}
	ratios := 0
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var o map[string]any
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		switch o["type"] {
		case "run":
			runs[o["workload"].(string)] = o["handler_invocations"].(float64)
		case "ratio":
			ratios++
			if o["sql_batch_to_go"].(float64) <= 0 || o["sql_each_to_go"].(float64) <= 0 {
				t.Errorf("ratio line %v", o)
			}
		}
	}
	want := map[string]float64{"W1": 300, "W1sql-batch": 300, "W1sql-each": 300}
	if fmt.Sprint(runs) != fmt.Sprint(want) || ratios != 1 {
		t.Fatalf("runs %v (handler invocations), %d ratio lines; want %v and 1", runs, ratios, want)
	}
}
