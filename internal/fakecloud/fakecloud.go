// Package fakecloud is an in-process cloud with the same interface as heat.Heat, for fault
// injection and speed in tests, benchmarks and simulations (beside the tests against the real
// Heat). Each operation takes a configurable latency and holds one of MaxInFlight slots, like
// heat.Heat; the latencies pass in real time, or on a simulation's virtual clock. The cloud
// meters what it would bill: the time each stack spends anywhere but suspended.
package fakecloud

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/labs"
)

// Cloud is a fake Heat.
type Cloud struct {
	name      string
	latency   time.Duration
	latencies map[string]time.Duration
	knee      int
	time      clock.Clock // the time operations take place in: real, or virtual
	slots     slots

	mu      sync.Mutex
	pending map[string]*pending    // operations under way, by stack id
	stacks  map[string]*labs.Stack // by id
	byName  []*labs.Stack          // the same, by name then id: the order of List
	meters  map[string]*meter      // by stack id, gone stacks included
	faults  map[string]int         // op+" "+stack name -> failures left
	down    error
	seq     int
	maxSeen int
	calls   map[string]int
	observe func(op string, took time.Duration, err error)
}

// Options configure a fake cloud.
type Options struct {
	Name string
	// MaxInFlight bounds the operations (create, suspend, resume, delete) in flight at once;
	// 0: no bound (the caller bounds them, and MaxInFlightSeen says how well).
	MaxInFlight int
	// Latency is how long each operation takes; Latencies overrides it per operation
	// ("create", "suspend", "resume", "delete").
	Latency   time.Duration
	Latencies map[string]time.Duration
	// Knee, if set, is how many operations the cloud takes at once at their latency: past it
	// the whole cloud slows down, each operation sent with n in flight taking (n/Knee)^2 times
	// its latency (an overloaded cloud, for the adaptive bound).
	Knee int
	// Clock, if set, is the simulated time the cloud lives in: the latencies pass on it and
	// callers wait on it for a slot (a simulation's goroutines). Default: real time.
	Clock *clock.Virtual
}

// slots bound the operations in flight.
type slots interface {
	Acquire(ctx context.Context) error
	Release()
}

// chanSlots are slots in real time.
type chanSlots chan struct{}

func (s chanSlots) Acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s chanSlots) Release() { <-s }

// unbounded are slots without a bound.
type unbounded struct{}

func (unbounded) Acquire(context.Context) error { return nil }
func (unbounded) Release()                      {}

// meter is what a stack has billed: the time it spent anywhere but SUSPEND_COMPLETE.
type meter struct {
	billed  time.Duration
	since   time.Time // of the current status
	billing bool      // the current status bills
}

// Observe sets a function told of every finished operation and the time it held its slot,
// as heat.Options.Observe is for the real cloud.
func (c *Cloud) Observe(fn func(op string, took time.Duration, err error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observe = fn
}

// New returns a fake cloud whose create/suspend/resume/delete take latency each (in real
// time), at most maxInFlight at a time.
func New(name string, maxInFlight int, latency time.Duration) *Cloud {
	return NewWith(Options{Name: name, MaxInFlight: maxInFlight, Latency: latency})
}

// NewWith returns a fake cloud configured by o.
func NewWith(o Options) *Cloud {
	c := &Cloud{name: o.Name, latency: o.Latency, latencies: o.Latencies, knee: o.Knee, time: clock.Wall{},
		stacks: map[string]*labs.Stack{}, meters: map[string]*meter{}, faults: map[string]int{}, calls: map[string]int{},
		pending: map[string]*pending{}}
	if o.Clock != nil {
		c.time = o.Clock
	}
	switch {
	case o.MaxInFlight <= 0:
		c.slots = unbounded{}
	case o.Clock != nil:
		c.slots = o.Clock.NewSemaphore(o.MaxInFlight)
	default:
		c.slots = make(chanSlots, o.MaxInFlight)
	}
	return c
}

// latencyOf is how long op takes, sent with inFlight operations under way (itself included).
func (c *Cloud) latencyOf(op string, inFlight int) time.Duration {
	d, ok := c.latencies[op]
	if !ok {
		d = c.latency
	}
	if c.knee > 0 && inFlight > c.knee {
		over := float64(inFlight) / float64(c.knee)
		d = time.Duration(float64(d) * over * over)
	}
	return d
}

// setStatus moves a stack to status now, metering the time it spent in the one before; c.mu
// is held.
func (c *Cloud) setStatus(st *labs.Stack, status string) { c.setStatusAt(st, status, c.time.Now()) }

// setStatusAt moves a stack to status at a time; c.mu is held.
func (c *Cloud) setStatusAt(st *labs.Stack, status string, now time.Time) {
	m := c.meters[st.ID]
	if m == nil {
		m = &meter{since: now}
		c.meters[st.ID] = m
	}
	if m.billing {
		m.billed += now.Sub(m.since)
	}
	m.since, m.billing = now, status != "SUSPEND_COMPLETE" && status != "DELETE_COMPLETE"
	st.Status = status
}

// Billed is the time the cloud's stacks, gone ones included, have spent anywhere but
// SUSPEND_COMPLETE up to now (in progress, failed and launching included): what a cloud that
// bills a running stack by the second and a suspended one nothing charges, summed.
func (c *Cloud) Billed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	now := c.time.Now()
	var total time.Duration
	for _, m := range c.meters {
		total += m.billed
		if m.billing {
			total += now.Sub(m.since)
		}
	}
	return total
}

// Name is the cloud's name.
func (c *Cloud) Name() string { return c.name }

// FailNext makes the next n calls of op ("create", "suspend", "resume", "delete") on the
// named stack end in op_FAILED. An empty stackName means any stack (launched stacks are named
// after an id not known in advance); failures named for a stack are used first.
func (c *Cloud) FailNext(op, stackName string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults[op+" "+stackName] = n
}

// SetDown makes every call fail as a transient error (nil brings the cloud back).
func (c *Cloud) SetDown(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = err
}

// Put adds a stack as if someone created it (an orphan, a stack of another tool).
func (c *Cloud) Put(st labs.Stack) labs.Stack {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.ID == "" {
		c.seq++
		st.ID = fmt.Sprintf("%s-stack-%d", c.name, c.seq)
	}
	st.Cloud = c.name
	c.add(&st)
	c.setStatus(&st, st.Status)
	return st
}

// add puts a stack in (replacing one with its id); c.mu is held.
func (c *Cloud) add(st *labs.Stack) {
	if _, ok := c.stacks[st.ID]; ok {
		c.remove(st.ID)
	}
	c.stacks[st.ID] = st
	i, _ := slices.BinarySearchFunc(c.byName, st, byName)
	c.byName = slices.Insert(c.byName, i, st)
}

// remove takes a stack out; c.mu is held.
func (c *Cloud) remove(id string) {
	if st, ok := c.stacks[id]; ok {
		delete(c.stacks, id)
		i, _ := slices.BinarySearchFunc(c.byName, st, byName)
		c.byName = slices.Delete(c.byName, i, i+1)
	}
}

func byName(a, b *labs.Stack) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
}

// SetStatus forces a stack's status (a stack stuck in progress, failed by hand).
func (c *Cloud) SetStatus(id, status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	if st, ok := c.stacks[id]; ok {
		c.setStatus(st, status)
	}
}

// Restart is the engine restarting: every stack with an action in progress ends in that
// action's _FAILED status, as Heat marks them when heat-engine starts again.
func (c *Cloud) Restart() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	for _, st := range c.byName {
		if action, ok := strings.CutSuffix(st.Status, "_IN_PROGRESS"); ok {
			delete(c.pending, st.ID)
			c.setStatus(st, action+"_FAILED")
			st.StatusReason = "Engine went down during stack " + action
		}
	}
}

// MaxInFlightSeen is the most operations that were in flight at once.
func (c *Cloud) MaxInFlightSeen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxSeen
}

// Calls counts the calls of op made so far.
func (c *Cloud) Calls(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[op]
}

// Stacks returns every stack the cloud has, by name.
func (c *Cloud) Stacks() []labs.Stack {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	out := make([]labs.Stack, 0, len(c.byName))
	for _, st := range c.byName {
		out = append(out, *st)
	}
	return out
}

// Create makes a stack; it completes after the latency (or fails as FailNext says). As Heat's,
// r.Accepted is told of the stack once it exists, before the wait.
func (c *Cloud) Create(ctx context.Context, r cloud.CreateRequest) (labs.Stack, error) {
	return c.operate(ctx, "create", r.Name, "", r.Accepted, func() (*labs.Stack, error) {
		c.seq++
		st := &labs.Stack{Cloud: c.name, ID: fmt.Sprintf("%s-stack-%d", c.name, c.seq), Name: r.Name,
			Tags: append([]string(nil), r.Tags...), CreatedAt: c.time.Now().UTC(),
			Outputs: map[string]string{"lab_id": r.Params["lab_id"]}}
		c.add(st)
		return st, nil
	})
}

// Get returns a stack by id, or by name when id is empty.
func (c *Cloud) Get(ctx context.Context, name, id string) (labs.Stack, error) {
	if err := c.enter(ctx, "get", false); err != nil {
		return labs.Stack{}, err
	}
	defer c.leave(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	st, ok := c.stacks[id]
	if id == "" { // by name, as Heat looks a stack up without its id
		i := slices.IndexFunc(c.byName, func(s *labs.Stack) bool { return s.Name == name })
		if ok = i >= 0; ok {
			st = c.byName[i]
		}
	}
	if !ok {
		return labs.Stack{}, c.err("get", name, cloud.ErrNotFound, "stack not found")
	}
	return *st, nil
}

// List returns the stacks that carry all tags.
func (c *Cloud) List(ctx context.Context, tags ...string) ([]labs.Stack, error) {
	if err := c.enter(ctx, "list", false); err != nil {
		return nil, err
	}
	defer c.leave(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	var out []labs.Stack
	for _, st := range c.byName {
		if hasAll(st.Tags, tags) {
			out = append(out, *st)
		}
	}
	return out, nil
}

// Suspend suspends a stack.
func (c *Cloud) Suspend(ctx context.Context, name, id string) (labs.Stack, error) {
	return c.operate(ctx, "suspend", name, id, nil, nil)
}

// Resume resumes a stack.
func (c *Cloud) Resume(ctx context.Context, name, id string) (labs.Stack, error) {
	return c.operate(ctx, "resume", name, id, nil, nil)
}

// Delete deletes a stack; deleting one that is gone succeeds.
func (c *Cloud) Delete(ctx context.Context, name, id string) (labs.Stack, error) {
	return c.operate(ctx, "delete", name, id, nil, nil)
}

// operate runs one operation: take a slot, mark it in progress, wait the latency, finish.
func (c *Cloud) operate(ctx context.Context, op, name, id string, accepted func(labs.Stack), create func() (*labs.Stack, error)) (labs.Stack, error) {
	if err := c.enter(ctx, op, true); err != nil {
		return labs.Stack{}, err
	}
	defer c.leave(true)
	start := c.time.Now()
	st, err := c.run(ctx, op, name, id, accepted, create)
	c.mu.Lock()
	observe := c.observe
	c.mu.Unlock()
	if observe != nil {
		observe(op, c.time.Now().Sub(start), err)
	}
	return st, err
}

// run is one operation holding its slot. The cloud finishes the operation at its time
// whether or not the caller still waits (a caller whose context ends leaves it running, as
// Heat does); a read settles whatever is due first (settle).
func (c *Cloud) run(ctx context.Context, op, name, id string, accepted func(labs.Stack), create func() (*labs.Stack, error)) (labs.Stack, error) {
	action := strings.ToUpper(op)

	c.mu.Lock()
	c.settle()
	var st *labs.Stack
	if create != nil {
		st, _ = create()
	} else if st = c.stacks[id]; st == nil {
		c.mu.Unlock()
		if op == "delete" {
			return labs.Stack{Cloud: c.name, ID: id, Name: name, Status: "DELETE_COMPLETE"}, nil
		}
		return labs.Stack{}, c.err(op, name, cloud.ErrNotFound, "stack not found")
	} else if strings.HasSuffix(st.Status, "_IN_PROGRESS") && op != "delete" {
		c.mu.Unlock()
		return labs.Stack{}, c.err(op, name, cloud.ErrConflict, "stack already has an action in progress")
	}
	c.setStatus(st, action+"_IN_PROGRESS")
	p := &pending{op: op, name: name, st: st}
	c.pending[st.ID] = p // a delete takes over from what was under way
	latency := c.latencyOf(op, len(c.pending))
	p.at = c.time.Now().Add(latency)
	c.maxSeen = max(c.maxSeen, len(c.pending))
	started := *st
	c.mu.Unlock()
	if accepted != nil {
		accepted(started)
	}

	if err := c.time.Sleep(ctx, latency); err != nil {
		return c.snapshot(st), err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	switch {
	case p.done:
		return p.result, p.err
	case op == "delete" && c.stacks[st.ID] != st:
		return labs.Stack{Cloud: c.name, ID: st.ID, Name: st.Name, Status: "DELETE_COMPLETE"}, nil
	}
	// it ended otherwise: a delete took over, or the engine restarted (Restart)
	return *st, c.err(op, name, cloud.ErrFailed, "the "+op+" was interrupted: the stack is "+st.Status)
}

// pending is an operation under way: the cloud finishes it at its time.
type pending struct {
	op, name string
	st       *labs.Stack
	at       time.Time
	done     bool
	result   labs.Stack
	err      error
}

// settle finishes every operation due by now, in the order they are due; c.mu is held.
func (c *Cloud) settle() {
	now := c.time.Now()
	var due []*pending
	for _, p := range c.pending {
		if !p.at.After(now) {
			due = append(due, p)
		}
	}
	slices.SortFunc(due, func(a, b *pending) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.st.ID, b.st.ID)) })
	for _, p := range due {
		delete(c.pending, p.st.ID)
		c.finish(p)
	}
}

// finish ends an operation in success, or in failure as FailNext says; c.mu is held.
func (c *Cloud) finish(p *pending) {
	st, action := p.st, strings.ToUpper(p.op)
	p.done = true
	key := p.op + " " + p.name
	if c.faults[key] == 0 {
		key = p.op + " " // FailNext(op, "", n): any stack
	}
	if c.faults[key] > 0 {
		c.faults[key]--
		c.setStatusAt(st, action+"_FAILED", p.at)
		st.StatusReason = "injected failure"
		p.result, p.err = *st, c.err(p.op, p.name, cloud.ErrFailed, st.StatusReason)
		return
	}
	c.setStatusAt(st, action+"_COMPLETE", p.at)
	st.StatusReason = "Stack " + action + " completed successfully"
	p.result = *st
	if p.op == "delete" {
		c.remove(st.ID)
	}
}

func (c *Cloud) snapshot(st *labs.Stack) labs.Stack {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	return *st
}

// enter counts a call and, for operations, takes a slot.
func (c *Cloud) enter(ctx context.Context, op string, slot bool) error {
	c.mu.Lock()
	c.calls[op]++
	down := c.down
	c.mu.Unlock()
	if down != nil {
		return c.err(op, "", cloud.ErrTransient, down.Error())
	}
	if !slot {
		return nil
	}
	return c.slots.Acquire(ctx)
}

func (c *Cloud) leave(slot bool) {
	if slot {
		c.slots.Release()
	}
}

func (c *Cloud) err(op, stack string, kind error, msg string) error {
	return &cloud.Error{Cloud: c.name, Op: op, Stack: stack, Kind: kind, Message: msg, RequestID: "req-fake"}
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
