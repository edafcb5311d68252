package pgflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/query"
)

// Reads for operators and tools (the CLI, the console, metrics): one live
// message by id, the delivery counters as a time series, the dead-letter
// counts, and the queue stats that QueueStats and AllQueueStats return.

// ErrMessageNotFound is returned for a message id that is not live: it was
// never published, was acknowledged, or is in the DLQ.
var ErrMessageNotFound = errors.New("pgflow: message not found")

// LiveMessage is a message in a queue, pending or in flight: a
// PendingMessage whose State may also be "in_flight" (leased by a consumer;
// Attempt then counts the delivery in progress), with its lease.
type LiveMessage struct {
	PendingMessage
	// LockedBy and LeaseUntil are set while in flight.
	LockedBy   string
	LeaseUntil time.Time
	// At is the database time the message was read at.
	At time.Time
}

// Message returns one live message by id, or ErrMessageNotFound.
func (c *Client) Message(ctx context.Context, id int64) (LiveMessage, error) {
	rows, err := c.pool.Query(ctx, c.q.Get(query.GetMessage), id)
	if err != nil {
		return LiveMessage{}, fmt.Errorf("pgflow: read message %d: %w", id, err)
	}
	msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LiveMessage, error) {
		var m LiveMessage
		var prio int16
		var status string
		var dedup *string
		var leaseUntil *time.Time
		var errs []byte
		if err := r.Scan(&m.ID, &m.Queue, &m.Payload, &m.Headers, &prio, &status, &m.RetryCount, &m.Attempt,
			&dedup, &m.VisibleAt, &m.LockedBy, &leaseUntil, &m.CreatedAt, &errs, &m.At); err != nil {
			return m, err
		}
		m.Priority = int(prio)
		if dedup != nil {
			m.DedupKey = *dedup
		}
		if leaseUntil != nil {
			m.LeaseUntil = *leaseUntil
		}
		switch {
		case status == "processing":
			m.State = "in_flight"
		case !m.VisibleAt.After(m.At):
			m.State = "ready"
		case m.RetryCount > 0:
			m.State = "retrying"
		default:
			m.State = "delayed"
		}
		var err error
		m.Errors, err = decodeErrors(errs)
		return m, err
	})
	if err != nil {
		return LiveMessage{}, fmt.Errorf("pgflow: read message %d: %w", id, err)
	}
	if len(msgs) == 0 {
		return LiveMessage{}, fmt.Errorf("%w: id %d", ErrMessageNotFound, id)
	}
	return msgs[0], nil
}

// StatsPoint is one time bin of a queue's delivery counters.
type StatsPoint struct {
	Queue string
	// Bin is the start of the bin.
	Bin          time.Time
	Handled      int64
	Failed       int64
	DeadLettered int64
}

// StatsSeries is the delivery counters of one or every queue over a window,
// in bins of Step. Points holds only bins with counters, by queue then time;
// Dense fills the gaps.
type StatsSeries struct {
	Window, Step time.Duration
	Points       []StatsPoint
	// At is the database time the series was read at.
	At time.Time
}

// QueueStatsSeries returns the delivery counters (handled, failed,
// dead-lettered, as QueueStats.Windows counts them) of queue, or of every
// queue when queue is "", over the last window in bins of step (at least
// one minute, the counters' resolution; window at most 24 h, what the
// counters are kept for).
func (c *Client) QueueStatsSeries(ctx context.Context, queue string, window, step time.Duration) (StatsSeries, error) {
	var q any
	if queue != "" {
		if err := ValidateQueueName(queue); err != nil {
			return StatsSeries{}, err
		}
		q = queue
	}
	switch {
	case step < time.Minute || step%time.Minute != 0:
		return StatsSeries{}, inputErr(ErrInvalidOption, "step", step.String(), "must be a whole number of minutes")
	case window < step || window > statsRetention:
		return StatsSeries{}, inputErr(ErrInvalidOption, "window", window.String(), "must be between step and %v", statsRetention)
	}
	rows, err := c.pool.Query(ctx, c.q.Get(query.StatsSeries), q, int64(window/time.Second), int64(step/time.Second))
	if err != nil {
		return StatsSeries{}, fmt.Errorf("pgflow: stats series: %w", err)
	}
	s := StatsSeries{Window: window, Step: step, Points: []StatsPoint{}}
	var p StatsPoint
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&p.Queue, &p.Bin, &p.Handled, &p.Failed, &p.DeadLettered, &at}, func() error {
		s.Points = append(s.Points, p)
		return nil
	})
	if err != nil {
		return StatsSeries{}, fmt.Errorf("pgflow: stats series: %w", err)
	}
	s.At = at
	if at.IsZero() {
		s.At = time.Now() // no counters at all: every bin is 0
	}
	return s, nil
}

// Dense returns queue's series with one point per bin, oldest first, the
// last bin being the one that holds At (still filling up).
func (s StatsSeries) Dense(queue string) []StatsPoint {
	if s.Step <= 0 {
		return nil
	}
	n := int(s.Window / s.Step)
	last := s.At.Truncate(s.Step) // bins are aligned to the epoch, as Truncate is
	first := last.Add(-time.Duration(n-1) * s.Step)
	out := make([]StatsPoint, n)
	for i := range out {
		out[i] = StatsPoint{Queue: queue, Bin: first.Add(time.Duration(i) * s.Step)}
	}
	for _, p := range s.Points {
		if p.Queue != queue || p.Bin.Before(first) {
			continue
		}
		i := int(p.Bin.Sub(first) / s.Step)
		if i < n {
			out[i].Handled += p.Handled
			out[i].Failed += p.Failed
			out[i].DeadLettered += p.DeadLettered
		}
	}
	return out
}

// queueStats reads every queue's stats (queue "") or one queue's, with two
// statements on two pool connections at once: the messages' counts and the
// DLQ's. With a million pending messages and a million dead letters each
// half is an index scan of about the same length, so the stats arrive in
// about half the time of one statement doing both (docs/console.md). The
// two reads are independent: neither holds its connection while it waits
// for the other's.
func (c *Client) queueStats(ctx context.Context, queue string) ([]QueueStats, error) {
	var q any
	if queue != "" {
		q = queue
	}
	var deadBy map[string]DeadLetterCount
	dlqErr := make(chan error, 1)
	go func() {
		var err error
		deadBy, err = c.DeadLetterCounts(ctx, queue)
		dlqErr <- err
	}()
	var out []QueueStats
	err := c.readOnlyStats(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, c.q.Get(query.QueueMessageStats), pgx.QueryExecModeCacheDescribe, q)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanQueueMessageStats)
		return err
	})
	if derr := <-dlqErr; err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("pgflow: queue stats: %w", err)
	}
	for i := range out {
		if d, ok := deadBy[out[i].Queue]; ok {
			out[i].DeadLettered, out[i].LastDeadLetteredAt = d.Count, d.Newest
		}
	}
	return out, nil
}

// DeadLetterCount is one queue's share of the DLQ.
type DeadLetterCount struct {
	Count int64
	// Newest is when the newest of them was dead-lettered.
	Newest time.Time
}

// DeadLetterCounts counts the DLQ by source queue (queue "" for every
// queue), in one index-only scan; queues without dead letters are absent.
// Unlike CountDLQ it takes no filter, and unlike QueueStats it lists queues
// that are no longer declared.
func (c *Client) DeadLetterCounts(ctx context.Context, queue string) (map[string]DeadLetterCount, error) {
	var q any
	if queue != "" {
		if err := ValidateQueueName(queue); err != nil {
			return nil, err
		}
		q = queue
	}
	out := map[string]DeadLetterCount{}
	err := c.readOnlyStats(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, c.q.Get(query.QueueDLQStats), pgx.QueryExecModeCacheDescribe, q)
		if err != nil {
			return err
		}
		var name string
		var d DeadLetterCount
		_, err = pgx.ForEachRow(rows, []any{&name, &d.Count, &d.Newest}, func() error {
			out[name] = d
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pgflow: dead-letter counts: %w", err)
	}
	return out, nil
}

// readOnlyStats runs f in a read-only transaction with the settings of
// queueStats (index scans over sequential ones, no parallel workers).
func (c *Client) readOnlyStats(ctx context.Context, f func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, c.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, c.q.Get(query.QueueDepthsSettings)); err != nil {
			return err
		}
		return f(tx)
	})
}

func scanQueueMessageStats(r pgx.CollectableRow) (QueueStats, error) {
	var s QueueStats
	var oldest float64
	var retention, expiry int64
	w := make([]StatsWindow, len(StatsWindows))
	for i, d := range StatsWindows {
		w[i].Window = d
	}
	err := r.Scan(&s.Queue, &s.Paused, &s.MaxRetries,
		&s.Pending, &s.Delayed, &s.Retrying, &s.InFlight,
		&oldest, &s.Consumers,
		&w[0].Handled, &w[0].Failed, &w[0].DeadLettered,
		&w[1].Handled, &w[1].Failed, &w[1].DeadLettered,
		&w[2].Handled, &w[2].Failed, &w[2].DeadLettered,
		&s.At, &retention, &expiry,
		&w[0].Expired, &w[0].DLQDeleted, &w[1].Expired, &w[1].DLQDeleted, &w[2].Expired, &w[2].DLQDeleted)
	s.DLQRetention, s.Expiry = ms(retention), ms(expiry)
	s.OldestReadyAge = time.Duration(oldest * float64(time.Second)).Round(time.Millisecond)
	s.Windows = w
	if s.Consumers == nil {
		s.Consumers = []string{}
	}
	return s, err
}
