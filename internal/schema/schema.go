package schema

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Default is the schema used when none is configured.
const Default = "public"

var namePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate reports whether name is an acceptable schema name: lower-case
// letters, digits and underscores, starting with a letter or underscore, at
// most 63 bytes (PostgreSQL's identifier limit).
func Validate(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("pgflow: invalid schema name %q: want 1-63 characters of [a-z0-9_], starting with a letter or underscore", name)
	}
	return nil
}

// Quote returns name as a quoted SQL identifier.
func Quote(name string) string {
	return pgx.Identifier{name}.Sanitize()
}

// Render replaces every {{schema}} placeholder in sql with the quoted schema.
func Render(sql, name string) string {
	return strings.ReplaceAll(sql, "{{schema}}", Quote(name))
}
