package interleave

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

// registry is one process's registry: the real store, every call taking its turn first, and
// failing as unavailable while the simulation has the database down.
type registry struct {
	*store.Store
	w   *world
	who string
}

func (r *registry) enter(ctx context.Context, what string) error {
	r.w.turns.wait(r.who+actorOf(ctx), "registry "+what)
	if r.w.registryDown() {
		return fmt.Errorf("simulated outage: %w", labs.ErrUnavailable)
	}
	return nil
}

func (r *registry) CreateLab(ctx context.Context, l labs.Lab, ev labs.Event) (labs.Lab, error) {
	if err := r.enter(ctx, "create "+l.ID); err != nil {
		return labs.Lab{}, err
	}
	defer r.w.afterWrite()
	lab, err := r.Store.CreateLab(ctx, l, ev)
	if err == nil {
		r.w.owned(lab, false)
		r.w.afterAdd()
	}
	return lab, err
}

func (r *registry) UpdateLab(ctx context.Context, l labs.Lab, ev labs.Event) (labs.Lab, error) {
	if err := r.enter(ctx, "update "+l.ID+" "+ev.Action); err != nil {
		return labs.Lab{}, err
	}
	defer r.w.afterWrite()
	lab, err := r.Store.UpdateLab(ctx, l, ev)
	if err == nil {
		r.w.owned(lab, false)
		r.w.updated(lab, ev)
	}
	return lab, err
}

func (r *registry) PoolSize(ctx context.Context, course string) (int, error) {
	if err := r.enter(ctx, "pool-size "+course); err != nil {
		return 0, err
	}
	return r.Store.PoolSize(ctx, course)
}

func (r *registry) TakePooled(ctx context.Context, course, learner string, ev labs.Event) (labs.Lab, error) {
	if err := r.enter(ctx, "take-pooled "+course+" "+learner); err != nil {
		return labs.Lab{}, err
	}
	defer r.w.afterWrite()
	lab, err := r.Store.TakePooled(ctx, course, learner, ev)
	if err == nil {
		r.w.owned(lab, true)
		r.w.afterAdd()
	}
	return lab, err
}

func (r *registry) Usage(ctx context.Context, learner, course string) (time.Duration, time.Duration, error) {
	if err := r.enter(ctx, "usage "+learner+" "+course); err != nil {
		return 0, 0, err
	}
	return r.Store.Usage(ctx, learner, course)
}

func (r *registry) GetLab(ctx context.Context, id string) (labs.Lab, error) {
	if err := r.enter(ctx, "get "+id); err != nil {
		return labs.Lab{}, err
	}
	return r.Store.GetLab(ctx, id)
}

func (r *registry) FindLive(ctx context.Context, learner, course string) (labs.Lab, error) {
	if err := r.enter(ctx, "find "+learner); err != nil {
		return labs.Lab{}, err
	}
	return r.Store.FindLive(ctx, learner, course)
}

func (r *registry) Heartbeat(ctx context.Context, id string, at time.Time) (labs.Lab, error) {
	if err := r.enter(ctx, "heartbeat "+id); err != nil {
		return labs.Lab{}, err
	}
	return r.Store.Heartbeat(ctx, id, at)
}

func (r *registry) Leave(ctx context.Context, id string, at time.Time) (labs.Lab, error) {
	if err := r.enter(ctx, "leave "+id); err != nil {
		return labs.Lab{}, err
	}
	return r.Store.Leave(ctx, id, at)
}

func (r *registry) AddEvent(ctx context.Context, ev labs.Event) error {
	if err := r.enter(ctx, "event "+ev.LabID+" "+ev.Action); err != nil {
		return err
	}
	return r.Store.AddEvent(ctx, ev)
}

func (r *registry) CountLive(ctx context.Context) (map[string]int, error) {
	if err := r.enter(ctx, "count"); err != nil {
		return nil, err
	}
	return r.Store.CountLive(ctx)
}

func (r *registry) ListLabs(ctx context.Context, f labs.Filter) ([]labs.Lab, error) {
	if err := r.enter(ctx, "list"); err != nil {
		return nil, err
	}
	return r.Store.ListLabs(ctx, f)
}

func (r *registry) Orphans(ctx context.Context) (map[labs.StackKey]time.Time, error) {
	if err := r.enter(ctx, "orphans"); err != nil {
		return nil, err
	}
	return r.Store.Orphans(ctx)
}

func (r *registry) SeeOrphan(ctx context.Context, cloud, stackID, stackName string, now time.Time) (time.Time, error) {
	if err := r.enter(ctx, "see-orphan "+stackID); err != nil {
		return time.Time{}, err
	}
	return r.Store.SeeOrphan(ctx, cloud, stackID, stackName, now)
}

func (r *registry) ForgetOrphan(ctx context.Context, cloud, stackID string) error {
	if err := r.enter(ctx, "forget-orphan "+stackID); err != nil {
		return err
	}
	return r.Store.ForgetOrphan(ctx, cloud, stackID)
}

func (r *registry) StartOperation(ctx context.Context, op labs.Operation) error {
	if err := r.enter(ctx, "start "+op.Op+" "+op.StackName); err != nil {
		return err
	}
	return r.Store.StartOperation(ctx, op)
}

func (r *registry) EndOperation(ctx context.Context, op labs.Operation) error {
	if err := r.enter(ctx, "end "+op.Op+" "+op.StackName); err != nil {
		return err
	}
	return r.Store.EndOperation(ctx, op)
}

func (r *registry) Operation(ctx context.Context, cloud string, slot int) (labs.Operation, bool, error) {
	if err := r.enter(ctx, fmt.Sprintf("operation %s.%d", cloud, slot)); err != nil {
		return labs.Operation{}, false, err
	}
	return r.Store.Operation(ctx, cloud, slot)
}

// TryLock takes its turn, and so does the unlock it returns.
func (r *registry) TryLock(ctx context.Context, key string) (func(context.Context) error, bool, error) {
	_, unlock, ok, err := r.TryHold(ctx, key)
	return unlock, ok, err
}

// TryHold takes its turn, and so does the unlock it returns.
func (r *registry) TryHold(ctx context.Context, key string) (context.Context, func(context.Context) error, bool, error) {
	if err := r.enter(ctx, "try-lock "+key); err != nil {
		return nil, nil, false, err
	}
	held, unlock, ok, err := r.Store.TryHold(ctx, key)
	if !ok || err != nil {
		return held, unlock, ok, err
	}
	return held, func(ctx context.Context) error {
		r.w.turns.wait(r.who+actorOf(ctx), "registry unlock "+key)
		return unlock(ctx)
	}, true, nil
}

// simCloud is one cloud shared by every process: the fake Heat, and what the simulation
// injects into it.
type simCloud struct {
	name        string
	fake        *fakecloud.Cloud
	capacity    int
	maxInFlight int
	down        bool // answering nothing but errors; world.mu guards it
	// inFlightReported is the most operations in flight a violation reported (the driver's).
	inFlightReported int
}

// processCloud is a cloud as one process sees it: each call takes its turn, meets the
// faults the seed draws, and is checked against the invariants when it reaches the cloud.
// It bounds nothing, as heat.Heat does not: the Manager holds one of the cloud's slots in
// the store around each action. A call whose request gets no answer fails, transient, after
// Heat's per-request timeout, as heat.Heat's does.
type processCloud struct {
	c   *simCloud
	w   *world
	who string
}

func (p *processCloud) Name() string { return p.c.name }

// call runs one call of op on a stack (name is empty for a list). do makes the call; with
// lost, its answer will be lost: it must only start the operation (do's context is already
// done, so the fake cloud returns as soon as the operation is under way). An action takes a
// slot first; a read does not.
func (p *processCloud) call(ctx context.Context, op, name string, do func(ctx context.Context, lost bool) error) error {
	w := p.w
	w.turns.wait(p.who+actorOf(ctx), "cloud "+p.c.name+" "+op+" "+name)
	if w.cloudDown(p.c) {
		return p.fail(op, name, "simulated outage: 503")
	}
	switch w.drawFault(op) {
	case faultBefore:
		return p.fail(op, name, "simulated 500 before the call took effect")
	case faultHang:
		w.turns.note("fault: %s %s on %s hangs", op, name, p.c.name)
		if err := clock.Sleep(ctx, heat.DefaultRequestTimeout); err != nil {
			return &cloud.Error{Cloud: p.c.name, Op: op, Stack: name, Kind: cloud.ErrTransient, Message: "no answer", Err: err}
		}
		return &cloud.Error{Cloud: p.c.name, Op: op, Stack: name, Kind: cloud.ErrTransient, Message: "timed out",
			Err: context.DeadlineExceeded}
	case faultLost:
		started, cancel := context.WithCancel(ctx)
		cancel()
		_ = do(started, true)
		w.turns.note("fault: the answer to %s %s on %s is lost", op, name, p.c.name)
		return p.fail(op, name, "simulated: the answer was lost")
	}
	return do(ctx, false)
}

func (p *processCloud) fail(op, name, msg string) error {
	return &cloud.Error{Cloud: p.c.name, Op: op, Stack: name, Kind: cloud.ErrTransient, HTTPStatus: 503, Message: msg}
}

// Create, when its answer is lost, creates the stack and nobody learns its id.
func (p *processCloud) Create(ctx context.Context, r cloud.CreateRequest) (st labs.Stack, err error) {
	var lostAnswer bool
	err = p.call(ctx, "create", r.Name, func(ctx context.Context, lost bool) error {
		if lostAnswer = lost; lost {
			r.Accepted = nil
		}
		p.w.launchStarts("create", labs.Stack{Tags: r.Tags}.LabID())
		st, err = p.c.fake.Create(ctx, r)
		return err
	})
	if lostAnswer {
		st = labs.Stack{}
	}
	return st, err
}

func (p *processCloud) Get(ctx context.Context, name, id string) (st labs.Stack, err error) {
	err = p.call(ctx, "get", name, func(ctx context.Context, _ bool) error {
		st, err = p.c.fake.Get(ctx, name, id)
		return err
	})
	return st, err
}

func (p *processCloud) List(ctx context.Context, tags ...string) (out []labs.Stack, err error) {
	err = p.call(ctx, "list", "", func(ctx context.Context, _ bool) error {
		out, err = p.c.fake.List(ctx, tags...)
		return err
	})
	return out, err
}

func (p *processCloud) Suspend(ctx context.Context, name, id string) (labs.Stack, error) {
	return p.act(ctx, "suspend", name, id, p.c.fake.Suspend)
}

func (p *processCloud) Resume(ctx context.Context, name, id string) (labs.Stack, error) {
	return p.act(ctx, "resume", name, id, p.c.fake.Resume)
}

func (p *processCloud) Delete(ctx context.Context, name, id string) (labs.Stack, error) {
	return p.act(ctx, "delete", name, id, p.c.fake.Delete)
}

// act is a suspend, resume or delete, checked against the invariants as it reaches the cloud.
func (p *processCloud) act(ctx context.Context, op, name, id string, do func(context.Context, string, string) (labs.Stack, error)) (st labs.Stack, err error) {
	err = p.call(ctx, op, name, func(ctx context.Context, _ bool) error {
		p.w.actionStarts(p.c, op, id)
		st, err = do(ctx, name, id)
		return err
	})
	return st, err
}

// actorKey keys the part of a process a context belongs to (a job, the LMS's request of a
// learner), so that the goroutines of one process that wait for their turn at once are told
// apart, and the order they are given it in depends on the seed alone.
type actorKey struct{}

func withActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// actorOf is "/" and the actor of ctx, or "".
func actorOf(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok {
		return "/" + a
	}
	return ""
}

// fault is what the seed makes of one cloud call.
type fault int

const (
	faultNone   fault = iota
	faultBefore       // a 500: the call did nothing
	faultLost         // the call took effect, its answer was lost
	faultHang         // no answer: the request times out (or the caller's context ends first)
)

// hookEnv reads a variable of a hook's environment.
func hookEnv(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}
