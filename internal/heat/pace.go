package heat

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// pace says when a wait reads the stack next. It learns how long each action takes on this
// cloud (the last paceWindow actions seen to complete) and reads where the action is likely
// to be done: a little before the median (so that what it learns can fall as well as rise),
// then at the 60th, 70th, 80th, 90th, 95th and 99th percentiles, then every quarter of the time
// gone, no more than the poll interval apart. An action is then seen done in under three
// reads on average (1 + 0.6 + 0.4 + 0.3 + 0.2 + 0.1 + 0.05), whatever the spread of its
// times, and late by a tenth of the spread at most for most of them. Before it has learnt paceLearnt times of
// an action, it reads in steps that double from minStep up to the poll interval.
type pace struct {
	max time.Duration // the poll interval: the longest between two reads once past the learnt times

	mu    sync.Mutex
	times map[string][]time.Duration // by action (CREATE, SUSPEND, RESUME, DELETE): the latest, in order
	reads map[string][]time.Duration // by action: when to read, from times (readAt); nil until learnt

	waits, readCount atomic.Int64
}

const (
	// minStep is the shortest time between two reads of a stack.
	minStep = 50 * time.Millisecond
	// paceWindow is how many of an action's latest times the pace keeps.
	paceWindow = 64
	// paceLearnt is how many it needs before reading at their percentiles.
	paceLearnt = 8
	// firstAt is where the first read comes, as a share of the median.
	firstAt = 0.9
)

// readAt are the percentiles of the learnt times a wait reads at, in order (the first one
// times firstAt).
var readAt = []float64{0.50, 0.60, 0.70, 0.80, 0.90, 0.95, 0.99}

func newPace(max time.Duration) *pace {
	return &pace{max: max, times: map[string][]time.Duration{}, reads: map[string][]time.Duration{}}
}

// next is how long to wait before the next read of a stack whose action has been under way
// for elapsed, read n times since.
func (p *pace) next(action string, elapsed time.Duration, n int) time.Duration {
	p.mu.Lock()
	at := p.reads[action]
	p.mu.Unlock()
	if at == nil {
		step := minStep
		for range min(n, 16) {
			step *= 2
		}
		return min(p.max, step)
	}
	for _, t := range at {
		if t >= elapsed+minStep {
			return t - elapsed
		}
	}
	return min(p.max, max(minStep, elapsed/4))
}

// learn records that action took took, from its request until it was seen complete.
func (p *pace) learn(action string, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	times := append(p.times[action], took)
	if len(times) > paceWindow {
		times = times[1:]
	}
	p.times[action] = times
	if len(times) < paceLearnt {
		return
	}
	sorted := slices.Sorted(slices.Values(times))
	at := make([]time.Duration, len(readAt))
	for i, q := range readAt {
		at[i] = sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
	}
	at[0] = time.Duration(firstAt * float64(at[0]))
	p.reads[action] = at
}

// Reads reports how many waits for an action this cloud has done, and how many reads of a
// stack they made in all.
func (h *Heat) Reads() (waits, reads int64) {
	return h.pace.waits.Load(), h.pace.readCount.Load()
}
