// Package pgbouncer runs a throwaway PgBouncer in front of a PostgreSQL
// server, on a free port of its own, for tests and benchmarks that must go
// through a real connection pooler.
//
// # Requirements
//
// It runs the pgbouncer binary from PATH or /usr/sbin (Debian's package);
// Available reports whether it is installed, and tests skip when it is not.
// PgBouncer refuses to run as root, so when the process is root it runs as
// the postgres user.
//
// # Lifecycle
//
// Start writes a configuration (auth_type any, every database routed to the
// server given, the pool mode asked for, no unix socket, log to stderr) into
// a temporary directory, starts pgbouncer, waits until it accepts
// connections and deletes the directory: pgbouncer has read everything it
// needs. The process gets SIGKILL when its parent dies, so a test binary that
// exits without calling Stop leaves nothing behind. URL rewrites a server URL
// to go through the pooler; Stop ends the process.
package pgbouncer
