// Package query holds every SQL statement pgflow runs outside migrations.
//
// The statements live in sql/*.sql, one named statement per block:
//
//	-- name: ClaimMessages
//	SELECT ... FROM {{schema}}.pgflow_claim($1, $2, $3, $4);
//
// Each file groups one area (publish, consume, admin…). The consumer's
// statements are thin calls of the functions of migration 0004, which hold
// every change of a live message's state in one place. Statements refer to
// the schema as {{schema}}; Load renders them for a schema once, at client
// creation, so no SQL is assembled on a hot path.
package query
