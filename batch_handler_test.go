package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func publishInts(t *testing.T, c *pgflow.Client, queue string, from, to int) []int64 {
	t.Helper()
	var out []pgflow.Outgoing
	for i := from; i <= to; i++ {
		out = append(out, pgflow.Outgoing{Queue: queue, Payload: map[string]int{"n": i}})
	}
	ids, err := c.PublishBatch(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// One call receives the whole waiting batch in claim order, and each
// message gets its own outcome: acknowledged, retried with its error (then
// acknowledged), or dead-lettered; events per message.
func TestBatchHandlerOutcomePerMessage(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	rec := newRecorder()
	c := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}})
	ctx := context.Background()
	ids := publishInts(t, c, "agg", 1, 6)
	var mu sync.Mutex
	var calls [][]int
	acked := make(chan int, 16)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "agg", Declare: fastQueue("agg", 3), BatchSize: 10,
		BatchHandler: func(ctx context.Context, msgs []*pgflow.Message) error {
			errs := make(pgflow.BatchErrors, len(msgs))
			var got []int
			for i, m := range msgs {
				var v struct{ N int }
				if err := m.Decode(&v); err != nil {
					return err
				}
				n := v.N
				got = append(got, n)
				switch {
				case n == 2 && m.Attempt == 1:
					errs[i] = errors.New("flaky")
				case n == 4:
					errs[i] = pgflow.Permanent(errors.New("malformed"))
				default:
					acked <- n
				}
			}
			mu.Lock()
			calls = append(calls, got)
			mu.Unlock()
			return errs
		}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for len(seen) < 5 {
		seen[await(t, "acknowledged message", acked)] = true
	}
	waitFor(t, "the outcomes written", func() bool {
		return db.Count(t, "pgflow_messages", "") == 0 && db.Count(t, "pgflow_dlq", "") == 1
	})
	mu.Lock()
	first := fmt.Sprint(calls[0])
	mu.Unlock()
	if first != "[1 2 3 4 5 6]" {
		t.Fatalf("first call received %s, want the six messages in order", first)
	}
	if d := readDLQ(t, db); d[0].messageID != ids[3] || d[0].lastError != "permanent: malformed" || d[0].attempts != 1 {
		t.Fatalf("dead letter = %+v", d[0])
	}
	waitFor(t, "events", func() bool { return rec.count(pgflow.EventCompleted) == 5 })
	if r := rec.of(pgflow.EventRetried); len(r) != 1 || r[0].MessageID != ids[1] || r[0].Err.Error() != "flaky" {
		t.Fatalf("retried events = %+v", r)
	}
	if d := rec.of(pgflow.EventDeadLettered); len(d) != 1 || d[0].MessageID != ids[3] {
		t.Fatalf("dead-lettered events = %+v", d)
	}
	if n := rec.count(pgflow.EventReceived); n != 7 {
		t.Fatalf("%d received events, want 7 (six, and the retry)", n)
	}
}

// An error that is not a BatchErrors fails every message of the call; a
// BatchErrors of the wrong length too, with an error that says so.
func TestBatchHandlerWholeBatchFailure(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	publishInts(t, c, "all", 1, 3)
	publishInts(t, c, "short", 1, 3)
	for _, q := range []string{"all", "short"} {
		if err := c.Consume(pgflow.ConsumerConfig{Queue: q, Declare: fastQueue(q, 0), BatchSize: 10,
			BatchHandler: func(ctx context.Context, msgs []*pgflow.Message) error {
				if q == "all" {
					return errors.New("store down")
				}
				return pgflow.BatchErrors{nil}
			}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "six dead letters", func() bool { return db.Count(t, "pgflow_dlq", "") == 6 })
	for _, d := range readDLQ(t, db) {
		want := "store down"
		if d.queue == "short" {
			want = "pgflow: batch handler returned 1 outcomes for 3 messages"
		}
		if d.lastError != want {
			t.Fatalf("queue %s: error %q, want %q", d.queue, d.lastError, want)
		}
	}
}

// BatchSize bounds every call, and Workers × BatchSize bounds what the
// consumer holds: with 2 workers of 3, at most 6 messages are claimed at any
// moment, and a call never sees more than 3.
func TestBatchHandlerBounds(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	publishInts(t, c, "bounded", 1, 20)
	entered := make(chan int, 2)
	proceed := make(chan struct{})
	var mu sync.Mutex
	handled := 0
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "bounded", Workers: 2, BatchSize: 3,
		BatchHandler: func(ctx context.Context, msgs []*pgflow.Message) error {
			entered <- len(msgs)
			<-proceed
			mu.Lock()
			handled += len(msgs)
			mu.Unlock()
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Both workers hold a full batch; nothing else is claimed meanwhile.
	if a, b := await(t, "first call", entered), await(t, "second call", entered); a != 3 || b != 3 {
		t.Fatalf("first calls received %d and %d messages, want 3 and 3", a, b)
	}
	if n := db.Count(t, "pgflow_messages", "status <> 'pending'"); n != 6 {
		t.Fatalf("%d messages claimed while both calls run, want 6", n)
	}
	if s := c.ConsumerStats(); s[0].Held != 6 || s[0].Running != 6 {
		t.Fatalf("stats = %+v, want 6 held and running", s[0])
	}
	close(proceed)
	for {
		mu.Lock()
		done := handled == 20
		mu.Unlock()
		if done {
			break
		}
		if n := await(t, "a call", entered); n > 3 {
			t.Fatalf("a call received %d messages, BatchSize is 3", n)
		}
	}
	waitFor(t, "the queue drained", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
}

// A call running longer than the lease keeps its messages: the heartbeat
// extends every lease of the batch, and no message is delivered twice.
func TestBatchHandlerLeasesAreExtended(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	rec := newRecorder()
	c := newClient(t, db, pgflow.Config{Hooks: []pgflow.EventHook{rec.hook}, RescueInterval: 50 * time.Millisecond})
	publishInts(t, c, "slow", 1, 4)
	q := fastQueue("slow", 3)
	q.LeaseTimeout = pgflow.Set(2 * time.Second)
	started := make(chan struct{}, 4)
	proceed := make(chan struct{})
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "slow", Declare: q, BatchSize: 4,
		BatchHandler: func(ctx context.Context, msgs []*pgflow.Message) error {
			started <- struct{}{}
			select {
			case <-proceed:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	await(t, "the call", started)
	var first time.Time
	if err := db.Pool.QueryRow(context.Background(), "SELECT max(locked_until) FROM "+db.Schema+".pgflow_messages").Scan(&first); err != nil {
		t.Fatal(err)
	}
	// Held past the first lease's end (the rescuer runs every 50 ms):
	// extended, not rescued.
	waitFor(t, "leases extended past the first lease's end", func() bool {
		return db.Count(t, "pgflow_messages", "locked_until > $1::timestamptz + interval '2 seconds' AND attempt = 1", first) == 4
	})
	close(proceed)
	waitFor(t, "the queue drained", func() bool { return db.Count(t, "pgflow_messages", "") == 0 })
	if n := rec.count(pgflow.EventReceived); n != 4 {
		t.Fatalf("%d deliveries, want 4", n)
	}
	select {
	case <-started:
		t.Fatal("a second call ran")
	default:
	}
}

// Stop past its deadline cancels a running call (cause ErrClientStopped)
// and hands its messages back without counting a failed attempt.
func TestBatchHandlerStopHandsBack(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	publishInts(t, c, "cut", 1, 5)
	started := make(chan struct{}, 1)
	causes := make(chan error, 1)
	unblock := make(chan struct{})
	defer close(unblock)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "cut", BatchSize: 5,
		BatchHandler: func(ctx context.Context, msgs []*pgflow.Message) error {
			started <- struct{}{}
			<-ctx.Done()
			causes <- context.Cause(ctx)
			<-unblock
			return ctx.Err()
		}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	await(t, "the call", started)
	stopCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	var se *pgflow.StopError
	if err := c.Stop(stopCtx); !errors.As(err, &se) || se.Running != 5 {
		t.Fatalf("Stop = %v, want a *StopError with 5 running", err)
	}
	if cause := await(t, "the cancelled call", causes); !errors.Is(cause, pgflow.ErrClientStopped) {
		t.Fatalf("cause = %v", cause)
	}
	if n := db.Count(t, "pgflow_messages", "status = 'pending' AND retry_count = 0 AND claim_token IS NULL"); n != 5 {
		t.Fatalf("%d messages handed back, want 5", n)
	}
}

func TestBatchHandlerConfigErrors(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	h := func(ctx context.Context, m *pgflow.Message) error { return nil }
	bh := func(ctx context.Context, msgs []*pgflow.Message) error { return nil }
	for name, cfg := range map[string]pgflow.ConsumerConfig{
		"both handlers":         {Queue: "a", Handler: h, BatchHandler: bh},
		"batch size, no batch":  {Queue: "b", Handler: h, BatchSize: 10},
		"batch size negative":   {Queue: "c", BatchHandler: bh, BatchSize: -1},
		"batch size too large":  {Queue: "d", BatchHandler: bh, BatchSize: 10001},
		"held beyond the bound": {Queue: "e", BatchHandler: bh, BatchSize: 1000, Workers: 101},
	} {
		if err := c.Consume(cfg); !errors.Is(err, pgflow.ErrInvalidConfig) {
			t.Errorf("%s: Consume = %v, want ErrInvalidConfig", name, err)
		}
	}
}
