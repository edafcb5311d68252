package pgflow

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/backoff"
	"github.com/pgflow-go/pgflow/internal/completer"
	"github.com/pgflow-go/pgflow/internal/executor"
	"github.com/pgflow-go/pgflow/internal/fetcher"
	"github.com/pgflow-go/pgflow/internal/query"
)

// One queue's consumer while the client runs: claims, outcomes, heartbeats.

// consumerRun is one queue's consumer during one Start…Stop span.
type consumerRun struct {
	c   *Client
	cfg ConsumerConfig

	settings struct {
		sync.Mutex
		lease time.Duration
		retry backoff.Policy
	}

	slots *fetcher.Slots
	fetch *fetcher.Fetcher
	exec  *executor.Executor[*Message]
	done  *completer.Completer

	// takenBack counts, per delivery taken back before it started, the
	// steps still to come before its slot is free: the hand-back's write
	// and the worker skipping it (handBack).
	takenBack struct {
		sync.Mutex
		steps map[*task]int
	}

	// claim's buffers, reused (the fetcher claims one at a time)
	acks      []completer.Ack
	ackIDs    []int64
	ackTokens []int64
}

type task = executor.Task[*Message]

func (r *consumerRun) loadSettings(ctx context.Context) error {
	qi, err := r.c.Queue(ctx, r.cfg.Queue)
	if err != nil {
		return err
	}
	r.settings.Lock()
	r.settings.lease = qi.LeaseTimeout
	r.settings.retry = backoff.Policy{Base: qi.RetryDelay, Max: qi.MaxRetryDelay}
	r.settings.Unlock()
	return nil
}

func (r *consumerRun) lease() time.Duration {
	r.settings.Lock()
	defer r.settings.Unlock()
	return r.settings.lease
}

func (r *consumerRun) retryPolicy() backoff.Policy {
	r.settings.Lock()
	defer r.settings.Unlock()
	return r.settings.retry
}

// stuckGrace is how long a handler may run past its timeout before it is
// stuck: a third of the lease, at most 10 s.
func stuckGrace(lease time.Duration) time.Duration {
	return min(lease/3, 10*time.Second)
}

// build creates the run's parts; start (or a benchmark) then runs them.
func (r *consumerRun) build(handlerCtx context.Context) {
	c := r.c
	r.slots = fetcher.NewSlots(r.cfg.held())
	fcfg := fetcher.Config{
		Queue: r.cfg.Queue, MaxBatch: r.cfg.MaxBatch, Slots: r.slots, Claim: r.claim,
		Ready:        func() int { return r.done.PendingAcks() },
		PollInterval: c.cfg.PollInterval, Log: c.log,
	}
	if h := c.testHooks.idle; h != nil {
		q := r.cfg.Queue
		fcfg.Idle = func(wakePending bool) { h(q, wakePending) }
	}
	r.fetch = fetcher.New(fcfg)
	timeout := r.cfg.Timeout
	ecfg := executor.Config[*Message]{
		Workers: r.cfg.Workers, Capacity: r.cfg.held(),
		Handle:  r.cfg.Handler,
		Timeout: timeout, Grace: stuckGrace(r.lease()),
		TimeoutCause: ErrHandlerTimeout, LeaseLostCause: ErrLeaseLost,
		Panic: func(v any, stack []byte) error { return &PanicError{Value: v, Stack: stack} },
		Done:  r.finished,
		Stuck: r.stuck,
		Lease: r.lease,
	}
	if h := r.cfg.BatchHandler; h != nil {
		ecfg.HandleBatch = func(ctx context.Context, msgs []*Message) []error {
			return batchOutcomes(len(msgs), h(ctx, msgs))
		}
	}
	r.exec = executor.New(handlerCtx, ecfg)
	r.done = completer.New(completer.Config{
		Name: r.cfg.Queue, Log: c.log,
		WriteAcks: func(ctx context.Context, ids, tokens []int64) error {
			_, err := c.pool.Exec(ctx, c.q.Get(query.AckMessages), ids, tokens)
			return err
		},
		WriteFails: r.writeFails,
		Acked:      func(items []completer.Ack) { r.slots.Release(len(items)) },
		Failed:     r.failed,
		// A queued acknowledgement's slot is usable by the next claim,
		// which writes it in its own transaction (claim).
		Queued: r.slots.Notify,
	})
}

func (r *consumerRun) start(rs *runState) {
	r.build(rs.handlerCtx)
	rs.fetchers.Add(1)
	go func() {
		defer rs.fetchers.Done()
		r.fetch.Run(rs.fetchCtx, rs.abortCtx)
	}()
	rs.bg.Add(1)
	go func() {
		defer rs.bg.Done()
		r.heartbeatLoop(rs.bgCtx)
	}()
}

// claim is the fetcher's ClaimFunc: writes the acknowledgements waiting in
// the completer and claims up to n messages, plus one per acknowledgement
// (at most MaxBatch), in one transaction, and submits the messages to the
// executor in claim order. A slot thus goes from an acknowledged delivery to
// a new one in one commit: the consumer never holds more than Workers, and
// a drain with fast handlers needs one round trip per claim, not a claim
// and the acknowledgement writes it waits for.
func (r *consumerRun) claim(ctx context.Context, n int, after *fetcher.Key) (fetcher.Result, error) {
	r.acks = r.done.TakeAcks(r.acks[:0])
	limit := min(r.cfg.MaxBatch, n+len(r.acks))
	if limit == 0 {
		return fetcher.Result{}, nil
	}
	// The lease runs from the server's moment of claiming: by the local
	// clock, no later than the claim's start plus the lease. Only with
	// prefetch, where a message may wait for a worker, is a message not
	// started by then dropped (executor.Task.LeaseUntil); without it a
	// message starts as it arrives, and a slow claim (a pool wait, a
	// loaded host) must not cost it its delivery.
	lease := r.lease()
	var leaseUntil time.Time
	if r.cfg.Prefetch > 0 {
		leaseUntil = time.Now().Add(lease)
	}
	msgs, res, err := r.claimAndAck(ctx, limit, lease, after, r.acks)
	r.done.SettleAcks(r.acks, err == nil)
	if err != nil {
		return fetcher.Result{}, err
	}
	res.Asked, res.Freed = limit, len(r.acks)
	c := r.c
	var orphans []*task
	var chunk []*task
	for i, m := range msgs {
		t := &task{ID: m.ID, Token: m.token, Msg: m, LeaseUntil: leaseUntil}
		if len(c.hooks) > 0 {
			c.emit(Event{Kind: EventReceived, Queue: m.Queue, MessageID: m.ID, Attempt: m.Attempt,
				QueueWait: m.LeaseUntil.Add(-r.lease()).Sub(m.VisibleAt), Headers: m.Headers})
		}
		if r.cfg.BatchHandler == nil {
			if !r.exec.Submit(t) {
				orphans = append(orphans, t)
			}
			continue
		}
		// Batches of BatchSize in claim order, one handler call each.
		chunk = append(chunk, t)
		if len(chunk) == r.cfg.BatchSize || i == len(msgs)-1 {
			if !r.exec.SubmitBatch(chunk) {
				orphans = append(orphans, chunk...)
			}
			chunk = chunk[:0]
		}
	}
	if len(orphans) > 0 {
		// Stop closed the executor while this claim ran: hand them back.
		r.release(ctx, orphans)
	}
	return res, nil
}

// claimAndAck runs one claim statement (leases of lease), preceded by the
// acknowledgement of acks in the same implicit transaction (one pgx batch,
// one round trip) when there are any, and returns the messages in claim
// order. Nothing is returned before the transaction has committed.
func (r *consumerRun) claimAndAck(ctx context.Context, n int, lease time.Duration, after *fetcher.Key, acks []completer.Ack) ([]*Message, fetcher.Result, error) {
	c := r.c
	var res fetcher.Result
	stmt := query.ClaimMessages
	args := []any{r.cfg.Queue, n, c.cfg.ID, lease.Milliseconds()}
	if after != nil {
		stmt = query.ClaimMessagesAfter
		args = append(args, int16(after.Priority), after.VisibleAt, after.ID)
	}
	if len(acks) == 0 {
		rows, err := c.pool.Query(ctx, c.q.Get(stmt), args...)
		if err != nil {
			return nil, res, err
		}
		msgs, err := r.scanClaim(rows, n, &res)
		return msgs, res, err
	}
	r.ackIDs, r.ackTokens = r.ackIDs[:0], r.ackTokens[:0]
	for _, a := range acks {
		r.ackIDs = append(r.ackIDs, a.ID)
		r.ackTokens = append(r.ackTokens, a.Token)
	}
	b := &pgx.Batch{}
	b.Queue(c.q.Get(query.AckMessages), r.ackIDs, r.ackTokens)
	b.Queue(c.q.Get(stmt), args...)
	br := c.pool.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, res, err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, res, err
	}
	msgs, err := r.scanClaim(rows, n, &res)
	if err != nil {
		br.Close()
		return nil, res, err
	}
	// The batch's implicit transaction commits at its end: Close reads
	// the outcome.
	if err := br.Close(); err != nil {
		return nil, res, err
	}
	return msgs, res, nil
}

// scanClaim reads a claim's rows (and closes them) into messages in claim
// order, setting res.
func (r *consumerRun) scanClaim(rows pgx.Rows, n int, res *fetcher.Result) ([]*Message, error) {
	defer rows.Close()
	msgs := make([]*Message, 0, n)
	for rows.Next() {
		if rows.RawValues()[0] == nil {
			// The last row: when the next message becomes visible.
			var next *int64
			if err := rows.Scan(nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, &next); err != nil {
				return nil, err
			}
			if next != nil {
				res.HasNext, res.NextIn = true, time.Duration(*next)*time.Microsecond
			}
			continue
		}
		m := &Message{Queue: r.cfg.Queue}
		var prio int16
		var headers []byte
		// Payload and headers are scanned as bytes: PostgreSQL has
		// validated them, and json.RawMessage would be parsed again.
		if err := rows.Scan(&m.ID, (*[]byte)(&m.Payload), &headers, &prio, &m.Attempt, &m.RetryCount,
			&m.CreatedAt, &m.VisibleAt, &m.LeaseUntil, &m.token, nil); err != nil {
			return nil, err
		}
		m.Priority = int(prio)
		var err error
		if m.Headers, err = decodeHeaders(headers); err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// RETURNING has no order; hand out in claim order.
	sortClaimOrder(msgs)
	res.Claimed = len(msgs)
	if len(msgs) > 0 {
		last := msgs[len(msgs)-1]
		res.Last = fetcher.Key{Priority: last.Priority, VisibleAt: last.VisibleAt, ID: last.ID}
	}
	return msgs, nil
}

func sortClaimOrder(msgs []*Message) {
	slices.SortFunc(msgs, func(a, b *Message) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		if cmp := a.VisibleAt.Compare(b.VisibleAt); cmp != 0 {
			return cmp
		}
		return int(a.ID - b.ID)
	})
}

// finished receives each handler's outcome from the executor.
func (r *consumerRun) finished(t *task, o executor.Outcome) {
	c := r.c
	m := t.Msg
	switch {
	case o.TakenBack:
		// Handed back before it started (handBack): its slot is free once
		// the release is written too.
		r.takenBackStep(t)
	case o.Cancelled || o.LeaseLost:
		// Handed back at Stop, taken over (the rescuer counted the failed
		// attempt), or its lease ran out before it started: nothing to
		// write.
		r.slots.Release(1)
	case o.Err == nil:
		if len(c.hooks) > 0 {
			c.emit(Event{Kind: EventCompleted, Queue: m.Queue, MessageID: m.ID, Attempt: m.Attempt, HandlerDuration: o.Took})
		}
		if !r.done.Ack(completer.Ack{ID: m.ID, Token: m.token}) {
			r.slots.Release(1)
		}
	default:
		delay, asked := retryDelay(o.Err)
		if !asked {
			delay = r.retryPolicy().Delay(m.RetryCount + 1)
		}
		if !r.done.Fail(completer.Fail{ID: m.ID, Token: m.token, Attempt: m.Attempt, Text: errorText(o.Err),
			Permanent: IsPermanent(o.Err), Delay: delay, Err: o.Err, Took: o.Took}) {
			r.slots.Release(1)
		}
	}
}

func (r *consumerRun) stuck(t *task) {
	c := r.c
	m := t.Msg
	c.log.Warn("pgflow: handler stuck past its timeout; its lease is no longer extended",
		"queue", m.Queue, "id", m.ID, "attempt", m.Attempt, "timeout", r.cfg.Timeout)
	c.emit(Event{Kind: EventHandlerStuck, Queue: m.Queue, MessageID: m.ID, Attempt: m.Attempt, Err: ErrHandlerTimeout})
}

func (r *consumerRun) writeFails(ctx context.Context, items []completer.Fail) ([]completer.FailResult, error) {
	c := r.c
	n := len(items)
	ids, tokens := make([]int64, n), make([]int64, n)
	texts, delays, permanent := make([]string, n), make([]int64, n), make([]bool, n)
	for i, it := range items {
		ids[i], tokens[i] = it.ID, it.Token
		texts[i], delays[i], permanent[i] = it.Text, it.Delay.Milliseconds(), it.Permanent
	}
	rows, err := c.pool.Query(ctx, c.q.Get(query.FailMessages), ids, tokens, texts, delays, permanent)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (completer.FailResult, error) {
		var fr completer.FailResult
		err := row.Scan(&fr.ID, &fr.Dead)
		return fr, err
	})
}

// failed runs after a fail write: events, freed slots, and a wake-up for
// retries (every consumer of the queue re-reads when the next one is due).
func (r *consumerRun) failed(items []completer.Fail, results []completer.FailResult) {
	c := r.c
	dead := make(map[int64]bool, len(results))
	for _, fr := range results {
		dead[fr.ID] = fr.Dead
	}
	retried := false
	for _, it := range items {
		d, ok := dead[it.ID]
		if !ok {
			continue // taken over meanwhile
		}
		kind := EventRetried
		if d {
			kind = EventDeadLettered
		} else {
			retried = true
		}
		c.emit(Event{Kind: kind, Queue: r.cfg.Queue, MessageID: it.ID, Attempt: it.Attempt, Err: it.Err, HandlerDuration: it.Took})
	}
	r.slots.Release(len(items))
	if retried {
		c.wakeQueue(r.cfg.Queue)
	}
}

// heartbeatLoop extends the leases of running and prefetched deliveries
// every third of the lease, cancels those whose lease was taken over, marks
// stuck handlers, hands back prefetched messages that waited half a lease
// for a worker, and refreshes the queue's settings.
func (r *consumerRun) heartbeatLoop(ctx context.Context) {
	c := r.c
	for {
		if !backoff.Sleep(ctx, r.lease()/3) {
			return
		}
		if err := r.loadSettings(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("pgflow: reading queue settings failed", "queue", r.cfg.Queue, "err", err)
		}
		if r.cfg.Prefetch > 0 {
			if n := r.handBack(ctx, time.Now().Add(-r.lease()/2), errWaitedTooLong); n > 0 {
				c.log.Warn("pgflow: prefetched messages waited half their lease for a worker; handed back",
					"queue", r.cfg.Queue, "messages", n, "workers", r.cfg.Workers, "prefetch", r.cfg.Prefetch)
			}
		}
		lost := r.exec.Beat(ctx, r.extend, func(err error) {
			c.log.Warn("pgflow: lease heartbeat failed", "queue", r.cfg.Queue, "err", err)
		})
		if lost > 0 {
			c.log.Warn("pgflow: leases taken over by another consumer; those deliveries are cancelled, their outcome not written",
				"queue", r.cfg.Queue, "deliveries", lost)
		}
	}
}

func (r *consumerRun) extend(ctx context.Context, ids, tokens []int64) ([]int64, error) {
	c := r.c
	rows, err := c.pool.Query(ctx, c.q.Get(query.ExtendLeases), ids, tokens, r.lease().Milliseconds())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// errWaitedTooLong cancels a prefetched delivery handed back before a
// worker started it; no handler sees it.
var errWaitedTooLong = errors.New("pgflow: prefetched message waited too long for a worker")

// handBack hands back to the queue (pgflow_release: visible at once, not a
// failed attempt) the deliveries submitted by queuedBefore that no worker
// has started, and returns how many it released. Each one's slot is freed
// once both the release is written and the worker that reaches it in the
// executor's queue has skipped it (takenBackStep): until then the consumer
// may not claim in its place, so it never holds more than Workers +
// Prefetch, and while every worker is busy it does not claim again what it
// just handed back.
func (r *consumerRun) handBack(ctx context.Context, queuedBefore time.Time, cause error) int {
	ts := r.exec.TakeBack(queuedBefore, cause)
	if len(ts) == 0 {
		return 0
	}
	n := r.release(ctx, ts)
	// A failed release leaves the messages to return when their lease
	// expires (they are no longer extended).
	for _, t := range ts {
		r.takenBackStep(t)
	}
	return n
}

// takenBackStep records one of the two steps after which a taken-back
// delivery's slot is free (handBack).
func (r *consumerRun) takenBackStep(t *task) {
	tb := &r.takenBack
	tb.Lock()
	left, ok := tb.steps[t]
	if !ok {
		left = 2
	}
	left--
	if left > 0 {
		if tb.steps == nil {
			tb.steps = make(map[*task]int)
		}
		tb.steps[t] = left
		tb.Unlock()
		return
	}
	delete(tb.steps, t)
	tb.Unlock()
	r.slots.Release(1)
}

// releaseAll cancels every unfinished delivery (cause ErrClientStopped) and
// hands its message back to the queue.
func (r *consumerRun) releaseAll(ctx context.Context) int {
	return r.release(ctx, r.exec.CancelAll(ErrClientStopped))
}

func (r *consumerRun) release(ctx context.Context, tasks []*task) int {
	if len(tasks) == 0 {
		return 0
	}
	c := r.c
	ids, tokens := make([]int64, len(tasks)), make([]int64, len(tasks))
	for i, t := range tasks {
		ids[i], tokens[i] = t.ID, t.Token
	}
	tag, err := c.pool.Exec(ctx, c.q.Get(query.ReleaseMessages), ids, tokens)
	if err != nil {
		c.log.Error("pgflow: handing messages back failed; they return when their lease expires", "queue", r.cfg.Queue, "err", err, "messages", len(ids))
		return 0
	}
	return int(tag.RowsAffected())
}
