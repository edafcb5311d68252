package migrate_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/migrate"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pgflowtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestUpIsConcurrentSafeAndIdempotent(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	// The process id too: two test processes started together (scripts/test
	// runs the package twice side by side) must not share the schema.
	schema := fmt.Sprintf("pgflow_migrate_%s_%d", time.Now().Format("150405_000000"), os.Getpid())
	t.Cleanup(func() { pgflowtest.DropSchema(t, schema) })

	const racers = 4
	var wg sync.WaitGroup
	results := make([]migrate.Result, racers)
	errs := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = migrate.Up(ctx, pool, schema)
		}()
	}
	wg.Wait()
	applied := 0
	for i := range racers {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if results[i].Version != migrate.Latest() {
			t.Fatalf("racer %d ended at version %d", i, results[i].Version)
		}
		applied += len(results[i].Applied)
	}
	all, err := migrate.All()
	if err != nil {
		t.Fatal(err)
	}
	if applied != len(all) {
		t.Fatalf("%d migrations applied in total by %d racers, want each once (%d)", applied, racers, len(all))
	}
	again, err := migrate.Up(ctx, pool, schema)
	if err != nil || len(again.Applied) != 0 {
		t.Fatalf("second run applied %v, err %v", again.Applied, err)
	}
	v, err := migrate.Version(ctx, pool, schema)
	if err != nil || v != migrate.Latest() {
		t.Fatalf("Version = %d, %v", v, err)
	}
	if v, err := migrate.Version(ctx, pool, "pgflow_never_installed"); err != nil || v != 0 {
		t.Fatalf("Version of an empty schema = %d, %v", v, err)
	}
}

func TestUpRejectsBadSchemaName(t *testing.T) {
	pool := newPool(t)
	if _, err := migrate.Up(context.Background(), pool, `x"; DROP SCHEMA public; --`); err == nil {
		t.Fatal("accepted a schema name with SQL in it")
	}
}
