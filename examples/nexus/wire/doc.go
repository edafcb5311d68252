// Package wire defines what Singularity instances and CentralCloud say to
// each other: the six queues and the JSON payload of each, with the
// validation every handler applies before acting on a message.
package wire
