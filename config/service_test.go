package config_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/config"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startService parses src (a consumers block) for db's schema and starts
// its consumers on a client of its own, stopped when the test ends.
func startService(t *testing.T, db *pgflowtest.DB, logs *lockedBuffer, src string) *pgflow.Client {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Parse([]byte("database_url: "+db.URL+"\nschema: "+db.Schema+"\n"+src), "pgflow.yaml",
		config.Options{Handlers: handlers, LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	client, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema, Logger: logger, DisableStatsCounters: true})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := config.NewService(client, cfg, handlers)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = svc.Stop(context.Background())
		_ = client.Close(context.Background())
	})
	return client
}

// A consumer entry that does not set a queue setting leaves it as stored:
// a file without lease_timeout_ms no longer resets a 5-minute lease to the
// default when its service starts. What the entry sets is declared, and the
// change is logged.
func TestConsumerEntryKeepsSettingsItDoesNotSet(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	admin, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.DeclareQueue(ctx, pgflow.QueueConfig{Name: "jobs", LeaseTimeout: pgflow.Set(5 * time.Minute), MaxRetries: pgflow.Set(3)}); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	startService(t, db, &logs, "consumers:\n  jobs:\n    queue_name: jobs\n    handler: handle_a\n    max_retries: 0\n")
	q, err := admin.Queue(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if q.LeaseTimeout != 5*time.Minute || q.MaxRetries != 0 || q.RetryDelay != time.Second {
		t.Fatalf("stored lease %v, max_retries %d, retry_delay %v; want 5m0s, 0, 1s", q.LeaseTimeout, q.MaxRetries, q.RetryDelay)
	}
	if want := `level=WARN msg="pgflow: queue settings changed" queue=jobs max_retries="3 -> 0"`; !strings.Contains(logs.String(), want) {
		t.Fatalf("log\n%s\nlacks\n%s", logs.String(), want)
	}
}

// A file's lease_timeout_ms is declared, and a queue a file declares without
// settings gets the same defaults as one created on first publish or
// declared in Go.
func TestFileDeclaredQueues(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	var logs lockedBuffer
	c := startService(t, db, &logs, "consumers:\n  a:\n    queue_name: from_file\n    handler: handle_a\n"+
		"  b:\n    queue_name: leased\n    handler: handle_b\n    lease_timeout_ms: 300000\n    timeout_ms: 60000\n")
	if _, err := c.Publish(ctx, "auto", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "declared"}); err != nil {
		t.Fatal(err)
	}
	show := func(name string) string {
		q, err := c.Queue(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(q.MaxRetries, q.RetryDelay, q.MaxRetryDelay, q.LeaseTimeout, q.Priority)
	}
	want := show("auto")
	for _, name := range []string{"from_file", "declared"} {
		if got := show(name); got != want {
			t.Errorf("%s: %s, auto-created: %s", name, got, want)
		}
	}
	if got := show("leased"); got != "3 1s 5m0s 5m0s 0" {
		t.Errorf("leased: %s, want 3 1s 5m0s 5m0s 0", got)
	}
	if logs.String() != "" {
		t.Errorf("creating queues logged:\n%s", logs.String())
	}
}

// A file's expiry and dlq_retention are declared on the queue at Start.
func TestFileDeclaresLifetimes(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	var logs lockedBuffer
	c := startService(t, db, &logs, "consumers:\n  r:\n    queue_name: rollbacks\n    handler: handle_a\n    expiry: 15m\n    dlq_retention: 7d\n")
	q, err := c.Queue(ctx, "rollbacks")
	if err != nil {
		t.Fatal(err)
	}
	if q.Expiry != 15*time.Minute || q.DLQRetention != 7*24*time.Hour {
		t.Fatalf("stored expiry %v, dlq retention %v; want 15m, 7d", q.Expiry, q.DLQRetention)
	}
}

// A consumer entry's topics are subscribed at Start: a topic publish then
// reaches the entry's queue and its handler.
func TestFileTopicsSubscribeAtStart(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	var logs lockedBuffer
	c := startService(t, db, &logs, "consumers:\n  a:\n    queue_name: profiles.i-1\n    handler: handle_a\n    topics: [profiles, '${EXTRA_TOPIC:-alerts}']\n"+
		"  b:\n    queue_name: profiles.i-2\n    handler: handle_b\n    topics:\n      - profiles\n")
	subs, err := c.Subscriptions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(subs[0].Topic, subs[0].Queue, " ", subs[1].Topic, subs[1].Queue, " ", subs[2].Topic, subs[2].Queue); len(subs) != 3 ||
		got != "alertsprofiles.i-1 profilesprofiles.i-1 profilesprofiles.i-2" {
		t.Fatalf("subscriptions %+v", subs)
	}
	sent, err := c.PublishTopic(ctx, "profiles", map[string]string{"profile": "strict"})
	if err != nil || len(sent) != 2 {
		t.Fatalf("PublishTopic = %v, %v", sent, err)
	}
}

// An entry with batch_size registers its named batch handler: calls receive
// up to batch_size messages, with the entry's workers and queue settings.
func TestBatchSizeEntryRegistersABatchHandler(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	cfg, err := config.Parse([]byte("database_url: "+db.URL+"\nschema: "+db.Schema+"\nconsumers:\n  m:\n    queue_name: metrics\n"+
		"    handler: aggregate\n    batch_size: 4\n    workers: 1\n    max_retries: 0\n"), "pgflow.yaml",
		config.Options{Handlers: handlers, BatchHandlers: config.BatchHandlers{"aggregate": nil}, LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	client, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema, DisableStatsCounters: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(ctx)
	var batch []pgflow.Outgoing
	for i := range 10 {
		batch = append(batch, pgflow.Outgoing{Queue: "metrics", Payload: map[string]int{"n": i}})
	}
	if _, err := client.PublishBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	sizes := make(chan int, 10)
	aggregate := func(ctx context.Context, msgs []*pgflow.Message) error {
		sizes <- len(msgs)
		return nil
	}
	svc, err := config.NewService(client, cfg, handlers, config.BatchHandlers{"aggregate": aggregate})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.Stop(ctx)
	total := 0
	for total < 10 {
		select {
		case n := <-sizes:
			if n > 4 {
				t.Fatalf("a call received %d messages; batch_size is 4", n)
			}
			total += n
		case <-time.After(time.Minute):
			t.Fatalf("%d of 10 messages handled", total)
		}
	}
	if q, err := client.Queue(ctx, "metrics"); err != nil || q.MaxRetries != 0 {
		t.Fatalf("queue %+v, %v: want max_retries 0 declared", q, err)
	}
	// A single handler under the batch entry's name is refused.
	if _, err := config.NewService(client, cfg, config.Handlers{"aggregate": noop}); err == nil ||
		!strings.Contains(err.Error(), `handler "aggregate" handles one message at a time; batch_size needs a batch handler`) {
		t.Fatalf("NewService with a single handler = %v", err)
	}
}
