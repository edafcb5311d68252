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
// # Examples and processes
//
// ExampleSchema gives runnable examples a migrated schema (call RunMain from
// TestMain to drop them afterwards). StartProcess runs one test of the
// current binary in a child process and reads its output line by line, for
// tests that kill a consumer process.
package pgflowtest
