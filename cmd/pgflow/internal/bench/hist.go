package bench

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// hist is a concurrency-safe HDR histogram of durations, kept in
// microseconds from 1 µs to 10 minutes with 3 significant digits.
type hist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newHist() *hist {
	return &hist{h: hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)}
}

func (h *hist) record(d time.Duration) {
	us := max(int64(d/time.Microsecond), 1)
	h.mu.Lock()
	_ = h.h.RecordValue(min(us, h.h.HighestTrackableValue()))
	h.mu.Unlock()
}

func (h *hist) count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h.TotalCount()
}

// pct returns the p-th percentile (0–100) in milliseconds; 100 is the max.
func (h *hist) pct(p float64) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h.TotalCount() == 0 {
		return 0
	}
	var us int64
	if p >= 100 {
		us = h.h.Max()
	} else {
		us = h.h.ValueAtQuantile(p)
	}
	return msRound(float64(us) / 1e3)
}

func (h *hist) meanMs() float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return msRound(h.h.Mean() / 1e3)
}

func msRound(ms float64) float64 { return math.Round(ms*1e3) / 1e3 }
func round2(f float64) float64   { return math.Round(f*100) / 100 }

// ring holds publish timestamps (ns since base) by sequence number, modulo
// its size: bounded memory, and exact as long as a message is handled
// before 1<<20 later messages were published.
type ring struct {
	mask  int64
	slots []atomic.Int64
}

func newRing(total int) *ring {
	n := 1024
	for n < total && n < 1<<20 {
		n <<= 1
	}
	return &ring{mask: int64(n - 1), slots: make([]atomic.Int64, n)}
}

func (r *ring) set(seq, t int64) { r.slots[seq&r.mask].Store(t) }
func (r *ring) get(seq int64) int64 {
	return r.slots[seq&r.mask].Load()
}
