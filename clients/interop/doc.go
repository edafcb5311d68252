// Package interop tests that Go, Node and Python services share pgflow
// queues: a Go producer, a Node consumer that sends each message on, a
// Python consumer that sends it on again, and a Go consumer at the end,
// each a real process on the real server. The hops forward and acknowledge
// in one transaction (ackTx, ack_tx).
//
// # Running
//
// The test needs node (with the Node client's dependencies, installed with
// `npm ci` in clients/node when missing) and a python3 that imports psycopg
// 3 (/usr/bin/python3 first). Without them it skips, unless CI is set: then
// it fails.
//
// # Layout
//
// It is a module of its own so that scripts/test runs it once, not again on
// the library's one-connection pass; testdata holds the Node and Python
// hops.
package interop
