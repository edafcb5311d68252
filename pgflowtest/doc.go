// Package pgflowtest helps test code that uses pgflow against a real
// PostgreSQL: each call gets a fresh schema with pgflow's tables, dropped when
// the test ends, so tests run in parallel and leave nothing behind.
//
// The database comes from PGFLOW_TEST_DATABASE_URL, else
// postgres://postgres@127.0.0.1:5432/test.
package pgflowtest
