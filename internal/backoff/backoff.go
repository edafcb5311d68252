package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy describes an exponential backoff: Base · 2^(n-1) for the n-th retry,
// never more than Max, with "equal jitter": the result is drawn uniformly from
// [d/2, d], so concurrent retries spread out but never come much earlier than
// the schedule.
type Policy struct {
	Base time.Duration
	Max  time.Duration
	// NoJitter returns the exact schedule (for tests and documentation).
	NoJitter bool
}

// Delay returns the wait before retry number n (n >= 1).
func (p Policy) Delay(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if p.Base <= 0 {
		return 0
	}
	d := p.Base
	for i := 1; i < n; i++ {
		if p.Max > 0 && d >= p.Max {
			break
		}
		if d > time.Duration(1<<62)/2 { // overflow guard
			break
		}
		d *= 2
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	if p.NoJitter || d < 2 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Sleep waits for d or until ctx is done, whichever comes first, and
// reports whether the full wait elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
