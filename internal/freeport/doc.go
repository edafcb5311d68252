// Package freeport picks a TCP port on the loopback interface that no one
// listens on, for the throwaway servers that tests start (a PostgreSQL
// cluster, a PgBouncer) so that they never collide with the shared server or
// with each other.
//
// The port is free when Loopback returns; nothing holds it for the caller, so
// another process may take it before the caller's server binds it.
package freeport
