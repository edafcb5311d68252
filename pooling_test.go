package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/pgbouncer"
	"github.com/pgflow-go/pgflow/migrate"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// startBouncer starts a pgbouncer in mode in front of the test server,
// stopped when t ends, and returns its URL for the test database: a plain
// URL, no flags.
func startBouncer(t *testing.T, mode pgbouncer.Mode, poolSize int) string {
	t.Helper()
	if !pgbouncer.Available() {
		t.Skip("pgbouncer is not installed")
	}
	server, err := pgx.ParseConfig(pgflowtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := pgbouncer.Start(ctx, pgbouncer.Options{Mode: mode, Server: fmt.Sprintf("%s:%d", server.Host, server.Port),
		User: server.User, PoolSize: poolSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	u, err := b.URL(pgflowtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Through a real PgBouncer in transaction and in session mode, a client
// from Connect with a plain URL finds the pooler by itself and then
// migrates, publishes (one by one, in batches, in the caller's
// transaction), consumes with several workers, retries, dead-letters,
// redrives and reads stats. In transaction mode two server connections serve
// it all, so consecutive transactions land on different server sessions:
// with pgx's default prepared statements this fails with `prepared
// statement "stmtcache_…" does not exist` at once.
func TestEveryFeatureThroughPgBouncer(t *testing.T) {
	for _, mode := range []pgbouncer.Mode{pgbouncer.Transaction, pgbouncer.Session} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			// Session mode gives each client connection a server one for
			// as long as it lives: the pool (pgx's default of 4) must fit.
			poolSize := 2
			if mode == pgbouncer.Session {
				poolSize = 4
			}
			url := startBouncer(t, mode, poolSize)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			schemaName := "pgflow_bouncer_" + string(mode) + fmt.Sprint(time.Now().UnixNano()%1_000_000)
			t.Cleanup(func() { pgflowtest.DropSchema(t, schemaName) })

			c, err := pgflow.Connect(ctx, url, pgflow.Config{Schema: schemaName, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			if !pgflow.UsesTransactionPooling(c) {
				t.Fatal("Connect did not find the pooler")
			}
			if _, err := migrate.Up(ctx, c.Pool(), schemaName); err != nil {
				t.Fatalf("migrate through pgbouncer: %v", err)
			}
			if _, err := migrate.Up(ctx, c.Pool(), schemaName); err != nil {
				t.Fatalf("migrate again: %v", err)
			}

			var mu sync.Mutex
			handled := map[int]int{}
			complete := 0 // messages handled as often as they will be
			done := make(chan struct{})
			const n = 200
			if err := c.Consume(pgflow.ConsumerConfig{Queue: "work", Workers: 8, Declare: fastQueue("work", 1),
				Handler: func(ctx context.Context, m *pgflow.Message) error {
					var v int
					if err := m.Decode(&v); err != nil {
						return pgflow.Permanent(err)
					}
					mu.Lock()
					defer mu.Unlock()
					handled[v]++
					// -1 and every tenth are delivered twice, the others once;
					// done once every one has had all its deliveries (a retry
					// still waiting would be handed back by Stop).
					if want := 1 + btoi(v == -1 || v%10 == 0); handled[v] == want {
						if complete++; complete == n+1 {
							close(done)
						}
					}
					switch {
					case v == -1:
						return errors.New("always fails") // retried once, then dead-lettered
					case v%10 == 0 && handled[v] == 1:
						return errors.New("fails once") // retried
					}
					return nil
				}}); err != nil {
				t.Fatal(err)
			}
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n/2; i++ {
				if _, err := c.Publish(ctx, "work", i); err != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
			}
			var batch []pgflow.Outgoing
			for i := n / 2; i < n-10; i++ {
				batch = append(batch, pgflow.Outgoing{Queue: "work", Payload: i})
			}
			if _, err := c.PublishBatch(ctx, batch); err != nil {
				t.Fatalf("publish batch: %v", err)
			}
			err = pgx.BeginFunc(ctx, c.Pool(), func(tx pgx.Tx) error {
				for i := n - 10; i < n; i++ {
					if _, err := c.PublishTx(ctx, tx, "work", i); err != nil {
						return err
					}
				}
				_, err := c.PublishTx(ctx, tx, "work", -1)
				return err
			})
			if err != nil {
				t.Fatalf("publish in a transaction: %v", err)
			}
			select {
			case <-done:
			case <-ctx.Done():
				mu.Lock()
				t.Fatalf("handled %d of %d distinct messages", len(handled), n+1)
			}
			// The failing one reaches the DLQ once its last attempt is written.
			var dead []pgflow.DLQMessage
			for dead == nil {
				page, err := c.ListDLQ(ctx, pgflow.DLQListOptions{Limit: 10})
				if err != nil {
					t.Fatalf("list dlq: %v", err)
				}
				if len(page.Messages) > 0 {
					dead = page.Messages
					break
				}
				select {
				case <-ctx.Done():
					t.Fatal("the failing message never reached the DLQ")
				case <-time.After(20 * time.Millisecond):
				}
			}
			if len(dead) != 1 || len(dead[0].Errors) != 2 {
				t.Fatalf("dlq: %+v, want one message with 2 errors", dead)
			}
			if err := c.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			moved, err := c.RedriveDLQ(ctx, pgflow.DLQFilter{All: true}, pgflow.RedriveOptions{})
			if err != nil || moved.Redriven != 1 {
				t.Fatalf("redrive: %+v, %v", moved, err)
			}
			st, err := c.QueueStats(ctx, "work")
			if err != nil {
				t.Fatalf("stats: %v", err)
			}
			if st.Pending != 1 {
				t.Fatalf("stats: %d pending after the redrive, want 1", st.Pending)
			}
			mu.Lock()
			defer mu.Unlock()
			for i := 0; i < n; i++ {
				want := 1
				if i%10 == 0 {
					want = 2
				}
				if handled[i] != want {
					t.Fatalf("message %d handled %d times, want %d", i, handled[i], want)
				}
			}
		})
	}
}

// New refuses, with advice, a pool that keeps prepared statements across
// round trips when told that a transaction-mode pooler is in between.
func TestTransactionPoolingNeedsAPoolWithoutPreparedStatements(t *testing.T) {
	ctx := context.Background()
	for mode, ok := range map[string]bool{"cache_statement": false, "describe_exec": false, "cache_describe": true, "exec": true, "simple_protocol": true} {
		cfg, err := pgxpool.ParseConfig(pgflowtest.DatabaseURL() + "&default_query_exec_mode=" + mode)
		if err != nil {
			t.Fatal(err)
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = pgflow.New(pool, pgflow.Config{TransactionPooling: true})
		pool.Close()
		if ok != (err == nil) || (err != nil && !errors.Is(err, pgflow.ErrInvalidConfig)) {
			t.Errorf("mode %s: New: %v", mode, err)
		}
	}
}

// A direct connection is not taken for a pooler: the client keeps its
// prepared statements and LISTEN.
func TestConnectDirectKeepsPreparedStatements(t *testing.T) {
	pgflowtest.SkipIfPooled(t, "checks a direct connection")
	ctx := context.Background()
	c, err := pgflow.Connect(ctx, pgflowtest.DatabaseURL(), pgflow.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if pgflow.UsesTransactionPooling(c) || !pgflow.Listens(c) {
		t.Fatal("a direct connection was taken for a pooler")
	}
	if m := c.Pool().Config().ConnConfig.DefaultQueryExecMode; m != pgx.QueryExecModeCacheStatement {
		t.Fatalf("exec mode %v, want cache_statement", m)
	}
}

// btoi is 1 for true, 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
