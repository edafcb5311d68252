package pgflow

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/query"
)

// Taking back messages whose lease expired or whose consumer is gone, on
// demand.

const rescueBatch = 1000

// RescueExpired takes back every message whose lease has expired and, when
// the client is started and consumes, every message held by a consumer that
// is gone (its database session ended and its heartbeat stopped; see "Leases
// and crashes" in the package documentation). Each counts as a failed
// attempt, so such a message is retried at once or, with no retries left,
// dead-lettered. Started clients do this on their own every RescueInterval;
// the call is for tools and tests. It returns how many messages it took
// back.
func (c *Client) RescueExpired(ctx context.Context) (int, error) {
	var judge int64
	c.mu.Lock()
	if c.run != nil && c.run.presence != nil {
		judge = c.run.presence.id
	}
	c.mu.Unlock()
	total := 0
	for {
		rows, err := c.pool.Query(ctx, c.q.Get(query.RescueLeases), rescueBatch, judge)
		if err != nil {
			return total, fmt.Errorf("pgflow: rescue leases: %w", err)
		}
		type rescued struct {
			id       int64
			queue    string
			attempt  int
			dead     bool
			consumer *string // the consumer that is gone; nil: the lease expired
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rescued, error) {
			var x rescued
			err := r.Scan(&x.id, &x.queue, &x.attempt, &x.dead, &x.consumer)
			return x, err
		})
		if err != nil {
			return total, fmt.Errorf("pgflow: rescue leases: %w", err)
		}
		total += len(got)
		woken := map[string]bool{}
		expired := 0
		gone := map[string]int{}
		for _, x := range got {
			var errLease error
			if x.consumer == nil {
				expired++
				errLease = fmt.Errorf("lease expired on attempt %d", x.attempt)
			} else {
				gone[*x.consumer]++
				errLease = fmt.Errorf("lease expired early on attempt %d: consumer %s is gone", x.attempt, *x.consumer)
			}
			c.emit(Event{Kind: EventLeaseExpired, Queue: x.queue, MessageID: x.id, Attempt: x.attempt, Err: errLease})
			if x.dead {
				c.emit(Event{Kind: EventDeadLettered, Queue: x.queue, MessageID: x.id, Attempt: x.attempt, Err: errLease})
			} else if !woken[x.queue] {
				woken[x.queue] = true
				c.wakeQueue(x.queue)
			}
		}
		if expired > 0 {
			c.log.Info("pgflow: took back messages whose lease expired", "count", expired)
		}
		for consumer, n := range gone {
			c.log.Warn("pgflow: consumer is gone (its database session ended and its heartbeat stopped); took back its messages",
				"consumer", consumer, "count", n)
			c.emit(Event{Kind: EventConsumerGone, Consumer: consumer, Count: n})
		}
		if len(got) < rescueBatch {
			return total, nil
		}
	}
}
