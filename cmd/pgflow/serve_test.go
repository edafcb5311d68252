package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgflow-go/pgflow/pgflowtest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServeRoutes(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	db.Exec(t, `INSERT INTO pgflow_queues (queue_name) VALUES ('orders')`)
	db.Exec(t, `INSERT INTO pgflow_messages (queue_name, payload) SELECT 'orders', '{}' FROM generate_series(1, 3)`)
	// A DLQ row whose queue name needs escaping (the table has no check).
	db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, error, message_created_at)
		SELECT i, '<b>x</b>', '{}', 'boom', now() FROM generate_series(1, 101) i`)

	h, err := newServeHandler(db.Pool, db.Schema, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	code, body := get(t, srv.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	found := false
	for _, m := range fams["pgflow_queue_messages"].GetMetric() {
		var queue, state string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "queue":
				queue = l.GetValue()
			case "state":
				state = l.GetValue()
			}
		}
		if queue == "orders" && state == "ready" {
			found = true
			if v := m.GetGauge().GetValue(); v != 3 {
				t.Errorf("orders ready = %v, want 3", v)
			}
		}
	}
	if !found {
		t.Error("no pgflow_queue_messages{queue=orders,state=ready}")
	}
	if fams["go_goroutines"] == nil {
		t.Error("no Go runtime metrics")
	}

	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}

	code, body = get(t, srv.URL+"/")
	if code != http.StatusOK {
		t.Fatalf("/: %d %s", code, body)
	}
	for _, want := range []string{"<td>orders</td><td>3</td>", "&lt;b&gt;x&lt;/b&gt;", `class="warn">101<`} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<b>x</b>") {
		t.Error("queue name not escaped")
	}
	if code, _ := get(t, srv.URL+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope: %d", code)
	}
}

func TestServeDatabaseDown(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	h, err := newServeHandler(db.Pool, "pgflow_no_such_schema", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	code, body := get(t, srv.URL+"/")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "Cannot read the queues") {
		t.Errorf("/: %d %s", code, body)
	}
	db.Pool.Close()
	if code, _ := get(t, srv.URL+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz with a closed pool: %d", code)
	}
}

// TestServeCommand runs `pgflow serve` on a free port and stops it.
func TestServeCommand(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 1})
	pr, pw := io.Pipe()
	rootCmd.SetOut(pw)
	defer rootCmd.SetOut(nil)
	rootCmd.SetArgs([]string{"serve", "--database-url", db.URL, "--schema", db.Schema, "--metrics-addr", "127.0.0.1:0"})
	defer rootCmd.SetArgs(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rootCmd.ExecuteContext(ctx); pw.Close() }()

	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no banner: %v (command: %v)", err, <-done)
	}
	go io.Copy(io.Discard, pr) //nolint:errcheck
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("banner %q has no address", line)
	}
	url := strings.TrimSpace(line[i:])
	if code, _ := get(t, url+"healthz"); code != http.StatusOK {
		t.Errorf("healthz: %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}
