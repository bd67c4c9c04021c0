// Package fakecloud is an in-process cloud with the same interface as cloud.Heat, for fault
// injection and speed in tests, benchmarks and simulations (beside the tests against the real
// Heat). Each operation takes a configurable latency and holds one of MaxInFlight slots, like
// cloud.Heat; the latencies pass in real time, or on a simulation's virtual clock. The cloud
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
	time      timeline
	slots     slots

	mu       sync.Mutex
	stacks   map[string]*labs.Stack // by id
	byName   []*labs.Stack          // the same, by name then id: the order of List
	meters   map[string]*meter      // by stack id, gone stacks included
	faults   map[string]int         // op+" "+stack name -> failures left
	down     error
	seq      int
	inFlight int
	maxSeen  int
	calls    map[string]int
	observe  func(op string, took time.Duration, err error)
}

// Options configure a fake cloud.
type Options struct {
	Name string
	// MaxInFlight bounds the operations (create, suspend, resume, delete) in flight at once.
	MaxInFlight int
	// Latency is how long each operation takes; Latencies overrides it per operation
	// ("create", "suspend", "resume", "delete").
	Latency   time.Duration
	Latencies map[string]time.Duration
	// Clock, if set, is the simulated time the cloud lives in: the latencies pass on it and
	// callers wait on it for a slot (a simulation's goroutines). Default: real time.
	Clock *clock.Virtual
}

// timeline is the time operations take place in: real, or a virtual clock.
type timeline interface {
	Now() time.Time
	Sleep(ctx context.Context, d time.Duration) error
}

// slots bound the operations in flight.
type slots interface {
	Acquire(ctx context.Context) error
	Release()
}

// wall is real time.
type wall struct{}

func (wall) Now() time.Time { return time.Now() }

func (wall) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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

// meter is what a stack has billed: the time it spent anywhere but SUSPEND_COMPLETE.
type meter struct {
	billed  time.Duration
	since   time.Time // of the current status
	billing bool      // the current status bills
}

// Observe sets a function told of every finished operation and the time it held its slot,
// as cloud.Options.Observe is for the real cloud.
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
	c := &Cloud{name: o.Name, latency: o.Latency, latencies: o.Latencies, time: wall{}, slots: make(chanSlots, o.MaxInFlight),
		stacks: map[string]*labs.Stack{}, meters: map[string]*meter{}, faults: map[string]int{}, calls: map[string]int{}}
	if o.Clock != nil {
		c.time, c.slots = o.Clock, o.Clock.NewSemaphore(o.MaxInFlight)
	}
	return c
}

// latencyOf is how long op takes.
func (c *Cloud) latencyOf(op string) time.Duration {
	if d, ok := c.latencies[op]; ok {
		return d
	}
	return c.latency
}

// setStatus moves a stack to status, metering the time it spent in the one before; c.mu is held.
func (c *Cloud) setStatus(st *labs.Stack, status string) {
	now := c.time.Now()
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
	if st, ok := c.stacks[id]; ok {
		c.setStatus(st, status)
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
	out := make([]labs.Stack, 0, len(c.byName))
	for _, st := range c.byName {
		out = append(out, *st)
	}
	return out
}

// Create makes a stack; it completes after the latency (or fails as FailNext says).
func (c *Cloud) Create(ctx context.Context, r cloud.CreateRequest) (labs.Stack, error) {
	return c.operate(ctx, "create", r.Name, "", func() (*labs.Stack, error) {
		c.seq++
		st := &labs.Stack{Cloud: c.name, ID: fmt.Sprintf("%s-stack-%d", c.name, c.seq), Name: r.Name,
			Tags: append([]string(nil), r.Tags...), CreatedAt: c.time.Now().UTC(),
			Outputs: map[string]string{"lab_id": r.Params["lab_id"]}}
		c.add(st)
		return st, nil
	})
}

// Get returns a stack by id.
func (c *Cloud) Get(ctx context.Context, name, id string) (labs.Stack, error) {
	if err := c.enter(ctx, "get", false); err != nil {
		return labs.Stack{}, err
	}
	defer c.leave(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.stacks[id]
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
	return c.operate(ctx, "suspend", name, id, nil)
}

// Resume resumes a stack.
func (c *Cloud) Resume(ctx context.Context, name, id string) (labs.Stack, error) {
	return c.operate(ctx, "resume", name, id, nil)
}

// Delete deletes a stack; deleting one that is gone succeeds.
func (c *Cloud) Delete(ctx context.Context, name, id string) (labs.Stack, error) {
	return c.operate(ctx, "delete", name, id, nil)
}

// operate runs one operation: take a slot, mark it in progress, wait the latency, finish.
func (c *Cloud) operate(ctx context.Context, op, name, id string, create func() (*labs.Stack, error)) (labs.Stack, error) {
	if err := c.enter(ctx, op, true); err != nil {
		return labs.Stack{}, err
	}
	defer c.leave(true)
	start := c.time.Now()
	st, err := c.run(ctx, op, name, id, create)
	c.mu.Lock()
	observe := c.observe
	c.mu.Unlock()
	if observe != nil {
		observe(op, c.time.Now().Sub(start), err)
	}
	return st, err
}

// run is one operation holding its slot.
func (c *Cloud) run(ctx context.Context, op, name, id string, create func() (*labs.Stack, error)) (labs.Stack, error) {
	action := strings.ToUpper(op)

	c.mu.Lock()
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
	c.mu.Unlock()

	if err := c.time.Sleep(ctx, c.latencyOf(op)); err != nil {
		return c.snapshot(st), err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	key := op + " " + name
	if c.faults[key] == 0 {
		key = op + " " // FailNext(op, "", n): any stack
	}
	if c.faults[key] > 0 {
		c.faults[key]--
		c.setStatus(st, action+"_FAILED")
		st.StatusReason = "injected failure"
		return *st, c.err(op, name, cloud.ErrFailed, st.StatusReason)
	}
	c.setStatus(st, action+"_COMPLETE")
	st.StatusReason = "Stack " + action + " completed successfully"
	out := *st
	if op == "delete" {
		c.remove(st.ID)
	}
	return out, nil
}

func (c *Cloud) snapshot(st *labs.Stack) labs.Stack {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	if err := c.slots.Acquire(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.inFlight++
	c.maxSeen = max(c.maxSeen, c.inFlight)
	c.mu.Unlock()
	return nil
}

func (c *Cloud) leave(slot bool) {
	if !slot {
		return
	}
	c.mu.Lock()
	c.inFlight--
	c.mu.Unlock()
	c.slots.Release()
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
