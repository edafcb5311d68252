package pgflow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/notify"
	"github.com/pgflow-go/pgflow/internal/query"
)

// Publish commits one message to queue and returns its id. The message is
// durable when Publish returns. payload is marshalled with encoding/json,
// except []byte and json.RawMessage, which must already hold JSON.
func (c *Client) Publish(ctx context.Context, queue string, payload any, opts ...PublishOption) (int64, error) {
	mode := notifyIfDue
	if c.notifier == nil {
		mode = notifyNone
	}
	id, headers, notified, err := c.publishOne(ctx, c.pool, mode, queue, payload, opts)
	c.afterPublish(queue, id, headers, err)
	switch {
	case err == nil && notified:
		c.wakeLocal(queue)
	case err == nil:
		c.wakeQueue(queue)
	case notified:
		// The notification this publish took covered earlier publishes.
		c.notifier.Signal(queue)
	}
	return id, err
}

// notifyMode says how a single publish announces itself to other processes.
type notifyMode int

const (
	notifyNone  notifyMode = iota // no NOTIFY in the statement
	notifyInTx                    // always, at the commit of the caller's transaction (PublishTx)
	notifyIfDue                   // in the statement when the debounced notification is due and no dedup key is set (Publish)
)

// PublishTx writes one message in the caller's transaction: it becomes
// visible to consumers when tx commits and vanishes if tx rolls back.
// Consumers are notified at commit.
func (c *Client) PublishTx(ctx context.Context, tx pgx.Tx, queue string, payload any, opts ...PublishOption) (int64, error) {
	if tx == nil {
		return 0, fmt.Errorf("%w: nil transaction", ErrInvalidConfig)
	}
	mode := notifyInTx
	if c.cfg.PollOnly {
		mode = notifyNone
	}
	id, headers, _, err := c.publishOne(ctx, tx, mode, queue, payload, opts)
	c.afterPublish(queue, id, headers, err)
	return id, err
}

// publishOne writes one message. notified reports whether its statement
// carried a NOTIFY.
func (c *Client) publishOne(ctx context.Context, db queryer, mode notifyMode, queue string, payload any, opts []PublishOption) (id int64, headers map[string]string, notified bool, err error) {
	o, rawHeaders, err := buildOptions(opts)
	if err != nil {
		return 0, nil, false, err
	}
	if err := ValidateQueueName(queue); err != nil {
		return 0, nil, false, err
	}
	body, err := encodePayload(payload, c.cfg.MaxPayloadBytes)
	if err != nil {
		return 0, nil, false, err
	}
	if err := c.ensureQueue(ctx, db, queue); err != nil {
		return 0, nil, false, err
	}
	notified = mode == notifyInTx || (mode == notifyIfDue && o.dedupKey == nil && c.notifier.TakeInline(queue))
	id, err = c.insertOne(ctx, db, notified, queue, body, rawHeaders, o)
	if err != nil {
		return 0, nil, notified, err
	}
	return id, o.headers, notified, nil
}

// insertOne runs the insert statement publishOne chose.
func (c *Client) insertOne(ctx context.Context, db queryer, notify bool, queue string, body, headers []byte, o publishOptions) (int64, error) {
	var prio, visibleAt, expiresAt, expiry, dedup any
	if o.priority != nil {
		prio = int16(*o.priority)
	}
	if o.visibleAt != nil {
		visibleAt = *o.visibleAt
	}
	if o.expiresAt != nil {
		expiresAt = *o.expiresAt
	}
	if o.expiry > 0 {
		expiry = o.expiry.Microseconds()
	}
	if o.dedupKey != nil {
		dedup = *o.dedupKey
	}
	args := []any{queue, string(body), string(headers), prio, o.delay.Microseconds(), visibleAt, expiresAt, expiry, dedup}
	var stmt string
	switch {
	case o.dedupKey == nil && notify:
		stmt, args = c.q.Get(query.InsertMessagePlainNotify), append(args[:8], c.channel)
	case o.dedupKey == nil:
		stmt, args = c.q.Get(query.InsertMessagePlain), args[:8]
	case notify:
		stmt, args = c.q.Get(query.InsertMessageNotify), append(args, c.channel)
	default:
		stmt = c.q.Get(query.InsertMessage)
	}
	// A dedup hit returns no row; the holder of the key may be acked between
	// our insert and our lookup, so try a few times.
	for range 3 {
		var id int64
		err := db.QueryRow(ctx, stmt, args...).Scan(&id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) || o.dedupKey == nil {
			return 0, fmt.Errorf("pgflow: publish to %s: %w", queue, err)
		}
		err = db.QueryRow(ctx, c.q.Get(query.FindByDedupKey), queue, *o.dedupKey).Scan(&id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("pgflow: publish to %s: dedup lookup: %w", queue, err)
		}
	}
	return 0, fmt.Errorf("pgflow: publish to %s: dedup key %q kept changing hands; try again", queue, *o.dedupKey)
}

// queryer is what both *pgxpool.Pool and pgx.Tx offer.
type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (c *Client) afterPublish(queue string, id int64, headers map[string]string, err error) {
	if len(c.hooks) == 0 {
		return
	}
	if err != nil {
		c.emit(Event{Kind: EventPublishFailed, Queue: queue, Err: err})
		return
	}
	c.emit(Event{Kind: EventPublished, Queue: queue, MessageID: id, Headers: headers})
}

// wakeQueue tells local consumers at once and other processes through a
// debounced NOTIFY.
func (c *Client) wakeQueue(queue string) {
	c.wakeLocal(queue)
	if c.notifier != nil {
		c.notifier.Signal(queue)
	}
}

// Outgoing is one message of a batch publish.
type Outgoing struct {
	Queue   string
	Payload any
	Options []PublishOption
}

// maxBatchRows bounds one INSERT statement; larger batches are split into
// several statements inside one transaction.
const maxBatchRows = 5000

// PublishBatch commits many messages at once, all or none, and returns their
// ids in input order. Messages whose dedup key is taken get the existing
// message's id.
func (c *Client) PublishBatch(ctx context.Context, msgs []Outgoing) ([]int64, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	ids, err := c.publishBatchOnPool(ctx, msgs)
	c.afterBatch(msgs, ids, err)
	if err != nil {
		return nil, err
	}
	for _, q := range distinctQueues(msgs) {
		c.wakeQueue(q)
	}
	return ids, nil
}

// publishBatchOnPool creates missing queues before the batch's transaction
// begins, so the transaction's connection is the only one it holds.
func (c *Client) publishBatchOnPool(ctx context.Context, msgs []Outgoing) ([]int64, error) {
	cols, err := c.encodeBatch(msgs)
	if err != nil {
		return nil, err
	}
	if err := c.ensureQueues(ctx, c.pool, cols.queues); err != nil {
		return nil, err
	}
	if n := len(cols.queues); n <= maxBatchRows && !slices.ContainsFunc(cols.dedupKeys, func(k *string) bool { return k != nil }) {
		// One statement is all or nothing by itself: its implicit
		// transaction saves the BEGIN and COMMIT round trips.
		ids, err := c.insertChunk(ctx, c.pool, cols, 0, n)
		if err != nil {
			return nil, fmt.Errorf("pgflow: publish batch: %w", err)
		}
		return ids, nil
	}
	var ids []int64
	err = pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		var err error
		ids, err = c.insertBatch(ctx, tx, cols)
		return err
	})
	return ids, err
}

// PublishBatchTx writes many messages in the caller's transaction.
func (c *Client) PublishBatchTx(ctx context.Context, tx pgx.Tx, msgs []Outgoing) ([]int64, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: nil transaction", ErrInvalidConfig)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	ids, err := c.publishBatchTx(ctx, tx, msgs)
	c.afterBatch(msgs, ids, err)
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// publishBatchTx writes the batch, creating missing queues and notifying
// consumers (at commit) in the caller's transaction.
func (c *Client) publishBatchTx(ctx context.Context, tx pgx.Tx, msgs []Outgoing) ([]int64, error) {
	cols, err := c.encodeBatch(msgs)
	if err != nil {
		return nil, err
	}
	if err := c.ensureQueues(ctx, tx, cols.queues); err != nil {
		return nil, err
	}
	ids, err := c.insertBatch(ctx, tx, cols)
	if err != nil || c.cfg.PollOnly {
		return ids, err
	}
	for _, q := range distinctQueues(msgs) {
		if _, err := tx.Exec(ctx, c.q.Get(query.Notify), c.channel, q); err != nil {
			return nil, fmt.Errorf("pgflow: notify: %w", err)
		}
	}
	return ids, nil
}

// distinctQueues lists the batch's queues, each once, in first-seen order.
func distinctQueues(msgs []Outgoing) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range msgs {
		if !seen[m.Queue] {
			seen[m.Queue] = true
			out = append(out, m.Queue)
		}
	}
	return out
}

// ensureQueues runs ensureQueue on db for each queue name (repeats are free).
func (c *Client) ensureQueues(ctx context.Context, db queryer, queues []string) error {
	for _, q := range queues {
		if err := c.ensureQueue(ctx, db, q); err != nil {
			return err
		}
	}
	return nil
}

// batchColumns are InsertMessages' parallel arrays; nil means "not set".
type batchColumns struct {
	queues, payloads, headers []string
	priorities                []*int
	delays                    []int64
	visibleAts                []*time.Time
	expiresAts                []*time.Time
	expiries                  []*int64 // microseconds
	dedupKeys                 []*string
	// oneQueue: every message goes to queues[0] with no option set, so
	// only the payloads need sending (InsertMessagesOneQueue).
	oneQueue bool
}

// encodeBatch validates and encodes every message; the first bad one fails
// the batch before anything is written.
func (c *Client) encodeBatch(msgs []Outgoing) (*batchColumns, error) {
	cols := &batchColumns{oneQueue: true}
	for i, m := range msgs {
		o, headers, err := buildOptions(m.Options)
		if err == nil && (i == 0 || m.Queue != msgs[i-1].Queue) {
			err = ValidateQueueName(m.Queue)
		}
		var body []byte
		if err == nil {
			body, err = encodePayload(m.Payload, c.cfg.MaxPayloadBytes)
		}
		if err != nil {
			return nil, fmt.Errorf("message %d of the batch: %w", i, err)
		}
		cols.queues = append(cols.queues, m.Queue)
		cols.payloads = append(cols.payloads, string(body))
		cols.headers = append(cols.headers, string(headers))
		cols.priorities = append(cols.priorities, o.priority)
		cols.delays = append(cols.delays, o.delay.Microseconds())
		cols.visibleAts = append(cols.visibleAts, o.visibleAt)
		cols.expiresAts = append(cols.expiresAts, o.expiresAt)
		var expiry *int64
		if o.expiry > 0 {
			us := o.expiry.Microseconds()
			expiry = &us
		}
		cols.expiries = append(cols.expiries, expiry)
		cols.dedupKeys = append(cols.dedupKeys, o.dedupKey)
		if m.Queue != msgs[0].Queue || o.priority != nil || o.delay != 0 || o.visibleAt != nil || o.dedupKey != nil || len(o.headers) > 0 ||
			o.expiresAt != nil || o.expiry > 0 {
			cols.oneQueue = false
		}
	}
	return cols, nil
}

// insertBatch inserts cols in statements of at most maxBatchRows rows.
func (c *Client) insertBatch(ctx context.Context, tx pgx.Tx, cols *batchColumns) ([]int64, error) {
	n := len(cols.queues)
	ids := make([]int64, 0, n)
	for start := 0; start < n; start += maxBatchRows {
		end := min(start+maxBatchRows, n)
		chunk, err := c.insertChunk(ctx, tx, cols, start, end)
		if err != nil {
			return nil, fmt.Errorf("pgflow: publish batch: %w", err)
		}
		ids = append(ids, chunk...)
	}
	return ids, nil
}

// insertChunk inserts messages [start, end) of cols in one statement.
func (c *Client) insertChunk(ctx context.Context, tx queryer, cols *batchColumns, start, end int) ([]int64, error) {
	hasDedup := slices.ContainsFunc(cols.dedupKeys[start:end], func(k *string) bool { return k != nil })
	if !hasDedup {
		var rows pgx.Rows
		var err error
		if cols.oneQueue {
			rows, err = tx.Query(ctx, c.q.Get(query.InsertMessagesOneQueue), cols.queues[0], cols.payloads[start:end])
		} else {
			rows, err = tx.Query(ctx, c.q.Get(query.InsertMessagesPlain),
				cols.queues[start:end], cols.payloads[start:end], cols.headers[start:end], cols.priorities[start:end],
				cols.delays[start:end], cols.visibleAts[start:end], cols.expiresAts[start:end], cols.expiries[start:end])
		}
		if err != nil {
			return nil, err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return nil, err
		}
		// Identity values are drawn in insertion order, which is input order.
		slices.Sort(ids)
		return ids, nil
	}
	rows, err := tx.Query(ctx, c.q.Get(query.InsertMessages),
		cols.queues[start:end], cols.payloads[start:end], cols.headers[start:end], cols.priorities[start:end],
		cols.delays[start:end], cols.visibleAts[start:end], cols.dedupKeys[start:end],
		cols.expiresAts[start:end], cols.expiries[start:end])
	if err != nil {
		return nil, err
	}
	chunk, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*int64, error) {
		var id *int64
		var inserted bool
		err := r.Scan(&id, &inserted)
		return id, err
	})
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(chunk))
	for i, id := range chunk {
		if id == nil {
			// The key's holder is not visible to the statement's snapshot (it
			// committed while we ran): look again.
			var found int64
			if err := tx.QueryRow(ctx, c.q.Get(query.FindByDedupKey), cols.queues[start+i], *cols.dedupKeys[start+i]).Scan(&found); err != nil {
				return nil, fmt.Errorf("dedup lookup for message %d: %w", start+i, err)
			}
			id = &found
		}
		ids[i] = *id
	}
	return ids, nil
}

func (c *Client) afterBatch(msgs []Outgoing, ids []int64, err error) {
	if len(c.hooks) == 0 {
		return
	}
	for i, m := range msgs {
		if err != nil {
			c.emit(Event{Kind: EventPublishFailed, Queue: m.Queue, Err: err})
			continue
		}
		c.emit(Event{Kind: EventPublished, Queue: m.Queue, MessageID: ids[i], Headers: applyOptions(m.Options).headers})
	}
}

// notifier adapts notify.Sender to the client's NOTIFY statement.
type notifier = notify.Sender

func newNotifier(c *Client) *notifier {
	send := func(ctx context.Context, queues []string) error {
		// One round trip whatever the number of queues.
		batch := &pgx.Batch{}
		batch.Queue(c.q.Get(query.NotifySettings))
		for _, q := range queues {
			batch.Queue(c.q.Get(query.Notify), c.channel, q)
		}
		return c.pool.SendBatch(ctx, batch).Close()
	}
	return notify.NewSender(send, c.cfg.NotifyDebounce, c.log)
}
