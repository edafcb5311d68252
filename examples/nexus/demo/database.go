package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	dir       string
	asUser    string
	bindir    string
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
	bindir, err := findBindir()
	if err != nil {
		return nil, fmt.Errorf("no database: nothing answers at %s, PGFLOW_DATABASE_URL is not set, and %v", Redact(LocalURL), err)
	}
	fmt.Fprintf(say, "nexus: no PostgreSQL at %s; starting a throwaway cluster (binaries in %s)\n", Redact(LocalURL), bindir)
	d, err := startThrowaway(ctx, bindir)
	if err != nil {
		return nil, fmt.Errorf("throwaway cluster: %w", err)
	}
	fmt.Fprintf(say, "nexus: throwaway cluster in %s at %s; it is removed at exit\n", d.dir, d.Redacted())
	return d, nil
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

func findBindir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL's binaries (initdb, pg_ctl) are not installed")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (d *Database) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	bin := filepath.Join(d.bindir, name)
	if d.asUser != "" {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", d.asUser, "--", bin}, args...)...)
	}
	return exec.CommandContext(ctx, bin, args...)
}

func startThrowaway(ctx context.Context, bindir string) (*Database, error) {
	dir, err := os.MkdirTemp("", "nexus-pg-")
	if err != nil {
		return nil, err
	}
	d := &Database{Throwaway: true, dir: dir, bindir: bindir}
	fail := func(err error) (*Database, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("running as root and there is no postgres user to run initdb as: %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return fail(err)
		}
		d.asUser = "postgres"
	}
	data := filepath.Join(dir, "data")
	if out, err := d.command(ctx, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v: %s", err, lastLines(out)))
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50", port, dir)
	if out, err := d.command(ctx, "pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("pg_ctl start: %v: %s", err, lastLines(out)))
	}
	d.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return d, nil
}

// Close stops and removes a throwaway cluster; it does nothing otherwise.
func (d *Database) Close() error {
	if !d.Throwaway || d.dir == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := d.command(ctx, "pg_ctl", "-D", filepath.Join(d.dir, "data"), "-m", "fast", "-w", "stop").CombinedOutput()
	if err != nil {
		err = fmt.Errorf("pg_ctl stop: %v: %s", err, lastLines(out))
	}
	if rmErr := os.RemoveAll(d.dir); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	d.dir = ""
	return err
}

func lastLines(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}
