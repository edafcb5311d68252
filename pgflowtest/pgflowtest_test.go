package pgflowtest_test

import (
	"context"
	"testing"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func TestSchemaIsolationAndAssertions(t *testing.T) {
	a, b := pgflowtest.New(t), pgflowtest.New(t)
	if a.Schema == b.Schema {
		t.Fatal("two tests share a schema")
	}
	c, err := pgflow.New(a.Pool, pgflow.Config{Schema: a.Schema})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	ctx := context.Background()
	type order struct{ ID int }
	for i := 1; i <= 2; i++ {
		if _, err := c.Publish(ctx, "orders", order{ID: i}, pgflow.WithPriority(i)); err != nil {
			t.Fatal(err)
		}
	}
	got := pgflowtest.RequirePublished[order](t, a, "orders", 2)
	if got[0].ID != 2 || got[1].ID != 1 {
		t.Fatalf("claim order = %+v", got)
	}
	if n := b.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("other schema sees %d messages", n)
	}
}

// A test of your own service: it publishes through pgflow, and the test
// checks what was queued.
func ExampleRequirePublished() {
	t := &testing.T{} // in a real test, the *testing.T you are given
	db := pgflowtest.New(t)
	client, _ := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema})
	defer client.Close(context.Background())

	_, _ = client.Publish(context.Background(), "emails", map[string]string{"to": "ops@example.com"})

	type email struct{ To string }
	sent := pgflowtest.RequirePublished[email](t, db, "emails", 1)
	_ = sent[0].To // "ops@example.com"
}
