package pgflow

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pgflow-go/pgflow/internal/rescuer"
)

// Start and Stop of a client's consumers, and their stats.

// runState is what one Start…Stop span owns. Built under c.mu by Start and
// never modified afterwards, except through its parts' own locks.
type runState struct {
	fetchCtx    context.Context // cancelled first at Stop: no new claims
	stopFetch   context.CancelFunc
	abortCtx    context.Context // cancelled when Stop's context is done: claims in flight are cut short
	abort       context.CancelFunc
	handlerCtx  context.Context // cancelled (cause ErrClientStopped) when Stop's deadline passes
	stopHandler context.CancelCauseFunc
	bgCtx       context.Context // listener, rescuer, maintenance, heartbeats
	stopBg      context.CancelFunc
	// presence is the consumer registration (nil without consumers); its
	// heartbeat runs until every outcome is written.
	presence     *presence
	presenceCtx  context.Context
	stopPresence context.CancelFunc
	presenceDone chan struct{}

	fetchers sync.WaitGroup
	bg       sync.WaitGroup

	runs map[string]*consumerRun
}

// Start launches the registered consumers, the lease rescuer, the
// maintenance task (unless DisableMaintenance) and, unless PollOnly, the
// notification listener. It returns once every consumer's
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
	if len(rs.runs) > 0 {
		// Registered before the first claim, so that every message this
		// client holds belongs to a registration.
		p := newPresence(c)
		if _, err := p.beat(ctx); err != nil {
			return err
		}
		rs.presence = p
		rs.presenceCtx, rs.stopPresence = context.WithCancel(context.Background())
		rs.presenceDone = make(chan struct{})
		go func() {
			defer close(rs.presenceDone)
			p.run(rs.presenceCtx)
		}()
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
	if !c.cfg.DisableMaintenance {
		rs.bg.Add(1)
		go func() {
			defer rs.bg.Done()
			c.runMaintenance(rs.bgCtx, c.cfg.MaintenanceInterval)
		}()
	}
	// The client's own session: LISTEN, and the registration's session
	// lock unless sessions are not stable (a transaction pooler).
	var lock *presence
	if rs.presence != nil && rs.presence.session {
		lock = rs.presence
	}
	if len(rs.runs) > 0 && (!c.cfg.PollOnly || lock != nil) {
		rs.bg.Add(1)
		go func() {
			defer rs.bg.Done()
			c.listen(rs.bgCtx, lock)
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

// Stop stops claiming, hands back at once the messages claimed that no
// handler has started (ConsumerConfig.Prefetch; not a failed attempt),
// waits for running handlers until ctx is done, then cancels the rest
// (context.Cause is ErrClientStopped) and hands their messages back so
// another consumer takes them at once. Outcomes already
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
	// Claimed messages no worker has started (prefetched, or waiting for a
	// worker) go back to the queue at once rather than after the running
	// handlers; a claim that ends after this hands its messages back itself
	// (the executor refuses them once closed).
	hctx, cancelHand := ctx, context.CancelFunc(func() {})
	if ctx.Err() != nil {
		hctx, cancelHand = context.WithTimeout(context.WithoutCancel(ctx), stopBestEffort)
	}
	for _, r := range rs.runs {
		r.handBack(hctx, time.Now(), ErrClientStopped)
	}
	cancelHand()
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
	if p := rs.presence; p != nil {
		rs.stopPresence()
		<-rs.presenceDone
		if unwritten == 0 {
			// Bounded: a row left behind holds nothing and goes when
			// another consumer finds it gone.
			dctx, cancel := context.WithTimeout(flushCtx, stopBestEffort)
			p.deregister(dctx)
			cancel()
		}
		// Otherwise the row stays: with its heartbeat stopped the
		// unwritten deliveries go to other consumers within seconds.
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
	// worker, or handled with the outcome not yet written. At most
	// Workers + Prefetch (Workers × BatchSize with a batch handler).
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
