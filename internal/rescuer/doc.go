// Package rescuer takes back expired leases on a schedule.
//
// A lease expires when its consumer neither finished nor extended it: the
// process died, froze or lost its connection, or its handler is stuck past
// its timeout. Every interval the rescuer calls Rescue, which hands such
// messages back as failed attempts (retried at once, or dead-lettered) in
// the database's one function for that change.
package rescuer
