// Command nexus runs pgflow's worked example, two services on pgflow:
// CentralCloud and N Singularity instances exchanging six queues through one
// PostgreSQL.
//
// # Running it
//
//	go run ./examples/nexus/cmd/nexus                      # all in one process, 20 s, 3 instances
//	go run ./examples/nexus/cmd/nexus --instances 5 --duration 1m --json
//	go run ./examples/nexus/cmd/nexus centralcloud         # separate processes,
//	go run ./examples/nexus/cmd/nexus singularity --instance-id 1   # same database
//
// # Database
//
// The database is --database-url, else PGFLOW_DATABASE_URL, else the local
// server; the all-in-one run starts a throwaway cluster when none answers
// and PostgreSQL's binaries are installed.
package main
