package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

// Exit codes scripts can rely on.
const (
	exitOK       = 0
	exitFailure  = 1 // the operation failed (database error, …)
	exitUsage    = 2 // bad flags or arguments
	exitNotFound = 3 // the queue or message does not exist
)

// globals holds the flags every command shares.
var globals struct {
	databaseURL string
	schema      string
	json        bool
}

var rootCmd = &cobra.Command{
	Use:           "pgflow",
	Short:         "Durable message queues on PostgreSQL",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	f := rootCmd.PersistentFlags()
	f.StringVar(&globals.databaseURL, "database-url", "", "PostgreSQL URL (default $PGFLOW_DATABASE_URL)")
	f.StringVar(&globals.schema, "schema", "", "schema holding pgflow's tables (default $PGFLOW_SCHEMA or public)")
	f.BoolVar(&globals.json, "json", false, "print JSON instead of tables")
}

// usageError marks errors that should exit with exitUsage.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func databaseURL() (string, error) {
	if globals.databaseURL != "" {
		return globals.databaseURL, nil
	}
	if u := os.Getenv("PGFLOW_DATABASE_URL"); u != "" {
		return u, nil
	}
	return "", usagef("no database: pass --database-url or set PGFLOW_DATABASE_URL")
}

func schemaName() string {
	if globals.schema != "" {
		return globals.schema
	}
	if s := os.Getenv("PGFLOW_SCHEMA"); s != "" {
		return s
	}
	return "public"
}

// openPool connects to the configured database.
func openPool(ctx context.Context) (*pgxpool.Pool, error) {
	url, err := databaseURL()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, usagef("bad database url: %v", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return pool, nil
}

// openClient connects and returns a client that owns its pool.
func openClient(ctx context.Context) (*pgflow.Client, error) {
	url, err := databaseURL()
	if err != nil {
		return nil, err
	}
	return pgflow.Connect(ctx, url, pgflow.Config{Schema: schemaName()})
}

func exitCode(err error) int {
	var ue usageError
	var ie *pgflow.InputError
	var coded interface{ ExitCode() int }
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &coded):
		return coded.ExitCode()
	case errors.Is(err, pgflow.ErrDLQMessageNotFound):
		return exitNotFound
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, pgflow.ErrQueueNotFound), errors.Is(err, pgflow.ErrNoSubscribers):
		return exitNotFound
	case errors.As(err, &ie):
		return exitUsage
	default:
		return exitFailure
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := rootCmd.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, errorLine(err))
	}
	stop()
	os.Exit(exitCode(err))
}
