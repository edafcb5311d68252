package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflow-go/pgflow/internal/pgcluster"
)

// LocalURL is the local server tried when no URL is given.
const LocalURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Database is where a run goes: a given URL, the local server, or a
// throwaway cluster this process started.
type Database struct {
	URL string
	// Throwaway is set when the cluster was started for this run; Close
	// stops it and removes its directory.
	Throwaway bool
	cluster   *pgcluster.Cluster
}

// Redacted returns the URL without its password.
func (d *Database) Redacted() string { return Redact(d.URL) }

// Redact removes the password from a URL.
func Redact(url string) string {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return "(unparsable url)"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// OpenDatabase picks the database: url if not empty; else the local server
// if it answers; else, if PostgreSQL's binaries are installed and
// allowThrowaway, a throwaway cluster in a temporary directory (say tells
// the user). Close it at exit.
func OpenDatabase(ctx context.Context, url string, allowThrowaway bool, say io.Writer) (*Database, error) {
	if url != "" {
		return &Database{URL: url}, nil
	}
	if ping(ctx, LocalURL) == nil {
		return &Database{URL: LocalURL}, nil
	}
	if !allowThrowaway {
		return nil, fmt.Errorf("no database: set PGFLOW_DATABASE_URL or --database-url (nothing answers at %s)", Redact(LocalURL))
	}
	if !pgcluster.Available() {
		return nil, fmt.Errorf("no database: nothing answers at %s, PGFLOW_DATABASE_URL is not set, and PostgreSQL's binaries (initdb, pg_ctl) are not installed", Redact(LocalURL))
	}
	fmt.Fprintf(say, "nexus: no PostgreSQL at %s; starting a throwaway cluster\n", Redact(LocalURL))
	d, err := startThrowaway(ctx)
	if err != nil {
		return nil, fmt.Errorf("throwaway cluster: %w", err)
	}
	fmt.Fprintf(say, "nexus: throwaway cluster in %s at %s; it is removed at exit\n", d.cluster.Dir, d.Redacted())
	return d, nil
}

func startThrowaway(ctx context.Context) (*Database, error) {
	c, err := pgcluster.Start(ctx)
	if err != nil {
		return nil, err
	}
	return &Database{URL: c.URL("postgres"), Throwaway: true, cluster: c}, nil
}

func ping(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// Close stops and removes a throwaway cluster; it does nothing otherwise.
func (d *Database) Close() error {
	if d.cluster == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := d.cluster.Stop(ctx)
	d.cluster.Remove()
	d.cluster = nil
	if err != nil {
		return errors.Join(errors.New("stopping the throwaway cluster"), err)
	}
	return nil
}
