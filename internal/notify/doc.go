// Package notify carries pgflow's wake-ups over PostgreSQL LISTEN/NOTIFY.
//
// # Sending
//
// Sender debounces the publishing side: NOTIFY takes a database-wide lock at
// commit, so publishes that land within one debounce window share a single
// notification per queue. Signal never blocks; TakeInline lets the first
// publish after a quiet spell carry its notification in its own transaction,
// so an isolated message wakes consumers without waiting for the debounce.
//
// # Listening
//
// Listener holds one dedicated connection that LISTENs, hands each payload
// (a queue name) to a callback, and reconnects when the connection is lost,
// with backoff capped at MaxRetryDelay (500 ms), so it listens again within
// half a second of the server coming back. Setup runs first on every new
// connection, for state tied to the session (the consumer's session lock);
// with no Channel the Listener only holds the session. Notifications sent
// while nobody listened are lost, so OnConnect tells its owner after every
// (re)connection, and consumers look for work they may have missed
// meanwhile. Polling stays the fallback: a
// lost notification delays a message by at most the poll interval.
//
// # Lifecycle
//
// A Listener runs until its context is cancelled; Sender.Stop sends what is
// pending and ends the sender's goroutine.
package notify
