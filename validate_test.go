package pgflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func TestBadInputIsRejectedAndWritesNothing(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{MaxPayloadBytes: 64})
	ctx := context.Background()
	cases := []struct {
		name    string
		queue   string
		payload any
		opts    []pgflow.PublishOption
		kind    error
		message string
	}{
		{"empty queue", "", 1, nil, pgflow.ErrInvalidQueueName, `pgflow: invalid queue name: queue: must not be empty`},
		{"injection in queue", "q'; DROP TABLE pgflow_messages; --", 1, nil, pgflow.ErrInvalidQueueName,
			`pgflow: invalid queue name: queue "q'; DROP TABLE pgflow_messages; --": want 1-128 characters of [A-Za-z0-9_.:-], starting with a letter, digit or '_'`},
		{"queue too long", strings.Repeat("a", 129), 1, nil, pgflow.ErrInvalidQueueName, ""},
		{"queue with space", "my queue", 1, nil, pgflow.ErrInvalidQueueName, ""},
		{"invalid json", "q", json.RawMessage(`{"a":`), nil, pgflow.ErrInvalidPayload, `pgflow: invalid payload: payload "{\"a\":": is not valid JSON`},
		{"invalid json bytes", "q", []byte("not json"), nil, pgflow.ErrInvalidPayload, ""},
		{"nil payload", "q", nil, nil, pgflow.ErrInvalidPayload, `pgflow: invalid payload: payload: is nil; publish a JSON value`},
		{"unencodable", "q", map[string]any{"f": func() {}}, nil, pgflow.ErrInvalidPayload, ""},
		{"too large", "q", strings.Repeat("x", 100), nil, pgflow.ErrPayloadTooLarge, `pgflow: payload too large: payload: is 102 bytes, over the limit of 64`},
		{"negative delay", "q", 1, []pgflow.PublishOption{pgflow.WithDelay(-time.Second)}, pgflow.ErrNegativeDelay, `pgflow: negative delay: delay "-1s": must be zero or positive`},
		{"priority out of range", "q", 1, []pgflow.PublishOption{pgflow.WithPriority(40000)}, pgflow.ErrInvalidOption, `pgflow: invalid option: priority: 40000 is outside [-32768, 32767]`},
		{"empty dedup key", "q", 1, []pgflow.PublishOption{pgflow.WithDedupKey("")}, pgflow.ErrInvalidOption, ""},
		{"empty header name", "q", 1, []pgflow.PublishOption{pgflow.WithHeader("", "v")}, pgflow.ErrInvalidOption, ""},
		{"zero visible_at", "q", 1, []pgflow.PublishOption{pgflow.WithVisibleAt(time.Time{})}, pgflow.ErrInvalidOption, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Publish(ctx, tc.queue, tc.payload, tc.opts...)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
			var ie *pgflow.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err %T is not an *InputError", err)
			}
			if tc.message != "" && err.Error() != tc.message {
				t.Fatalf("message\n got: %s\nwant: %s", err, tc.message)
			}
			_, err = c.PublishBatch(ctx, []pgflow.Outgoing{{Queue: "ok", Payload: 1}, {Queue: tc.queue, Payload: tc.payload, Options: tc.opts}})
			if !errors.Is(err, tc.kind) {
				t.Fatalf("batch err = %v, want %v", err, tc.kind)
			}
		})
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("bad input wrote %d messages", n)
	}
	if n := db.Count(t, "pgflow_queues", ""); n != 0 {
		t.Fatalf("bad input created %d queues", n)
	}
}

func TestStrictQueuesRequireDeclaration(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{StrictQueues: true})
	ctx := context.Background()
	_, err := c.Publish(ctx, "undeclared", 1)
	if !errors.Is(err, pgflow.ErrQueueNotFound) || err.Error() != `pgflow: queue not found: queue "undeclared": does not exist` {
		t.Fatalf("err = %v", err)
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "undeclared"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "undeclared", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Queue(ctx, "nope"); !errors.Is(err, pgflow.ErrQueueNotFound) {
		t.Fatalf("Queue(nope) = %v", err)
	}
}

func TestInvalidConfiguration(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	if _, err := pgflow.New(db.Pool, pgflow.Config{Schema: "Bad-Schema"}); !errors.Is(err, pgflow.ErrInvalidConfig) {
		t.Fatalf("bad schema: %v", err)
	}
	if _, err := pgflow.New(nil, pgflow.Config{}); !errors.Is(err, pgflow.ErrInvalidConfig) {
		t.Fatalf("nil pool: %v", err)
	}
	c := newClient(t, db, pgflow.Config{})
	h := func(context.Context, *pgflow.Message) error { return nil }
	bad := []struct {
		cfg  pgflow.ConsumerConfig
		want string
	}{
		{pgflow.ConsumerConfig{Queue: "q"}, `pgflow: invalid configuration: handler "q": is nil`},
		{pgflow.ConsumerConfig{Queue: "q", Handler: h, Workers: -1}, `pgflow: invalid configuration: workers "q": must be 1-10000, got -1`},
		{pgflow.ConsumerConfig{Queue: "bad name", Handler: h}, ""},
		{pgflow.ConsumerConfig{Queue: "q", Handler: h, Declare: &pgflow.QueueConfig{MaxRetries: pgflow.Set(-1)}}, `pgflow: invalid configuration: max_retries: -1 is negative`},
		{pgflow.ConsumerConfig{Queue: "q", Handler: h, Declare: &pgflow.QueueConfig{LeaseTimeout: pgflow.Set(time.Millisecond)}}, `pgflow: invalid configuration: lease_timeout "1ms": must be at least 100ms`},
		{pgflow.ConsumerConfig{Queue: "q", Handler: h, Declare: &pgflow.QueueConfig{Name: "other"}}, `pgflow: invalid configuration: declare.name "other": differs from the consumer's queue "q"`},
	}
	for _, b := range bad {
		err := c.Consume(b.cfg)
		if err == nil || (b.want != "" && err.Error() != b.want) {
			t.Errorf("Consume(%+v) = %v, want %s", b.cfg, err, b.want)
		}
	}
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "q", Handler: h}); err != nil {
		t.Fatal(err)
	}
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "q", Handler: h}); err == nil {
		t.Fatal("second consumer on the same queue accepted")
	}
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "x", RetryDelay: pgflow.Set(time.Minute), MaxRetryDelay: pgflow.Set(time.Second)}); err == nil {
		t.Fatal("max_retry_delay below retry_delay accepted")
	}
}
