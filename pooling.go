package pgflow

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A transaction-mode pooler gives each transaction whichever server session
// is free, so a statement prepared by name in one transaction is missing
// (or, prepared again, already present) in the next: pgx's default
// QueryExecModeCacheStatement then fails with `prepared statement
// "stmtcache_…" does not exist`. QueryExecModeCacheDescribe sends every
// statement unnamed, parsed, bound and executed in one round trip, and
// caches only its parameter and result types on the client.

// checkPoolingExecMode refuses the modes that keep a named or unnamed
// prepared statement across two round trips.
func checkPoolingExecMode(m pgx.QueryExecMode) error {
	switch m {
	case pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec:
		return fmt.Errorf("%w: TransactionPooling needs a pool that prepares no statements across round trips, but its DefaultQueryExecMode is %v: "+
			"set pgxpool.Config.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe (or add default_query_exec_mode=cache_describe to the URL), or use pgflow.Connect",
			ErrInvalidConfig, m)
	}
	return nil
}

// DetectPooler reports whether pool's connections pass through a
// connection pooler. It compares the backend pid the server reports with
// the one in the connection's cancel key: they are equal on a direct
// connection and differ behind PgBouncer (in every pool mode: the pooler
// makes up the client's cancel key), Pgpool-II or any pooler that answers
// the startup itself. It cannot tell the pool mode: PgBouncer passes SQL
// through, and its SHOW commands answer only on its admin console, so a
// pooler found is treated as a transaction-mode one, which is safe in
// session mode too (LISTEN is then given up for polling).
func DetectPooler(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("pgflow: detect pooler: %w", err)
	}
	defer conn.Release()
	var pid uint32
	// Simple protocol: no prepared statement, whatever the pool's mode.
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&pid); err != nil {
		return false, fmt.Errorf("pgflow: detect pooler: %w", err)
	}
	return pid != conn.Conn().PgConn().PID(), nil
}

// OpenPool opens a pool from pc the way Connect opens its own, for callers
// that tune the pool (MaxConns, tracers) before handing it to New: when
// cfg.TransactionPooling is set, or DetectPooler finds a pooler (then it sets
// cfg.TransactionPooling), the pool prepares no statements
// (QueryExecModeCacheDescribe) unless pc's connection string chose a
// default_query_exec_mode. A server that does not answer yet is taken to be
// direct, with a warning logged. Pass the same cfg to New.
func OpenPool(ctx context.Context, pc *pgxpool.Config, cfg *Config) (*pgxpool.Pool, error) {
	return connectPool(ctx, pc.ConnConfig.ConnString(), pc, cfg)
}

func connectPool(ctx context.Context, databaseURL string, pc *pgxpool.Config, cfg *Config) (*pgxpool.Pool, error) {
	urlChoosesMode := strings.Contains(databaseURL, "default_query_exec_mode")
	if cfg.TransactionPooling && !urlChoosesMode {
		pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgflow: connect: %w", err)
	}
	if cfg.TransactionPooling {
		return pool, nil
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	pooled, err := DetectPooler(ctx, pool)
	if err != nil {
		// Connect does not need the server up; nor does it need to know.
		log.Warn("pgflow: could not ask the server whether a pooler stands in between; assuming none (set Config.TransactionPooling behind one)", "err", err)
		return pool, nil
	}
	if !pooled {
		return pool, nil
	}
	cfg.TransactionPooling = true
	log.Info("pgflow: connections pass through a pooler; using no prepared statements, no LISTEN and no session state (Config.TransactionPooling)")
	if urlChoosesMode || checkPoolingExecMode(pc.ConnConfig.DefaultQueryExecMode) == nil {
		return pool, nil
	}
	pool.Close()
	pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgflow: connect: %w", err)
	}
	return pool, nil
}
