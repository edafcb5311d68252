package depth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/query"
)

// QueueStats is one queue's gauges at one instant.
type QueueStats struct {
	Queue  string
	Paused bool
	// Ready messages are pending and visible: a consumer could claim them now.
	Ready int64
	// Delayed messages are pending but not visible yet (delayed publish or
	// retry backoff).
	Delayed int64
	// Processing messages are leased by a consumer.
	Processing int64
	// ExpiredLeases are processing messages whose lease ran out and that no
	// client has taken back yet (no client is running the rescuer).
	ExpiredLeases int64
	// DLQ is the number of dead-lettered messages whose source is the queue.
	DLQ int64
	// OldestReadyAge is how long the oldest ready message has been visible;
	// zero when nothing is ready.
	OldestReadyAge time.Duration
}

// Snapshot is the result of one read.
type Snapshot struct {
	Queues []QueueStats
	// ReadAt is when the query ran; Took how long it took.
	ReadAt time.Time
	Took   time.Duration
}

// Querier is what *pgxpool.Pool and *pgx.Conn offer.
type Querier interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Read runs the QueueDepths statement once, in a read-only transaction
// whose planner settings (QueueDepthsSettings) keep it on the partial
// indexes: on a table that once held many rows the planner otherwise
// prefers a sequential scan of the whole heap (100 ms instead of 5 ms for
// 10k pending rows in a table that had held 1M; docs/metrics.md).
func Read(ctx context.Context, db Querier, q *query.Set) (Snapshot, error) {
	start := time.Now()
	var stats []QueueStats
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, q.Get(query.QueueDepthsSettings)); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, q.Get(query.QueueDepths))
		if err != nil {
			return err
		}
		stats, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (QueueStats, error) {
			var s QueueStats
			var age float64
			err := r.Scan(&s.Queue, &s.Paused, &s.Ready, &s.Delayed, &s.Processing, &s.ExpiredLeases, &s.DLQ, &age)
			s.OldestReadyAge = time.Duration(age * float64(time.Second))
			return s, err
		})
		return err
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("pgflow: read queue depths: %w", err)
	}
	return Snapshot{Queues: stats, ReadAt: start, Took: time.Since(start)}, nil
}

// Reader reads snapshots through a cache: a snapshot younger than TTL is
// reused, and concurrent callers share one query.
type Reader struct {
	db      Querier
	q       *query.Set
	ttl     time.Duration
	timeout time.Duration
	now     func() time.Time

	mu       sync.Mutex
	last     Snapshot
	lastErr  error
	haveLast bool
	inflight *call
}

type call struct {
	done chan struct{}
	snap Snapshot
	err  error
}

// NewReader returns a cached reader. ttl <= 0 disables the cache (every
// call queries); timeout > 0 bounds each query.
func NewReader(db Querier, q *query.Set, ttl, timeout time.Duration) *Reader {
	return &Reader{db: db, q: q, ttl: ttl, timeout: timeout, now: time.Now}
}

// Get returns a snapshot no older than the TTL.
func (r *Reader) Get(ctx context.Context) (Snapshot, error) {
	r.mu.Lock()
	if r.haveLast && r.ttl > 0 && r.now().Sub(r.last.ReadAt) < r.ttl {
		s, err := r.last, r.lastErr
		r.mu.Unlock()
		return s, err
	}
	if c := r.inflight; c != nil {
		r.mu.Unlock()
		select {
		case <-c.done:
			return c.snap, c.err
		case <-ctx.Done():
			return Snapshot{}, ctx.Err()
		}
	}
	c := &call{done: make(chan struct{})}
	r.inflight = c
	r.mu.Unlock()

	// The query runs on its own context so that one impatient caller does
	// not fail the others waiting for it.
	qctx := context.WithoutCancel(ctx)
	if r.timeout > 0 {
		var cancel context.CancelFunc
		qctx, cancel = context.WithTimeout(qctx, r.timeout)
		defer cancel()
	}
	c.snap, c.err = Read(qctx, r.db, r.q)

	r.mu.Lock()
	r.inflight = nil
	r.haveLast = true
	r.last, r.lastErr = c.snap, c.err
	if c.err != nil {
		// Cache the failure too, so a database in trouble is not hammered,
		// but stamp it now: Read left ReadAt zero.
		r.last.ReadAt = r.now()
	}
	r.mu.Unlock()
	close(c.done)
	return c.snap, c.err
}
