// Package demo runs the example's two services end to end in one process:
// CentralCloud and N Singularity instances, each its own pgflow client
// configured from its pgflow.yaml, exchanging the six queues through one
// PostgreSQL schema.
//
// # Accounting
//
// It counts every message through the clients' event
// hooks and the database, and its report proves nothing was lost:
// for every queue, published = handled + dead-lettered + in flight.
//
// # Database
//
// OpenDatabase finds a server (a URL, the local server, or a throwaway
// cluster started with initdb/pg_ctl and removed at exit).
package demo
