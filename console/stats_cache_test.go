package console

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
)

// fakeStats counts reads and lets the test release each one.
type fakeStats struct {
	mu      sync.Mutex
	reads   int
	fail    error
	release chan struct{} // nil: reads return at once
	started chan struct{}
}

func (f *fakeStats) read(ctx context.Context, queue string) ([]pgflow.QueueStats, error) {
	f.mu.Lock()
	f.reads++
	n, fail, rel, started := f.reads, f.fail, f.release, f.started
	f.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if rel != nil {
		select {
		case <-rel:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		return nil, fail
	}
	return []pgflow.QueueStats{{Queue: queue, Pending: int64(n)}}, nil
}

func (f *fakeStats) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func TestStatsCacheCheapCountsAreReadEveryTime(t *testing.T) {
	f := &fakeStats{}
	c := newStatsCache(f.read, time.Hour)
	defer c.close()
	c.slow = time.Hour // every read is cheap
	for i := 1; i <= 3; i++ {
		v, err := c.get(context.Background(), "q")
		if err != nil || v.cached || v.stats[0].Pending != int64(i) {
			t.Fatalf("read %d: %+v %v", i, v, err)
		}
	}
}

func TestStatsCacheSlowCountsServedWhileRenewed(t *testing.T) {
	f := &fakeStats{}
	c := newStatsCache(f.read, -1)
	c.maxAge = 0 // every entry is due for renewal at once
	c.slow = 0   // every read counts as slow
	defer c.close()
	ctx := context.Background()
	v, err := c.get(ctx, "q")
	if err != nil || v.cached || v.stats[0].Pending != 1 {
		t.Fatalf("first read: %+v %v", v, err)
	}
	// The next request gets the first counts and starts one renewal, which
	// the test holds.
	f.mu.Lock()
	f.release, f.started = make(chan struct{}), make(chan struct{}, 1)
	f.mu.Unlock()
	v, err = c.get(ctx, "q")
	if err != nil || !v.cached || v.stats[0].Pending != 1 {
		t.Fatalf("second read: %+v %v", v, err)
	}
	<-f.started
	// While it runs, requests keep the old counts and start no other read.
	for range 3 {
		if v, _ := c.get(ctx, "q"); v.stats[0].Pending != 1 {
			t.Fatalf("during renewal: %+v", v)
		}
	}
	if n := f.count(); n != 2 {
		t.Fatalf("%d reads, want 2", n)
	}
	close(f.release)
	c.wg.Wait() // the renewal has stored its counts
	f.mu.Lock()
	f.started = nil
	f.mu.Unlock()
	if v, _ = c.get(ctx, "q"); v.stats[0].Pending != 2 || !v.cached {
		t.Fatalf("after the renewal: %+v", v)
	}
	// forget makes the next request read for itself.
	c.wg.Wait()
	c.forget("q")
	before := f.count()
	f.mu.Lock()
	f.release, f.started = nil, nil
	f.mu.Unlock()
	if v, err := c.get(ctx, "q"); err != nil || v.cached || f.count() != before+1 {
		t.Fatalf("after forget: %+v %v (reads %d -> %d)", v, err, before, f.count())
	}
}

func TestStatsCacheErrorsAreNotKeptAndCloseStopsRenewals(t *testing.T) {
	boom := errors.New("database down")
	f := &fakeStats{fail: boom}
	c := newStatsCache(f.read, -1)
	c.maxAge, c.slow = 0, 0
	if _, err := c.get(context.Background(), "q"); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	if v, err := c.get(context.Background(), "q"); err != nil || v.cached {
		t.Fatalf("after an error the next request reads: %+v %v", v, err)
	}
	// A renewal blocked in its read ends when the cache closes.
	f.mu.Lock()
	f.release, f.started = make(chan struct{}), make(chan struct{}, 1)
	f.mu.Unlock()
	if _, err := c.get(context.Background(), "q"); err != nil {
		t.Fatal(err)
	}
	<-f.started
	c.close() // returns only once the renewal has stopped
	if _, err := c.get(context.Background(), "q"); err != nil {
		t.Fatal(err) // still answers, from the last counts
	}
}
