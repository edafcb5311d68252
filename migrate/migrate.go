package migrate

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/internal/schema"
)

//go:embed sql/*.sql
var files embed.FS

// Migration is one versioned schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string // with the {{schema}} placeholder
}

// Result says what Up did.
type Result struct {
	Schema  string
	Applied []Migration // applied by this call, in order
	Version int         // the schema's version after the call
}

// All returns the embedded migrations in version order.
func All() ([]Migration, error) {
	entries, err := fs.ReadDir(files, "sql")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		if !ok {
			return nil, fmt.Errorf("migrate: bad migration file name %q", name)
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migrate: bad migration file name %q: %w", name, err)
		}
		body, err := files.ReadFile(path.Join("sql", name))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: rest, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := range out {
		if out[i].Version != i+1 {
			return nil, fmt.Errorf("migrate: migrations must be numbered 1, 2, 3…; found %d at position %d", out[i].Version, i+1)
		}
	}
	return out, nil
}

// Latest is the version the embedded migrations bring a schema to.
func Latest() int {
	all, err := All()
	if err != nil || len(all) == 0 {
		return 0
	}
	return all[len(all)-1].Version
}

// lockKey derives the advisory lock key for a schema, so migrations of
// different schemas in one database do not wait for each other.
func lockKey(schemaName string) int64 {
	h := fnv.New64a()
	h.Write([]byte("pgflow-migrate:" + schemaName))
	return int64(h.Sum64())
}

// Up applies every migration the schema does not have yet. It creates the
// schema if needed. Running it again is a no-op.
func Up(ctx context.Context, pool *pgxpool.Pool, schemaName string) (Result, error) {
	res := Result{Schema: schemaName}
	if err := schema.Validate(schemaName); err != nil {
		return res, err
	}
	all, err := All()
	if err != nil {
		return res, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Release()

	// Each migration commits in a transaction of its own that first takes a
	// transaction-scoped advisory lock and reads the version under it: no
	// session state, so this works through a transaction-mode pooler (a
	// session lock could be taken on one server session and released on
	// another), and two processes migrating at once apply each step once.
	// Statements carry QueryExecModeExec: no prepared statement is kept.
	key := lockKey(schemaName)
	q := schema.Quote(schemaName)
	current := 0
	for {
		var applied *Migration
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", pgx.QueryExecModeExec, key); err != nil {
				return fmt.Errorf("migrate: take advisory lock: %w", err)
			}
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+q); err != nil {
				return fmt.Errorf("migrate: create schema %s: %w", schemaName, err)
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+q+`.pgflow_schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
				return fmt.Errorf("migrate: create migrations table: %w", err)
			}
			v, err := version(ctx, tx, q)
			if err != nil {
				return err
			}
			current = v
			if current > len(all) {
				return fmt.Errorf("migrate: schema %s is at version %d, newer than this binary knows (%d); upgrade pgflow", schemaName, current, len(all))
			}
			if current == len(all) {
				return nil
			}
			m := all[current]
			if _, err := tx.Exec(ctx, schema.Render(m.SQL, schemaName)); err != nil {
				return fmt.Errorf("migrate: apply %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.pgflow_schema_migrations (version, name) VALUES ($1, $2)`, pgx.QueryExecModeExec, m.Version, m.Name); err != nil {
				return fmt.Errorf("migrate: apply %04d_%s: %w", m.Version, m.Name, err)
			}
			applied = &m
			return nil
		})
		if err != nil {
			return res, err
		}
		if applied == nil {
			break
		}
		res.Applied = append(res.Applied, *applied)
		current = applied.Version
	}
	res.Version = current
	return res, nil
}

// Version returns the schema's applied migration version, 0 when pgflow was
// never installed there.
func Version(ctx context.Context, pool *pgxpool.Pool, schemaName string) (int, error) {
	if err := schema.Validate(schemaName); err != nil {
		return 0, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.QueryExecModeExec, schema.Quote(schemaName)+".pgflow_schema_migrations").Scan(&exists); err != nil {
		return 0, err
	}
	if !exists {
		return 0, nil
	}
	return version(ctx, conn, schema.Quote(schemaName))
}

func version(ctx context.Context, conn interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, quoted string) (int, error) {
	var v int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+quoted+`.pgflow_schema_migrations`, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
		return 0, fmt.Errorf("migrate: read version: %w", err)
	}
	return v, nil
}
