package pgflow

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/batch"
	"github.com/pgflow-go/pgflow/internal/notify"
	"github.com/pgflow-go/pgflow/internal/query"
)

// Acknowledgements and failures are written in batches by one goroutine
// each (see internal/batch): a worker hands its result over and is free for
// the next message at once.

const (
	// ackPace is the shortest time between two acknowledgement writes:
	// under a steady trickle the acks of one pace share a transaction. It
	// delays when a finished message leaves the table, not the next claim.
	ackPace      = time.Millisecond
	maxAckBatch  = 1000
	maxFailBatch = 500
	// maxErrorBytes bounds the error text stored per attempt.
	maxErrorBytes = 8 << 10
)

type ackItem struct {
	id      int64
	attempt int
}

type ackFlusher = batch.Flusher[ackItem]

func newAckFlusher(c *Client) *ackFlusher {
	return batch.NewPaced("ack", maxAckBatch, ackPace, c.log, func(ctx context.Context, items []ackItem) error {
		ids := make([]int64, len(items))
		attempts := make([]int32, len(items))
		for i, it := range items {
			ids[i], attempts[i] = it.id, int32(it.attempt)
		}
		_, err := c.hotExec(ctx, query.HotPathSettings, query.AckMessages, ids, attempts)
		return err
	})
}

type failItem struct {
	id        int64
	attempt   int
	queue     string
	err       error
	permanent bool
	delay     time.Duration
	took      time.Duration
	consumer  *consumer
}

type failFlusher = batch.Flusher[failItem]

func newFailFlusher(c *Client) *failFlusher {
	return batch.New("fail", maxFailBatch, c.log, func(ctx context.Context, items []failItem) error {
		n := len(items)
		ids, attempts := make([]int64, n), make([]int32, n)
		texts, delays, permanent := make([]string, n), make([]int64, n), make([]bool, n)
		byID := make(map[int64]*failItem, n)
		for i := range items {
			it := &items[i]
			ids[i], attempts[i] = it.id, int32(it.attempt)
			texts[i] = errorText(it.err)
			delays[i] = it.delay.Milliseconds()
			permanent[i] = it.permanent
			byID[it.id] = it
		}
		type outcome struct {
			id   int64
			dead bool
		}
		outcomes, err := hotCollect(ctx, c, query.HotPathSettings, query.FailMessages,
			[]any{ids, attempts, texts, delays, permanent}, func(r pgx.CollectableRow) (outcome, error) {
				var o outcome
				err := r.Scan(&o.id, &o.dead)
				return o, err
			})
		if err != nil {
			return err
		}
		for _, o := range outcomes {
			it := byID[o.id]
			if it == nil {
				continue
			}
			kind := EventRetried
			if o.dead {
				kind = EventDeadLettered
			} else {
				it.consumer.pokeAt(time.Now().Add(it.delay))
			}
			c.emit(Event{Kind: kind, Queue: it.queue, MessageID: it.id, Attempt: it.attempt, Err: it.err, HandlerDuration: it.took})
		}
		return nil
	})
}

// errorText is the error as stored: its message, cut to maxErrorBytes.
func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorBytes {
		s = s[:maxErrorBytes] + "… (truncated)"
	}
	return s
}

// rescueLoop takes back messages whose lease expired, every RescueInterval.
func (c *Client) rescueLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.RescueInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if _, err := c.RescueExpired(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("pgflow: lease rescue failed", "err", err)
		}
	}
}

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

// listen runs the notification listener until ctx is cancelled.
func (c *Client) listen(ctx context.Context) {
	l := &notify.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, c.pool.Config().ConnConfig.Copy())
		},
		Channel:   c.channel,
		OnNotify:  c.wakeLocal,
		OnConnect: c.wakeAll,
		Log:       c.log,
	}
	l.Run(ctx)
}

// AckTx acknowledges m inside tx, so the handler's own writes and the
// acknowledgement commit together. It returns ErrLeaseLost if this delivery
// no longer holds the message. When the handler then returns nil, the
// consumer's own acknowledgement finds nothing left to do.
func (c *Client) AckTx(ctx context.Context, tx pgx.Tx, m *Message) error {
	if tx == nil || m == nil {
		return fmt.Errorf("%w: AckTx needs a transaction and a message", ErrInvalidConfig)
	}
	tag, err := tx.Exec(ctx, c.q.Get(query.AckMessage), m.ID, m.Attempt)
	if err != nil {
		return fmt.Errorf("pgflow: ack message %d: %w", m.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: message %d attempt %d", ErrLeaseLost, m.ID, m.Attempt)
	}
	return nil
}
