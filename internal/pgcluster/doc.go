// Package pgcluster runs a throwaway PostgreSQL cluster in a temporary
// directory, on a free port of its own, for tests that must stop, crash or
// restart the server, and for the demo when no server answers. It never
// touches any other cluster.
//
// # Requirements
//
// It uses initdb and pg_ctl from `pg_config --bindir`; Available reports
// whether they are installed, and tests skip when they are not. PostgreSQL
// refuses to run as root, so when the process is root the server runs as the
// postgres user (via runuser) and the directory is handed to that user.
//
// # Lifecycle
//
// Start creates and starts a cluster; URL names one of its databases. Stop
// shuts it down cleanly, Crash stops it the way a power cut would (immediate
// mode: no checkpoint, recovery at the next start), Restart starts it again
// on the same port and directory. Remove stops the server if it still runs
// and deletes the directory; call it (usually with t.Cleanup) for every
// cluster started. StartWith sets max_connections and other settings.
//
// # Replication
//
// StartStandby makes a streaming standby of a running cluster with
// pg_basebackup -R (its walreceiver's application_name is "standby", for
// synchronous_standby_names) and starts it; Promote turns it into a primary.
// Crash the primary and Promote the standby to fail over.
//
// # Point-in-time recovery
//
// EnableArchiving makes a cluster archive its WAL into ArchiveDir;
// BaseBackup copies a running cluster into a new, stopped one; RecoverTo
// makes that copy replay the archive up to a named restore point
// (pg_create_restore_point) when it is started with Restart.
package pgcluster
