package query

import (
	"bufio"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"

	"github.com/pgflow-go/pgflow/internal/schema"
)

//go:embed sql/*.sql
var files embed.FS

// Set is the full set of named statements rendered for one schema.
type Set struct {
	schema string
	stmts  map[string]string
}

var (
	parseOnce sync.Once
	parsed    map[string]string
	parseErr  error
)

func parseAll() (map[string]string, error) {
	parseOnce.Do(func() {
		parsed = map[string]string{}
		entries, err := fs.ReadDir(files, "sql")
		if err != nil {
			parseErr = err
			return
		}
		for _, e := range entries {
			body, err := files.ReadFile(path.Join("sql", e.Name()))
			if err != nil {
				parseErr = err
				return
			}
			if err := parseFile(e.Name(), string(body), parsed); err != nil {
				parseErr = err
				return
			}
		}
	})
	return parsed, parseErr
}

func parseFile(file, body string, into map[string]string) error {
	var name string
	var buf strings.Builder
	flush := func() error {
		if name == "" {
			return nil
		}
		stmt := strings.TrimSpace(buf.String())
		if stmt == "" {
			return fmt.Errorf("query: %s: statement %q is empty", file, name)
		}
		if _, dup := into[name]; dup {
			return fmt.Errorf("query: %s: statement %q defined twice", file, name)
		}
		into[name] = strings.TrimSuffix(stmt, ";")
		buf.Reset()
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "-- name:"); ok {
			if err := flush(); err != nil {
				return err
			}
			name = strings.TrimSpace(rest)
			continue
		}
		if name != "" {
			buf.WriteString(line)
			buf.WriteByte('\n')
		}
	}
	return flush()
}

// Load renders every statement for the schema.
func Load(schemaName string) (*Set, error) {
	if err := schema.Validate(schemaName); err != nil {
		return nil, err
	}
	all, err := parseAll()
	if err != nil {
		return nil, err
	}
	s := &Set{schema: schemaName, stmts: make(map[string]string, len(all))}
	for name, sql := range all {
		s.stmts[name] = schema.Render(sql, schemaName)
	}
	return s, nil
}

// MustLoad is Load for a schema already validated; it panics on error.
func MustLoad(schemaName string) *Set {
	s, err := Load(schemaName)
	if err != nil {
		panic(err)
	}
	return s
}

// Schema is the schema the set was rendered for.
func (s *Set) Schema() string { return s.schema }

// Get returns the named statement. An unknown name is a programming error and
// panics, which the package's tests catch for every name the code uses.
func (s *Set) Get(name string) string {
	sql, ok := s.stmts[name]
	if !ok {
		panic("query: unknown statement " + name)
	}
	return sql
}

// Names lists every statement name.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.stmts))
	for n := range s.stmts {
		out = append(out, n)
	}
	return out
}
