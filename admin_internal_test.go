package pgflow

import (
	"context"
	"testing"

	"github.com/pgflow-go/pgflow/internal/query"
)

// claimPaused runs the consumers' claim statement and fails the test if it
// claims anything.
func claimPausedInternal(t *testing.T, c *Client, queue string) {
	t.Helper()
	rows, err := c.pool.Query(context.Background(), c.q.Get(query.ClaimMessages), queue, 10, "probe", 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if n != 0 {
		t.Fatalf("claimed %d messages from paused queue %s", n, queue)
	}
}
