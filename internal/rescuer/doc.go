// Package rescuer takes back expired leases on a schedule.
//
// # What expires
//
// A lease expires when its consumer neither finished nor extended it: the
// process died, froze or lost its connection, or its handler is stuck past
// its timeout and grace period (the executor stops extending it). A
// consumer that is gone (its session ended and its heartbeat stopped) has
// its leases taken back before they expire.
//
// # What Run does
//
// Every interval Run calls Rescue, which hands such messages (and those of
// gone consumers) back as failed attempts (retried at once, or
// dead-lettered) through the database's functions for that change, until
// its context is done. A failed call is logged and tried again at the next
// tick.
package rescuer
