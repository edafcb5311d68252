package migrate

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
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
	// Versions rise strictly; a gap is allowed, so a branch that adds a
	// later number builds and migrates before the numbers below it land.
	for i := range out {
		if out[i].Version < 1 || (i > 0 && out[i].Version == out[i-1].Version) {
			return nil, fmt.Errorf("migrate: migration versions must be positive and unique; found %d at position %d", out[i].Version, i+1)
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

	key := lockKey(schemaName)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return res, fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		// A fresh context: the caller's may be cancelled, and the lock must go.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key)
	}()

	q := schema.Quote(schemaName)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+q); err != nil {
		return res, fmt.Errorf("migrate: create schema %s: %w", schemaName, err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+q+`.pgflow_schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return res, fmt.Errorf("migrate: create migrations table: %w", err)
	}
	current, err := version(ctx, conn.Conn(), q)
	if err != nil {
		return res, err
	}
	if latest := all[len(all)-1].Version; current > latest {
		return res, fmt.Errorf("migrate: schema %s is at version %d, newer than this binary knows (%d); upgrade pgflow", schemaName, current, latest)
	}
	// Every migration not recorded yet, in order: one numbered below the
	// schema's version that arrived later (a gap filled) is applied too.
	rows, err := conn.Query(ctx, `SELECT version FROM `+q+`.pgflow_schema_migrations`)
	if err != nil {
		return res, fmt.Errorf("migrate: read applied versions: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return res, fmt.Errorf("migrate: read applied versions: %w", err)
	}
	for _, m := range all {
		if slices.Contains(done, int32(m.Version)) {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, schema.Render(m.SQL, schemaName)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO `+q+`.pgflow_schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("migrate: apply %04d_%s: %w", m.Version, m.Name, err)
		}
		res.Applied = append(res.Applied, m)
		current = max(current, m.Version)
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
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, schema.Quote(schemaName)+".pgflow_schema_migrations").Scan(&exists); err != nil {
		return 0, err
	}
	if !exists {
		return 0, nil
	}
	return version(ctx, conn.Conn(), schema.Quote(schemaName))
}

func version(ctx context.Context, conn *pgx.Conn, quoted string) (int, error) {
	var v int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+quoted+`.pgflow_schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("migrate: read version: %w", err)
	}
	return v, nil
}
