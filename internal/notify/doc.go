// Package notify carries pgflow's wake-ups over PostgreSQL LISTEN/NOTIFY.
//
// Sender debounces the publishing side: NOTIFY takes a database-wide lock at
// commit, so publishes that land within one debounce window share a single
// notification per queue. Listener holds one dedicated connection that
// LISTENs, hands each payload (a queue name) to a callback, and reconnects
// with backoff when the connection is lost, telling its owner so consumers
// can look for work they may have missed meanwhile.
package notify
