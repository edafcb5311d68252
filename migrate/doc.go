// Package migrate creates and upgrades pgflow's tables.
//
// # Migrations
//
// Migrations are plain SQL files embedded in the binary (sql/NNNN_name.sql),
// applied in order, each in its own transaction, and recorded in the table
// pgflow_schema_migrations. All lists them; Latest is the version they bring
// a schema to, Version the version a schema has.
//
// # Running them
//
// Up creates the schema if needed and applies what it lacks; `pgflow init`
// calls it. Running it again is a no-op. Each migration's transaction first
// takes a transaction-scoped advisory lock keyed on the schema and reads the
// version under it, so two processes migrating at the same time are safe:
// the second waits, then finds nothing to do. Nothing depends on the
// session (no session lock, no prepared statement), so Up works through a
// transaction-mode pooler such as PgBouncer.
package migrate
