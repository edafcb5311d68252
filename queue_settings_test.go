package pgflow_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// settings is the part of QueueInfo a declaration decides.
type settings struct {
	maxRetries, priority                    int
	retryDelay, maxRetryDelay, leaseTimeout time.Duration
}

func queueSettings(t *testing.T, c *pgflow.Client, name string) settings {
	t.Helper()
	q, err := c.Queue(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return settings{q.MaxRetries, q.Priority, q.RetryDelay, q.MaxRetryDelay, q.LeaseTimeout}
}

// The documented defaults, which live in pgflow_queues' column defaults.
var documentedDefaults = settings{maxRetries: 3, priority: 0, retryDelay: time.Second, maxRetryDelay: 5 * time.Minute, leaseTimeout: 30 * time.Second}

func TestExplicitZeroRetriesIsStoredAndHonoured(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{PollInterval: 20 * time.Millisecond})
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "once", MaxRetries: pgflow.Set(0)}); err != nil {
		t.Fatal(err)
	}
	want := documentedDefaults
	want.maxRetries = 0
	if got := queueSettings(t, c, "once"); got != want {
		t.Fatalf("stored %+v, want %+v", got, want)
	}
	var deliveries atomic.Int32
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "once", Handler: func(ctx context.Context, m *pgflow.Message) error {
		deliveries.Add(1)
		return errors.New("flaky downstream") // an ordinary, retryable error
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := c.Publish(ctx, "once", map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message in the DLQ", func() bool { return db.Count(t, "pgflow_dlq", "message_id = $1", id) == 1 })
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := deliveries.Load(); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
	if n := db.Count(t, "pgflow_dlq", "message_id = $1 AND attempts = 1", id); n != 1 {
		t.Fatal("the DLQ row does not record exactly one attempt")
	}
}

func TestRedeclareKeepsUnsetSettings(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "q", MaxRetries: pgflow.Set(7), LeaseTimeout: pgflow.Set(5 * time.Minute), Priority: pgflow.Set(4)}); err != nil {
		t.Fatal(err)
	}
	// A declaration that sets only the retry delay changes only that.
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "q", RetryDelay: pgflow.Set(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	want := settings{maxRetries: 7, priority: 4, retryDelay: 2 * time.Second, maxRetryDelay: 5 * time.Minute, leaseTimeout: 5 * time.Minute}
	if got := queueSettings(t, c, "q"); got != want {
		t.Fatalf("stored %+v, want %+v", got, want)
	}
	// So does a consumer's declaration at Start, and one with nothing set.
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "q", Handler: func(context.Context, *pgflow.Message) error { return nil },
		Declare: &pgflow.QueueConfig{MaxRetries: pgflow.Set(2)}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "q"}); err != nil {
		t.Fatal(err)
	}
	want.maxRetries = 2
	if got := queueSettings(t, c, "q"); got != want {
		t.Fatalf("after the consumer's declaration: stored %+v, want %+v", got, want)
	}
}

func TestAutoCreatedAndDeclaredQueuesGetTheSameDefaults(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	if _, err := c.Publish(ctx, "auto", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "declared"}); err != nil {
		t.Fatal(err)
	}
	// A consumer's own declaration with nothing set, at Start.
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "consumed", Declare: &pgflow.QueueConfig{},
		Handler: func(context.Context, *pgflow.Message) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"auto", "declared", "consumed"} {
		if got := queueSettings(t, c, q); got != documentedDefaults {
			t.Errorf("%s: %+v, want %+v", q, got, documentedDefaults)
		}
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestChangedSettingsAreLoggedAndEmitted(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	var logs syncBuffer
	rec := newRecorder()
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	c := newClient(t, db, pgflow.Config{Logger: logger, Hooks: []pgflow.EventHook{rec.hook}, DisableStatsCounters: true})

	// Creating a queue, even with settings, is not a change.
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "q", LeaseTimeout: pgflow.Set(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	// Declaring what is stored is not either.
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "q", LeaseTimeout: pgflow.Set(5 * time.Minute), MaxRetries: pgflow.Set(3)}); err != nil {
		t.Fatal(err)
	}
	if n := rec.count(pgflow.EventQueueChanged); n != 0 || logs.String() != "" {
		t.Fatalf("%d events and log %q before any change", n, logs.String())
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "q", MaxRetries: pgflow.Set(0), LeaseTimeout: pgflow.Set(30 * time.Second), Priority: pgflow.Set(0)}); err != nil {
		t.Fatal(err)
	}
	events := rec.of(pgflow.EventQueueChanged)
	want := []pgflow.SettingChange{{Setting: "max_retries", Old: "3", New: "0"}, {Setting: "lease_timeout", Old: "5m0s", New: "30s"}}
	if len(events) != 1 || events[0].Queue != "q" || events[0].Err != nil || !slices.Equal(events[0].Changes, want) {
		t.Fatalf("events %+v, want one queue_changed with %v", events, want)
	}
	if got, want := logs.String(), `level=WARN msg="pgflow: queue settings changed" queue=q max_retries="3 -> 0" lease_timeout="5m0s -> 30s"`+"\n"; got != want {
		t.Fatalf("log\n%s\nwant\n%s", got, want)
	}
}

func TestDeclareRejectsABackoffBelowItsFirstDelay(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{})
	// The stored max_retry_delay (default 5 min) is below the new delay:
	// the declaration fails as a whole and creates nothing.
	err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "slow", MaxRetries: pgflow.Set(1), RetryDelay: pgflow.Set(10 * time.Minute)})
	if want := `pgflow: invalid configuration: retry_delay "10m0s": is above the queue's max_retry_delay 5m0s; set MaxRetryDelay too`; err == nil || err.Error() != want {
		t.Fatalf("err %v, want %s", err, want)
	}
	if !errors.Is(err, pgflow.ErrInvalidConfig) {
		t.Fatalf("%v is not ErrInvalidConfig", err)
	}
	if _, err := c.Queue(ctx, "slow"); !errors.Is(err, pgflow.ErrQueueNotFound) {
		t.Fatalf("the failed declaration left a queue: %v", err)
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "slow", MaxRetryDelay: pgflow.Set(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	err = c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "slow", MaxRetryDelay: pgflow.Set(500 * time.Millisecond)})
	if want := `pgflow: invalid configuration: max_retry_delay "500ms": is below the queue's retry_delay 1s`; err == nil || err.Error() != want {
		t.Fatalf("err %v, want %s", err, want)
	}
	if got := queueSettings(t, c, "slow").maxRetryDelay; got != time.Minute {
		t.Fatalf("max_retry_delay %v after a rejected declaration, want 1m", got)
	}
}

func TestSetting(t *testing.T) {
	var unset pgflow.Setting[int]
	if v, ok := unset.Get(); ok || v != 0 || unset.IsSet() || unset.String() != "unset" {
		t.Fatalf("zero Setting: %v %v %q", v, ok, unset)
	}
	zero := pgflow.Set(0)
	if v, ok := zero.Get(); !ok || v != 0 || !zero.IsSet() || zero.String() != "0" || zero == unset {
		t.Fatalf("Set(0): %v %v %q", v, ok, zero)
	}
	if s := pgflow.Set(90 * time.Second).String(); s != "1m30s" {
		t.Fatalf("duration setting prints %q", s)
	}
}

func TestDeclareRejectsBadSettings(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	for _, tc := range []struct {
		qc   pgflow.QueueConfig
		want string
	}{
		{pgflow.QueueConfig{Name: "q", MaxRetries: pgflow.Set(-1)}, `pgflow: invalid configuration: max_retries: -1 is negative`},
		{pgflow.QueueConfig{Name: "q", RetryDelay: pgflow.Set(-time.Second)}, `pgflow: invalid configuration: retry_delay "-1s": is negative`},
		{pgflow.QueueConfig{Name: "q", MaxRetryDelay: pgflow.Set(25 * 24 * time.Hour)}, `pgflow: invalid configuration: max_retry_delay "600h0m0s": must be under 24 days`},
		{pgflow.QueueConfig{Name: "q", LeaseTimeout: pgflow.Set(99 * time.Millisecond)}, `pgflow: invalid configuration: lease_timeout "99ms": must be at least 100ms`},
		{pgflow.QueueConfig{Name: "q", LeaseTimeout: pgflow.Set(time.Duration(0))}, `pgflow: invalid configuration: lease_timeout "0s": must be at least 100ms`},
		{pgflow.QueueConfig{Name: "q", Priority: pgflow.Set(40000)}, `pgflow: invalid configuration: priority: 40000 is outside [-32768, 32767]`},
		{pgflow.QueueConfig{Name: "q", RetryDelay: pgflow.Set(time.Minute), MaxRetryDelay: pgflow.Set(time.Second)}, `pgflow: invalid configuration: max_retry_delay "1s": is below retry_delay 1m0s`},
	} {
		err := c.DeclareQueue(context.Background(), tc.qc)
		if err == nil || err.Error() != tc.want || !errors.Is(err, pgflow.ErrInvalidConfig) {
			t.Errorf("%+v: got %v, want %s", tc.qc, err, tc.want)
		}
	}
	if n := db.Count(t, "pgflow_queues", ""); n != 0 {
		t.Fatalf("%d queues stored by rejected declarations", n)
	}
}
