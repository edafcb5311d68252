// Package schema validates and quotes the PostgreSQL schema name that holds
// pgflow's tables, and renders SQL templates that refer to it.
//
// # Names
//
// Validate accepts lower-case letters, digits and underscores, starting with
// a letter or underscore, at most 63 bytes (PostgreSQL's identifier limit);
// Default is "public". Restricting the form keeps the name usable unquoted in
// logs and CLI output and rules out any surprise in the SQL it is put into.
//
// # SQL
//
// Quote returns a schema name as a quoted identifier. Render replaces the
// {{schema}} placeholder of pgflow's SQL files (migrations and package query)
// with the quoted name; it runs once per client or migration, never on a hot
// path.
package schema
