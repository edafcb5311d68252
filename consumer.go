package pgflow

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/backoff"
	"github.com/pgflow-go/pgflow/internal/query"
)

// ConsumerConfig registers a handler for one queue.
type ConsumerConfig struct {
	Queue   string
	Handler Handler
	// Workers is how many handlers run at once. Default 1.
	Workers int
	// MaxBatch bounds how many messages one claim takes. Default: Workers,
	// at most 1000. A claim never takes more than the free workers.
	MaxBatch int
	// Timeout bounds one handler call; 0 means the default.
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
	c.consumers[cfg.Queue] = &consumer{client: c, cfg: cfg}
	return nil
}

// runState is what one Start…Stop span owns.
type runState struct {
	fetchCtx    context.Context // cancelled first at Stop: no new claims
	stopFetch   context.CancelFunc
	handlerCtx  context.Context // cancelled when Stop's deadline passes
	stopHandler context.CancelFunc
	bgCtx       context.Context // listener, rescuer, heartbeats
	stopBg      context.CancelFunc

	fetchers sync.WaitGroup
	workers  sync.WaitGroup
	bg       sync.WaitGroup

	acks  *ackFlusher
	fails *failFlusher
}

var errNotStarted = errors.New("pgflow: client not started")

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
	for _, cs := range c.consumers {
		if cs.cfg.Declare != nil {
			if err := c.DeclareQueue(ctx, *cs.cfg.Declare); err != nil {
				return err
			}
		} else if err := c.ensureQueue(ctx, c.pool, cs.cfg.Queue); err != nil {
			return err
		}
		if err := cs.loadSettings(ctx); err != nil {
			return err
		}
	}
	rs := &runState{}
	rs.fetchCtx, rs.stopFetch = context.WithCancel(context.Background())
	rs.handlerCtx, rs.stopHandler = context.WithCancel(context.Background())
	rs.bgCtx, rs.stopBg = context.WithCancel(context.Background())
	rs.acks = newAckFlusher(c)
	rs.fails = newFailFlusher(c)
	c.run = rs

	for _, cs := range c.consumers {
		cs.start(rs)
	}
	rs.bg.Add(1)
	go func() {
		defer rs.bg.Done()
		c.rescueLoop(rs.bgCtx)
	}()
	if !c.cfg.PollOnly && len(c.consumers) > 0 {
		rs.bg.Add(1)
		go func() {
			defer rs.bg.Done()
			c.listen(rs.bgCtx)
		}()
	}
	return nil
}

// Stop stops claiming, waits for running handlers until ctx is done, then
// cancels the rest and hands their messages back so another consumer takes
// them at once. Pending acknowledgements are written before it returns. It
// returns ctx's error if handlers had to be cut short.
func (c *Client) Stop(ctx context.Context) error {
	c.mu.Lock()
	rs := c.run
	c.run = nil
	consumers := make([]*consumer, 0, len(c.consumers))
	for _, cs := range c.consumers {
		consumers = append(consumers, cs)
	}
	c.mu.Unlock()
	if rs == nil {
		return errNotStarted
	}
	rs.stopFetch()
	rs.fetchers.Wait()
	for _, cs := range consumers {
		close(cs.jobs)
	}
	drained := make(chan struct{})
	go func() {
		rs.workers.Wait()
		close(drained)
	}()
	var stopErr error
	select {
	case <-drained:
	case <-ctx.Done():
		stopErr = ctx.Err()
		rs.stopHandler()
		released := 0
		relCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, cs := range consumers {
			released += cs.releaseAll(relCtx)
		}
		cancel()
		c.log.Warn("pgflow: stop deadline passed; unfinished messages handed back", "released", released)
	}
	rs.stopBg()
	rs.bg.Wait()
	flushCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs.acks.Stop(flushCtx)
	rs.fails.Stop(flushCtx)
	rs.stopHandler()
	return stopErr
}

// consumer runs one queue's fetch loop and workers.
type consumer struct {
	client *Client
	cfg    ConsumerConfig

	settings struct {
		sync.Mutex
		lease time.Duration
		retry backoff.Policy
	}

	jobs      chan *delivery
	slotFreed chan struct{}
	wake      chan struct{}

	// The claim-order key of the last message claimed, and when the last
	// claim from the start of the queue ran (fetch loop only; see claim).
	frontier struct {
		ok        bool
		priority  int
		visibleAt time.Time
		id        int64
	}
	lastFullScan time.Time

	mu       sync.Mutex
	inflight map[int64]*delivery
	wakeAt   time.Time // earliest known future visible_at of local origin
	timer    *time.Timer
}

type delivery struct {
	msg    *Message
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (cs *consumer) loadSettings(ctx context.Context) error {
	qi, err := cs.client.Queue(ctx, cs.cfg.Queue)
	if err != nil {
		return err
	}
	cs.settings.Lock()
	cs.settings.lease = qi.LeaseTimeout
	cs.settings.retry = backoff.Policy{Base: qi.RetryDelay, Max: qi.MaxRetryDelay}
	cs.settings.Unlock()
	return nil
}

func (cs *consumer) lease() time.Duration {
	cs.settings.Lock()
	defer cs.settings.Unlock()
	return cs.settings.lease
}

func (cs *consumer) retryPolicy() backoff.Policy {
	cs.settings.Lock()
	defer cs.settings.Unlock()
	return cs.settings.retry
}

func (cs *consumer) start(rs *runState) {
	cs.jobs = make(chan *delivery, cs.cfg.Workers)
	cs.slotFreed = make(chan struct{}, 1)
	cs.wake = make(chan struct{}, 1)
	cs.inflight = map[int64]*delivery{}
	cs.wakeAt = time.Time{}
	cs.frontier.ok = false
	cs.timer = time.AfterFunc(time.Hour, cs.poke)
	cs.timer.Stop()
	for range cs.cfg.Workers {
		rs.workers.Add(1)
		go func() {
			defer rs.workers.Done()
			cs.work(rs)
		}()
	}
	rs.fetchers.Add(1)
	go func() {
		defer rs.fetchers.Done()
		defer cs.timer.Stop()
		cs.fetchLoop(rs)
	}()
	rs.bg.Add(1)
	go func() {
		defer rs.bg.Done()
		cs.heartbeatLoop(rs.bgCtx)
	}()
}

// poke wakes the fetch loop: there may be work.
func (cs *consumer) poke() {
	select {
	case cs.wake <- struct{}{}:
	default:
	}
}

// pokeAt wakes the fetch loop at t, when a message this process knows of
// becomes visible (a delayed publish or a retry).
func (cs *consumer) pokeAt(t time.Time) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.timer == nil {
		return
	}
	now := time.Now()
	if !cs.wakeAt.IsZero() && cs.wakeAt.After(now) && !t.Before(cs.wakeAt) {
		return
	}
	cs.wakeAt = t
	cs.timer.Reset(max(t.Sub(now), 0) + time.Millisecond)
}

func (cs *consumer) freeSlots() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.cfg.Workers - len(cs.inflight)
}

// claimGather bounds how long a consumer with a backlog waits for more
// workers to free up before claiming for the few that are free.
const claimGather = time.Millisecond

// gatherSlots waits until a full claim's worth of workers is free, for at
// most claimGather, and returns the free slots.
func (cs *consumer) gatherSlots(ctx context.Context, free int) int {
	want := min(cs.cfg.Workers, cs.cfg.MaxBatch)
	t := time.NewTimer(claimGather)
	defer t.Stop()
	for free < want {
		select {
		case <-cs.slotFreed:
			free = cs.freeSlots()
		case <-t.C:
			return cs.freeSlots()
		case <-ctx.Done():
			return free
		}
	}
	return free
}

func (cs *consumer) fetchLoop(rs *runState) {
	ctx := rs.fetchCtx
	c := cs.client
	poll := time.NewTimer(c.cfg.PollInterval)
	defer poll.Stop()
	retry := backoff.Policy{Base: 50 * time.Millisecond, Max: 5 * time.Second}
	failures := 0
	maybeMore := true
	var lastClaim time.Time
	lastFound := 0
	for {
		free := cs.freeSlots()
		if free <= 0 {
			select {
			case <-cs.slotFreed:
				continue
			case <-ctx.Done():
				return
			}
		}
		if !maybeMore {
			select {
			case <-cs.wake:
			case <-poll.C:
			case <-ctx.Done():
				return
			}
			poll.Reset(c.cfg.PollInterval)
			// Messages trickling in: claim at most every claimPace, so
			// that a claim takes the few that arrived meanwhile instead of
			// one round trip and one transaction per message. Not after a
			// claim that found nothing: a message arriving after a quiet
			// spell (or after the extra wake-up every publish in this
			// process causes, in-process and by NOTIFY) goes at once.
			if wait := claimPace - time.Since(lastClaim); wait > 0 && lastFound > 0 && !backoff.Sleep(ctx, wait) {
				return
			}
			free = cs.freeSlots()
		} else if free < min(cs.cfg.Workers, cs.cfg.MaxBatch) {
			// A backlog and only some workers free: let the others finish
			// first (for at most claimGather), so claims stay large instead
			// of one message per round trip.
			free = cs.gatherSlots(ctx, free)
		}
		n := min(free, cs.cfg.MaxBatch)
		// The claim itself is not cut short by Stop: a claim cancelled after
		// the server committed it would strand its messages until their
		// lease expired (and count that as a failed attempt). Stop waits at
		// most one claim instead.
		claimCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
		lastClaim = time.Now()
		msgs, err := cs.claim(claimCtx, n)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			d := retry.Delay(failures)
			c.log.Warn("pgflow: claim failed; retrying", "queue", cs.cfg.Queue, "err", err, "retry_in", d)
			if !backoff.Sleep(ctx, d) {
				return
			}
			maybeMore = true
			continue
		}
		failures = 0
		lastFound = len(msgs)
		for _, m := range msgs {
			dctx, cancel := context.WithCancelCause(rs.handlerCtx)
			d := &delivery{msg: m, ctx: dctx, cancel: cancel}
			cs.mu.Lock()
			cs.inflight[m.ID] = d
			cs.mu.Unlock()
			if len(c.hooks) > 0 {
				c.emit(Event{Kind: EventReceived, Queue: m.Queue, MessageID: m.ID, Attempt: m.Attempt,
					QueueWait: m.LeaseUntil.Add(-cs.lease()).Sub(m.VisibleAt), Headers: m.Headers})
			}
			cs.jobs <- d // never blocks: capacity is Workers and inflight ≤ Workers
		}
		maybeMore = len(msgs) == n
	}
}

// claimPace is the shortest time between the starts of two claims of a
// consumer whose last claim found some messages, but fewer than it asked
// for. After a quiet spell, or a claim that found nothing, the next claim
// goes at once.
const claimPace = time.Millisecond

// claimTimeout bounds one claim statement.
const claimTimeout = 30 * time.Second

// fullScanEvery is the longest a consumer with free workers goes without
// claiming from the start of its queue.
const fullScanEvery = 100 * time.Millisecond

// frontierSlack is how far before the last claimed message's visible_at a
// claim between full scans starts, so that messages committed a little out
// of order are not left to the next full scan.
const frontierSlack = 250 * time.Millisecond

// claim claims up to n messages in claim order. Between claims from the
// start of the queue (ClaimMessages, at least every fullScanEvery) it
// starts from the key of the last message it claimed (ClaimMessagesAfter),
// so the index scan skips the entries of messages already claimed, which a
// pinned xmin horizon keeps from being cleaned up. When such a claim finds
// fewer than n, the consumer asks for a wake-up when the next claim from the
// start is due: a message behind the key (a lower priority, a transaction
// that committed late) waits at most about fullScanEvery while workers are
// free, or while a backlog keeps them busy.
func (cs *consumer) claim(ctx context.Context, n int) ([]*Message, error) {
	if cs.frontier.ok && time.Since(cs.lastFullScan) < fullScanEvery {
		f := cs.frontier
		// Start frontierSlack before the key: a message published
		// concurrently with the last claimed one may commit after it with
		// an earlier visible_at.
		msgs, err := cs.claimStmt(ctx, query.ClaimMessagesAfter, n, int16(f.priority), f.visibleAt.Add(-frontierSlack), int64(0))
		if err != nil {
			return nil, err
		}
		cs.advance(msgs)
		if len(msgs) < n {
			cs.pokeAt(cs.lastFullScan.Add(fullScanEvery))
		}
		return msgs, nil
	}
	msgs, err := cs.claimStmt(ctx, query.ClaimMessages, n)
	if err != nil {
		return nil, err
	}
	cs.lastFullScan = time.Now()
	cs.advance(msgs)
	return msgs, nil
}

// advance moves the frontier to the last of msgs (in claim order), if any.
func (cs *consumer) advance(msgs []*Message) {
	if len(msgs) == 0 {
		return
	}
	last := msgs[len(msgs)-1]
	cs.frontier.ok = true
	cs.frontier.priority, cs.frontier.visibleAt, cs.frontier.id = last.Priority, last.VisibleAt, last.ID
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

func (cs *consumer) claimStmt(ctx context.Context, stmt string, n int, after ...any) ([]*Message, error) {
	c := cs.client
	args := append([]any{cs.cfg.Queue, n, c.cfg.ID, cs.lease().Milliseconds()}, after...)
	msgs, err := hotCollect(ctx, c, query.ClaimSettings, stmt, args, func(r pgx.CollectableRow) (*Message, error) {
		m := &Message{Queue: cs.cfg.Queue}
		var prio int16
		var headers []byte
		// Payload and headers are scanned as bytes: PostgreSQL has
		// validated them, and json.RawMessage would be parsed again.
		err := r.Scan(&m.ID, (*[]byte)(&m.Payload), &headers, &prio, &m.Attempt, &m.RetryCount,
			&m.CreatedAt, &m.VisibleAt, &m.LeaseUntil)
		if err != nil {
			return nil, err
		}
		m.Priority = int(prio)
		m.Headers, err = decodeHeaders(headers)
		return m, err
	})
	if err != nil {
		return nil, err
	}
	// RETURNING has no order; hand out in claim order.
	sortClaimOrder(msgs)
	return msgs, nil
}

func (cs *consumer) work(rs *runState) {
	for d := range cs.jobs {
		if rs.handlerCtx.Err() != nil {
			// Stop's deadline passed: the message was released, skip it.
			continue
		}
		cs.handle(rs, d)
	}
}

func (cs *consumer) handle(rs *runState, d *delivery) {
	c := cs.client
	m := d.msg
	start := time.Now()
	err := cs.invoke(d.ctx, m)
	took := time.Since(start)
	leaseLost := errors.Is(context.Cause(d.ctx), ErrLeaseLost)
	d.cancel(nil)
	if err == nil {
		if len(c.hooks) > 0 {
			c.emit(Event{Kind: EventCompleted, Queue: m.Queue, MessageID: m.ID, Attempt: m.Attempt, HandlerDuration: took})
		}
		rs.acks.Add(ackItem{id: m.ID, attempt: m.Attempt})
	} else if !leaseLost && rs.handlerCtx.Err() == nil {
		// (A lost lease was already counted by the rescuer; a message cut
		// short by Stop was released, not failed.)
		delay, asked := retryDelay(err)
		if !asked {
			delay = cs.retryPolicy().Delay(m.RetryCount + 1)
		}
		rs.fails.Add(failItem{
			id: m.ID, attempt: m.Attempt, queue: m.Queue, err: err, permanent: IsPermanent(err),
			delay: delay, took: took, consumer: cs,
		})
	}
	cs.mu.Lock()
	delete(cs.inflight, m.ID)
	cs.mu.Unlock()
	select {
	case cs.slotFreed <- struct{}{}:
	default:
	}
}

// invoke runs the handler, turning a panic into a *PanicError.
func (cs *consumer) invoke(ctx context.Context, m *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return cs.cfg.Handler(ctx, m)
}

// heartbeatLoop extends the leases of running handlers every third of the
// lease, cancels handlers whose lease was taken over, and refreshes the
// queue's settings.
func (cs *consumer) heartbeatLoop(ctx context.Context) {
	c := cs.client
	for {
		if !backoff.Sleep(ctx, cs.lease()/3) {
			return
		}
		if err := cs.loadSettings(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("pgflow: reading queue settings failed", "queue", cs.cfg.Queue, "err", err)
		}
		cs.mu.Lock()
		ids, attempts := cs.leasesLocked()
		cs.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		kept, err := hotCollect(ctx, c, query.HotPathSettings, query.ExtendLeases,
			[]any{ids, attempts, cs.lease().Milliseconds()}, pgx.RowTo[int64])
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("pgflow: lease heartbeat failed", "queue", cs.cfg.Queue, "err", err)
			}
			continue
		}
		held := make(map[int64]bool, len(kept))
		for _, id := range kept {
			held[id] = true
		}
		cs.mu.Lock()
		for i, id := range ids {
			if d, ok := cs.inflight[id]; ok && !held[id] && d.msg.Attempt == int(attempts[i]) {
				c.log.Warn("pgflow: lease lost; cancelling handler", "queue", cs.cfg.Queue, "id", id, "attempt", attempts[i])
				d.cancel(ErrLeaseLost)
			}
		}
		cs.mu.Unlock()
	}
}

// leasesLocked lists the (id, attempt) of every in-flight message; cs.mu
// must be held.
func (cs *consumer) leasesLocked() ([]int64, []int32) {
	ids := make([]int64, 0, len(cs.inflight))
	attempts := make([]int32, 0, len(cs.inflight))
	for id, d := range cs.inflight {
		ids = append(ids, id)
		attempts = append(attempts, int32(d.msg.Attempt))
	}
	return ids, attempts
}

// releaseAll hands every in-flight message back to the queue.
func (cs *consumer) releaseAll(ctx context.Context) int {
	c := cs.client
	cs.mu.Lock()
	ids, attempts := cs.leasesLocked()
	for _, d := range cs.inflight {
		d.cancel(ErrClientStopped)
	}
	clear(cs.inflight)
	cs.mu.Unlock()
	if len(ids) == 0 {
		return 0
	}
	tag, err := c.hotExec(ctx, query.HotPathSettings, query.ReleaseMessages, ids, attempts)
	if err != nil {
		c.log.Error("pgflow: releasing messages at stop failed; they return when their lease expires", "queue", cs.cfg.Queue, "err", err, "messages", len(ids))
		return 0
	}
	return int(tag.RowsAffected())
}

// wakeLocal pokes this client's consumer of queue, if any.
func (c *Client) wakeLocal(queue string) {
	c.mu.Lock()
	cs := c.consumers[queue]
	running := c.run != nil
	c.mu.Unlock()
	if cs != nil && running {
		cs.poke()
	}
}

func (c *Client) wakeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.run == nil {
		return
	}
	for _, cs := range c.consumers {
		cs.poke()
	}
}
