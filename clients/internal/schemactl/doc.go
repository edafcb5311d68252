// Command schemactl creates or drops a pgflow schema for the Node and Python
// clients' tests, which have no migration runner of their own: pgflow's
// schema is the Go migrate package's to create.
//
// # Usage
//
//	go run ./clients/internal/schemactl -url postgres://… -schema name up
//	go run ./clients/internal/schemactl -url postgres://… -schema name drop
//
// up runs migrate.Up (creating the schema); drop drops the schema with
// everything in it. -url defaults to $PGFLOW_TEST_DATABASE_URL.
//
// # Why a command
//
// The clients' test runners (node --test, python -m unittest) start it once
// per test file or class; `go run` caches the build.
package main
