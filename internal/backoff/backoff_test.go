package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelaySchedule(t *testing.T) {
	p := Policy{Base: time.Second, Max: 10 * time.Second, NoJitter: true}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := p.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := p.Delay(0); got != time.Second {
		t.Errorf("Delay(0) = %v, want the first step", got)
	}
	if got := p.Delay(1000); got != 10*time.Second {
		t.Errorf("Delay(1000) = %v, want the cap", got)
	}
}

func TestDelayJitterStaysInBand(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for n := 1; n <= 6; n++ {
		exact := Policy{Base: p.Base, Max: p.Max, NoJitter: true}.Delay(n)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(n)
			if d < exact/2 || d > exact {
				t.Fatalf("Delay(%d) = %v, outside [%v, %v]", n, d, exact/2, exact)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Delay(%d): only %d distinct values in 200 draws; jitter missing", n, len(seen))
		}
	}
}

func TestZeroBase(t *testing.T) {
	if d := (Policy{}).Delay(3); d != 0 {
		t.Fatalf("zero policy gave %v", d)
	}
}

func TestSleepStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep of an hour reported a full wait on a cancelled context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep did not report a full wait")
	}
}
