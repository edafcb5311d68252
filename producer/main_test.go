package producer_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/migrate"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

var example struct {
	once   sync.Once
	schema string
}

// exampleSchema migrates a schema for the runnable examples; TestMain drops it.
func exampleSchema() string {
	example.once.Do(func() {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		name := "producer_example_" + hex.EncodeToString(b)
		ctx := context.Background()
		pool, err := pgxpool.New(ctx, pgflowtest.DatabaseURL())
		if err != nil {
			panic(err)
		}
		defer pool.Close()
		if _, err := migrate.Up(ctx, pool, name); err != nil {
			panic(err)
		}
		example.schema = name
	})
	return example.schema
}

func TestMain(m *testing.M) {
	code := m.Run()
	if example.schema != "" {
		ctx := context.Background()
		if conn, err := pgx.Connect(ctx, pgflowtest.DatabaseURL()); err == nil {
			_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{example.schema}.Sanitize()+" CASCADE")
			_ = conn.Close(ctx)
		}
	}
	os.Exit(code)
}
