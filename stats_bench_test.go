package pgflow

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow/pgflowtest"
)

// BenchmarkStatsRecord is the cost the stats counters add to each handled
// message: one hook call on the worker's goroutine (no I/O).
func BenchmarkStatsRecord(b *testing.B) {
	c := &Client{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r := newStatsRecorder(c)
	r.started = true // no flusher goroutine: measure the hook alone
	e := Event{Kind: EventCompleted, Queue: "q", Time: time.Now(), HandlerDuration: time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.record(e)
		}
	})
}

// TestStatsCountersAckThroughput compares end-to-end consume throughput
// (claim, handle, batched ack) with the counters on and off, alternating
// runs. A one-off measurement for docs/operations.md, skipped by default:
//
//	PGFLOW_ACK_BENCH=20000 go test -run TestStatsCountersAckThroughput -v .
func TestStatsCountersAckThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PGFLOW_ACK_BENCH"))
	if n <= 0 {
		t.Skip("set PGFLOW_ACK_BENCH to run")
	}
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 8})
	ctx := context.Background()
	run := func(disable bool) float64 {
		c, err := New(db.Pool, Config{Schema: db.Schema, DisableStatsCounters: disable,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		msgs := make([]Outgoing, n)
		for i := range msgs {
			msgs[i] = Outgoing{Queue: "bench", Payload: i}
		}
		if _, err := c.PublishBatch(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		var done atomic.Int64
		all := make(chan struct{})
		if err := c.Consume(ConsumerConfig{Queue: "bench", Workers: 16, Handler: func(context.Context, *Message) error {
			if done.Add(1) == int64(n) {
				close(all)
			}
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-all:
		case <-time.After(5 * time.Minute):
			t.Fatalf("handled %d of %d", done.Load(), n)
		}
		if err := c.Close(ctx); err != nil { // Stop writes the last acks
			t.Fatal(err)
		}
		el := time.Since(start)
		if left := db.Count(t, "pgflow_messages", ""); left != 0 {
			t.Fatalf("%d left", left)
		}
		return float64(n) / el.Seconds()
	}
	for i := range 3 {
		off := run(true)
		on := run(false)
		t.Logf("round %d: counters off %.0f msg/s, on %.0f msg/s", i+1, off, on)
	}
}

// BenchmarkPublishEventWithCounters is what the always-installed counter
// hook adds to each Publish: building and emitting EventPublished (the
// recorder ignores it). Without any hook this path returns at once.
func BenchmarkPublishEventWithCounters(b *testing.B) {
	c := &Client{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c.stats = newStatsRecorder(c)
	c.hooks = []EventHook{c.stats.record}
	headers := map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	b.ReportAllocs()
	for b.Loop() {
		c.afterPublish("q", 1, headers, nil)
	}
}
