package pgcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pgflow-go/pgflow/internal/freeport"
)

// Cluster is a running (or stopped) throwaway cluster.
type Cluster struct {
	Dir  string
	Port int
	bin  string
	as   string // user to run as, "" for the current one
	opts Options
}

// Options tune StartWith and StartStandby.
type Options struct {
	// MaxConnections is max_connections. Default 50.
	MaxConnections int
	// Settings are more server settings, "name=value" each, given to the
	// server with -c at every start.
	Settings []string
}

// Available reports whether PostgreSQL's server binaries are installed.
func Available() bool {
	bin, err := binDir()
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(bin, "initdb"))
	return err == nil
}

func binDir() (string, error) {
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		return "", fmt.Errorf("pgcluster: pg_config --bindir: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Start creates a cluster in a new temporary directory and starts it.
func Start(ctx context.Context) (*Cluster, error) { return StartWith(ctx, Options{}) }

// StartWith is Start with options.
func StartWith(ctx context.Context, o Options) (*Cluster, error) {
	c, err := newDir(o)
	if err != nil {
		return nil, err
	}
	if err := c.run(ctx, "initdb", "-D", c.data(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"); err != nil {
		c.Remove()
		return nil, err
	}
	if err := c.Restart(ctx); err != nil {
		c.Remove()
		return nil, err
	}
	return c, nil
}

// StartStandby makes a streaming standby of primary (pg_basebackup -R:
// standby.signal and primary_conninfo written for it) in a new directory
// on a port of its own, starts it and waits until it accepts connections.
// Its walreceiver connects with application_name "standby", which
// synchronous_standby_names may name.
func (primary *Cluster) StartStandby(ctx context.Context, o Options) (*Cluster, error) {
	c, err := newDir(o)
	if err != nil {
		return nil, err
	}
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=standby", primary.Port)
	if err := c.run(ctx, "pg_basebackup", "-D", c.data(), "-d", conninfo, "-R", "-X", "stream", "--no-sync", "-c", "fast"); err != nil {
		c.Remove()
		return nil, err
	}
	if err := c.Restart(ctx); err != nil {
		c.Remove()
		return nil, err
	}
	return c, nil
}

// Promote ends recovery on a standby (pg_ctl promote) and waits until it
// accepts writes.
func (c *Cluster) Promote(ctx context.Context) error {
	return c.run(ctx, "pg_ctl", "-D", c.data(), "-w", "-t", "60", "promote")
}

// newDir creates the directory (owned by the server's user) and picks a
// port.
func newDir(o Options) (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgflow-cluster-")
	if err != nil {
		return nil, err
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 50
	}
	c := &Cluster{Dir: dir, bin: bin, opts: o}
	if os.Geteuid() == 0 {
		c.as = "postgres"
		u, err := user.Lookup("postgres")
		if err != nil {
			c.Remove()
			return nil, fmt.Errorf("pgcluster: running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			c.Remove()
			return nil, err
		}
	}
	if c.Port, err = freeport.Loopback(); err != nil {
		c.Remove()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) data() string { return filepath.Join(c.Dir, "data") }

// URL returns a connection URL for database db.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// Restart starts the server (again) and waits until it accepts connections.
func (c *Cluster) Restart(ctx context.Context) error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=%d", c.Port, c.Dir, c.opts.MaxConnections)
	for _, set := range c.opts.Settings {
		opts += " -c " + set
	}
	return c.run(ctx, "pg_ctl", "-D", c.data(), "-o", opts, "-l", filepath.Join(c.Dir, "server.log"), "-w", "-t", "60", "start")
}

// Stop shuts the server down ("fast": connections are cut, like a crash
// from the clients' point of view).
func (c *Cluster) Stop(ctx context.Context) error {
	return c.run(ctx, "pg_ctl", "-D", c.data(), "-m", "fast", "-w", "-t", "60", "stop")
}

// Crash stops the server the way a power cut would stop its processes
// ("immediate": no checkpoint, and WAL still in shared memory, such as that
// of transactions committed without waiting for a flush, is lost).
func (c *Cluster) Crash(ctx context.Context) error {
	return c.run(ctx, "pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "-t", "60", "stop")
}

// Remove stops the server if it runs and deletes the directory.
func (c *Cluster) Remove() {
	if _, err := os.Stat(filepath.Join(c.data(), "postmaster.pid")); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = c.run(ctx, "pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop")
		cancel()
	}
	_ = os.RemoveAll(c.Dir)
}

func (c *Cluster) run(ctx context.Context, tool string, args ...string) error {
	path := filepath.Join(c.bin, tool)
	var cmd *exec.Cmd
	if c.as != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.as, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = c.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgcluster: %s %s: %w\n%s", tool, strings.Join(args, " "), err, out)
	}
	return nil
}

// ArchiveDir is where a cluster started with EnableArchiving archives its
// WAL: a directory inside Dir.
func (c *Cluster) ArchiveDir() string { return filepath.Join(c.Dir, "wal-archive") }

// EnableArchiving turns on WAL archiving into ArchiveDir and restarts the
// server, for point-in-time recovery tests.
func (c *Cluster) EnableArchiving(ctx context.Context) error {
	conf := fmt.Sprintf("\narchive_mode = on\narchive_command = 'mkdir -p %s && cp %%p %s/%%f'\n", c.ArchiveDir(), c.ArchiveDir())
	if err := c.appendConf(conf); err != nil {
		return err
	}
	if err := c.Stop(ctx); err != nil {
		return err
	}
	return c.Restart(ctx)
}

// appendConf appends lines to the data directory's postgresql.auto.conf,
// which stays owned by the server's user.
func (c *Cluster) appendConf(lines string) error {
	f, err := os.OpenFile(filepath.Join(c.data(), "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(lines); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// BaseBackup takes a base backup of the running cluster (pg_basebackup,
// WAL streamed along) into a new directory and returns it as a cluster that
// is not started, on a port of its own. Before starting it, RecoverTo sets
// the point in time it recovers to from c's archive.
func (c *Cluster) BaseBackup(ctx context.Context) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "pgflow-cluster-")
	if err != nil {
		return nil, err
	}
	b := &Cluster{Dir: dir, bin: c.bin, as: c.as}
	if b.as != "" {
		u, err := user.Lookup(b.as)
		if err != nil {
			b.Remove()
			return nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			b.Remove()
			return nil, err
		}
	}
	if b.Port, err = freeport.Loopback(); err != nil {
		b.Remove()
		return nil, err
	}
	if err := b.run(ctx, "pg_basebackup", "-D", b.data(), "-d", c.URL("postgres"), "-X", "stream", "-c", "fast"); err != nil {
		b.Remove()
		return nil, err
	}
	return b, nil
}

// RecoverTo makes the next start of a cluster made by BaseBackup replay
// from's WAL archive up to the restore point named target, then promote.
// The restored cluster does not archive.
func (c *Cluster) RecoverTo(from *Cluster, target string) error {
	conf := fmt.Sprintf("\narchive_mode = off\nrestore_command = 'cp %s/%%f %%p'\nrecovery_target_name = '%s'\nrecovery_target_action = 'promote'\n",
		from.ArchiveDir(), target)
	if err := c.appendConf(conf); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(c.data(), "recovery.signal"))
	if err != nil {
		return err
	}
	return f.Close()
}
