package console

import (
	"context"
	"sync"
	"time"

	"github.com/pgflow-go/pgflow"
)

// statsCache keeps the queue counts of the overview and of each queue page.
//
// Counting is linear in the rows counted: with a million pending messages
// and a million dead letters it takes a few hundred milliseconds, while
// everything else a page reads takes about one. So when a read of the
// counts was slow (over slowStats), the next pages are answered from it
// while one background read replaces it ("stale while revalidate"): a page
// never waits for a count that is older than Options.StatsMaxAge unless
// there is no count at all yet. Cheap counts (small queues) are read on
// every request, so small installations always see current figures.
type statsCache struct {
	read   func(ctx context.Context, queue string) ([]pgflow.QueueStats, error)
	maxAge time.Duration
	slow   time.Duration // slowStats; tests lower it

	ctx    context.Context // cancelled by close: stops background reads
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	entries map[string]*statsEntry // by queue; "" is every queue
}

// slowStats is the read time above which counts are reused.
const slowStats = 50 * time.Millisecond

type statsEntry struct {
	done       chan struct{} // closed when the first read ends
	stats      []pgflow.QueueStats
	err        error
	at         time.Time     // when the read started
	took       time.Duration // how long it took
	refreshing bool
}

// statsView is counts and how current they are.
type statsView struct {
	stats []pgflow.QueueStats
	at    time.Time
	took  time.Duration
	// cached is true when the counts were not read for this request.
	cached bool
}

func newStatsCache(read func(context.Context, string) ([]pgflow.QueueStats, error), maxAge time.Duration) *statsCache {
	ctx, cancel := context.WithCancel(context.Background())
	return &statsCache{read: read, maxAge: maxAge, slow: slowStats, ctx: ctx, cancel: cancel, entries: map[string]*statsEntry{}}
}

func (c *statsCache) get(ctx context.Context, queue string) (statsView, error) {
	c.mu.Lock()
	e := c.entries[queue]
	switch {
	case e == nil || c.maxAge < 0:
		// First read: this request reads, concurrent ones wait for it.
	case !isDone(e.done):
		c.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return statsView{}, ctx.Err()
		}
		if e.err != nil {
			return statsView{}, e.err
		}
		return statsView{stats: e.stats, at: e.at, took: e.took, cached: true}, nil
	case e.took >= c.slow:
		v := statsView{stats: e.stats, at: e.at, took: e.took, cached: true}
		if time.Since(e.at) > c.maxAge && !e.refreshing && c.ctx.Err() == nil {
			e.refreshing = true
			c.wg.Add(1)
			go c.refresh(queue, e)
		}
		c.mu.Unlock()
		return v, nil
	}
	e = &statsEntry{done: make(chan struct{})}
	c.entries[queue] = e
	c.mu.Unlock()

	e.at = time.Now()
	e.stats, e.err = c.read(ctx, queue)
	e.took = time.Since(e.at)
	close(e.done)
	if e.err != nil {
		c.mu.Lock()
		if c.entries[queue] == e {
			delete(c.entries, queue) // errors are not kept
		}
		c.mu.Unlock()
		return statsView{}, e.err
	}
	return statsView{stats: e.stats, at: e.at, took: e.took}, nil
}

// refresh replaces a slow entry in the background; the cache's owner stops
// it with close.
func (c *statsCache) refresh(queue string, old *statsEntry) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	stats, err := c.read(ctx, queue)
	c.mu.Lock()
	defer c.mu.Unlock()
	old.refreshing = false
	if err != nil || c.entries[queue] != old {
		return // keep serving the previous counts; the next request retries
	}
	fresh := &statsEntry{done: old.done, stats: stats, at: start, took: time.Since(start)}
	c.entries[queue] = fresh
}

// forget drops the counts an action changed, so the next page reads them
// (and, for a slow queue, waits for them once).
// An action without a queue (a redrive by ids) forgets every queue.
func (c *statsCache) forget(queue string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if (queue == "" || k == "" || k == queue) && isDone(e.done) && !e.refreshing {
			delete(c.entries, k)
		}
	}
}

func (c *statsCache) close() {
	c.cancel()
	c.wg.Wait()
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
