package pgbouncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/pgbouncer"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// Through the bouncer, a connection's cancel key (what the pooler made up)
// is not the backend's pid: what pgflow.DetectPooler relies on.
func TestStartServesConnections(t *testing.T) {
	if !pgbouncer.Available() {
		t.Skip("pgbouncer is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range []pgbouncer.Mode{pgbouncer.Transaction, pgbouncer.Session} {
		t.Run(string(mode), func(t *testing.T) {
			b, err := pgbouncer.Start(ctx, pgbouncer.Options{Mode: mode, PoolSize: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Stop()
			u, err := b.URL(pgflowtest.DatabaseURL())
			if err != nil {
				t.Fatal(err)
			}
			conn, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Fatalf("connect through pgbouncer: %v\n%s", err, b.Log())
			}
			defer conn.Close(ctx)
			var pid uint32
			if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&pid); err != nil {
				t.Fatal(err)
			}
			if pid == conn.PgConn().PID() {
				t.Fatalf("backend pid %d equals the cancel key's: not going through pgbouncer", pid)
			}
		})
	}
}
