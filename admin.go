package pgflow

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflow-go/pgflow/internal/query"
)

// The monitoring calls: ListQueues, QueueStats, ListPending, ListInFlight,
// and the DLQ calls in dlq.go. They only read,
// except PauseQueue and ResumeQueue.

// ListQueues returns every queue's stored definition, by name.
func (c *Client) ListQueues(ctx context.Context) ([]QueueInfo, error) {
	rows, err := c.pool.Query(ctx, c.q.Get(query.ListQueueDefinitions))
	if err != nil {
		return nil, fmt.Errorf("pgflow: list queues: %w", err)
	}
	infos, err := pgx.CollectRows(rows, scanQueueInfo)
	if err != nil {
		return nil, fmt.Errorf("pgflow: list queues: %w", err)
	}
	return infos, nil
}

// QueueStats is a queue's state at one moment.
type QueueStats struct {
	Queue      string
	Paused     bool
	MaxRetries int
	// Pending counts messages ready to be claimed now (including retries
	// whose backoff is over).
	Pending int64
	// Delayed counts messages published with a delay that is not over yet.
	Delayed int64
	// Retrying counts failed messages waiting for their backoff to end.
	Retrying int64
	// InFlight counts messages leased by a consumer.
	InFlight int64
	// DeadLettered counts the queue's messages in the DLQ.
	DeadLettered int64
	// LastDeadLetteredAt is when the newest of them was dead-lettered.
	LastDeadLetteredAt time.Time
	// OldestReadyAge is how long the longest-waiting ready message has been
	// visible without being claimed (0 when none is ready). It grows when
	// consumers are down, paused or too slow.
	OldestReadyAge time.Duration
	// Consumers lists the consumer ids (Config.ID) holding leases now.
	Consumers []string
	// Windows holds handled/failed counts for the last 1 min, 5 min and 1 h
	// (minute buckets, so each window also covers the current, partial
	// minute). Clients write their counters every few seconds, so the
	// newest seconds may be missing; see Config.DisableStatsCounters.
	Windows []StatsWindow
	// At is the database time the stats were read at.
	At time.Time
}

// StatsWindow counts deliveries over a recent window.
type StatsWindow struct {
	Window time.Duration
	// Handled counts handlers that returned nil.
	Handled int64
	// Failed counts failed deliveries: handler errors (retried or
	// dead-lettered) and expired leases.
	Failed int64
	// DeadLettered counts messages moved to the DLQ.
	DeadLettered int64
}

// StatsWindows are the windows QueueStats.Windows reports, in order.
var StatsWindows = []time.Duration{time.Minute, 5 * time.Minute, time.Hour}

// QueueStats returns one queue's stats, or ErrQueueNotFound.
func (c *Client) QueueStats(ctx context.Context, queue string) (QueueStats, error) {
	if err := ValidateQueueName(queue); err != nil {
		return QueueStats{}, err
	}
	all, err := c.queueStats(ctx, queue)
	if err != nil {
		return QueueStats{}, err
	}
	if len(all) == 0 {
		return QueueStats{}, inputErr(ErrQueueNotFound, "queue", queue, "does not exist")
	}
	return all[0], nil
}

// AllQueueStats returns the stats of every queue, by name.
func (c *Client) AllQueueStats(ctx context.Context) ([]QueueStats, error) {
	return c.queueStats(ctx, "")
}

// PauseQueue stops consumers, on every instance, from claiming the queue's
// messages. The claim statement itself checks the flag, so once PauseQueue
// returns no claim anywhere takes a message of the queue (a claim already
// running may still finish). Messages already claimed finish normally;
// publishing still works.
func (c *Client) PauseQueue(ctx context.Context, queue string) error {
	return c.setPaused(ctx, queue, true)
}

// ResumeQueue lets consumers claim from the queue again and wakes them.
func (c *Client) ResumeQueue(ctx context.Context, queue string) error {
	if err := c.setPaused(ctx, queue, false); err != nil {
		return err
	}
	c.wakeLocal(queue) // pgflow_resume notified the other processes
	return nil
}

// setPaused runs pgflow_pause or pgflow_resume, the one home of a queue's
// paused flag.
func (c *Client) setPaused(ctx context.Context, queue string, paused bool) error {
	if err := ValidateQueueName(queue); err != nil {
		return err
	}
	stmt := query.ResumeQueue
	if paused {
		stmt = query.PauseQueue
	}
	_, err := c.pool.Exec(ctx, c.q.Get(stmt), queue)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42704" {
		return inputErr(ErrQueueNotFound, "queue", queue, "does not exist")
	}
	if err != nil {
		return fmt.Errorf("pgflow: set queue %s paused=%v: %w", queue, paused, err)
	}
	return nil
}

// AttemptError is one failed delivery in a message's error history.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// PendingMessage is a message waiting in a queue.
type PendingMessage struct {
	ID       int64
	Queue    string
	Payload  json.RawMessage
	Headers  map[string]string
	Priority int
	// State is "ready" (claimable now), "delayed" (published with a delay)
	// or "retrying" (backing off after a failure).
	State string
	// RetryCount is the number of failed deliveries so far.
	RetryCount int
	// Attempt is the number of deliveries so far.
	Attempt   int
	DedupKey  string
	VisibleAt time.Time
	CreatedAt time.Time
	// Errors is the message's error history, oldest first.
	Errors []AttemptError
}

// PendingFilter narrows and pages ListPending. The zero value lists the
// first 100 pending messages in claim order.
type PendingFilter struct {
	// Priority, when set, keeps only messages of that priority.
	Priority *int
	// CreatedAfter and CreatedBefore bound the publish time: [after, before).
	CreatedAfter, CreatedBefore time.Time
	// VisibleAfter and VisibleBefore bound visible_at: [after, before).
	VisibleAfter, VisibleBefore time.Time
	// ErrorContains keeps messages whose error history contains the text
	// (case-insensitive).
	ErrorContains string
	// Limit is the page size: default 100, at most 1000.
	Limit int
	// Cursor continues a listing: the previous page's NextCursor.
	Cursor string
}

// PendingPage is one page of ListPending.
type PendingPage struct {
	Messages []PendingMessage
	// NextCursor is set when more messages may follow.
	NextCursor string
}

// ListPending lists a queue's pending (not in-flight) messages in the order
// consumers will claim them: priority high to low, then visible_at, then id.
// It pages with a cursor, so each page costs the same however deep it is.
func (c *Client) ListPending(ctx context.Context, queue string, f PendingFilter) (PendingPage, error) {
	if err := ValidateQueueName(queue); err != nil {
		return PendingPage{}, err
	}
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return PendingPage{}, err
	}
	var cPrio, cVisible, cID any
	if f.Cursor != "" {
		p, v, id, err := decodePendingCursor(f.Cursor)
		if err != nil {
			return PendingPage{}, err
		}
		cPrio, cVisible, cID = p, v, id
	}
	prio, err := optPriority(f.Priority)
	if err != nil {
		return PendingPage{}, err
	}
	rows, err := c.pool.Query(ctx, c.q.Get(query.ListPending), pgx.QueryExecModeCacheDescribe,
		queue, limit, cPrio, cVisible, cID, prio,
		optTime(f.CreatedAfter), optTime(f.CreatedBefore), likePattern(f.ErrorContains),
		optTime(f.VisibleAfter), optTime(f.VisibleBefore))
	if err != nil {
		return PendingPage{}, fmt.Errorf("pgflow: list pending of %s: %w", queue, err)
	}
	msgs, err := pgx.CollectRows(rows, scanPending)
	if err != nil {
		return PendingPage{}, fmt.Errorf("pgflow: list pending of %s: %w", queue, err)
	}
	page := PendingPage{Messages: msgs}
	if len(msgs) == limit {
		last := msgs[len(msgs)-1]
		page.NextCursor = encodePendingCursor(last.Priority, last.VisibleAt, last.ID)
	}
	return page, nil
}

func scanPending(r pgx.CollectableRow) (PendingMessage, error) {
	var m PendingMessage
	var prio int16
	var status string
	var dedup *string
	var errs []byte
	var now time.Time
	if err := r.Scan(&m.ID, &m.Queue, &m.Payload, &m.Headers, &prio, &status, &m.RetryCount, &m.Attempt,
		&dedup, &m.VisibleAt, &m.CreatedAt, &errs, &now); err != nil {
		return m, err
	}
	m.Priority = int(prio)
	if dedup != nil {
		m.DedupKey = *dedup
	}
	switch {
	case !m.VisibleAt.After(now):
		m.State = "ready"
	case m.RetryCount > 0:
		m.State = "retrying"
	default:
		m.State = "delayed"
	}
	var err error
	m.Errors, err = decodeErrors(errs)
	return m, err
}

func decodeErrors(b []byte) ([]AttemptError, error) {
	out := []AttemptError{}
	if len(b) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("pgflow: decode error history: %w", err)
	}
	return out, nil
}

const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

func pageLimit(n int) (int, error) {
	switch {
	case n == 0:
		return defaultPageLimit, nil
	case n < 0 || n > maxPageLimit:
		return 0, inputErr(ErrInvalidOption, "limit", strconv.Itoa(n), "must be 1-%d", maxPageLimit)
	}
	return n, nil
}

func optTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func optPriority(p *int) (any, error) {
	if p == nil {
		return nil, nil
	}
	if *p < -32768 || *p > 32767 {
		return nil, inputErr(ErrInvalidOption, "priority", "", "%d is outside [-32768, 32767]", *p)
	}
	return int16(*p), nil
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// likePattern turns "contains s" into an ILIKE pattern, nil for "".
func likePattern(s string) any {
	if s == "" {
		return nil
	}
	return "%" + likeEscaper.Replace(s) + "%"
}

func encodePendingCursor(prio int, visible time.Time, id int64) string {
	raw := fmt.Sprintf("%d:%d:%d", prio, visible.UnixMicro(), id)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodePendingCursor(s string) (int16, time.Time, int64, error) {
	bad := func() (int16, time.Time, int64, error) {
		return 0, time.Time{}, 0, inputErr(ErrInvalidOption, "cursor", s, "is not a cursor ListPending returned")
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad()
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 3 {
		return bad()
	}
	p, err1 := strconv.ParseInt(parts[0], 10, 16)
	v, err2 := strconv.ParseInt(parts[1], 10, 64)
	id, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return bad()
	}
	return int16(p), time.UnixMicro(v), id, nil
}

// InFlightMessage is a message a consumer holds a lease on.
type InFlightMessage struct {
	ID       int64
	Queue    string
	Payload  json.RawMessage
	Headers  map[string]string
	Priority int
	// Attempt is the delivery in progress (1 for the first).
	Attempt    int
	RetryCount int
	// LockedBy is the consumer's id (Config.ID).
	LockedBy   string
	LeaseUntil time.Time
	// LeaseLeft is LeaseUntil minus the database's now; negative when the
	// lease has expired and the rescuer has not taken the message back yet
	// (its consumer crashed or hung).
	LeaseLeft time.Duration
	CreatedAt time.Time
}

// ListInFlight lists a queue's leased messages, the lease closest to expiry
// first: what is being processed now, by whom, and what looks stuck.
// limit 0 means 100; at most 1000.
func (c *Client) ListInFlight(ctx context.Context, queue string, limit int) ([]InFlightMessage, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, err
	}
	limit, err := pageLimit(limit)
	if err != nil {
		return nil, err
	}
	rows, err := c.pool.Query(ctx, c.q.Get(query.ListInFlight), queue, limit)
	if err != nil {
		return nil, fmt.Errorf("pgflow: list in-flight of %s: %w", queue, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (InFlightMessage, error) {
		var m InFlightMessage
		var prio int16
		var now time.Time
		err := r.Scan(&m.ID, &m.Queue, &m.Payload, &m.Headers, &prio, &m.Attempt, &m.RetryCount,
			&m.LockedBy, &m.LeaseUntil, &m.CreatedAt, &now)
		m.Priority = int(prio)
		m.LeaseLeft = m.LeaseUntil.Sub(now)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgflow: list in-flight of %s: %w", queue, err)
	}
	return out, nil
}
