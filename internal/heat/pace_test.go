package heat

import (
	"testing"
	"time"
)

// The pace reads in doubling steps until it has learnt an action's times, then where they
// say the action is likely done.
func TestPace(t *testing.T) {
	p := newPace(time.Second)
	for n, want := range []time.Duration{50, 100, 200, 400, 800, 1000, 1000} {
		if got := p.next("SUSPEND", 0, n); got != want*time.Millisecond {
			t.Errorf("unknown action, read %d: next in %v, want %vms", n, got, want)
		}
	}
	// 20 times, 2.0 s to 3.9 s, 0.1 s apart: median 3.0 s
	for i := range 20 {
		p.learn("SUSPEND", 2*time.Second+time.Duration(i)*100*time.Millisecond)
	}
	for _, c := range []struct {
		elapsed time.Duration
		want    time.Duration
	}{
		{0, 2700 * time.Millisecond},                      // 0.9 x the median: past the poll interval
		{2700 * time.Millisecond, 500 * time.Millisecond}, // the 60th percentile: 3.2 s
		{3200 * time.Millisecond, 200 * time.Millisecond}, // the 70th: 3.4 s
		{3400 * time.Millisecond, 200 * time.Millisecond}, // the 80th: 3.6 s
		{3600 * time.Millisecond, 200 * time.Millisecond}, // the 90th: 3.8 s
		{3800 * time.Millisecond, 100 * time.Millisecond}, // the 95th and 99th: 3.9 s
		{3900 * time.Millisecond, 975 * time.Millisecond}, // past the learnt times: a quarter of the time gone
		{8 * time.Second, time.Second},                    // no more than the poll interval
		{3770 * time.Millisecond, 130 * time.Millisecond}, // the 90th is nearer than the shortest step: skipped
		{0, 2700 * time.Millisecond},                      // the same for every wait
	} {
		if got := p.next("SUSPEND", c.elapsed, 1); got != c.want {
			t.Errorf("SUSPEND learnt, %v in: next in %v, want %v", c.elapsed, got, c.want)
		}
	}
	if got := p.next("RESUME", 0, 0); got != minStep {
		t.Errorf("another action: next in %v, want %v (nothing learnt for it)", got, minStep)
	}

	// only the latest paceWindow count: a cloud that became faster is read sooner
	for range paceWindow {
		p.learn("SUSPEND", time.Second)
	}
	if got := p.next("SUSPEND", 0, 0); got != 900*time.Millisecond {
		t.Errorf("after %d times of 1 s: first read in %v, want 0.9 s", paceWindow, got)
	}
}
