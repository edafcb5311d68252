package producer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
	"github.com/pgflow-go/pgflow/producer"
)

// The queues of the guide's two services; none exists when the fleet starts.
var guideQueues = []string{
	"proposals_for_consensus_queue", "metrics_to_guardian_queue", "patterns_for_aggregator_queue",
	"consensus_results_queue", "rollback_triggers_queue", "guardian_safety_profiles_queue",
}

// Twenty service instances start at once, each with a pool of two
// connections and a producer per queue whose flushers outnumber the pool's
// connections, all publishing to queues that do not exist yet. A flusher
// that held a connection in its batch's transaction while it waited for a
// second one to create the queue stalled every instance until its write
// timeout, and every publish then failed (MaxRetries 0): none may fail. The
// time to the first commits is logged, not asserted (a loaded machine
// stretches it; the stall showed as failures, not as slowness).
func TestTwentyInstancesStartingTogetherFlowAtOnce(t *testing.T) {
	const instances, perQueue = 20, 5
	db := pgflowtest.New(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// One consumer process for every queue, started before the fleet.
	total := int64(instances * len(guideQueues) * perQueue)
	var handled atomic.Int64
	firstHandled := make(chan time.Time, 1)
	allHandled := make(chan struct{})
	consumer, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range guideQueues {
		err := consumer.Consume(pgflow.ConsumerConfig{Queue: q, Workers: 4, Handler: func(context.Context, *pgflow.Message) error {
			n := handled.Add(1)
			if n == 1 {
				firstHandled <- time.Now()
			}
			if n == total {
				close(allHandled)
			}
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The consumer's Start would create the queues: publishers must meet
	// new queues, so the consumer starts after the first publish below.

	type instance struct {
		client    *pgflow.Client
		producers []*producer.Producer
	}
	fleet := make([]instance, instances)
	for i := range fleet {
		// Two connections each (twenty instances stay within the shared test
		// server's connection limit); the flushers outnumber them as before.
		pool, err := pgxpool.New(context.Background(), poolURL(db.URL, 2))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		// Connected before the clock starts: the test times the stall, not
		// the connection set-up of twenty processes on a busy machine.
		if err := pool.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		c, err := pgflow.New(pool, pgflow.Config{Schema: db.Schema, Logger: quiet, ID: fmt.Sprintf("instance-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		fleet[i].client = c
		for _, q := range guideQueues {
			p, err := producer.New(c, producer.Config{Queue: q, Workers: int(pool.Config().MaxConns) + 2,
				MaxRetries: 0, WriteTimeout: 30 * time.Second, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			fleet[i].producers = append(fleet[i].producers, p)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, in := range fleet {
			for _, p := range in.producers {
				_ = p.Close(ctx)
			}
		}
		_ = consumer.Close(ctx)
	})

	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	// firstCommit[i] is how long after start instance i's first publish
	// committed.
	firstCommit := make([]atomic.Int64, instances)
	for i, in := range fleet {
		for _, p := range in.producers {
			for n := range perQueue {
				wg.Go(func() {
					if _, err := p.Publish(context.Background(), map[string]int{"n": n}); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
						return
					}
					firstCommit[i].CompareAndSwap(0, int64(time.Since(start)))
				})
			}
		}
	}
	wg.Wait()
	published := time.Since(start)
	var slowest time.Duration
	for i := range firstCommit {
		slowest = max(slowest, time.Duration(firstCommit[i].Load()))
	}
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d publishes failed, first: %v", n, firstErr.Load())
	}
	if err := consumer.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var first time.Time
	select {
	case first = <-firstHandled:
	case <-time.After(time.Minute):
		t.Fatal("no message handled within a minute")
	}
	select {
	case <-allHandled:
	case <-time.After(time.Minute):
		t.Fatalf("handled %d of %d within a minute", handled.Load(), total)
	}
	t.Logf("%d instances x %d queues: every instance's first publish committed within %v of start, all %d within %v; first handled %v after start",
		instances, len(guideQueues), slowest.Round(time.Millisecond), total, published.Round(time.Millisecond), first.Sub(start).Round(time.Millisecond))
}

// poolURL is url with pgxpool's pool_max_conns set to n.
func poolURL(url string, n int) string {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%s%spool_max_conns=%d", url, sep, n)
}
