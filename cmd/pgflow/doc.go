// Command pgflow operates pgflow queues: create the schema, inspect queues
// and the dead-letter queue, pause and resume, publish to queues and topics
// (pgflow topics: list, subscribe, unsubscribe, publish), benchmark and
// serve metrics with a read-only dashboard.
//
// # Installing
//
// The command is a Go module of its own (github.com/pgflow-go/pgflow/cmd/pgflow),
// so that the library's module needs only pgx. From a checkout:
//
//	go run ./cmd/pgflow --help
//	go install ./cmd/pgflow
//
// # Connection
//
// Every command takes the database from --database-url or
// PGFLOW_DATABASE_URL, and the schema from --schema or PGFLOW_SCHEMA.
//
// # Output and exit codes
//
// Every command has --help with examples and --json for scripts. Exit codes:
// 0 ok, 1 failure, 2 usage, 3 not found (also: a topic publish without
// subscribers), 4 not confirmed, 5 partial.
//
// # Layout
//
// Commands live one per file (*_cmd.go) and register themselves on the root
// command; golden files under testdata/ pin their output. The benchmark
// workloads live in internal/bench.
package main
