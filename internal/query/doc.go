// Package query holds every SQL statement pgflow runs outside migrations.
//
// # Files
//
// The statements live in sql/*.sql, one named statement per block:
//
//	-- name: ClaimMessages
//	SELECT ... FROM {{schema}}.pgflow_claim($1::text, $2::integer, $3::text, $4::bigint);
//
// Each file groups one area (publish, consume, queues, dlq, admin,
// metrics). The consumer's statements are thin calls of the functions of
// migration 0004, which hold every change of a live message's state in one
// place. Keeping the SQL in files rather than in Go strings lets it be
// read, reviewed and EXPLAINed as SQL; the package's tests prepare every
// statement against a migrated schema, and Get panics on a name that does
// not exist, so a typo fails the tests rather than production.
//
// # Rendering
//
// Statements refer to the schema as {{schema}}; Load renders them for a
// schema once, at client creation, so no SQL is assembled on a hot path and
// queue names and payloads are always sent as parameters. A Set is
// read-only after Load and safe for concurrent use.
package query
