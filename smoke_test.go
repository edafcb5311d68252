package pgflow_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func TestSmoke(t *testing.T) {
	db := pgflowtest.New(t)
	ctx := context.Background()
	c, err := pgflow.New(db.Pool, pgflow.Config{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	done := make(chan struct{}, 100)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "q", Workers: 4, Handler: func(ctx context.Context, m *pgflow.Message) error {
		got.Add(1)
		done <- struct{}{}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := c.Publish(ctx, "q", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("timeout")
		}
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("%d left", n)
	}
}
