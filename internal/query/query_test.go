package query_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// Every statement must prepare against a freshly migrated schema: this
// catches typos, wrong columns and type errors without running them.
func TestEveryStatementPrepares(t *testing.T) {
	db := pgflowtest.New(t)
	set, err := query.Load(db.Schema)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if len(set.Names()) < 10 {
		t.Fatalf("only %d statements loaded", len(set.Names()))
	}
	for _, name := range set.Names() {
		sql := set.Get(name)
		if strings.Contains(sql, "{{") {
			t.Errorf("%s: unrendered placeholder", name)
		}
		if _, err := conn.Conn().Prepare(ctx, "", sql); err != nil {
			t.Errorf("%s does not prepare: %v", name, err)
		}
	}
}

func TestLoadRejectsBadSchema(t *testing.T) {
	if _, err := query.Load("Robert'); DROP TABLE students;--"); err == nil {
		t.Fatal("bad schema accepted")
	}
}

func TestGetUnknownPanics(t *testing.T) {
	set := query.MustLoad("public")
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for an unknown statement")
		}
	}()
	set.Get("NoSuchStatement")
}
