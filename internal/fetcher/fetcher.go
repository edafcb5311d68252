package fetcher

import (
	"context"
	"log/slog"
	"time"

	"github.com/pgflow-go/pgflow/internal/backoff"
)

// Key is a message's position in claim order.
type Key struct {
	Priority  int
	VisibleAt time.Time
	ID        int64
}

// Result is what one claim did.
type Result struct {
	// Claimed is how many messages were claimed and handed on.
	Claimed int
	// Last is the claim-order key of the last of them (Claimed > 0).
	Last Key
	// Asked is how many the claim asked for: n, or more when it wrote
	// outcomes (Freed). Zero means n.
	Asked int
	// Freed is how many held slots the claim freed by writing, in its own
	// transaction, outcomes the owner had ready (Config.Ready).
	Freed int
	// NextIn, when HasNext, is how long until the queue's next message that
	// is not visible yet becomes visible (reported by short claims only).
	NextIn  time.Duration
	HasNext bool
}

// ClaimFunc claims up to n messages, from the start of the queue (after
// nil) or from a little before after, and hands them on before it returns.
// The fetcher holds n slots for it; Claimed of them stay held. With
// Config.Ready set, it may also write ready outcomes in the claim's own
// transaction and claim one more message (up to MaxBatch) for each slot so
// freed, reporting them as Freed and the claim's size as Asked: a slot then
// goes from the written outcome to a claimed message in one commit.
type ClaimFunc func(ctx context.Context, n int, after *Key) (Result, error)

// Config configures a Fetcher. Zero durations take the defaults below.
type Config struct {
	Queue    string
	MaxBatch int
	Slots    *Slots
	Claim    ClaimFunc
	// Ready, if set, is how many held slots belong to finished deliveries
	// whose outcome a claim can write in its own transaction (ClaimFunc).
	// The fetcher counts them as free; the owner signals new ones with
	// Slots.Notify.
	Ready func() int
	// PollInterval is the longest an idle fetcher sleeps without a wake-up.
	PollInterval time.Duration
	// ClaimTimeout bounds one claim. Default 30 s.
	ClaimTimeout time.Duration
	Log          *slog.Logger
	// Idle, if set, is called each time the fetcher has claimed all it
	// could and goes to sleep; wakePending says a wake-up is already
	// queued. For tests.
	Idle func(wakePending bool)
}

// Tuning; see the package documentation.
const (
	Pace          = time.Millisecond
	GatherWait    = time.Millisecond
	FullScanEvery = 100 * time.Millisecond
	FrontierSlack = 250 * time.Millisecond
	// MaxRetryDelay caps the backoff between failed claims (50 ms,
	// doubling): a fetcher claims again within half a second of the server
	// coming back, or at once when woken meanwhile.
	MaxRetryDelay = 500 * time.Millisecond
)

// Fetcher is one queue's claim loop. Run it once.
type Fetcher struct {
	cfg  Config
	wake chan struct{}

	// loop state (Run's goroutine only)
	frontier     Key
	haveFrontier bool
	lastFullScan time.Time
}

// New returns a fetcher; Run starts it.
func New(cfg Config) *Fetcher {
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = 30 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Fetcher{cfg: cfg, wake: make(chan struct{}, 1)}
}

// Wake tells the fetcher there may be work; it never blocks.
func (f *Fetcher) Wake() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Run claims until ctx is done. A claim in flight is not cut short by ctx:
// a claim cancelled after the server committed it would strand its
// messages until their lease expired. It is cut short by abort, which the
// owner cancels when it can wait no longer.
func (f *Fetcher) Run(ctx, abort context.Context) {
	slots := f.cfg.Slots
	poll := time.NewTimer(f.cfg.PollInterval)
	defer poll.Stop()
	// timer fires at the earliest moment a claim may find something that
	// no notification announces: a delayed or backed-off message becoming
	// visible, or the next full scan after a short frontier claim.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var timerAt time.Time
	arm := func(at time.Time) {
		now := time.Now()
		if !timerAt.IsZero() && timerAt.After(now) && !at.Before(timerAt) {
			return
		}
		timerAt = at
		timer.Reset(max(at.Sub(now), 0))
	}
	retry := backoff.Policy{Base: 50 * time.Millisecond, Max: MaxRetryDelay}
	failures := 0
	maybeMore := true
	var lastClaim time.Time
	lastFound := 0
	for {
		free := f.avail()
		if free <= 0 {
			select {
			case <-slots.Freed():
				continue
			case <-ctx.Done():
				return
			}
		}
		if !maybeMore {
			if f.cfg.Idle != nil {
				f.cfg.Idle(len(f.wake) > 0)
			}
			select {
			case <-f.wake:
			case <-poll.C:
			case <-timer.C:
				timerAt = time.Time{}
			case <-ctx.Done():
				return
			}
			poll.Reset(f.cfg.PollInterval)
			// Messages arriving faster than claims (the last claim found
			// several): claim at most every Pace, so that a claim takes the
			// few that arrived meanwhile. Not after a claim that found one
			// message or none: messages that come one at a time go at once
			// (pacing them only delays each one; it cost W3's pickup p99 a
			// third).
			if wait := Pace - time.Since(lastClaim); wait > 0 && lastFound > 1 && !backoff.Sleep(ctx, wait) {
				return
			}
		} else if free < f.cfg.MaxBatch {
			// A backlog and only some slots free: let others free up first
			// (for at most GatherWait), so claims stay large.
			f.gather(ctx, free)
		}
		n := slots.Acquire(f.cfg.MaxBatch)
		if n == 0 && f.ready() == 0 {
			maybeMore = true
			continue
		}
		claimCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.ClaimTimeout)
		stopAbort := context.AfterFunc(abort, cancel)
		lastClaim = time.Now()
		res, fromFrontier, err := f.claim(claimCtx, n)
		stopAbort()
		cancel()
		slots.Release(n + res.Freed - res.Claimed)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			d := retry.Delay(failures)
			if failures == 1 || failures%20 == 0 {
				// Tries are at most MaxRetryDelay apart: log the first of a
				// run of failures and then every few seconds.
				f.cfg.Log.Warn("pgflow: claim failed; retrying", "queue", f.cfg.Queue, "err", err, "retry_in", d, "failures", failures)
			}
			// A wake-up ends the wait: it comes from a publish or a
			// notification, so the database answers again.
			if !f.sleepOrWake(ctx, d) {
				return
			}
			maybeMore = true
			continue
		}
		failures = 0
		lastFound = res.Claimed
		asked := n
		if res.Asked > 0 {
			asked = res.Asked
		}
		maybeMore = res.Claimed == asked
		if !maybeMore {
			if res.HasNext {
				// +1 ms: the claim compares with the database's now().
				arm(time.Now().Add(res.NextIn + time.Millisecond))
			}
			if fromFrontier {
				// Rows behind the frontier wait for the next full scan.
				arm(f.lastFullScan.Add(FullScanEvery))
			}
		}
	}
}

// sleepOrWake waits for d, a Wake, or ctx; it reports whether ctx is still
// live.
func (f *Fetcher) sleepOrWake(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-f.wake:
	case <-ctx.Done():
		return false
	}
	return true
}

// ready is Config.Ready, or 0.
func (f *Fetcher) ready() int {
	if f.cfg.Ready == nil {
		return 0
	}
	return f.cfg.Ready()
}

// avail is how many slots a claim could use: free, or ready (Config.Ready).
func (f *Fetcher) avail() int { return f.cfg.Slots.Free() + f.ready() }

// gather waits until MaxBatch slots are free or ready, for at most GatherWait.
func (f *Fetcher) gather(ctx context.Context, free int) {
	t := time.NewTimer(GatherWait)
	defer t.Stop()
	for free < f.cfg.MaxBatch {
		select {
		case <-f.cfg.Slots.Freed():
			free = f.avail()
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// claim runs one claim, from the frontier while a full scan is not due.
func (f *Fetcher) claim(ctx context.Context, n int) (res Result, fromFrontier bool, err error) {
	if f.haveFrontier && time.Since(f.lastFullScan) < FullScanEvery {
		fromFrontier = true
		after := f.frontier
		after.VisibleAt = after.VisibleAt.Add(-FrontierSlack)
		after.ID = 0
		res, err = f.cfg.Claim(ctx, n, &after)
	} else {
		f.haveFrontier = false
		res, err = f.cfg.Claim(ctx, n, nil)
		if err == nil {
			f.lastFullScan = time.Now()
		}
	}
	if err == nil && res.Claimed > 0 {
		f.frontier, f.haveFrontier = res.Last, true
	}
	return res, fromFrontier, err
}
