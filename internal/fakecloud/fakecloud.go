// Package fakecloud is an in-process cloud with the same interface as cloud.Heat, for fault
// injection and speed in tests and benchmarks (beside the tests against the real Heat). Each
// operation takes a configurable latency and holds one of MaxInFlight slots, like cloud.Heat.
package fakecloud

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/labs"
)

// Cloud is a fake Heat.
type Cloud struct {
	name    string
	latency time.Duration
	slots   chan struct{}
	now     func() time.Time

	mu       sync.Mutex
	stacks   map[string]*labs.Stack // by id
	faults   map[string]int         // op+" "+stack name -> failures left
	down     error
	seq      int
	inFlight int
	maxSeen  int
	calls    map[string]int
	observe  func(op string, took time.Duration, err error)
}

// Observe sets a function told of every finished operation and the time it held its slot,
// as cloud.Options.Observe is for the real cloud.
func (c *Cloud) Observe(fn func(op string, took time.Duration, err error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observe = fn
}

// New returns a fake cloud whose create/suspend/resume/delete take latency each, at most
// maxInFlight at a time.
func New(name string, maxInFlight int, latency time.Duration) *Cloud {
	return &Cloud{name: name, latency: latency, slots: make(chan struct{}, maxInFlight), now: time.Now,
		stacks: map[string]*labs.Stack{}, faults: map[string]int{}, calls: map[string]int{}}
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
	c.stacks[st.ID] = &st
	return st
}

// SetStatus forces a stack's status (a stack stuck in progress, failed by hand).
func (c *Cloud) SetStatus(id, status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.stacks[id]; ok {
		st.Status = status
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
	out := make([]labs.Stack, 0, len(c.stacks))
	for _, st := range c.stacks {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Create makes a stack; it completes after the latency (or fails as FailNext says).
func (c *Cloud) Create(ctx context.Context, r cloud.CreateRequest) (labs.Stack, error) {
	return c.operate(ctx, "create", r.Name, "", func() (*labs.Stack, error) {
		c.seq++
		st := &labs.Stack{Cloud: c.name, ID: fmt.Sprintf("%s-stack-%d", c.name, c.seq), Name: r.Name,
			Status: "CREATE_IN_PROGRESS", Tags: append([]string(nil), r.Tags...), CreatedAt: c.now().UTC(),
			Outputs: map[string]string{"lab_id": r.Params["lab_id"]}}
		c.stacks[st.ID] = st
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
	for _, st := range c.stacks {
		if hasAll(st.Tags, tags) {
			out = append(out, *st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
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
	start := time.Now()
	st, err := c.run(ctx, op, name, id, create)
	c.mu.Lock()
	observe := c.observe
	c.mu.Unlock()
	if observe != nil {
		observe(op, time.Since(start), err)
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
	st.Status = action + "_IN_PROGRESS"
	c.mu.Unlock()

	select {
	case <-time.After(c.latency):
	case <-ctx.Done():
		return c.snapshot(st), ctx.Err()
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	key := op + " " + name
	if c.faults[key] == 0 {
		key = op + " " // FailNext(op, "", n): any stack
	}
	if c.faults[key] > 0 {
		c.faults[key]--
		st.Status, st.StatusReason = action+"_FAILED", "injected failure"
		return *st, c.err(op, name, cloud.ErrFailed, st.StatusReason)
	}
	st.Status, st.StatusReason = action+"_COMPLETE", "Stack "+action+" completed successfully"
	out := *st
	if op == "delete" {
		delete(c.stacks, st.ID)
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
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
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
	<-c.slots
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
