// Package query holds every SQL statement pgflow runs outside migrations.
//
// The statements live in sql/*.sql, one named statement per block:
//
//	-- name: ClaimMessages
//	WITH next AS (...) UPDATE ...
//
// Each file groups one area (publish, consume, admin…). Statements refer to
// the schema as {{schema}}; Load renders them for a schema once, at client
// creation, so no SQL is assembled on a hot path.
package query
