package pgflow

import (
	"context"
	"sync"
	"time"

	"github.com/pgflow-go/pgflow/internal/query"
)

// Delivery counters for QueueStats.Windows.
//
// Acknowledged messages are deleted, so "handled in the last 5 minutes" must
// be counted as it happens. Doing that in the ack statement would add a
// write per batch on the hottest path and a hot row per queue that every
// consumer updates. Instead each client counts its own events in memory
// (a map increment under a mutex, see BenchmarkStatsRecord) and adds them
// to pgflow_queue_stats, in one-minute buckets, with one upsert every
// statsFlushInterval. Counters of the last seconds before a crash are lost:
// they are monitoring figures, not accounting.

const (
	statsFlushInterval = 5 * time.Second
	statsRetention     = 24 * time.Hour
	statsPruneEvery    = 10 * time.Minute
)

type statsKey struct {
	queue  string
	bucket int64 // unix seconds of the minute's start
}

type statsCounts struct {
	handled, failed, retried, dead, leaseExpired int64
	expired, dlqDeleted                          int64
}

type statsRecorder struct {
	c *Client

	mu      sync.Mutex
	counts  map[statsKey]*statsCounts
	started bool
	closed  bool
	stop    chan struct{}
	done    chan struct{}

	flushMu   sync.Mutex // one flush at a time
	lastPrune time.Time
}

func newStatsRecorder(c *Client) *statsRecorder {
	return &statsRecorder{
		c:      c,
		counts: map[statsKey]*statsCounts{},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// record is an EventHook.
func (r *statsRecorder) record(e Event) {
	var field func(*statsCounts)
	switch e.Kind {
	case EventCompleted:
		field = func(s *statsCounts) { s.handled++ }
	case EventRetried:
		field = func(s *statsCounts) { s.failed++; s.retried++ }
	case EventLeaseExpired:
		field = func(s *statsCounts) { s.failed++; s.leaseExpired++ }
	case EventDeadLettered:
		// After a handler error the failure is counted here; after an
		// expired lease it was counted by EventLeaseExpired (which has no
		// handler duration).
		if e.HandlerDuration > 0 {
			field = func(s *statsCounts) { s.failed++; s.dead++ }
		} else {
			field = func(s *statsCounts) { s.dead++ }
		}
	case EventExpired:
		// An expired message is in the DLQ: dead-lettered too.
		field = func(s *statsCounts) { s.expired++; s.dead++ }
	case EventDLQDeleted:
		n := int64(e.Count)
		field = func(s *statsCounts) { s.dlqDeleted += n }
	default:
		return
	}
	k := statsKey{queue: e.Queue, bucket: e.Time.Unix() - e.Time.Unix()%60}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	s := r.counts[k]
	if s == nil {
		s = &statsCounts{}
		r.counts[k] = s
	}
	field(s)
	if !r.started {
		r.started = true
		go r.loop()
	}
}

func (r *statsRecorder) loop() {
	defer close(r.done)
	t := time.NewTicker(statsFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.stop:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := r.flush(ctx); err != nil {
			r.c.log.Warn("pgflow: writing queue counters failed; will retry", "err", err)
		}
		cancel()
	}
}

func (r *statsRecorder) take() map[statsKey]*statsCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.counts) == 0 {
		return nil
	}
	out := r.counts
	r.counts = map[statsKey]*statsCounts{}
	return out
}

// putBack merges counts that could not be written into the next flush.
func (r *statsRecorder) putBack(m map[statsKey]*statsCounts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range m {
		s := r.counts[k]
		if s == nil {
			r.counts[k] = v
			continue
		}
		s.handled += v.handled
		s.failed += v.failed
		s.retried += v.retried
		s.dead += v.dead
		s.leaseExpired += v.leaseExpired
		s.expired += v.expired
		s.dlqDeleted += v.dlqDeleted
	}
}

func (r *statsRecorder) flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	m := r.take()
	if len(m) > 0 {
		n := len(m)
		queues, buckets := make([]string, 0, n), make([]time.Time, 0, n)
		handled, failed, retried, dead, lease := make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
		expired, dlqDeleted := make([]int64, 0, n), make([]int64, 0, n)
		for k, v := range m {
			queues = append(queues, k.queue)
			buckets = append(buckets, time.Unix(k.bucket, 0))
			handled = append(handled, v.handled)
			failed = append(failed, v.failed)
			retried = append(retried, v.retried)
			dead = append(dead, v.dead)
			lease = append(lease, v.leaseExpired)
			expired = append(expired, v.expired)
			dlqDeleted = append(dlqDeleted, v.dlqDeleted)
		}
		if _, err := r.c.pool.Exec(ctx, r.c.q.Get(query.AddQueueStats), queues, buckets, handled, failed, retried, dead, lease,
			expired, dlqDeleted); err != nil {
			r.putBack(m)
			return err
		}
	}
	if time.Since(r.lastPrune) > statsPruneEvery {
		if _, err := r.c.pool.Exec(ctx, r.c.q.Get(query.PruneQueueStats), int64(statsRetention/time.Second)); err != nil {
			return err
		}
		r.lastPrune = time.Now()
	}
	return nil
}

// close stops the flusher and writes what is left.
func (r *statsRecorder) close(ctx context.Context) {
	r.mu.Lock()
	started := r.started
	already := r.closed
	r.closed = true
	r.mu.Unlock()
	if already {
		return
	}
	if !started {
		return // nothing was ever counted
	}
	close(r.stop)
	<-r.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.flush(ctx); err != nil {
		r.c.log.Warn("pgflow: writing queue counters at close failed", "err", err)
	}
}

// FlushStats writes the delivery counters this client has gathered and not
// written yet to pgflow_queue_stats. Clients do it on their own every 5 s
// and at Close; the call is for tools and tests.
func (c *Client) FlushStats(ctx context.Context) error {
	if c.stats == nil {
		return nil
	}
	return c.stats.flush(ctx)
}
