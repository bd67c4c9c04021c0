package inflight_test

import (
	"container/heap"
	"fmt"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/inflight"
)

// A model cloud, in virtual time: an action sent while n are in flight (itself included)
// takes latency(n), or is refused at once if refuse(n).
type model struct {
	latency func(n int) time.Duration
	refuse  func(n int) bool
}

// run sends actions actions through a Limit, as many at once as its bound allows, and returns
// how long they took in all and the bound seen after each completion.
func (m model) run(l *inflight.Limit, actions int) (total time.Duration, bounds []int) {
	var now time.Duration
	var pending completions
	sent := 0
	for sent < actions || pending.Len() > 0 {
		for sent < actions && pending.Len() < l.Bound() {
			sentWith := l.Start()
			sent++
			if m.refuse != nil && m.refuse(sentWith) {
				bounds = append(bounds, l.Done(sentWith, inflight.Sample{Action: "suspend", PushedBack: true}))
				sent-- // tried again
				continue
			}
			heap.Push(&pending, completion{at: now + m.latency(sentWith), sentAt: now, sentWith: sentWith})
		}
		c := heap.Pop(&pending).(completion)
		now = c.at
		bounds = append(bounds, l.Done(c.sentWith, inflight.Sample{Action: "suspend", Took: c.at - c.sentAt}))
	}
	return now, bounds
}

type completion struct {
	at, sentAt time.Duration
	sentWith   int
}

type completions []completion

func (c completions) Len() int           { return len(c) }
func (c completions) Less(i, j int) bool { return c[i].at < c[j].at }
func (c completions) Swap(i, j int)      { c[i], c[j] = c[j], c[i] }
func (c *completions) Push(x any)        { *c = append(*c, x.(completion)) }
func (c *completions) Pop() any {
	old := *c
	x := old[len(old)-1]
	*c = old[:len(old)-1]
	return x
}

// fixed is the same model run at a fixed bound.
func (m model) fixed(bound, actions int) time.Duration {
	total, _ := m.run(inflight.New(bound, bound), actions)
	return total
}

func TestBoundGrowsWhileTheCloudKeepsUp(t *testing.T) {
	// Heat-like: more at once finishes more per second (queueing adds 10 ms an action)
	m := model{latency: func(n int) time.Duration { return time.Second + time.Duration(n)*10*time.Millisecond }}
	l := inflight.New(2, 32)
	total, bounds := m.run(l, 1000)
	if got := l.Bound(); got != 32 {
		t.Errorf("bound after 1,000 actions on a cloud that keeps up: %d, want the ceiling 32 (trajectory %v)", got, sample(bounds))
	}
	best := m.fixed(32, 1000)
	if ratio := float64(total) / float64(best); ratio > 1.1 {
		t.Errorf("1,000 actions took %s with the adaptive bound, %s at the ceiling: %.2fx, want at most 1.1x", total, best, ratio)
	}
	t.Logf("1,000 actions: %s adaptive, %s at the ceiling; bound %v", total, best, sample(bounds))
}

func TestBoundBacksOffPastTheKnee(t *testing.T) {
	// past 8 at once, the cloud slows down as a whole: each action takes (n/8)^2 its time
	const knee = 8
	m := model{latency: func(n int) time.Duration {
		if n <= knee {
			return time.Second
		}
		return time.Duration(float64(time.Second) * float64(n*n) / knee / knee)
	}}
	l := inflight.New(2, 64)
	total, bounds := m.run(l, 2000)
	tail := bounds[len(bounds)/2:]
	for _, b := range tail {
		if b > 2*knee {
			t.Fatalf("bound %d past twice the knee (%d) after warming up: it overloads the cloud (trajectory %v)", b, knee, sample(bounds))
		}
	}
	atKnee, atCeiling := m.fixed(knee, 2000), m.fixed(64, 2000)
	if ratio := float64(total) / float64(atKnee); ratio > 1.6 {
		t.Errorf("2,000 actions took %s with the adaptive bound, %s at the knee: %.2fx, want at most 1.6x", total, atKnee, ratio)
	}
	if total*3 > atCeiling {
		t.Errorf("2,000 actions took %s with the adaptive bound, %s at the ceiling: want a third of that at most", total, atCeiling)
	}
	t.Logf("2,000 actions: %s adaptive, %s at the knee, %s at the ceiling; bound %v", total, atKnee, atCeiling, sample(bounds))
}

func TestBoundBacksOffWhenTheCloudPushesBack(t *testing.T) {
	// the cloud answers 429 to a seventh action at once
	m := model{latency: func(int) time.Duration { return time.Second }, refuse: func(n int) bool { return n > 6 }}
	l := inflight.New(1, 64)
	_, bounds := m.run(l, 1000)
	tail := bounds[len(bounds)/2:]
	over := 0
	for _, b := range tail {
		if b > 6 {
			over++
		}
	}
	if over > len(tail)/4 {
		t.Errorf("bound above what the cloud accepts (6) at %d of the last %d completions (trajectory %v)", over, len(tail), sample(bounds))
	}
}

func TestBoundIsCutOncePerRound(t *testing.T) {
	l := inflight.New(1, 64)
	for range 20 { // slow start to 21
		l.Done(l.Start(), inflight.Sample{Action: "suspend", Took: time.Second})
	}
	b := l.Bound()
	var sent []int
	for range b {
		sent = append(sent, l.Start())
	}
	for i, s := range sent {
		l.Done(s, inflight.Sample{Action: "suspend", PushedBack: true})
		if want := b * 7 / 10; l.Bound() != want {
			t.Fatalf("after %d refusals of the %d actions sent under bound %d: bound %d, want %d (one cut)", i+1, len(sent), b, l.Bound(), want)
		}
	}
}

// A bound grown by fractions (2, 2.5, 2.9...) lets in its whole part: two actions in flight fill
// a bound of 2.9, and keep it growing.
func TestFractionalBoundIsFilledByItsWholePart(t *testing.T) {
	l := inflight.New(2, 32)
	l.Done(l.Start(), inflight.Sample{Action: "suspend", PushedBack: true}) // out of slow start, at the floor
	m := model{latency: func(int) time.Duration { return time.Second }}
	_, bounds := m.run(l, 200)
	if got := l.Bound(); got < 5 {
		t.Errorf("after 200 actions on a cloud that keeps up, from the floor of 2 without slow start: bound %d, want it still growing (trajectory %v)", got, sample(bounds))
	}
}

func TestPassTailsLeaveTheBound(t *testing.T) {
	// a quiet cloud: passes of 3 actions, each slower per action than a full bound's
	m := model{latency: func(n int) time.Duration { return time.Second + time.Duration(n)*10*time.Millisecond }}
	l := inflight.New(2, 32)
	m.run(l, 1000)
	before := l.Bound()
	for range 100 {
		m.run(l, 3)
	}
	if after := l.Bound(); after != before {
		t.Errorf("100 passes of 3 actions moved the bound from %d to %d: they did not fill it, so they say nothing", before, after)
	}
}

func TestBoundStaysWithinFloorAndCeiling(t *testing.T) {
	l := inflight.New(3, 5)
	if l.Bound() != 3 {
		t.Fatalf("starts at %d, want the floor 3", l.Bound())
	}
	for range 100 {
		l.Done(l.Start(), inflight.Sample{Action: "create", PushedBack: true})
	}
	if l.Bound() != 3 {
		t.Errorf("after 100 refusals: %d, want the floor 3", l.Bound())
	}
	m := model{latency: func(int) time.Duration { return time.Second }}
	m.run(l, 500)
	if l.Bound() != 5 {
		t.Errorf("after 500 actions on a cloud that keeps up: %d, want the ceiling 5", l.Bound())
	}
}

// sample shortens a trajectory to about 20 values for a message.
func sample(bounds []int) string {
	step := max(1, len(bounds)/20)
	s := ""
	for i := 0; i < len(bounds); i += step {
		s += fmt.Sprintf(" %d", bounds[i])
	}
	return "[" + s[1:] + " ]"
}
