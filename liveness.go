package pgflow

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflow-go/pgflow/internal/query"
)

// Dead-consumer detection: a consuming client registers in
// pgflow_consumers at Start, keeps its row alive (a heartbeat, and a
// session advisory lock on the listener's connection), and every started
// client's rescuer takes back the messages of consumers that are gone
// (pgflow_rescue_dead, migration 0005, explains the rule).

// Heartbeat and expiry of a registration. With a session lock (direct
// connections) a killed process's lock goes at once and its heartbeat is
// stale within sessionExpiry: with the rescuer's default 500 ms tick its
// messages are back within about 1.5 s. Under a transaction pooler the
// heartbeat alone decides, so its expiry allows a few late heartbeats.
const (
	sessionHeartbeat = 250 * time.Millisecond
	sessionExpiry    = time.Second
	pooledHeartbeat  = 500 * time.Millisecond
	pooledExpiry     = 3 * time.Second
)

// presence is one Start…Stop span's registration.
type presence struct {
	c         *Client
	id        int64 // pgflow_consumers.id
	session   bool  // the liveness of a session lock counts (not TransactionPooling)
	heartbeat time.Duration
	expiry    time.Duration
	lockKey   atomic.Int64 // the key the current session holds; 0: none
	failing   bool         // heartbeat loop only: the last heartbeat failed
}

func newPresence(c *Client) *presence {
	p := &presence{c: c, id: randomKey(), session: !c.cfg.TransactionPooling, heartbeat: sessionHeartbeat, expiry: sessionExpiry}
	if !p.session {
		p.heartbeat, p.expiry = pooledHeartbeat, pooledExpiry
	}
	return p
}

// randomKey is a positive random int64: a registration id or a lock key
// (positive, so its halves in pg_locks need no sign handling).
func randomKey() int64 { return rand.Int64N(1<<62) + 1 }

// beat writes one heartbeat, registering again if the row is gone, and
// reports whether it inserted the row.
func (p *presence) beat(ctx context.Context) (inserted bool, err error) {
	c := p.c
	var lock any
	if k := p.lockKey.Load(); k != 0 {
		lock = k
	}
	err = c.pool.QueryRow(ctx, c.q.Get(query.RegisterConsumer), p.id, c.cfg.ID, lock, p.expiry.Milliseconds()).Scan(&inserted)
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return false, fmt.Errorf("pgflow: consumer heartbeat: %w (the schema predates version 5: run `pgflow init` or migrate.Up)", err)
	}
	if err != nil {
		return false, fmt.Errorf("pgflow: consumer heartbeat: %w", err)
	}
	return inserted, nil
}

// run heartbeats until ctx is done. A row that had to be inserted again
// means this client was taken for gone (its session and heartbeats were
// lost for longer than the expiry): its messages went to other consumers,
// and its handlers still running lose their leases at their next lease
// extension.
func (p *presence) run(ctx context.Context) {
	t := time.NewTicker(p.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		inserted, err := p.beat(ctx)
		switch {
		case err != nil:
			if !p.failing && ctx.Err() == nil {
				p.c.log.Warn("pgflow: consumer heartbeat failed; retrying", "err", err)
			}
			p.failing = true
		case inserted:
			p.failing = false
			p.c.log.Warn("pgflow: this client was taken for gone (its database session and heartbeats were lost); its messages went to other consumers, and it registered again",
				"consumer", p.c.cfg.ID)
		default:
			p.failing = false
		}
	}
}

// lockSession is the listener's Setup: ties the registration to the new
// session with a new lock key.
func (p *presence) lockSession(ctx context.Context, conn *pgx.Conn) error {
	c := p.c
	key := randomKey()
	if _, err := conn.Exec(ctx, c.q.Get(query.LockConsumerSession), key); err != nil {
		return fmt.Errorf("pgflow: consumer session lock: %w", err)
	}
	p.lockKey.Store(key)
	// If the row is gone meanwhile, the next heartbeat inserts it with key.
	if _, err := conn.Exec(ctx, c.q.Get(query.SetConsumerLock), p.id, key); err != nil {
		return fmt.Errorf("pgflow: consumer session lock: %w", err)
	}
	return nil
}

// deregister deletes the registration (Stop, after every outcome is
// written: until then a process killed mid-Stop still counts as gone).
func (p *presence) deregister(ctx context.Context) {
	c := p.c
	if _, err := c.pool.Exec(ctx, c.q.Get(query.DeregisterConsumer), p.id); err != nil && ctx.Err() == nil {
		c.log.Warn("pgflow: deregistering the consumer failed; the row goes when others find it gone", "err", err)
	}
}
