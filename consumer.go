package pgflow

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/backoff"
	"github.com/pgflow-go/pgflow/internal/completer"
	"github.com/pgflow-go/pgflow/internal/executor"
	"github.com/pgflow-go/pgflow/internal/fetcher"
	"github.com/pgflow-go/pgflow/internal/notify"
	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/internal/rescuer"
)

// The consumer is assembled from internal parts, one job each: the fetcher
// claims (internal/fetcher), the executor runs handlers (internal/executor),
// the completer writes outcomes (internal/completer), the rescuer takes back
// expired leases (internal/rescuer) and notify listens for wake-ups. This
// file adapts them to the API: messages, events, settings, Start and Stop.

// DefaultHandlerTimeout is ConsumerConfig.Timeout's default.
const DefaultHandlerTimeout = time.Minute

// ConsumerConfig registers a handler for one queue.
type ConsumerConfig struct {
	Queue   string
	Handler Handler
	// Workers is how many handlers run at once, and how many deliveries the
	// consumer holds at most: running, or handled with the outcome not yet
	// written. Default 1.
	Workers int
	// MaxBatch bounds how many messages one claim takes. Default: Workers,
	// at most 1000. A claim never takes more than the free workers.
	MaxBatch int
	// Timeout bounds one handler run. Past it the handler's context is
	// cancelled with cause ErrHandlerTimeout and an error it then returns
	// fails the attempt (retried with backoff, dead-lettered when out of
	// retries); see Handler. Default DefaultHandlerTimeout (1 min); a
	// negative value disables it, and the lease is then extended for as long
	// as the handler runs.
	Timeout time.Duration
	// Declare, when set, declares the queue with these settings at Start;
	// otherwise the queue keeps its stored settings (created with defaults
	// if missing).
	Declare *QueueConfig
}

// Consume registers a consumer. Call it before Start; one consumer per queue
// and client.
func (c *Client) Consume(cfg ConsumerConfig) error {
	if err := ValidateQueueName(cfg.Queue); err != nil {
		return err
	}
	if cfg.Handler == nil {
		return inputErr(ErrInvalidConfig, "handler", cfg.Queue, "is nil")
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	if cfg.Workers < 1 || cfg.Workers > 10000 {
		return inputErr(ErrInvalidConfig, "workers", cfg.Queue, "must be 1-10000, got %d", cfg.Workers)
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = min(cfg.Workers, 1000)
	}
	cfg.MaxBatch = min(cfg.MaxBatch, cfg.Workers)
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultHandlerTimeout
	}
	if cfg.Declare != nil {
		d := *cfg.Declare
		if d.Name == "" {
			d.Name = cfg.Queue
		}
		if d.Name != cfg.Queue {
			return inputErr(ErrInvalidConfig, "declare.name", d.Name, "differs from the consumer's queue %q", cfg.Queue)
		}
		if err := d.normalize(); err != nil {
			return err
		}
		cfg.Declare = &d
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClientStopped
	}
	if c.run != nil {
		return inputErr(ErrInvalidConfig, "consumer", cfg.Queue, "cannot be added while the client runs; Stop first")
	}
	if _, dup := c.consumers[cfg.Queue]; dup {
		return inputErr(ErrInvalidConfig, "consumer", cfg.Queue, "is already registered on this client")
	}
	c.consumers[cfg.Queue] = &consumer{cfg: cfg}
	return nil
}

// consumer is a registration; it never changes after Consume. What one
// Start…Stop span runs lives in consumerRun.
type consumer struct {
	cfg ConsumerConfig
}

// runState is what one Start…Stop span owns. Built under c.mu by Start and
// never modified afterwards, except through its parts' own locks.
type runState struct {
	fetchCtx    context.Context // cancelled first at Stop: no new claims
	stopFetch   context.CancelFunc
	abortCtx    context.Context // cancelled when Stop's context is done: claims in flight are cut short
	abort       context.CancelFunc
	handlerCtx  context.Context // cancelled (cause ErrClientStopped) when Stop's deadline passes
	stopHandler context.CancelCauseFunc
	bgCtx       context.Context // listener, rescuer, heartbeats
	stopBg      context.CancelFunc

	fetchers sync.WaitGroup
	bg       sync.WaitGroup

	runs map[string]*consumerRun
}

// Start launches the registered consumers, the lease rescuer and, unless
// PollOnly, the notification listener. It returns once every consumer's
// queue is ready; the consumers then run until Stop.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClientStopped
	}
	if c.run != nil {
		return fmt.Errorf("%w: already started", ErrInvalidConfig)
	}
	rs := &runState{runs: make(map[string]*consumerRun, len(c.consumers))}
	rs.fetchCtx, rs.stopFetch = context.WithCancel(context.Background())
	rs.abortCtx, rs.abort = context.WithCancel(context.Background())
	rs.handlerCtx, rs.stopHandler = context.WithCancelCause(context.Background())
	rs.bgCtx, rs.stopBg = context.WithCancel(context.Background())
	for _, cs := range c.consumers {
		if cs.cfg.Declare != nil {
			if err := c.DeclareQueue(ctx, *cs.cfg.Declare); err != nil {
				return err
			}
		} else if err := c.ensureQueue(ctx, c.pool, cs.cfg.Queue); err != nil {
			return err
		}
		r := &consumerRun{c: c, cfg: cs.cfg}
		if err := r.loadSettings(ctx); err != nil {
			return err
		}
		rs.runs[cs.cfg.Queue] = r
	}
	c.run = rs
	for _, r := range rs.runs {
		r.start(rs)
	}
	rs.bg.Add(1)
	go func() {
		defer rs.bg.Done()
		rescuer.Run(rs.bgCtx, c.cfg.RescueInterval, func(ctx context.Context) error {
			_, err := c.RescueExpired(ctx)
			return err
		}, c.log)
	}()
	if !c.cfg.PollOnly && len(rs.runs) > 0 {
		rs.bg.Add(1)
		go func() {
			defer rs.bg.Done()
			c.listen(rs.bgCtx)
		}()
	}
	return nil
}

// stopBestEffort bounds the work Stop still does once its context is done:
// handing messages back and writing outcomes already known.
const stopBestEffort = time.Second

// StopError is Stop's error when its context ended before every handler
// returned and every outcome was written. It wraps the context's error.
type StopError struct {
	// Running is how many handlers had not returned. Their contexts were
	// cancelled with cause ErrClientStopped and their messages handed back.
	Running int
	// Unwritten is how many outcomes (acknowledgements, failures) could not
	// be written; those messages are delivered again when their lease
	// expires.
	Unwritten int
	Err       error
}

func (e *StopError) Error() string {
	return fmt.Sprintf("pgflow: stop: %v: %d handlers still running, %d outcomes unwritten", e.Err, e.Running, e.Unwritten)
}

func (e *StopError) Unwrap() error { return e.Err }

// Stop stops claiming, waits for running handlers until ctx is done, then
// cancels the rest (context.Cause is ErrClientStopped) and hands their
// messages back so another consumer takes them at once. Outcomes already
// known are written before it returns. ctx bounds every wait; once it is
// done Stop makes one bounded best-effort attempt (about a second) to hand
// messages back and write outcomes, and returns a *StopError that counts
// the handlers still running. Stop on a client that is not running returns
// nil.
func (c *Client) Stop(ctx context.Context) error {
	c.mu.Lock()
	rs := c.run
	c.run = nil
	c.mu.Unlock()
	if rs == nil {
		return nil
	}
	defer context.AfterFunc(ctx, rs.abort)()
	rs.stopFetch()
	waitCtx(ctx, &rs.fetchers)
	running := 0
	for _, r := range rs.runs {
		r.exec.Close()
	}
	for _, r := range rs.runs {
		running += r.exec.Wait(ctx)
	}
	late := ctx.Err() != nil
	if late {
		rs.stopHandler(ErrClientStopped)
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopBestEffort)
		released := 0
		for _, r := range rs.runs {
			released += r.releaseAll(bctx)
		}
		cancel()
		c.log.Warn("pgflow: stop deadline passed; unfinished messages handed back", "released", released, "running", running)
	}
	// The listener, rescuer and heartbeats end promptly once cancelled (the
	// listener closes its connection within a second); ctx bounds the wait.
	rs.stopBg()
	waitCtx(ctx, &rs.bg)
	flushCtx := ctx
	if late {
		var cancel context.CancelFunc
		flushCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), stopBestEffort)
		defer cancel()
	}
	unwritten := 0
	for _, r := range rs.runs {
		unwritten += r.done.Stop(flushCtx)
	}
	rs.stopHandler(ErrClientStopped)
	rs.abort()
	if late || unwritten > 0 {
		err := ctx.Err()
		if err == nil {
			err = context.DeadlineExceeded
		}
		return &StopError{Running: running, Unwritten: unwritten, Err: err}
	}
	return nil
}

// waitCtx waits for wg until ctx is done. Its helper goroutine ends with the
// last of wg's goroutines.
func waitCtx(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// ConsumerStats is a snapshot of one consumer of this client.
type ConsumerStats struct {
	Queue   string
	Workers int
	// Running counts handlers running now, stuck ones included.
	Running int
	// Stuck counts handlers still running past their timeout and grace
	// period: their leases are no longer extended, so their messages go to
	// another consumer. A stuck handler keeps its worker until it returns.
	Stuck int
	// Held counts deliveries the consumer holds: running, waiting for a
	// worker, or handled with the outcome not yet written. At most Workers.
	Held int
}

// ConsumerStats reports this client's consumers, by queue name, while it
// runs; nil when it does not.
func (c *Client) ConsumerStats() []ConsumerStats {
	c.mu.Lock()
	rs := c.run
	c.mu.Unlock()
	if rs == nil {
		return nil
	}
	out := make([]ConsumerStats, 0, len(rs.runs))
	for q, r := range rs.runs {
		running, stuck := r.exec.Stats()
		out = append(out, ConsumerStats{Queue: q, Workers: r.cfg.Workers, Running: running, Stuck: stuck, Held: r.slots.Held()})
	}
	slices.SortFunc(out, func(a, b ConsumerStats) int {
		if a.Queue < b.Queue {
			return -1
		}
		if a.Queue > b.Queue {
			return 1
		}
		return 0
	})
	return out
}

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
	r.slots = fetcher.NewSlots(r.cfg.Workers)
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
	r.exec = executor.New(handlerCtx, executor.Config[*Message]{
		Workers: r.cfg.Workers,
		Handle:  r.cfg.Handler,
		Timeout: timeout, Grace: stuckGrace(r.lease()),
		TimeoutCause: ErrHandlerTimeout, LeaseLostCause: ErrLeaseLost,
		Panic: func(v any, stack []byte) error { return &PanicError{Value: v, Stack: stack} },
		Done:  r.finished,
		Stuck: r.stuck,
	})
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
	msgs, res, err := r.claimAndAck(ctx, limit, after, r.acks)
	r.done.SettleAcks(r.acks, err == nil)
	if err != nil {
		return fetcher.Result{}, err
	}
	res.Asked, res.Freed = limit, len(r.acks)
	c := r.c
	var orphans []*task
	for _, m := range msgs {
		t := &task{ID: m.ID, Token: m.token, Msg: m}
		if len(c.hooks) > 0 {
			c.emit(Event{Kind: EventReceived, Queue: m.Queue, MessageID: m.ID, Attempt: m.Attempt,
				QueueWait: m.LeaseUntil.Add(-r.lease()).Sub(m.VisibleAt), Headers: m.Headers})
		}
		if !r.exec.Submit(t) {
			orphans = append(orphans, t)
		}
	}
	if len(orphans) > 0 {
		// Stop closed the executor while this claim ran: hand them back.
		r.release(ctx, orphans)
	}
	return res, nil
}

// claimMessages runs one claim statement and returns the messages in claim
// order.
func (r *consumerRun) claimMessages(ctx context.Context, n int, after *fetcher.Key) ([]*Message, fetcher.Result, error) {
	return r.claimAndAck(ctx, n, after, nil)
}

// claimAndAck runs one claim statement, preceded by the acknowledgement of
// acks in the same implicit transaction (one pgx batch, one round trip)
// when there are any, and returns the messages in claim order. Nothing is
// returned before the transaction has committed.
func (r *consumerRun) claimAndAck(ctx context.Context, n int, after *fetcher.Key, acks []completer.Ack) ([]*Message, fetcher.Result, error) {
	c := r.c
	var res fetcher.Result
	stmt := query.ClaimMessages
	args := []any{r.cfg.Queue, n, c.cfg.ID, r.lease().Milliseconds()}
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
	case o.Cancelled || o.LeaseLost:
		// Handed back at Stop, or taken over (the rescuer counted the
		// failed attempt): nothing to write.
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

// heartbeatLoop extends the leases of running handlers every third of the
// lease, cancels handlers whose lease was taken over, marks stuck ones, and
// refreshes the queue's settings.
func (r *consumerRun) heartbeatLoop(ctx context.Context) {
	c := r.c
	for {
		if !backoff.Sleep(ctx, r.lease()/3) {
			return
		}
		if err := r.loadSettings(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("pgflow: reading queue settings failed", "queue", r.cfg.Queue, "err", err)
		}
		r.exec.Beat(ctx, r.extend, func(err error) {
			c.log.Warn("pgflow: lease heartbeat failed", "queue", r.cfg.Queue, "err", err)
		})
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

// wakeLocal wakes this client's consumer of queue, if it runs.
func (c *Client) wakeLocal(queue string) {
	c.mu.Lock()
	rs := c.run
	c.mu.Unlock()
	if rs == nil {
		return
	}
	if r := rs.runs[queue]; r != nil {
		r.fetch.Wake()
	}
}

func (c *Client) wakeAll() {
	c.mu.Lock()
	rs := c.run
	c.mu.Unlock()
	if rs == nil {
		return
	}
	for _, r := range rs.runs {
		r.fetch.Wake()
	}
}

// listen runs the notification listener until ctx is cancelled.
func (c *Client) listen(ctx context.Context) {
	l := &notify.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, c.pool.Config().ConnConfig.Copy())
		},
		Channel:  c.channel,
		OnNotify: c.wakeLocal,
		OnConnect: func() {
			if h := c.testHooks.listening; h != nil {
				h()
			}
			c.wakeAll()
		},
		Log: c.log,
	}
	l.Run(ctx)
}

// maxErrorBytes bounds the error text stored per attempt.
const maxErrorBytes = 8 << 10

// errorText is the error as stored: its message, cut to maxErrorBytes.
func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorBytes {
		s = s[:maxErrorBytes] + "… (truncated)"
	}
	return s
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

// AckTx acknowledges m inside tx, so the handler's own writes and the
// acknowledgement commit together. It returns ErrLeaseLost if this delivery
// no longer holds the message (its claim token no longer matches). When the
// handler then returns nil, the consumer's own acknowledgement finds
// nothing left to do.
func (c *Client) AckTx(ctx context.Context, tx pgx.Tx, m *Message) error {
	if tx == nil || m == nil {
		return fmt.Errorf("%w: AckTx needs a transaction and a message", ErrInvalidConfig)
	}
	var n int
	if err := tx.QueryRow(ctx, c.q.Get(query.AckMessageTx), m.ID, m.token).Scan(&n); err != nil {
		return fmt.Errorf("pgflow: ack message %d: %w", m.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: message %d attempt %d", ErrLeaseLost, m.ID, m.Attempt)
	}
	return nil
}

// HandleJSON returns a Handler that decodes each payload into a T and
// calls fn with it. A payload that does not decode fails permanently (the
// message goes to the dead-letter queue at once: retrying cannot help), with
// an error that names the message and the type.
func HandleJSON[T any](fn func(ctx context.Context, m *Message, v T) error) Handler {
	return func(ctx context.Context, m *Message) error {
		var v T
		if err := json.Unmarshal(m.Payload, &v); err != nil {
			return Permanent(fmt.Errorf("pgflow: decode message %d of queue %s into %T: %w", m.ID, m.Queue, v, err))
		}
		return fn(ctx, m, v)
	}
}
