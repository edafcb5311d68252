// Package rescuer takes back expired leases on a schedule.
//
// # What expires
//
// A lease expires when its consumer neither finished nor extended it: the
// process died, froze or lost its connection, or its handler is stuck past
// its timeout and grace period (the executor stops extending it).
//
// # What Run does
//
// Every interval Run calls Rescue, which hands such messages back as failed
// attempts (retried at once, or dead-lettered) through the database's one
// function for that change, until its context is done. A failed call is
// logged and tried again at the next tick.
package rescuer
