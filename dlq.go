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

	"github.com/pgflow-go/pgflow/internal/backoff"
	"github.com/pgflow-go/pgflow/internal/query"
)

// ErrDLQMessageNotFound is returned for a dead-letter id that does not exist
// (never did, or was redriven or purged).
var ErrDLQMessageNotFound = errors.New("pgflow: dead-letter message not found")

// DLQMessage is a dead-lettered message.
type DLQMessage struct {
	// ID is the dead-letter entry's id (what dlq show/retry/purge take).
	ID int64
	// MessageID is the message's id in its queue; a redriven message gets
	// it back.
	MessageID int64
	// Queue is the source queue, where a redrive sends the message.
	Queue    string
	Payload  json.RawMessage
	Headers  map[string]string
	Priority int
	DedupKey string
	// Error is the last attempt's error; Errors holds every attempt's,
	// oldest first (after a redrive, the earlier lives' too).
	Error      string
	Errors     []AttemptError
	RetryCount int
	Attempts   int
	// MessageCreatedAt is when the message was first published.
	MessageCreatedAt time.Time
	// DeadLetteredAt is when it entered the DLQ.
	DeadLetteredAt time.Time
}

// DLQFilter selects dead-letter messages. Fields combine with AND; the zero
// value matches everything, which ListDLQ accepts but RedriveDLQ and
// PurgeDLQ refuse unless All is set.
type DLQFilter struct {
	// IDs selects these dead-letter ids.
	IDs []int64
	// Queue selects one source queue.
	Queue string
	// Since and Until bound the dead-lettering time: [Since, Until).
	Since, Until time.Time
	// ErrorContains matches the last error, case-insensitively.
	ErrorContains string
	// Priority, when set, selects that priority.
	Priority *int
	// All confirms that an otherwise empty filter means every message.
	All bool
}

func (f DLQFilter) empty() bool {
	return len(f.IDs) == 0 && f.Queue == "" && f.Since.IsZero() && f.Until.IsZero() &&
		f.ErrorContains == "" && f.Priority == nil
}

// args renders the filter as the $1-$6 parameters of sql/dlq.sql.
func (f DLQFilter) args() ([]any, error) {
	var ids, queue any
	if len(f.IDs) > 0 {
		ids = f.IDs
	}
	if f.Queue != "" {
		if err := ValidateQueueName(f.Queue); err != nil {
			return nil, err
		}
		queue = f.Queue
	}
	prio, err := optPriority(f.Priority)
	if err != nil {
		return nil, err
	}
	return []any{ids, queue, optTime(f.Since), optTime(f.Until), likePattern(f.ErrorContains), prio}, nil
}

// DLQListOptions pages ListDLQ.
type DLQListOptions struct {
	DLQFilter
	// Limit is the page size: default 100, at most 1000.
	Limit int
	// Cursor continues a listing: the previous page's NextCursor.
	Cursor string
}

// DLQPage is one page of ListDLQ.
type DLQPage struct {
	Messages []DLQMessage
	// NextCursor is set when more messages may follow.
	NextCursor string
}

// ListDLQ lists dead-lettered messages, newest first, paged with a cursor.
func (c *Client) ListDLQ(ctx context.Context, o DLQListOptions) (DLQPage, error) {
	limit, err := pageLimit(o.Limit)
	if err != nil {
		return DLQPage{}, err
	}
	args, err := o.args()
	if err != nil {
		return DLQPage{}, err
	}
	var cAt, cID any
	if o.Cursor != "" {
		at, id, err := decodeDLQCursor(o.Cursor)
		if err != nil {
			return DLQPage{}, err
		}
		cAt, cID = at, id
	}
	args = append([]any{pgx.QueryExecModeCacheDescribe}, args...)
	args = append(args, limit, cAt, cID)
	rows, err := c.pool.Query(ctx, c.q.Get(query.ListDLQ), args...)
	if err != nil {
		return DLQPage{}, fmt.Errorf("pgflow: list dlq: %w", err)
	}
	msgs, err := pgx.CollectRows(rows, scanDLQ)
	if err != nil {
		return DLQPage{}, fmt.Errorf("pgflow: list dlq: %w", err)
	}
	page := DLQPage{Messages: msgs}
	if len(msgs) == limit {
		last := msgs[len(msgs)-1]
		page.NextCursor = encodeDLQCursor(last.DeadLetteredAt, last.ID)
	}
	return page, nil
}

// DLQMessage returns one dead-lettered message with its full attempt
// history, or ErrDLQMessageNotFound.
func (c *Client) DLQMessage(ctx context.Context, id int64) (DLQMessage, error) {
	rows, err := c.pool.Query(ctx, c.q.Get(query.GetDLQ), id)
	if err != nil {
		return DLQMessage{}, fmt.Errorf("pgflow: read dlq message %d: %w", id, err)
	}
	msgs, err := pgx.CollectRows(rows, scanDLQ)
	if err != nil {
		return DLQMessage{}, fmt.Errorf("pgflow: read dlq message %d: %w", id, err)
	}
	if len(msgs) == 0 {
		return DLQMessage{}, fmt.Errorf("%w: id %d", ErrDLQMessageNotFound, id)
	}
	return msgs[0], nil
}

func scanDLQ(r pgx.CollectableRow) (DLQMessage, error) {
	var m DLQMessage
	var prio int16
	var dedup *string
	var errs []byte
	if err := r.Scan(&m.ID, &m.MessageID, &m.Queue, &m.Payload, &m.Headers, &prio, &dedup,
		&m.Error, &errs, &m.RetryCount, &m.Attempts, &m.MessageCreatedAt, &m.DeadLetteredAt); err != nil {
		return m, err
	}
	m.Priority = int(prio)
	if dedup != nil {
		m.DedupKey = *dedup
	}
	var err error
	m.Errors, err = decodeErrors(errs)
	return m, err
}

// RedriveOptions tune RedriveDLQ.
type RedriveOptions struct {
	// RatePerSecond limits how many messages per second go back (SQS's
	// "velocity"), so a fixed consumer is not flooded. 0: no limit.
	RatePerSecond float64
	// ChunkSize is how many messages one statement moves. Default 500 (or
	// the rate, when lower).
	ChunkSize int
}

// Skip reasons of RedriveResult.Skipped.
const (
	// SkipDedupKeyLive: a live message of the queue holds the dedup key, so
	// the message would be a duplicate. It stays in the DLQ; purge it, or
	// redrive it once the live one is done.
	SkipDedupKeyLive = "dedup_key_live"
	// SkipDedupKeyDuplicate: an older DLQ entry with the same queue and
	// dedup key was redriven in the same chunk.
	SkipDedupKeyDuplicate = "dedup_key_duplicate"
	// SkipIDLive: the message id is live again (only possible when rows
	// were written by hand).
	SkipIDLive = "id_live"
)

// RedriveSkip is a selected message that stayed in the DLQ.
type RedriveSkip struct {
	ID        int64  `json:"id"`
	MessageID int64  `json:"message_id"`
	Queue     string `json:"queue"`
	Reason    string `json:"reason"`
}

// RedriveResult says what RedriveDLQ did.
type RedriveResult struct {
	// Redriven counts messages moved back to their queue.
	Redriven int
	// ByQueue counts them per source queue.
	ByQueue map[string]int
	// Skipped lists selected messages left in the DLQ, with the reason.
	Skipped []RedriveSkip
	// NotFound lists requested ids (DLQFilter.IDs) that were not in the DLQ
	// or were being redriven or purged by someone else at the same time.
	NotFound []int64
}

const defaultChunk = 500

// RedriveDLQ moves the selected dead-letter messages back to their source
// queues: one id, a filtered set or a whole queue. Each message moves in one statement with its chunk: it is
// deleted from the DLQ and inserted into its queue together, so it is never
// in both or in neither, even with consumers and other redrives running.
// The message starts fresh (retry_count 0, visible now) with its id,
// payload, headers, priority and error history. Only messages in the DLQ
// when the call starts are considered, so a message that fails again during
// a long redrive is not picked up twice. Consumers are notified.
//
// On error (or ctx cancelled), the chunks already committed stay redriven;
// the result says how many.
func (c *Client) RedriveDLQ(ctx context.Context, f DLQFilter, o RedriveOptions) (RedriveResult, error) {
	res := RedriveResult{ByQueue: map[string]int{}, Skipped: []RedriveSkip{}, NotFound: []int64{}}
	if f.empty() && !f.All {
		return res, inputErr(ErrInvalidOption, "filter", "", "selects every message; set All to redrive the whole DLQ")
	}
	args, err := f.args()
	if err != nil {
		return res, err
	}
	if o.RatePerSecond < 0 {
		return res, inputErr(ErrInvalidOption, "rate", "", "must not be negative")
	}
	chunk := o.ChunkSize
	if chunk <= 0 {
		chunk = defaultChunk
	}
	if o.RatePerSecond > 0 && float64(chunk) > o.RatePerSecond {
		chunk = max(1, int(o.RatePerSecond))
	}
	var upto int64
	if err := c.pool.QueryRow(ctx, c.q.Get(query.MaxDLQID)).Scan(&upto); err != nil {
		return res, fmt.Errorf("pgflow: redrive: %w", err)
	}
	seen := map[int64]bool{}
	start := time.Now()
	var after int64
	for {
		type outcome struct {
			id, messageID int64
			queue         string
			skip          *string
		}
		var got []outcome
		// A publish committing the same dedup key between our check and our
		// insert makes the statement fail as a whole (nothing moved); the
		// next try sees the key and skips the message.
		for try := 0; ; try++ {
			stmtArgs := append([]any{pgx.QueryExecModeCacheDescribe}, args...)
			stmtArgs = append(stmtArgs, chunk, after, upto)
			rows, err := c.pool.Query(ctx, c.q.Get(query.RedriveDLQ), stmtArgs...)
			if err == nil {
				got, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (outcome, error) {
					var x outcome
					err := r.Scan(&x.id, &x.messageID, &x.queue, &x.skip)
					return x, err
				})
			}
			if err == nil {
				break
			}
			var pgErr *pgconn.PgError
			if try < 3 && errors.As(err, &pgErr) && pgErr.Code == "23505" && ctx.Err() == nil {
				continue
			}
			return res, fmt.Errorf("pgflow: redrive: %w", err)
		}
		if len(got) == 0 {
			break
		}
		moved := 0
		for _, x := range got {
			seen[x.id] = true
			after = max(after, x.id)
			if x.skip != nil {
				res.Skipped = append(res.Skipped, RedriveSkip{ID: x.id, MessageID: x.messageID, Queue: x.queue, Reason: *x.skip})
				continue
			}
			moved++
			res.Redriven++
			res.ByQueue[x.queue]++
			c.emit(Event{Kind: EventRedriven, Queue: x.queue, MessageID: x.messageID, Count: 1})
		}
		if moved > 0 {
			for q := range res.ByQueue {
				c.wakeLocal(q)
			}
		}
		if len(got) < chunk {
			break
		}
		if o.RatePerSecond > 0 && moved > 0 {
			due := start.Add(time.Duration(float64(res.Redriven) / o.RatePerSecond * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				if !backoff.Sleep(ctx, wait) {
					return res, ctx.Err()
				}
			}
		}
	}
	for _, id := range f.IDs {
		if !seen[id] {
			res.NotFound = append(res.NotFound, id)
		}
	}
	return res, nil
}

// PurgeResult says what PurgeDLQ did.
type PurgeResult struct {
	Purged   int
	ByQueue  map[string]int
	NotFound []int64
}

// PurgeDLQ deletes the selected dead-letter messages for good, in chunks, and returns how many went. Like RedriveDLQ it only
// considers messages in the DLQ when it starts, and refuses an empty filter
// unless All is set.
func (c *Client) PurgeDLQ(ctx context.Context, f DLQFilter) (PurgeResult, error) {
	res := PurgeResult{ByQueue: map[string]int{}, NotFound: []int64{}}
	if f.empty() && !f.All {
		return res, inputErr(ErrInvalidOption, "filter", "", "selects every message; set All to purge the whole DLQ")
	}
	args, err := f.args()
	if err != nil {
		return res, err
	}
	var upto int64
	if err := c.pool.QueryRow(ctx, c.q.Get(query.MaxDLQID)).Scan(&upto); err != nil {
		return res, fmt.Errorf("pgflow: purge: %w", err)
	}
	seen := map[int64]bool{}
	var after int64
	for {
		stmtArgs := append([]any{pgx.QueryExecModeCacheDescribe}, args...)
		stmtArgs = append(stmtArgs, defaultChunk, after, upto)
		rows, err := c.pool.Query(ctx, c.q.Get(query.PurgeDLQ), stmtArgs...)
		if err != nil {
			return res, fmt.Errorf("pgflow: purge: %w", err)
		}
		type gone struct {
			id    int64
			queue string
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (gone, error) {
			var g gone
			err := r.Scan(&g.id, &g.queue)
			return g, err
		})
		if err != nil {
			return res, fmt.Errorf("pgflow: purge: %w", err)
		}
		if len(got) == 0 {
			break
		}
		perQueue := map[string]int{}
		for _, g := range got {
			seen[g.id] = true
			after = max(after, g.id)
			perQueue[g.queue]++
		}
		for q, n := range perQueue {
			res.Purged += n
			res.ByQueue[q] += n
			c.emit(Event{Kind: EventPurged, Queue: q, Count: n})
		}
	}
	for _, id := range f.IDs {
		if !seen[id] {
			res.NotFound = append(res.NotFound, id)
		}
	}
	return res, nil
}

// CountDLQ returns how many dead-letter messages the filter selects (all of
// them for the zero filter).
func (c *Client) CountDLQ(ctx context.Context, f DLQFilter) (int64, error) {
	args, err := f.args()
	if err != nil {
		return 0, err
	}
	var n int64
	args = append([]any{pgx.QueryExecModeCacheDescribe}, args...)
	if err := c.pool.QueryRow(ctx, c.q.Get(query.CountDLQ), args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgflow: count dlq: %w", err)
	}
	return n, nil
}

func encodeDLQCursor(at time.Time, id int64) string {
	raw := fmt.Sprintf("%d:%d", at.UnixMicro(), id)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeDLQCursor(s string) (time.Time, int64, error) {
	bad := inputErr(ErrInvalidOption, "cursor", s, "is not a cursor ListDLQ returned")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, 0, bad
	}
	a, b, ok := strings.Cut(string(raw), ":")
	if !ok {
		return time.Time{}, 0, bad
	}
	micros, err1 := strconv.ParseInt(a, 10, 64)
	id, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, 0, bad
	}
	return time.UnixMicro(micros), id, nil
}
