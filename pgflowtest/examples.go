package pgflowtest

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/internal/schema"
	"github.com/pgflow-go/pgflow/migrate"
)

// Example functions get no *testing.T, so New cannot clean up after them.
// ExampleSchema gives them a migrated schema instead, and RunMain drops every
// such schema when the package's tests end.

var examples struct {
	mu      sync.Mutex
	schemas map[string]string // name -> schema
}

// ExampleSchema returns a migrated schema for the examples that ask for
// name, creating it on first use. It panics on error, as examples cannot
// fail otherwise. Call RunMain from TestMain to drop the schemas afterwards.
func ExampleSchema(name string) string {
	examples.mu.Lock()
	defer examples.mu.Unlock()
	if s, ok := examples.schemas[name]; ok {
		return s
	}
	s := "pgflowtest_ex_" + randomHex(4)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, DatabaseURL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool, s); err != nil {
		panic(err)
	}
	if examples.schemas == nil {
		examples.schemas = map[string]string{}
	}
	examples.schemas[name] = s
	return s
}

// RunMain runs the tests and examples, drops the schemas ExampleSchema
// created, and exits. Use it as the body of TestMain.
func RunMain(m *testing.M) {
	code := m.Run()
	examples.mu.Lock()
	defer examples.mu.Unlock()
	if len(examples.schemas) > 0 {
		ctx := context.Background()
		if conn, err := pgx.Connect(ctx, DatabaseURL()); err == nil {
			for _, s := range examples.schemas {
				_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema.Quote(s)+" CASCADE")
			}
			_ = conn.Close(ctx)
		}
	}
	os.Exit(code)
}
