package pgflow

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/query"
)

// Taking back messages whose lease expired, on demand.

const rescueBatch = 1000

// RescueExpired takes back every message whose lease has expired: each
// expiry counts as a failed attempt, so such a message is retried at once or,
// with no retries left, dead-lettered. Started clients do this on their own
// every RescueInterval; the call is for tools and tests. It returns how many
// messages it took back.
func (c *Client) RescueExpired(ctx context.Context) (int, error) {
	total := 0
	for {
		rows, err := c.pool.Query(ctx, c.q.Get(query.RescueExpiredLeases), rescueBatch)
		if err != nil {
			return total, fmt.Errorf("pgflow: rescue expired leases: %w", err)
		}
		type rescued struct {
			id      int64
			queue   string
			attempt int
			dead    bool
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rescued, error) {
			var x rescued
			err := r.Scan(&x.id, &x.queue, &x.attempt, &x.dead)
			return x, err
		})
		if err != nil {
			return total, fmt.Errorf("pgflow: rescue expired leases: %w", err)
		}
		total += len(got)
		woken := map[string]bool{}
		for _, x := range got {
			errLease := fmt.Errorf("lease expired on attempt %d", x.attempt)
			c.emit(Event{Kind: EventLeaseExpired, Queue: x.queue, MessageID: x.id, Attempt: x.attempt, Err: errLease})
			if x.dead {
				c.emit(Event{Kind: EventDeadLettered, Queue: x.queue, MessageID: x.id, Attempt: x.attempt, Err: errLease})
			} else if !woken[x.queue] {
				woken[x.queue] = true
				c.wakeQueue(x.queue)
			}
		}
		if len(got) > 0 {
			c.log.Info("pgflow: took back messages whose lease expired", "count", len(got))
		}
		if len(got) < rescueBatch {
			return total, nil
		}
	}
}
