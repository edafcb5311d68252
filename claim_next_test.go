package pgflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// TestClaimNextVisibleIsNullWithoutDelayedMessages: a claim that takes
// fewer messages than asked ends with a row whose next_in_us says when the
// queue's next delayed message becomes visible, NULL when there is none.
// greatest(0, NULL) is 0 in PostgreSQL, which once reported "now" for
// "none", so a consumer of an idle queue re-armed a wake-up 1 ms ahead
// after every claim and polled the database without pause.
func TestClaimNextVisibleIsNullWithoutDelayedMessages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{PollOnly: true})
	q := query.MustLoad(db.Schema)
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "nextin"}); err != nil {
		t.Fatal(err)
	}
	// claim returns how many it took and the trailing row's next_in_us.
	claim := func() (int, *int64, int) {
		t.Helper()
		rows, err := db.Pool.Query(ctx, q.Get(query.ClaimMessages), "nextin", 5, "c", 60_000)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		claimed, trailers := 0, 0
		var next *int64
		for rows.Next() {
			var id *int64
			if err := rows.Scan(&id, nil, nil, nil, nil, nil, nil, nil, nil, nil, &next); err != nil {
				t.Fatal(err)
			}
			if id == nil {
				trailers++
			} else {
				claimed++
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return claimed, next, trailers
	}

	if n, next, tr := claim(); n != 0 || tr != 1 || next != nil {
		t.Fatalf("empty queue: claimed %d, %d trailing rows, next_in_us %v; want 0, 1, NULL", n, tr, deref(next))
	}
	if _, err := c.Publish(ctx, "nextin", 1); err != nil {
		t.Fatal(err)
	}
	if n, next, tr := claim(); n != 1 || tr != 1 || next != nil {
		t.Fatalf("one visible message: claimed %d, %d trailing rows, next_in_us %v; want 1, 1, NULL", n, tr, deref(next))
	}
	if _, err := c.Publish(ctx, "nextin", 2, pgflow.WithDelay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, next, tr := claim()
	if n != 0 || tr != 1 || next == nil || *next <= int64(59*time.Minute/time.Microsecond) || *next > int64(time.Hour/time.Microsecond) {
		t.Fatalf("a message delayed 1 h: claimed %d, %d trailing rows, next_in_us %v; want 0, 1, about 3.6e9", n, tr, deref(next))
	}
}

func deref(p *int64) any {
	if p == nil {
		return "NULL"
	}
	return *p
}
