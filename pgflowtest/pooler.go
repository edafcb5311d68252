package pgflowtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/internal/pgbouncer"
)

// PoolerEnv names the environment variable that routes every pool New and
// NewPoolOn open through a PgBouncer: "transaction" or "session" (its
// pool_mode). One pgbouncer per test binary, started on first use in front
// of DatabaseURL's server; it dies with the binary.
const PoolerEnv = "PGFLOW_TEST_PGBOUNCER"

// Pooler returns the pool mode tests run through ("transaction",
// "session"), or "" for direct connections.
func Pooler() string { return os.Getenv(PoolerEnv) }

// SkipIfPooled skips t when tests run through a pooler, giving why.
func SkipIfPooled(t testing.TB, why string) {
	t.Helper()
	if m := Pooler(); m != "" {
		t.Skipf("not through a pooler (%s=%s): %s", PoolerEnv, m, why)
	}
}

var bouncer struct {
	once sync.Once
	url  string
	err  error
}

// ClientURL is the URL test clients connect with: DatabaseURL, or the same
// database through the test binary's pgbouncer when PGFLOW_TEST_PGBOUNCER is
// set. Schemas are created and dropped through it too; DropSchema alone
// connects directly.
func ClientURL(t testing.TB) string {
	t.Helper()
	mode := Pooler()
	if mode == "" {
		return DatabaseURL()
	}
	bouncer.once.Do(func() {
		if mode != string(pgbouncer.Transaction) && mode != string(pgbouncer.Session) {
			bouncer.err = fmt.Errorf("%s=%q: want transaction or session", PoolerEnv, mode)
			return
		}
		server, err := pgx.ParseConfig(DatabaseURL())
		if err != nil {
			bouncer.err = err
			return
		}
		// Session mode ties a server connection to each client one, so it
		// needs as many as the tests hold at once; transaction mode shares
		// a few.
		size := 6
		if mode == string(pgbouncer.Session) {
			size = 24
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := pgbouncer.Start(ctx, pgbouncer.Options{Mode: pgbouncer.Mode(mode),
			Server: fmt.Sprintf("%s:%d", server.Host, server.Port), User: server.User, PoolSize: size})
		if err != nil {
			bouncer.err = err
			return
		}
		bouncer.url, bouncer.err = b.URL(DatabaseURL())
	})
	if bouncer.err != nil {
		t.Fatalf("pgflowtest: %v", bouncer.err)
	}
	return bouncer.url
}

// poolConfig parses url for a test pool; through a transaction-mode pooler
// the pool sends no named prepared statements (pgflow.Config's
// TransactionPooling requires it).
func poolConfig(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	if Pooler() == string(pgbouncer.Transaction) {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	return cfg, nil
}
