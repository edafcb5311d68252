package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// need skips the test when a runtime is missing, or fails it in CI.
func need(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this fails instead of skipping)", msg)
	}
	t.Skip(msg)
}

// runtimes finds node, with the Node client's dependencies installed, and a
// python3 that imports psycopg.
func runtimes(t *testing.T) (node, python string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		need(t, "node not found")
	}
	if _, err := os.Stat("../node/node_modules/pg"); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			need(t, "npm not found (needed for npm ci in clients/node)")
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = "../node"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in clients/node: %v\n%s", err, out)
		}
	}
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import psycopg").Run() == nil {
			return node, path
		}
	}
	need(t, "no python3 that imports psycopg (Debian: apt-get install python3-psycopg)")
	return "", ""
}

// hop is a relay process; lines carries its stdout.
type hop struct {
	name  string
	cmd   *exec.Cmd
	lines chan string
}

func startHop(t *testing.T, name string, env []string, argv ...string) *hop {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = testWriter{t, name}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	h := &hop{name: name, cmd: cmd, lines: make(chan string, 100)}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return h
}

// next returns the hop's next stdout line starting with prefix.
func (h *hop) next(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-h.lines:
			if !ok {
				t.Fatalf("%s exited before printing %q", h.name, prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			t.Fatalf("%s printed no %q line within a minute", h.name, prefix)
		}
	}
}

// stop sends SIGTERM and waits for a graceful stop and exit status 0.
func (h *hop) stop(t *testing.T) string {
	t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal %s: %v", h.name, err)
	}
	line := h.next(t, "stopped")
	for range h.lines {
	}
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("%s: %v", h.name, err)
	}
	return line
}

type testWriter struct {
	t    *testing.T
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type relayed struct {
	Seq  int      `json:"seq"`
	Hops []string `json:"hops"`
}

// TestGoNodePythonGo sends messages from Go through a Node hop and a Python
// hop back to Go: each arrives exactly once, its headers intact, having
// passed both hops; a message the Node hop refuses lands in the DLQ with
// the Node handler's error.
func TestGoNodePythonGo(t *testing.T) {
	node, python := runtimes(t)
	ctx := context.Background()
	db := pgflowtest.New(t)
	client, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	const toNode, toPython, toGo = "interop.to_node", "interop.to_python", "interop.to_go"
	// One retry, soon: the poison message is dead after two Node attempts.
	if err := client.DeclareQueue(ctx, pgflow.QueueConfig{
		Name: toNode, MaxRetries: pgflow.Set(1), RetryDelay: pgflow.Set(20 * time.Millisecond),
	}); err != nil {
		t.Fatal(err)
	}

	const n = 60
	var mu sync.Mutex
	got := map[int]int{}
	headers := map[int]map[string]string{}
	hops := map[int][]string{}
	all := make(chan struct{})
	if err := client.Consume(pgflow.ConsumerConfig{
		Queue: toGo, Workers: 4,
		Handler: func(ctx context.Context, m *pgflow.Message) error {
			var r relayed
			if err := m.Decode(&r); err != nil {
				return pgflow.Permanent(err)
			}
			mu.Lock()
			defer mu.Unlock()
			got[r.Seq]++
			headers[r.Seq] = m.Headers
			hops[r.Seq] = r.Hops
			if len(got) == n && got[r.Seq] == 1 {
				close(all)
			}
			return nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = client.Stop(stopCtx)
	}()

	env := []string{"PGFLOW_URL=" + db.URL, "PGFLOW_SCHEMA=" + db.Schema}
	nodeHop := startHop(t, "node", append(env, "FROM="+toNode, "TO="+toPython), node, filepath.Join("testdata", "relay.mjs"))
	pyHop := startHop(t, "python", append(env, "FROM="+toPython, "TO="+toGo), python, filepath.Join("testdata", "relay.py"))
	nodeHop.next(t, "ready")
	pyHop.next(t, "ready")

	trace := func(seq int) map[string]string {
		return map[string]string{
			"traceparent": fmt.Sprintf("00-%032x-%016x-01", seq+1, seq+1),
			"tracestate":  "pgflow=interop",
		}
	}
	for seq := range n {
		if _, err := client.Publish(ctx, toNode, map[string]any{"seq": seq, "hops": []string{}},
			pgflow.WithHeaders(trace(seq))); err != nil {
			t.Fatal(err)
		}
	}
	poison, err := client.Publish(ctx, toNode, map[string]any{"seq": -1, "hops": []string{}, "poison": true},
		pgflow.WithHeaders(trace(-2)))
	if err != nil {
		t.Fatal(err)
	}

	select {
	case <-all:
	case <-time.After(60 * time.Second):
		mu.Lock()
		t.Fatalf("only %d of %d messages reached the Go consumer", len(got), n)
	}
	if line := nodeHop.next(t, "dead"); line != fmt.Sprintf("dead %d", poison) {
		t.Fatalf("node hop: %q, want the poison message %d dead", line, poison)
	}
	// Graceful stops: everything the hops took is settled, nothing is left
	// to be delivered again.
	if line := nodeHop.stop(t); line != `stopped {"released":0,"abandoned":0}` {
		t.Errorf("node hop: %s", line)
	}
	if line := pyHop.stop(t); line != "stopped 0 0" {
		t.Errorf("python hop: %s", line)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	for seq := range n {
		if got[seq] != 1 {
			t.Errorf("message %d arrived %d times", seq, got[seq])
			continue
		}
		want := trace(seq)
		if fmt.Sprint(headers[seq]) != fmt.Sprint(want) {
			t.Errorf("message %d headers %v, want %v", seq, headers[seq], want)
		}
		if fmt.Sprint(hops[seq]) != "[node python]" {
			t.Errorf("message %d hops %v, want [node python]", seq, hops[seq])
		}
	}
	if len(got) != n {
		t.Errorf("%d distinct messages arrived, want %d", len(got), n)
	}
	if left := db.Count(t, "pgflow_messages", ""); left != 0 {
		t.Errorf("%d messages left in pgflow_messages", left)
	}

	page, err := client.ListDLQ(ctx, pgflow.DLQListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 1 {
		t.Fatalf("DLQ holds %d messages, want the poison message alone", len(page.Messages))
	}
	d := page.Messages[0]
	wantErr := "poison message -1 refused by the node hop"
	if d.MessageID != poison || d.Queue != toNode || d.Error != wantErr || d.Attempts != 2 {
		t.Errorf("DLQ entry: message %d queue %s error %q attempts %d; want %d %s %q 2",
			d.MessageID, d.Queue, d.Error, d.Attempts, poison, toNode, wantErr)
	}
	if fmt.Sprint(d.Headers) != fmt.Sprint(trace(-2)) {
		t.Errorf("DLQ headers %v, want %v", d.Headers, trace(-2))
	}
	var payload map[string]any
	if err := json.Unmarshal(d.Payload, &payload); err != nil || payload["poison"] != true {
		t.Errorf("DLQ payload %s (%v)", d.Payload, err)
	}
}
