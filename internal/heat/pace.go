package heat

import (
	"sync"
	"sync/atomic"
	"time"
)

// pace says when a wait reads the stack next. It learns how long each action takes on this
// cloud (a moving mean of the actions seen to complete) and reads first a little before that,
// then in steps of a tenth of it that double, never more than the poll interval apart: an
// action that takes as long as the last ones is seen done within a tenth of its time, in about
// two reads, instead of up to a whole poll interval late. Before anything is learnt it reads
// in steps that double from minStep.
type pace struct {
	max time.Duration // the poll interval: the longest between two reads

	mu   sync.Mutex
	mean map[string]time.Duration // by action: CREATE, SUSPEND, RESUME, DELETE

	waits, reads atomic.Int64
}

const (
	// minStep is the shortest time between two reads of a stack.
	minStep = 50 * time.Millisecond
	// firstAt is when the first read comes, as a share of the expected time.
	firstAt = 0.9
	// learnWeight is the weight of the latest action in the moving mean.
	learnWeight = 0.25
)

func newPace(max time.Duration) *pace {
	return &pace{max: max, mean: map[string]time.Duration{}}
}

// next is how long to wait before the next read of a stack whose action has been under way
// for elapsed, read n times since.
func (p *pace) next(action string, elapsed time.Duration, n int) time.Duration {
	p.mu.Lock()
	expected, known := p.mean[action]
	p.mu.Unlock()
	if known && n == 0 {
		return min(p.max, max(0, time.Duration(firstAt*float64(expected))-elapsed))
	}
	step := minStep
	if known {
		step = max(minStep, expected/10)
		n-- // the first read was the one near the expected time
	}
	for range min(n, 16) {
		step *= 2
	}
	return min(p.max, step)
}

// learn records that action took took, from its request until it was seen complete.
func (p *pace) learn(action string, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.mean[action]; ok {
		took = time.Duration((1-learnWeight)*float64(m) + learnWeight*float64(took))
	}
	p.mean[action] = took
}

// Reads reports how many waits for an action this cloud has done, and how many reads of a
// stack they made in all.
func (h *Heat) Reads() (waits, reads int64) {
	return h.pace.waits.Load(), h.pace.reads.Load()
}
