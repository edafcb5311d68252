package producer_test

import (
	"context"
	"errors"
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
	"github.com/pgflow-go/pgflow/internal/pgcluster"
	"github.com/pgflow-go/pgflow/migrate"
	"github.com/pgflow-go/pgflow/producer"
)

// counting passes writes through and counts them and their failures.
type counting struct {
	next     producer.Publisher
	calls    atomic.Int64
	failures atomic.Int64
	mu       sync.Mutex
	kinds    map[string]int // failure text without numbers, for the log
}

func (c *counting) PublishBatch(ctx context.Context, msgs []pgflow.Outgoing) ([]int64, error) {
	c.calls.Add(1)
	ids, err := c.next.PublishBatch(ctx, msgs)
	if err != nil {
		c.failures.Add(1)
		c.mu.Lock()
		if c.kinds == nil {
			c.kinds = map[string]int{}
		}
		c.kinds[strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '#'
			}
			return r
		}, err.Error())]++
		c.mu.Unlock()
	}
	return ids, err
}

// throwaway starts a cluster of the test's own, migrated, with a client on
// it.
func throwaway(t *testing.T) (*pgcluster.Cluster, *pgxpool.Pool, *pgflow.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	if !pgcluster.Available() {
		t.Skip("PostgreSQL server binaries not installed")
	}
	ctx := context.Background()
	cl, err := pgcluster.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Remove)
	pc, err := pgxpool.ParseConfig(cl.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := migrate.Up(ctx, pool, "public"); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := pgflow.New(pool, pgflow.Config{Logger: quiet, PollOnly: true, DisableStatsCounters: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return cl, pool, c
}

// TestServerRestartUnderLoad: publishers run without pause while the server
// is stopped (fast, then immediate) and started again. Every publish that
// returned an id is stored with its payload, and no caller sees an error
// while retries are left. Then, with few retries and the server down, a
// publish fails only after its last attempt.
func TestServerRestartUnderLoad(t *testing.T) {
	cl, pool, c := throwaway(t)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "restart"}); err != nil {
		t.Fatal(err)
	}

	t.Run("restarts", func(t *testing.T) {
		w := &counting{next: c}
		p, err := producer.New(w, producer.Config{Queue: "restart", Workers: 2, MaxRetries: 100_000,
			RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond, WriteTimeout: 5 * time.Second, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		type ack struct {
			id  int64
			key string
		}
		var (
			mu    sync.Mutex
			acks  []ack
			done  atomic.Int64
			stop  = make(chan struct{})
			wg    sync.WaitGroup
			reach = make(chan int64, 1) // wakes the test as acks grow
		)
		// On an early return (a failed check) the publishers are cancelled
		// and waited for.
		pctx, cancel := context.WithCancel(ctx)
		var stopOnce sync.Once
		halt := func() {
			stopOnce.Do(func() { close(stop) })
			wg.Wait()
		}
		defer func() {
			cancel()
			halt()
			_ = p.Close(ctx)
		}()
		for g := range 6 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprintf("%d-%d", g, i)
					id, err := p.Publish(pctx, map[string]string{"k": key})
					if pctx.Err() != nil {
						return
					}
					if err != nil {
						t.Errorf("publish %s: %v", key, err)
						return
					}
					mu.Lock()
					acks = append(acks, ack{id, key})
					mu.Unlock()
					select {
					case reach <- done.Add(1):
					default:
					}
				}
			})
		}
		// waitAcks waits until n more publishes were acknowledged (or a
		// publisher failed).
		waitAcks := func(n int64) {
			t.Helper()
			target := done.Load() + n
			deadline := time.After(2 * time.Minute)
			for done.Load() < target {
				select {
				case <-reach:
				case <-deadline:
					t.Fatalf("only %d of %d publishes acknowledged", done.Load(), target)
				}
				if t.Failed() {
					t.FailNow()
				}
			}
		}
		waitAcks(300)
		if err := cl.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := cl.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		waitAcks(300)
		failedBefore := w.failures.Load()
		if err := cl.Crash(ctx); err != nil {
			t.Fatal(err)
		}
		if err := cl.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		waitAcks(300)
		halt()
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if failedBefore == 0 || w.failures.Load() == failedBefore {
			t.Fatalf("writes failed %d times before the crash and %d in all: a restart was not seen", failedBefore, w.failures.Load())
		}
		t.Logf("%d publishes, %d writes, %d failed writes: %v", len(acks), w.calls.Load(), w.failures.Load(), w.kinds)

		stored := map[int64]string{}
		copies := map[string]int{}
		rows, err := pool.Query(ctx, `SELECT id, payload->>'k' FROM pgflow_messages WHERE queue_name = 'restart'`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id int64
			var key string
			if err := rows.Scan(&id, &key); err != nil {
				t.Fatal(err)
			}
			stored[id] = key
			copies[key]++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for _, a := range acks {
			if got, ok := stored[a.id]; !ok || got != a.key {
				t.Errorf("publish %s returned id %d, stored: %q (%v)", a.key, a.id, got, ok)
			}
		}
		dups := 0
		for _, n := range copies {
			dups += n - 1
		}
		// A write whose COMMIT was cut off may have committed: its retry
		// stores the messages again (at least once, see the package doc).
		t.Logf("%d rows, %d stored more than once", len(stored), dups)
		if st := p.Stats(); st.Failed != 0 || st.Published != int64(len(acks)) {
			t.Fatalf("stats %+v, want %d published and none failed", st, len(acks))
		}
	})

	t.Run("down longer than the retries", func(t *testing.T) {
		w := &counting{next: c}
		const maxRetries = 3
		p, err := producer.New(w, producer.Config{Queue: "restart", MaxRetries: maxRetries,
			RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(ctx)
		before := countRows(t, pool)
		if err := cl.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			calls := w.calls.Load()
			id, err := p.Publish(ctx, map[string]string{"k": fmt.Sprintf("down-%d", i)})
			attempts := w.calls.Load() - calls
			if err == nil || id != 0 {
				t.Fatalf("publish with the server down: id %d err %v", id, err)
			}
			if attempts != maxRetries+1 {
				t.Fatalf("error after %d attempts, want %d: %v", attempts, maxRetries+1, err)
			}
			want := fmt.Sprintf("producer: publish failed after %d retries: ", maxRetries)
			if !strings.HasPrefix(err.Error(), want) || !producer.Transient(errors.Unwrap(err)) {
				t.Fatalf("err %q, want %q and a transient cause", err, want+"…")
			}
		}
		if err := cl.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if n := countRows(t, pool); n != before {
			t.Fatalf("%d rows after failed publishes, want %d", n, before)
		}
	})
}

func countRows(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	// The pool may still hold connections from before a restart: retry the
	// first statement on a broken one.
	var err error
	for range 10 {
		if err = pool.QueryRow(context.Background(), `SELECT count(*) FROM pgflow_messages`).Scan(&n); err == nil || !producer.Transient(err) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}
