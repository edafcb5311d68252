// Package pgflowtest helps test code that uses pgflow against a real
// PostgreSQL: each call gets a fresh schema with pgflow's tables, dropped when
// the test ends, so tests run in parallel and leave nothing behind.
//
// # Database
//
// The database comes from PGFLOW_TEST_DATABASE_URL, else DefaultDatabaseURL
// (postgres://postgres@127.0.0.1:5432/test).
//
// # Tests
//
// New creates and migrates a schema and returns a DB with a pool on it;
// NewPoolOn opens another pool on the same database, as a second process
// would. Messages and RequirePublished assert on what code under test
// published; Count and Exec reach the tables directly.
//
// # Through PgBouncer
//
// With PGFLOW_TEST_PGBOUNCER=transaction (or session) set, the first New of a
// test binary starts a PgBouncer in that pool mode in front of the test
// server (pgbouncer from PATH or /usr/sbin; it dies with the binary) and
// every pool New and NewPoolOn open goes through it; ClientURL is its URL.
// In transaction mode DB.TransactionPooling is set and the pools prepare no
// statements by name, as pgflow.Config.TransactionPooling requires. A test
// that cannot work through a pooler calls SkipIfPooled with its reason.
//
// # Examples and processes
//
// ExampleSchema gives runnable examples a migrated schema (call RunMain from
// TestMain to drop them afterwards). StartProcess runs one test of the
// current binary in a child process and reads its output line by line, for
// tests that kill a consumer process.
package pgflowtest
