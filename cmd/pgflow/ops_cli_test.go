package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pgflow-go/pgflow/pgflowtest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// resetFlags puts every flag of every command back to its default: the
// commands are package globals shared by the runs of one test binary.
func resetFlags(cmd *cobra.Command) {
	reset := func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			_ = sv.Replace(nil)
		} else {
			_ = f.Value.Set(f.DefValue)
		}
		f.Changed = false
	}
	cmd.Flags().VisitAll(reset)
	cmd.PersistentFlags().VisitAll(reset)
	for _, c := range cmd.Commands() {
		resetFlags(c)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// run executes the CLI in-process against db, like main does.
func run(t *testing.T, db *pgflowtest.DB, stdin string, args ...string) result {
	t.Helper()
	resetFlags(rootCmd)
	var out, errb bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&errb)
	rootCmd.SetIn(strings.NewReader(stdin))
	rootCmd.SetArgs(append([]string{"--database-url", db.URL, "--schema", db.Schema}, args...))
	err := rootCmd.ExecuteContext(context.Background())
	if err != nil {
		errb.WriteString(errorLine(err) + "\n")
	}
	return result{out.String(), errb.String(), exitCode(err)}
}

var (
	timestampRE = regexp.MustCompile(`\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?Z?`)
	cursorRE    = regexp.MustCompile(`--cursor [A-Za-z0-9_-]+`)
)

// normalize masks what depends on the clock: times within a day of now
// (the fixture's "now() - 10 minutes") and cursors that encode them.
func normalize(s string) string {
	s = timestampRE.ReplaceAllStringFunc(s, func(ts string) string {
		for _, layout := range []string{"2006-01-02 15:04:05", time.RFC3339Nano} {
			if t, err := time.Parse(layout, ts); err == nil && time.Since(t).Abs() < 24*time.Hour {
				return fmt.Sprintf("%-*s", len(ts), "<recent>")
			}
		}
		return ts
	})
	return cursorRE.ReplaceAllString(s, "--cursor <cursor>")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	got = normalize(got)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s: output differs from %s\n--- got:\n%s\n--- want:\n%s", name, path, got, want)
	}
}

// seed writes a fixed scenario with fixed times, so tables are stable.
// Ages come from the database clock: the oldest ready message is made
// exactly 10 minutes old and ages print truncated to the minute.
func seed(t *testing.T) *pgflowtest.DB {
	t.Helper()
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 4})
	db.Exec(t, `INSERT INTO pgflow_queues (queue_name, max_retries, retry_delay_ms, priority, paused) VALUES
		('consensus_results_queue', 3, 1000, 0, false),
		('metrics_to_guardian_queue', 5, 2000, 0, true),
		('rollback_triggers_queue', 3, 1000, 10, false)`)
	db.Exec(t, `INSERT INTO pgflow_messages (id, queue_name, payload, headers, priority, status, retry_count, attempt, visible_at, locked_by, locked_until, errors, created_at) VALUES
		(1, 'consensus_results_queue', '{"proposal":"p1","approved":true}', '{}', 0, 'pending', 0, 0, now() - interval '10 minutes', NULL, NULL, '[]', '2026-01-01T09:00:00Z'),
		(2, 'consensus_results_queue', '{"proposal":"p2","approved":false}', '{}', 0, 'pending', 1, 1, '2099-01-01T00:00:00Z', NULL, NULL,
		    '[{"attempt":1,"error":"guardian unavailable: connection refused","at":"2026-01-01T09:05:00Z"}]', '2026-01-01T09:01:00Z'),
		(3, 'consensus_results_queue', '{"proposal":"p3"}', '{}', 5, 'pending', 0, 0, '2098-01-01T00:00:00Z', NULL, NULL, '[]', '2026-01-01T09:02:00Z'),
		(4, 'consensus_results_queue', '{"proposal":"p4"}', '{}', 0, 'processing', 0, 1, now() - interval '1 minute', 'singularity-1:4242:ab12', now() + interval '1 hour', '[]', '2026-01-01T09:03:00Z'),
		(5, 'rollback_triggers_queue', '{"to":"v41"}', '{"source":"oncall"}', 10, 'pending', 0, 0, now() - interval '5 minutes', NULL, NULL, '[]', '2026-01-01T09:04:00Z'),
		(6, 'metrics_to_guardian_queue', '{"cpu":0.93}', '{}', 0, 'pending', 0, 0, now() - interval '2 hours 5 minutes', NULL, NULL, '[]', '2026-01-01T07:00:00Z')`)
	db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, headers, priority, error, errors, retry_count, attempts, message_created_at, created_at) VALUES
		(101, 'consensus_results_queue', '{"proposal":"p0"}', '{"trace":"abc"}', 0, 'timeout after 5s',
		  '[{"attempt":1,"error":"timeout after 5s","at":"2026-01-01T08:00:00Z"},{"attempt":2,"error":"timeout after 5s","at":"2026-01-01T08:00:02Z"},{"attempt":3,"error":"timeout after 5s","at":"2026-01-01T08:00:06Z"},{"attempt":4,"error":"timeout after 5s","at":"2026-01-01T08:00:14Z"}]',
		  4, 4, '2026-01-01T07:59:59Z', '2026-01-01T08:00:14Z'),
		(102, 'metrics_to_guardian_queue', '{"cpu":"NaN"}', '{}', 0, 'permanent: invalid metric value "NaN"',
		  '[{"attempt":1,"error":"permanent: invalid metric value \"NaN\"","at":"2026-01-01T08:30:00Z"}]', 1, 1, '2026-01-01T08:29:00Z', '2026-01-01T08:30:00Z'),
		(103, 'rollback_triggers_queue', '{"to":"v40"}', '{}', 10, 'Timeout waiting for lock',
		  '[{"attempt":1,"error":"Timeout waiting for lock","at":"2026-01-01T08:45:00Z"}]', 1, 1, '2026-01-01T08:44:00Z', '2026-01-01T08:45:00Z')`)
	db.Exec(t, `INSERT INTO pgflow_queue_stats (queue_name, bucket, handled, failed, retried, dead_lettered) VALUES
		('consensus_results_queue', date_trunc('minute', now()), 12, 1, 1, 0),
		('consensus_results_queue', date_trunc('minute', now()) - interval '4 minutes', 30, 2, 1, 1),
		('consensus_results_queue', date_trunc('minute', now()) - interval '40 minutes', 500, 9, 5, 4),
		('rollback_triggers_queue', date_trunc('minute', now()) - interval '20 minutes', 3, 0, 0, 0)`)
	return db
}

func TestCLIGolden(t *testing.T) {
	db := seed(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"queues", []string{"queues"}, 0},
		{"stats_all", []string{"stats"}, 0},
		{"stats_queue", []string{"stats", "consensus_results_queue"}, 0},
		{"stats_missing", []string{"stats", "nope"}, exitNotFound},
		{"pending", []string{"pending", "consensus_results_queue"}, 0},
		{"pending_page", []string{"pending", "consensus_results_queue", "--limit", "2"}, 0},
		{"pending_error", []string{"pending", "consensus_results_queue", "--error", "REFUSED"}, 0},
		{"pending_missing", []string{"pending", "nope"}, exitNotFound},
		{"pending_in_flight", []string{"pending", "consensus_results_queue", "--in-flight"}, 0},
		{"dlq_list", []string{"dlq", "list"}, 0},
		{"dlq_list_filtered", []string{"dlq", "list", "--error", "timeout", "--priority", "10"}, 0},
		{"dlq_list_since", []string{"dlq", "list", "--since", "2026-01-01T08:30:00Z", "--until", "2026-01-01T08:45:00Z"}, 0},
		{"dlq_show", []string{"dlq", "show", "1"}, 0},
		{"dlq_show_missing", []string{"dlq", "show", "999"}, exitNotFound},
		{"dlq_show_bad", []string{"dlq", "show", "x"}, exitUsage},
		{"dlq_purge_unconfirmed", []string{"dlq", "purge", "--all"}, exitAborted},
		{"dlq_retry_nothing", []string{"dlq", "retry"}, exitUsage},
		{"dlq_retry_both", []string{"dlq", "retry", "1", "--all"}, exitUsage},
		{"dlq_retry_ids", []string{"dlq", "retry", "1", "77"}, exitNotFound},
		{"pause", []string{"pause", "consensus_results_queue"}, 0},
		{"resume", []string{"resume", "metrics_to_guardian_queue"}, 0},
		{"pause_missing", []string{"pause", "nope"}, exitNotFound},
		{"queues_after", []string{"queues"}, 0},
		{"dlq_retry_queue", []string{"dlq", "retry", "--queue", "rollback_triggers_queue", "--yes"}, 0},
		{"dlq_purge_all", []string{"dlq", "purge", "--all", "--yes"}, 0},
		{"dlq_list_empty", []string{"dlq", "list"}, 0},
		{"unknown_flag", []string{"queues", "--frobnicate"}, exitUsage},
		{"too_many_args", []string{"pause", "a", "b"}, exitUsage},
	} {
		r := run(t, db, "", tc.args...)
		if r.code != tc.code {
			t.Errorf("%s: exit %d, want %d; stderr: %s", tc.name, r.code, tc.code, r.stderr)
		}
		golden(t, tc.name, "$ pgflow "+strings.Join(tc.args, " ")+"\n"+r.stdout+"--- stderr\n"+r.stderr)
	}
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("not JSON (%v): %s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return v
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	_ = json.Compact(&b, raw)
	return b.String()
}

func TestCLIJSON(t *testing.T) {
	db := seed(t)
	qs := decode[[]queueView](t, run(t, db, "", "queues", "--json"))
	if len(qs) != 3 || qs[0].Queue != "consensus_results_queue" || qs[0].Ready != 1 || qs[0].Delayed != 1 ||
		qs[0].Retrying != 1 || qs[0].InFlight != 1 || qs[0].DeadLettered != 1 || qs[0].OldestReadyAgeS < 600 ||
		!qs[1].Paused || qs[1].MaxRetries != 5 || qs[1].RetryDelayMS != 2000 || qs[2].Priority != 10 {
		t.Fatalf("queues: %+v", qs)
	}
	s := decode[queueView](t, run(t, db, "", "stats", "consensus_results_queue", "--json"))
	if len(s.Windows) != 3 || s.Windows[0].Handled != 12 || s.Windows[1].Handled != 42 || s.Windows[2].Handled != 542 ||
		s.Windows[2].Failed != 12 || s.Windows[2].DeadLettered != 5 || s.Windows[2].Seconds != 3600 ||
		len(s.Consumers) != 1 || s.Consumers[0] != "singularity-1:4242:ab12" || s.LastDeadLetteredAt == nil {
		t.Fatalf("stats: %+v", s)
	}
	all := decode[[]queueView](t, run(t, db, "", "stats", "--json"))
	if len(all) != 3 {
		t.Fatalf("stats all: %+v", all)
	}
	type pendingPage struct {
		Messages   []pendingView `json:"messages"`
		NextCursor string        `json:"next_cursor"`
	}
	p := decode[pendingPage](t, run(t, db, "", "pending", "consensus_results_queue", "--limit", "2", "--json"))
	if len(p.Messages) != 2 || p.Messages[0].ID != 3 || p.Messages[0].State != "delayed" || p.Messages[1].ID != 1 || p.NextCursor == "" {
		t.Fatalf("pending page 1: %+v", p)
	}
	p = decode[pendingPage](t, run(t, db, "", "pending", "consensus_results_queue", "--limit", "2", "--cursor", p.NextCursor, "--json"))
	if len(p.Messages) != 1 || p.Messages[0].ID != 2 || p.Messages[0].State != "retrying" || len(p.Messages[0].Errors) != 1 || p.NextCursor != "" {
		t.Fatalf("pending page 2: %+v", p)
	}
	type dlqPage struct {
		Messages   []dlqView `json:"messages"`
		NextCursor string    `json:"next_cursor"`
	}
	d := decode[dlqPage](t, run(t, db, "", "dlq", "list", "--queue", "consensus_results_queue", "--json"))
	if len(d.Messages) != 1 || d.Messages[0].MessageID != 101 || len(d.Messages[0].Errors) != 4 || d.Messages[0].Headers["trace"] != "abc" {
		t.Fatalf("dlq list: %+v", d)
	}
	show := decode[dlqView](t, run(t, db, "", "dlq", "show", "2", "--json"))
	if show.Queue != "metrics_to_guardian_queue" || compact(show.Payload) != `{"cpu":"NaN"}` || show.DeadLetteredAt != "2026-01-01T08:30:00Z" {
		t.Fatalf("dlq show: %+v", show)
	}
	type retryOut struct {
		Redriven int            `json:"redriven"`
		ByQueue  map[string]int `json:"by_queue"`
		Skipped  []struct {
			ID     int64  `json:"id"`
			Reason string `json:"reason"`
		} `json:"skipped"`
		NotFound []int64 `json:"not_found"`
	}
	// A live message holds the dedup key of DLQ entry 1: skipped, exit 5.
	db.Exec(t, `UPDATE pgflow_dlq SET dedup_key = 'k1' WHERE id = 1`)
	db.Exec(t, `UPDATE pgflow_messages SET dedup_key = 'k1' WHERE id = 1`)
	r := run(t, db, "", "dlq", "retry", "--all", "--yes", "--rate", "1000", "--json")
	ro := decode[retryOut](t, r)
	if r.code != exitPartial || ro.Redriven != 2 || ro.ByQueue["rollback_triggers_queue"] != 1 || len(ro.Skipped) != 1 ||
		ro.Skipped[0].ID != 1 || ro.Skipped[0].Reason != "dedup_key_live" || len(ro.NotFound) != 0 {
		t.Fatalf("retry: code %d %+v", r.code, ro)
	}
	type purgeOut struct {
		Purged   int            `json:"purged"`
		ByQueue  map[string]int `json:"by_queue"`
		NotFound []int64        `json:"not_found"`
	}
	r = run(t, db, "", "dlq", "purge", "1", "5", "--yes", "--json")
	po := decode[purgeOut](t, r)
	if r.code != exitNotFound || po.Purged != 1 || po.ByQueue["consensus_results_queue"] != 1 || len(po.NotFound) != 1 || po.NotFound[0] != 5 {
		t.Fatalf("purge: code %d %+v", r.code, po)
	}
	pr := decode[map[string]any](t, run(t, db, "", "pause", "rollback_triggers_queue", "--json"))
	if pr["paused"] != true || pr["queue"] != "rollback_triggers_queue" {
		t.Fatalf("pause: %v", pr)
	}
}

func TestCLIPublish(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 4})
	r := run(t, db, "", "publish", "proposals_for_consensus_queue", `{"proposal_id":"p-42"}`, "--priority", "10", "-H", "source=cli", "-H", "team=core")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "1" {
		t.Fatalf("publish: %+v", r)
	}
	r = run(t, db, "{\"from\":\"stdin\"}\n", "publish", "proposals_for_consensus_queue", "-", "--delay", "1h", "--json")
	out := decode[map[string]any](t, r)
	if out["id"] != float64(2) {
		t.Fatalf("publish stdin: %+v", r)
	}
	r = run(t, db, "", "publish", "proposals_for_consensus_queue", `{"x":1}`, "--dedup-key", "k")
	r2 := run(t, db, "", "publish", "proposals_for_consensus_queue", `{"x":2}`, "--dedup-key", "k")
	if r.stdout != r2.stdout {
		t.Fatalf("dedup: %q vs %q", r.stdout, r2.stdout)
	}
	if r := run(t, db, "", "publish", "q", `{not json`); r.code != exitUsage {
		t.Fatalf("bad json: %+v", r)
	}
	if r := run(t, db, "", "publish", "bad queue!", `{}`); r.code != exitUsage {
		t.Fatalf("bad queue: %+v", r)
	}
	if r := run(t, db, "", "publish", "q", `{}`, "-H", "novalue"); r.code != exitUsage {
		t.Fatalf("bad header: %+v", r)
	}
	type pendingPage struct {
		Messages []pendingView `json:"messages"`
	}
	p := decode[pendingPage](t, run(t, db, "", "pending", "proposals_for_consensus_queue", "--json"))
	if len(p.Messages) != 3 || p.Messages[0].Priority != 10 || p.Messages[0].Headers["source"] != "cli" ||
		p.Messages[0].Headers["team"] != "core" || compact(p.Messages[2].Payload) != `{"from":"stdin"}` || p.Messages[2].State != "delayed" {
		t.Fatalf("published: %+v", p.Messages)
	}
}

func TestCLIConfirmOnTerminal(t *testing.T) {
	db := seed(t)
	old := stdinIsTerminal
	stdinIsTerminal = func(*cobra.Command) bool { return true }
	defer func() { stdinIsTerminal = old }()
	r := run(t, db, "n\n", "dlq", "purge", "--queue", "consensus_results_queue")
	if r.code != exitAborted || !strings.Contains(r.stderr, "Delete 1 dead-lettered message (queue consensus_results_queue) for good? [y/N]") {
		t.Fatalf("declined: %+v", r)
	}
	if n := db.Count(t, "pgflow_dlq", ""); n != 3 {
		t.Fatalf("declined purge deleted: %d left", n)
	}
	r = run(t, db, "y\n", "dlq", "retry", "--queue", "consensus_results_queue")
	if r.code != 0 || r.stdout != "redriven 1 message (consensus_results_queue: 1)\n" {
		t.Fatalf("confirmed: %+v", r)
	}
	// Explicit ids are redriven without a question.
	r = run(t, db, "", "dlq", "retry", "2")
	if r.code != 0 || strings.Contains(r.stderr, "[y/N]") {
		t.Fatalf("ids: %+v", r)
	}
}

func TestCLIHelpHasExamples(t *testing.T) {
	mine := map[string]bool{"queues": true, "stats": true, "pending": true, "dlq": true, "list": true, "show": true,
		"retry": true, "purge": true, "pause": true, "resume": true, "publish": true,
		"topics": true, "subscribe": true, "unsubscribe": true}
	var walk func(c *cobra.Command)
	seen := map[string]bool{}
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if mine[sub.Name()] {
				seen[sub.Name()] = true
				if !strings.Contains(sub.Example, "pgflow ") || sub.Long == "" {
					t.Errorf("%s: --help needs a long description and examples", sub.CommandPath())
				}
			}
			walk(sub)
		}
	}
	walk(rootCmd)
	if len(seen) != len(mine) {
		t.Fatalf("found %d of %d commands", len(seen), len(mine))
	}
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
	r := run(t, db, "", "dlq", "retry", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "--rate") {
		t.Fatalf("help: %+v", r)
	}
}
