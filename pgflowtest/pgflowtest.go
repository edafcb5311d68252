package pgflowtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/internal/schema"
	"github.com/pgflow-go/pgflow/migrate"
)

// DefaultDatabaseURL is used when PGFLOW_TEST_DATABASE_URL is not set.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DatabaseURL returns the test database's URL.
func DatabaseURL() string {
	if u := os.Getenv("PGFLOW_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultDatabaseURL
}

// DB is an isolated pgflow installation for one test.
type DB struct {
	Pool   *pgxpool.Pool
	Schema string
	// URL is the URL Pool connects with (ClientURL).
	URL string
	// TransactionPooling is set when Pool goes through a transaction-mode
	// pooler: clients on it need pgflow.Config.TransactionPooling.
	TransactionPooling bool
}

// Options tune New.
type Options struct {
	// MaxConns bounds the pool. Default 8, or PGFLOW_TEST_MAX_CONNS when
	// set: running a suite with PGFLOW_TEST_MAX_CONNS=1 shows any call that
	// holds a pooled connection while it waits for another (it then waits
	// on itself).
	MaxConns int32
	// AppName sets application_name on every connection, so a test can find
	// (and terminate) its own backends.
	AppName string
}

// New creates a schema named pgflowtest_<random>, migrates it, and returns a
// pool on it. The schema and pool go away when t ends.
func New(t testing.TB, opts ...Options) *DB {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.MaxConns == 0 {
		o.MaxConns = defaultMaxConns(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := ClientURL(t)
	cfg, err := poolConfig(url)
	if err != nil {
		t.Fatalf("pgflowtest: parse database url: %v", err)
	}
	cfg.MaxConns = o.MaxConns
	if o.AppName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = o.AppName
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgflowtest: connect: %v", err)
	}
	name := "pgflowtest_" + randomHex(6)
	if _, err := migrate.Up(ctx, pool, name); err != nil {
		pool.Close()
		t.Fatalf("pgflowtest: migrate schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		pool.Close()
		DropSchema(t, name)
	})
	return &DB{Pool: pool, Schema: name, URL: url, TransactionPooling: Pooler() == "transaction"}
}

// defaultMaxConns is PGFLOW_TEST_MAX_CONNS, else 8.
func defaultMaxConns(t testing.TB) int32 {
	v := os.Getenv("PGFLOW_TEST_MAX_CONNS")
	if v == "" {
		return 8
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("pgflowtest: PGFLOW_TEST_MAX_CONNS=%q is not a positive number", v)
	}
	return int32(n)
}

// DropSchema drops a schema created for a test, on a connection of its own.
func DropSchema(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, DatabaseURL())
	if err != nil {
		t.Errorf("pgflowtest: drop schema %s: %v", name, err)
		return
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema.Quote(name)+" CASCADE"); err != nil {
		t.Errorf("pgflowtest: drop schema %s: %v", name, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Count returns the number of rows in one of the schema's tables matching
// an optional WHERE clause (trusted test code only).
func (db *DB) Count(t testing.TB, table, where string, args ...any) int {
	t.Helper()
	sql := "SELECT count(*) FROM " + schema.Quote(db.Schema) + "." + table
	if where != "" {
		sql += " WHERE " + where
	}
	var n int
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("pgflowtest: count %s: %v", table, err)
	}
	return n
}

// Exec runs SQL with search_path set to the test schema (trusted test code
// only), in a transaction of its own so that the setting does not outlive
// it (through a transaction-mode pooler a session setting would leak into
// another client's session).
func (db *DB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", db.Schema); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql, args...)
		return err
	})
	if err != nil {
		t.Fatalf("pgflowtest: exec %q: %v", sql, err)
	}
}

// NewPoolOn opens another pool on db's database (as a separate process
// would have), closed when t ends.
func NewPoolOn(t testing.TB, db *DB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := poolConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
