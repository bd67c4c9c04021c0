package clock

import (
	"container/heap"
	"context"
	"slices"
	"sync"
	"time"
)

// Virtual is simulated time for discrete-event simulations of concurrent code. The goroutines
// of a simulation (started with Go, or counted with Add by whoever starts them, and then
// calling Done) run while the clock stands still; a goroutine waiting for time to pass (Sleep)
// or for its turn (a Semaphore) counts as blocked. The driver of the simulation calls Wait
// until every counted goroutine is blocked or done, then AdvanceTo the next thing that can
// happen: the clock jumps there at once and wakes whoever was sleeping until then. So a month
// passes in as long as the work in it takes, and no goroutine ever sees time move while it
// works. Safe for concurrent use.
type Virtual struct {
	mu      sync.Mutex
	quiet   *sync.Cond // broadcast when running drops to zero
	now     time.Time
	running int
	seq     int
	sleeps  sleepHeap
}

// NewVirtual returns a virtual clock showing t, with no goroutine counted.
func NewVirtual(t time.Time) *Virtual {
	v := &Virtual{now: t}
	v.quiet = sync.NewCond(&v.mu)
	return v
}

// Now is the simulated time.
func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

// Go runs fn in a goroutine that the clock counts until fn returns.
func (v *Virtual) Go(fn func()) {
	v.Add(1)
	go func() {
		defer v.Done()
		fn()
	}()
}

// Add counts n goroutines that are about to start (each calls Done when it ends). Call it
// before starting them, from a counted goroutine or the driver, so the clock never moves
// while they are on their way.
func (v *Virtual) Add(n int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.running += n
}

// Done uncounts a goroutine that ends.
func (v *Virtual) Done() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.block()
}

// block uncounts the calling goroutine (it is done or about to wait); v.mu is held.
func (v *Virtual) block() {
	v.running--
	if v.running < 0 {
		panic("clock: more goroutines done or blocked than counted")
	}
	if v.running == 0 {
		v.quiet.Broadcast()
	}
}

// Sleep blocks the calling (counted) goroutine until the clock has moved d on, or ctx is done.
// A context that ends wakes the goroutine outside the clock's accounting (the driver may move
// the clock before it runs): a simulation ends its contexts once it stops driving the clock.
func (v *Virtual) Sleep(ctx context.Context, d time.Duration) error {
	v.mu.Lock()
	v.seq++
	s := &sleeper{at: v.now.Add(max(d, 0)), seq: v.seq, wake: make(chan struct{})}
	heap.Push(&v.sleeps, s)
	v.block()
	v.mu.Unlock()
	select {
	case <-s.wake:
		return nil
	case <-ctx.Done():
		v.mu.Lock()
		defer v.mu.Unlock()
		if s.index >= 0 { // not woken meanwhile: count it again ourselves
			heap.Remove(&v.sleeps, s.index)
			v.running++
		}
		return ctx.Err()
	}
}

// Wait blocks the driver until every counted goroutine is blocked or done.
func (v *Virtual) Wait() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.running > 0 {
		v.quiet.Wait()
	}
}

// Next is when the first sleeper wakes, and false when nobody sleeps.
func (v *Virtual) Next() (time.Time, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.sleeps) == 0 {
		return time.Time{}, false
	}
	return v.sleeps[0].at, true
}

// AdvanceTo moves the clock to t (never back) and wakes, counted again, every sleeper due by
// then. The driver calls it after Wait.
func (v *Virtual) AdvanceTo(t time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if t.After(v.now) {
		v.now = t
	}
	for len(v.sleeps) > 0 && !v.sleeps[0].at.After(v.now) {
		s := heap.Pop(&v.sleeps).(*sleeper)
		v.running++
		close(s.wake)
	}
}

// Run drives the clock until nobody sleeps: wait until every counted goroutine is blocked or
// done, move the clock to the next wake-up, again. A simulation with nothing but its
// goroutines to drive (no events of its own) needs no more.
func (v *Virtual) Run() {
	for {
		v.Wait()
		next, ok := v.Next()
		if !ok {
			return
		}
		v.AdvanceTo(next)
	}
}

// Semaphore lets n holders at a time through, in the order they asked; the others wait on
// the clock (blocked, as in Sleep).
type Semaphore struct {
	v       *Virtual
	free    int
	waiting []chan struct{}
}

// NewSemaphore returns a semaphore of n places on this clock.
func (v *Virtual) NewSemaphore(n int) *Semaphore { return &Semaphore{v: v, free: n} }

// Acquire takes a place, waiting for one if none is free, or until ctx is done (see Sleep).
func (s *Semaphore) Acquire(ctx context.Context) error {
	v := s.v
	v.mu.Lock()
	if s.free > 0 {
		s.free--
		v.mu.Unlock()
		return nil
	}
	turn := make(chan struct{})
	s.waiting = append(s.waiting, turn)
	v.block()
	v.mu.Unlock()
	select {
	case <-turn:
		return nil
	case <-ctx.Done():
		v.mu.Lock()
		if i := slices.Index(s.waiting, turn); i >= 0 { // still waiting: leave the line, count ourselves again
			s.waiting = slices.Delete(s.waiting, i, i+1)
			v.running++
			v.mu.Unlock()
			return ctx.Err()
		}
		v.mu.Unlock()
		s.Release() // handed a place meanwhile: give it back
		return ctx.Err()
	}
}

// Release gives a place back: to the first waiting, who is counted running again.
func (s *Semaphore) Release() {
	v := s.v
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(s.waiting) == 0 {
		s.free++
		return
	}
	turn := s.waiting[0]
	s.waiting = s.waiting[1:]
	v.running++
	close(turn)
}

type sleeper struct {
	at    time.Time
	seq   int // first come, first woken at the same time
	wake  chan struct{}
	index int // in the heap; -1 once popped
}

type sleepHeap []*sleeper

func (h sleepHeap) Len() int { return len(h) }
func (h sleepHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h sleepHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *sleepHeap) Push(x any) {
	s := x.(*sleeper)
	s.index = len(*h)
	*h = append(*h, s)
}
func (h *sleepHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	s.index = -1
	*h = old[:len(old)-1]
	return s
}
