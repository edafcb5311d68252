package pgflow

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/query"
)

// The maintenance task: message expiry and dead-letter retention.
//
// Every started client runs it every MaintenanceInterval, but one batch at a
// time across all clients of a schema: each batch is a transaction that
// first takes a transaction-scoped advisory lock with
// pg_try_advisory_xact_lock and does nothing when another client holds it.
// A transaction-scoped lock (not a session lock) ends with its transaction,
// so it works through a transaction-mode connection pooler and is never
// left behind by a client that lost its connection. A batch is small
// (maintenanceBatch rows of each kind), so no transaction holds many row
// locks or runs long; a client repeats while a batch comes back full.

// maintenanceBatch bounds the messages expired and the dead letters deleted
// by one maintenance transaction.
const maintenanceBatch = 500

// MaintenanceResult is what one Maintain call did.
type MaintenanceResult struct {
	// Expired counts, per queue, messages moved to the DLQ (reason
	// "expired") because no consumer claimed them before their expiry.
	Expired map[string]int
	// DLQDeleted counts, per queue, dead letters deleted because they were
	// older than the queue's DLQRetention.
	DLQDeleted map[string]int
	// Batches is how many maintenance transactions did work.
	Batches int
	// Busy is set when another client held the maintenance lock, so this
	// call stopped there; that client does the rest.
	Busy bool
}

// Maintain moves expired messages to the DLQ and deletes dead letters past
// their queue's retention, in batches, until nothing is left or another
// client holds the maintenance lock. Started clients do this on their own
// every MaintenanceInterval; the call is for tools and tests.
func (c *Client) Maintain(ctx context.Context) (MaintenanceResult, error) {
	res := MaintenanceResult{Expired: map[string]int{}, DLQDeleted: map[string]int{}}
	for {
		b, err := c.maintainBatch(ctx)
		if err != nil {
			return res, err
		}
		if !b.locked {
			res.Busy = true
			return res, nil
		}
		expired, deleted := 0, 0
		for q, ids := range b.expired {
			res.Expired[q] += len(ids)
			expired += len(ids)
		}
		for q, n := range b.deleted {
			res.DLQDeleted[q] += n
			deleted += n
		}
		if expired+deleted > 0 {
			res.Batches++
			c.log.Debug("pgflow: maintenance", "expired", expired, "dlq_deleted", deleted)
		}
		if expired < maintenanceBatch && deleted < maintenanceBatch {
			return res, nil
		}
	}
}

type expiredMessage struct {
	id      int64
	attempt int
}

type maintenanceBatchResult struct {
	locked  bool
	expired map[string][]expiredMessage
	deleted map[string]int
}

// maintainBatch runs one maintenance transaction and emits its events once
// it committed.
func (c *Client) maintainBatch(ctx context.Context) (maintenanceBatchResult, error) {
	var b maintenanceBatchResult
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		b = maintenanceBatchResult{expired: map[string][]expiredMessage{}, deleted: map[string]int{}}
		if err := tx.QueryRow(ctx, c.q.Get(query.MaintenanceLock), c.maintenanceKey).Scan(&b.locked); err != nil {
			return err
		}
		if !b.locked {
			return nil
		}
		rows, err := tx.Query(ctx, c.q.Get(query.ExpireMessages), maintenanceBatch)
		if err != nil {
			return err
		}
		var id int64
		var queue string
		var attempt int
		var dead bool
		_, err = pgx.ForEachRow(rows, []any{&id, &queue, &attempt, &dead}, func() error {
			b.expired[queue] = append(b.expired[queue], expiredMessage{id: id, attempt: attempt})
			return nil
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, c.q.Get(query.TrimDLQ), maintenanceBatch)
		if err != nil {
			return err
		}
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&queue, &n}, func() error {
			b.deleted[queue] += int(n)
			return nil
		})
		return err
	})
	if err != nil {
		return maintenanceBatchResult{}, fmt.Errorf("pgflow: maintenance: %w", err)
	}
	for q, msgs := range b.expired {
		for _, m := range msgs {
			c.emit(Event{Kind: EventExpired, Queue: q, MessageID: m.id, Attempt: m.attempt})
		}
	}
	for q, n := range b.deleted {
		c.emit(Event{Kind: EventDLQDeleted, Queue: q, Count: n})
	}
	return b, nil
}

// maintenanceKeyFor is the advisory lock key of a schema's maintenance task.
func maintenanceKeyFor(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("pgflow-maintain:" + schema))
	return int64(h.Sum64())
}

// runMaintenance calls Maintain every interval until ctx is done, logging
// failures (tried again at the next tick).
func (c *Client) runMaintenance(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if _, err := c.Maintain(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("pgflow: maintenance failed; will retry", "err", err)
		}
	}
}

// Recover prepares a database restored from a backup for its consumers. The
// messages that were leased when the backup was taken come back at once,
// visible now, without counting a failed attempt (as at a graceful stop),
// instead of waiting for their old leases to run out; the id sequences are
// put past every id in use (pgflow_recover). It returns how many messages it
// released, per queue, and wakes the queues' consumers.
//
// Run it once after a restore, before starting consumers on the restored
// database: leases held by running consumers would be released too, and
// those deliveries repeated. Running it again is harmless.
func (c *Client) Recover(ctx context.Context) (map[string]int, error) {
	rows, err := c.pool.Query(ctx, c.q.Get(query.RecoverLeases))
	if err != nil {
		return nil, fmt.Errorf("pgflow: recover: %w", err)
	}
	out := map[string]int{}
	var queue string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&queue, &n}, func() error {
		out[queue] = int(n)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("pgflow: recover: %w", err)
	}
	for q := range out {
		if _, err := c.pool.Exec(ctx, c.q.Get(query.Notify), c.channel, q); err != nil {
			c.log.Warn("pgflow: notify after recover failed; consumers find the messages at their next poll", "queue", q, "err", err)
		}
		c.wakeLocal(q)
	}
	return out, nil
}
