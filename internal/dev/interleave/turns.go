package interleave

import (
	"cmp"
	"fmt"
	"hash"
	"hash/fnv"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing/synctest"
	"time"

	"github.com/petermattis/goid"
)

// turns lets one simulated goroutine run at a time. Every goroutine of the simulation calls
// wait before it touches anything shared (the registry, a cloud, the workload's random
// choices) and parks there; the driver, once every goroutine of the bubble is blocked, picks
// one parked goroutine with the seeded generator and lets it run to its next wait. So the
// seed alone decides the order of everything that matters, and the run replays exactly.
type turns struct {
	rng *rand.Rand

	mu     sync.Mutex
	parked []*parked
	ready  chan struct{} // a goroutine parked (buffered: the driver may not be listening)
	dead   map[string]bool
	steps  int
	parks  int // goroutines parked so far: the last tie-break, arrival order
	// pasts hashes, per goroutine (by its runtime id, goid's: only ever a key), every turn it took
	pasts  map[uint64]uint64
	digest hash.Hash64 // of every step taken
	trace  []string
	keep   int // trace lines kept (the last ones)
}

// parked is a goroutine waiting for its turn.
type parked struct {
	who, what string
	past      uint64 // its goroutine's turns so far (turns.pasts)
	seq       int
	turn      chan struct{}
}

func newTurns(seed uint64, keep int) *turns {
	return &turns{rng: rand.New(rand.NewPCG(seed, 0x1ab91a7e)), ready: make(chan struct{}, 1), dead: map[string]bool{}, pasts: map[uint64]uint64{}, keep: keep, digest: fnv.New64a()}
}

// wait parks the calling goroutine, which belongs to who (a process: "r1#2", "cron", "lms")
// and is about to do what, until the driver gives it the turn. A goroutine of a process
// killed meanwhile never gets it: it ends there (runtime.Goexit, running its deferred
// calls, which end the same way if they touch anything shared), as the process would have.
func (t *turns) wait(who, what string) {
	p := &parked{who: who, what: what, turn: make(chan struct{})}
	t.mu.Lock()
	if t.dead[who] {
		t.mu.Unlock()
		runtime.Goexit()
	}
	t.parks++
	p.seq = t.parks
	g := uint64(goid.Get())
	p.past = t.pasts[g]
	h := fnv.New64a()
	fmt.Fprintf(h, "%d %s %s", p.past, who, what)
	t.pasts[g] = h.Sum64()
	t.parked = append(t.parked, p)
	t.mu.Unlock()
	select {
	case t.ready <- struct{}{}:
	default:
	}
	<-p.turn
	t.mu.Lock()
	dead := t.dead[who]
	t.mu.Unlock()
	if dead {
		runtime.Goexit()
	}
}

// kill makes every goroutine of who end at its next turn.
func (t *turns) kill(who string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dead[who] = true
}

// intn draws from the seeded generator. Only the goroutine that has the turn (or the driver
// while every other one is blocked) may draw.
func (t *turns) intn(n int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rng.IntN(n)
}

// chance is true with probability p.
func (t *turns) chance(p float64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rng.Float64() < p
}

// between draws a duration in [lo, hi).
func (t *turns) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return lo + time.Duration(t.rng.Int64N(int64(hi-lo)))
}

// note adds a line to the trace.
func (t *turns) note(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.noteLocked(fmt.Sprintf(format, args...))
}

func (t *turns) noteLocked(line string) {
	t.trace = append(t.trace, fmt.Sprintf("%6d %s %s", t.steps, time.Now().UTC().Format("15:04:05.000"), line))
	if len(t.trace) > 2*t.keep {
		t.trace = slices.Delete(t.trace, 0, len(t.trace)-t.keep)
	}
}

// step waits until every goroutine of the bubble is blocked, then gives the turn to one
// parked goroutine, chosen by the seed, and waits until it is blocked again. It reports
// false when nobody was parked.
func (t *turns) step() bool {
	synctest.Wait()
	t.mu.Lock()
	if len(t.parked) == 0 {
		t.mu.Unlock()
		return false
	}
	// the order goroutines parked in is the Go scheduler's: sort by who and what first, then
	// by what each did before (two goroutines of one actor woken at the same instant to do
	// the same, for two labs, arrive in either order)
	slices.SortFunc(t.parked, func(a, b *parked) int {
		return cmp.Or(cmp.Compare(a.who, b.who), cmp.Compare(a.what, b.what), cmp.Compare(a.past, b.past), cmp.Compare(a.seq, b.seq))
	})
	i := t.rng.IntN(len(t.parked))
	p := t.parked[i]
	t.parked = slices.Delete(t.parked, i, i+1)
	t.steps++
	fmt.Fprintf(t.digest, "%d %s %s\n", time.Now().UnixNano(), p.who, p.what)
	t.noteLocked(p.who + " " + p.what)
	t.mu.Unlock()
	close(p.turn)
	synctest.Wait()
	return true
}

// idle blocks the driver until a goroutine parks or d passes (the bubble's clock jumps to
// whatever wakes first). Call it only after step reported false.
func (t *turns) idle(d time.Duration) {
	select {
	case <-t.ready: // stale: everything is blocked now, so nobody is parking
	default:
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.ready:
	case <-timer.C:
	}
	synctest.Wait() // whatever woke with the driver has parked too
}

// lastTrace returns the trace's last lines.
func (t *turns) lastTrace() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.trace[max(0, len(t.trace)-t.keep):])
}
