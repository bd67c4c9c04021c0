package heat

import (
	"testing"
	"time"
)

// Before anything is learnt, reads come in doubling steps from minStep; once an action's time
// is known, the first read comes just before it and the next ones in doubling tenths of it,
// never more than the poll interval apart.
func TestPace(t *testing.T) {
	p := newPace(time.Second)
	for n, want := range []time.Duration{50, 100, 200, 400, 800, 1000, 1000} {
		if got := p.next("SUSPEND", 0, n); got != want*time.Millisecond {
			t.Errorf("unknown action, read %d: next in %v, want %vms", n, got, want)
		}
	}

	p.learn("SUSPEND", 2*time.Second)
	for _, c := range []struct {
		elapsed time.Duration
		n       int
		want    time.Duration
	}{
		{0, 0, time.Second},                                  // 0.9 x 2 s, capped by the poll interval
		{time.Second, 0, 800 * time.Millisecond},             // 1.8 s - 1 s
		{3 * time.Second, 0, 0},                              // late already: at once
		{1800 * time.Millisecond, 1, 200 * time.Millisecond}, // a tenth of 2 s
		{2000 * time.Millisecond, 2, 400 * time.Millisecond}, // doubling
		{2400 * time.Millisecond, 3, 800 * time.Millisecond}, //
		{3200 * time.Millisecond, 4, time.Second},            // the poll interval at most
		{3200 * time.Millisecond, 40, time.Second},           // and no overflow
	} {
		if got := p.next("SUSPEND", c.elapsed, c.n); got != c.want {
			t.Errorf("SUSPEND of 2 s, %v in, read %d: next in %v, want %v", c.elapsed, c.n, got, c.want)
		}
	}
	if got := p.next("RESUME", 0, 0); got != minStep {
		t.Errorf("another action: next in %v, want %v (nothing learnt for it)", got, minStep)
	}

	// a moving mean: the latest action weighs a quarter
	p.learn("SUSPEND", 6*time.Second)
	if got := p.mean["SUSPEND"]; got != 3*time.Second {
		t.Errorf("mean after 2 s then 6 s: %v, want 3s", got)
	}
	fast := newPace(10 * time.Second)
	fast.learn("CREATE", 300*time.Millisecond)
	if got := fast.next("CREATE", 0, 1); got != minStep {
		t.Errorf("an action of 300 ms, second read: next in %v, want the shortest step %v", got, minStep)
	}
}
