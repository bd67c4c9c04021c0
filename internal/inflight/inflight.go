// Package inflight is the adaptive bound on a cloud's actions in flight (max_in_flight: auto).
//
// It follows Little's law: a cloud that still has room finishes more actions per second when
// it is given more at once, so an action's completion time divided by the actions in flight
// beside it (its cost: the cloud's time per action) falls or stays flat as the bound grows. A
// cloud past its knee only queues, or slows down as a whole: the cost rises. The bound grows
// while the cost stays within Tolerance of the best this cloud has shown for the action (by one
// per completion at first, doubling each round as TCP's slow start does, then by one per
// round), and is cut to Decrease of itself when the cost rises past that or the cloud pushes
// back (429, 503, a timeout), at most once per round: the actions sent under the old bound
// report the same overload and must not cut it again. Only actions sent while the bound was
// nearly full move it (a pass's last few say nothing about whether more would help). It stays
// between a floor and a ceiling.
package inflight

import (
	"math"
	"sync"
	"time"
)

const (
	// Tolerance is how far above the best cost seen an action's cost may be before the
	// cloud counts as overloaded (Netflix's gradient limit uses 1.5 too).
	Tolerance = 1.5
	// Decrease is what a cut leaves of the bound.
	Decrease = 0.7
	// recentWeight is the weight of an action's cost in the recent cost (a moving mean: one
	// action's cost varies too much to judge the cloud by).
	recentWeight = 0.25
	// drift is how far each action moves the best cost towards the recent one when that is
	// higher, so that a cloud that became slower for good is not held to its best day forever.
	drift = 1.0 / 256
)

// cost is what one kind of action costs the cloud: its completion time over the actions in
// flight beside it, as moving means (one action's time varies too much to judge the cloud by).
type cost struct {
	recent   time.Duration
	recentAt float64 // the actions in flight, a moving mean
	// best is the lowest recent cost seen, drifting up towards the recent one, and bestAt the
	// actions in flight then
	best   time.Duration
	bestAt float64
}

// add takes one action's cost, sent with inFlight others, and reports whether the cloud is
// past its knee: more at once than at its best cost made each action cost more than Tolerance
// times that. (Fewer at once than at the best cost cost more per action too, but that is the
// bound's doing, and growing it is the cure.)
func (c *cost) add(d time.Duration, inFlight float64) (gainless, overloaded bool) {
	if c.best == 0 {
		c.recent, c.recentAt, c.best, c.bestAt = d, inFlight, d, inFlight
		return false, false
	}
	c.recent += time.Duration(recentWeight * float64(d-c.recent))
	c.recentAt += recentWeight * (inFlight - c.recentAt)
	if c.recent < c.best {
		c.best, c.bestAt = c.recent, c.recentAt
		return false, false
	}
	c.best += time.Duration(drift * float64(c.recent-c.best))
	gainless = c.recentAt > c.bestAt
	return gainless, gainless && float64(c.recent) > Tolerance*float64(c.best)
}

// Limit is one cloud's adaptive bound. Its methods are safe for concurrent use.
type Limit struct {
	floor, ceiling int

	mu        sync.Mutex
	bound     float64
	slowStart bool
	inFlight  int              // actions started and not done
	sinceCut  int              // completions since the last cut
	costs     map[string]*cost // by action
}

// New returns a bound that starts at floor and stays from floor to ceiling (at least 1).
func New(floor, ceiling int) *Limit {
	floor = max(floor, 1)
	ceiling = max(ceiling, floor)
	return &Limit{floor: floor, ceiling: ceiling, bound: float64(floor), slowStart: true, sinceCut: ceiling,
		costs: map[string]*cost{}}
}

// Bound is how many actions may be in flight now.
func (l *Limit) Bound() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.bound)
}

// Ceiling is the most the bound may be.
func (l *Limit) Ceiling() int { return l.ceiling }

// Start counts an action sent to the cloud; it returns how many are in flight with it, for Done.
func (l *Limit) Start() (sentWith int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight++
	return l.inFlight
}

// A Sample is how an action counted by Start ended.
type Sample struct {
	Action string
	// Took is the time from the request to the action seen done; 0: unknown (it was given up,
	// or failed), so it moves nothing.
	Took time.Duration
	// PushedBack: the cloud refused it for load (429, 503) or did not answer in time.
	PushedBack bool
}

// Done records the end of an action Start counted (sentWith is what Start returned), adjusts
// the bound to it, and returns the new bound.
func (l *Limit) Done(sentWith int, s Sample) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	inFlight := float64(sentWith+l.inFlight) / 2 // beside it over its life, itself included
	l.inFlight--
	l.sinceCut++
	if s.PushedBack {
		l.cut()
		return int(l.bound)
	}
	if s.Took <= 0 {
		return int(l.bound)
	}
	if inFlight < Decrease*math.Floor(l.bound) { // the whole slots: a bound of 2.9 lets 2 in
		// the bound was not what held the cloud back (the end of a pass, a quiet hour): this
		// says nothing about whether more at once would help, as TCP grows no window it
		// does not fill
		return int(l.bound)
	}
	c := l.costs[s.Action]
	if c == nil {
		c = &cost{}
		l.costs[s.Action] = c
	}
	gainless, overloaded := c.add(time.Duration(float64(s.Took)/inFlight), inFlight)
	if overloaded {
		l.cut()
		return int(l.bound)
	}
	if gainless {
		// more at once no longer costs less per action: the knee is near, grow slowly
		l.slowStart = false
	}
	if l.slowStart {
		l.bound++
	} else {
		l.bound += 1 / l.bound
	}
	l.bound = math.Min(l.bound, float64(l.ceiling))
	return int(l.bound)
}

// cut lowers the bound, once per round: the actions in flight when it was cut were sent under
// the old bound. l.mu is held.
func (l *Limit) cut() {
	l.slowStart = false
	if l.sinceCut < int(l.bound) {
		return
	}
	l.sinceCut = 0
	l.bound = math.Max(float64(l.floor), math.Floor(l.bound*Decrease))
}
