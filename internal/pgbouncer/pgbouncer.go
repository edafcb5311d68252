package pgbouncer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgflow-go/pgflow/internal/freeport"
)

// Mode is PgBouncer's pool_mode.
type Mode string

// The pool modes pgflow supports.
const (
	Transaction Mode = "transaction"
	Session     Mode = "session"
)

// Options configure Start.
type Options struct {
	// Mode is the pool_mode. Default Transaction.
	Mode Mode
	// Server is host:port of the PostgreSQL server. Default 127.0.0.1:5432.
	Server string
	// User connects to the server (auth_type any ignores the client's user).
	// Default postgres.
	User string
	// PoolSize is default_pool_size: server connections per database and
	// user. Default 10.
	PoolSize int
	// MaxClientConn is max_client_conn. Default 1000.
	MaxClientConn int
}

// Bouncer is a running pgbouncer.
type Bouncer struct {
	Port int
	Mode Mode

	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
	err    error // the process's exit status, set before done closes
}

// Binary returns pgbouncer's path, or "" when it is not installed.
func Binary() string {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer"
	}
	return ""
}

// Available reports whether pgbouncer is installed.
func Available() bool { return Binary() != "" }

// Start starts a pgbouncer and waits until it accepts connections.
func Start(ctx context.Context, o Options) (*Bouncer, error) {
	bin := Binary()
	if bin == "" {
		return nil, errors.New("pgbouncer: not installed (Debian: apt-get install pgbouncer)")
	}
	if o.Mode == "" {
		o.Mode = Transaction
	}
	if o.Mode != Transaction && o.Mode != Session {
		return nil, fmt.Errorf("pgbouncer: pool mode %q: want transaction or session", o.Mode)
	}
	if o.Server == "" {
		o.Server = "127.0.0.1:5432"
	}
	if o.User == "" {
		o.User = "postgres"
	}
	if o.PoolSize <= 0 {
		o.PoolSize = 10
	}
	if o.MaxClientConn <= 0 {
		o.MaxClientConn = 1000
	}
	host, port, err := net.SplitHostPort(o.Server)
	if err != nil {
		return nil, fmt.Errorf("pgbouncer: server %q: %w", o.Server, err)
	}
	listen, err := freeport.Loopback()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgflow-pgbouncer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s user=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = %s
default_pool_size = %d
max_client_conn = %d
ignore_startup_parameters = extra_float_digits
server_login_retry = 1
log_connections = 0
log_disconnections = 0
`, host, port, o.User, listen, o.Mode, o.PoolSize, o.MaxClientConn)
	path := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(path, []byte(ini), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgbouncer: running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
	}
	b := &Bouncer{Port: listen, Mode: o.Mode, cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout = b.stderr
	cmd.Stderr = b.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgbouncer: start: %w", err)
	}
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	// Wait until it listens (or exits).
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(listen)), time.Second)
		if err == nil {
			conn.Close()
			return b, nil
		}
		select {
		case <-b.done:
			return nil, fmt.Errorf("pgbouncer: exited at start: %v\n%s", b.err, b.stderr.String())
		case <-ctx.Done():
			b.Stop()
			return nil, ctx.Err()
		case <-deadline:
			b.Stop()
			return nil, fmt.Errorf("pgbouncer: not listening after 10 s\n%s", b.stderr.String())
		case <-tick.C:
		}
	}
}

// URL rewrites a server URL (postgres://user@host:port/db?...) to go through
// the bouncer, keeping user, database and parameters.
func (b *Bouncer) URL(serverURL string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("pgbouncer: url: %w", err)
	}
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port))
	return u.String(), nil
}

// Log returns what pgbouncer wrote so far.
func (b *Bouncer) Log() string { return b.stderr.String() }

// Stop ends pgbouncer and waits for it to exit.
func (b *Bouncer) Stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGINT) // pgbouncer: safe shutdown, now
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // keep the start, drop floods
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
