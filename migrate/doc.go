// Package migrate creates and upgrades pgflow's tables.
//
// Migrations are plain SQL files embedded in the binary (sql/NNNN_name.sql),
// applied in order, each in its own transaction, and recorded in the table
// pgflow_schema_migrations. The whole run holds a transaction-independent
// advisory lock keyed on the schema, so two processes running `pgflow init`
// at the same time are safe: the second waits, then finds nothing to do.
package migrate
