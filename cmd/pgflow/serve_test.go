package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgflow-go/pgflow/console"
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

	h, closeFn, err := newServeHandler(db.Pool, db.Schema, 0, console.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
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

	// The console: the overview and its API.
	code, body = get(t, srv.URL+"/")
	if code != http.StatusOK {
		t.Fatalf("/: %d %s", code, body)
	}
	for _, want := range []string{`href="/queues/orders"`, `<td class="n">3</td>`, "Read-only console"} {
		if !strings.Contains(body, want) {
			t.Errorf("console overview lacks %q:\n%s", want, body)
		}
	}
	if code, body := get(t, srv.URL+"/api/dlq?queue=orders"); code != http.StatusOK || !strings.Contains(body, `"items": []`) {
		t.Errorf("/api/dlq: %d %s", code, body)
	}
	// Read-only without an admin token.
	resp, err := http.Post(srv.URL+"/api/queues/orders/pause", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("pause on a read-only console: %d", resp.StatusCode)
	}
	if code, _ := get(t, srv.URL+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope: %d", code)
	}
}

func TestServeDatabaseDown(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	h, closeFn, err := newServeHandler(db.Pool, "pgflow_no_such_schema", 0, console.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
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
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	db.Exec(t, `INSERT INTO pgflow_queues (queue_name) VALUES ('orders')`)
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-admin-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f := serveCmd.Flags().Lookup("metrics-addr"); f.DefValue != "127.0.0.1:9187" {
		t.Errorf("default listen address %q, want 127.0.0.1:9187", f.DefValue)
	}
	pr, pw := io.Pipe()
	rootCmd.SetOut(pw)
	defer rootCmd.SetOut(nil)
	rootCmd.SetArgs([]string{"serve", "--database-url", db.URL, "--schema", db.Schema, "--metrics-addr", "127.0.0.1:0", "--admin-token-file", tokenFile})
	defer rootCmd.SetArgs(nil)
	defer func() { serveFlags.adminTokenFile = "" }()
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
	if !strings.Contains(line, "admin token configured") {
		t.Errorf("banner %q does not say an admin token is configured", line)
	}
	// The token from the file (newline trimmed) acts.
	for tok, want := range map[string]int{"s3cret-admin-token-0123456789": http.StatusOK, "wrong-token-0123456789": http.StatusUnauthorized} {
		req, _ := http.NewRequest("POST", url+"api/queues/orders/pause", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("pause with token %q: %d, want %d", tok, resp.StatusCode, want)
		}
	}
	if n := db.Count(t, "pgflow_queues", "paused"); n != 1 {
		t.Errorf("%d paused queues, want 1", n)
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

func TestServeTokenSources(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := serveToken("--admin-token-file", empty, "PGFLOW_TEST_NO_SUCH_ENV"); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty token file: %v", err)
	}
	if _, err := serveToken("--admin-token-file", filepath.Join(dir, "missing"), "PGFLOW_TEST_NO_SUCH_ENV"); err == nil {
		t.Error("missing token file accepted")
	}
	t.Setenv("PGFLOW_TEST_TOKEN", " from-env-0123456789 ")
	if tok, err := serveToken("--admin-token-file", "", "PGFLOW_TEST_TOKEN"); err != nil || tok != "from-env-0123456789" {
		t.Errorf("token from env: %q %v", tok, err)
	}
	if _, err := serveToken("--admin-token-file", empty, "PGFLOW_TEST_TOKEN"); err == nil || !strings.Contains(err.Error(), "use one") {
		t.Errorf("file and env both set: %v", err)
	}
	if tok, err := serveToken("--read-token-file", "", "PGFLOW_TEST_NO_SUCH_ENV"); err != nil || tok != "" {
		t.Errorf("no token: %q %v", tok, err)
	}
}
