// Package lifecycle drives single labs through their life: launch (with placement and
// failover across clouds), suspend, resume, delete, heartbeat. Every action re-reads the
// stack from the cloud, runs the operator's hooks, and records its outcome in the registry
// with an audit event (before and after status, the cloud's request id, the error). The CLI,
// the reaper and the HTTP API all act through a Manager.
package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/inflight"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
)

// Registry is what the Manager needs of the store.
type Registry interface {
	CreateLab(ctx context.Context, lab labs.Lab, ev labs.Event) (labs.Lab, error)
	// a course's warm pool: its live labs with no learner, and the take of a ready one
	PoolSize(ctx context.Context, course string) (int, error)
	TakePooled(ctx context.Context, course, learner string, ev labs.Event) (labs.Lab, error)
	GetLab(ctx context.Context, id string) (labs.Lab, error)
	FindLive(ctx context.Context, learner, course string) (labs.Lab, error)
	UpdateLab(ctx context.Context, lab labs.Lab, ev labs.Event) (labs.Lab, error)
	Heartbeat(ctx context.Context, id string, at time.Time) (labs.Lab, error)
	Leave(ctx context.Context, id string, at time.Time) (labs.Lab, error)
	AddEvent(ctx context.Context, ev labs.Event) error
	// a learner's time in a course's labs, and the time operators added to their budget
	Usage(ctx context.Context, learner, course string) (used, added time.Duration, err error)
	AddUsage(ctx context.Context, lab labs.Lab, by time.Duration, ev labs.Event) error
	CountLive(ctx context.Context) (map[string]int, error)
	// the clouds an operator drained at run time (beside Target.Drain, the configuration's)
	Drains(ctx context.Context) (map[string]labs.Drain, error)
	// the operation in flight in each of a cloud's slots (see labs.Operation)
	StartOperation(ctx context.Context, op labs.Operation) error
	EndOperation(ctx context.Context, op labs.Operation) error
	Operation(ctx context.Context, cloud string, slot int) (labs.Operation, bool, error)
}

// Cloud is what the Manager needs of a cloud: stack operations that wait until Heat is done.
// The Manager holds one of the cloud's slots (Slots) around each action.
type Cloud interface {
	Name() string
	Create(ctx context.Context, r cloud.CreateRequest) (labs.Stack, error)
	Get(ctx context.Context, name, id string) (labs.Stack, error)
	Suspend(ctx context.Context, name, id string) (labs.Stack, error)
	Resume(ctx context.Context, name, id string) (labs.Stack, error)
	Delete(ctx context.Context, name, id string) (labs.Stack, error)
}

// Target is a cloud in placement order with its placement settings.
type Target struct {
	Cloud Cloud
	// Capacity is the most live labs it may hold (suspended ones count); 0 = no limit.
	Capacity int
	// Drain keeps its labs but places no new ones on it.
	Drain bool
	// MaxInFlight is the most actions (create, suspend, resume, delete) in flight on it at
	// once, across every process sharing the registry (through Manager.Slots); 0 = no limit.
	MaxInFlight int
	// Adaptive, if set, is the bound instead of MaxInFlight: it learns from this process's
	// actions how many the cloud takes at once (max_in_flight: auto).
	Adaptive *inflight.Limit
}

// Bounds returns each cloud's bound on its actions in flight now (Target.Bound).
func (m *Manager) Bounds() map[string]int {
	out := make(map[string]int, len(m.Targets))
	for _, t := range m.Targets {
		out[t.Cloud.Name()] = t.Bound()
	}
	return out
}

// MostInFlight is the most actions a cloud may ever have in flight: its MaxInFlight, or its
// adaptive bound's ceiling; 0 = no limit (or no such cloud).
func (m *Manager) MostInFlight(cloud string) int {
	for _, t := range m.Targets {
		if t.Cloud.Name() == cloud {
			if t.Adaptive != nil {
				return t.Adaptive.Ceiling()
			}
			return t.MaxInFlight
		}
	}
	return 0
}

// Bound is how many actions may be in flight on the cloud now; 0 = no limit.
func (t Target) Bound() int {
	if t.Adaptive != nil {
		return t.Adaptive.Bound()
	}
	return t.MaxInFlight
}

// Manager acts on single labs.
type Manager struct {
	// Site names this installation: its stacks carry labs.SiteTag(Site), and it deletes no
	// stray stack without that tag.
	Site     string
	Registry Registry
	// Targets are the clouds in placement order.
	Targets []Target
	// Template returns the file of a named template.
	Template func(name string) (string, error)
	// DefaultTemplate is used when a launch names none.
	DefaultTemplate string
	Rules           policy.Set
	// Pools are the courses' warm pools, by course (see Pool).
	Pools map[string]Pool
	// Go starts the goroutines of a Fill, one per lab; nil: the go statement (a simulation on
	// a virtual clock runs each at once instead, one after another, in a goroutine it counts).
	Go    func(fn func())
	Hooks Hooks
	Now   func() time.Time
	// NewID names a new lab; nil: 12 random hex digits.
	NewID func() string
	Log   *slog.Logger

	// Locks are the registry's locks, shared by every process using it: the placement lock
	// makes choosing a cloud and recording the new lab one step (launches at once do not all
	// see the same free room), and this process's own lock (Self) tells others that its
	// claims are alive. Required.
	Locks Locks
	// Self names this process in the claims it takes, and its lock; empty: a random name.
	Self string
	// Slots, if set, bound each cloud's actions in flight to its Target.MaxInFlight across
	// every process sharing the registry.
	Slots Slots

	// placingTurn queues this process's placements before the placement lock, which is polled:
	// a placement waiting here is handed the turn at once when the one before ends, and only
	// one goroutine per process polls the lock. It is a channel of one place, not a mutex,
	// so that a launch waiting for it gives up with its context.
	placingOnce sync.Once
	placingTurn chan struct{}

	// selfTurn guards selfHeld, Self's lock key once taken, and selfLost, done if the lock is
	// lost: a channel of one place, as placingTurn, so that a goroutine waiting for it blocks
	// on a channel, not a mutex
	selfOnce sync.Once
	selfTurn chan struct{}
	selfHeld string
	selfLost context.Context

	// leftSlots are the cloud slots found left with an operation still at work ("cloud/slot"
	// -> when to ask the cloud again: time.Time; see vacant)
	leftSlots sync.Map
}

// Errors that mean the request was wrong (callers exit 2), beside labs.ErrNotFound and labs.ErrExists.
var (
	ErrInUse        = errors.New("lab is in use")
	ErrUnknownCloud = errors.New("unknown cloud")
	ErrInvalid      = errors.New("invalid request")
	// ErrNoRoom: no cloud can take a new lab (all full or drained). A job failure, not bad input.
	ErrNoRoom = errors.New("no cloud has room for a new lab")
	// ErrBudgetExhausted: the learner has used their time in the course (usage_limit and the
	// time operators added): a launch or a resume is refused.
	ErrBudgetExhausted = errors.New("time budget exhausted")
)

// LaunchRequest asks for a lab. Template and Cloud are optional.
type LaunchRequest struct {
	Learner, Course, Template, Cloud string
	Actor                            string
}

// Launch creates a lab for a learner and course and waits for its stack: Start, then
// Provision. A learner with a live lab for the course gets that lab back with labs.ErrExists.
func (m *Manager) Launch(ctx context.Context, req LaunchRequest) (labs.Lab, error) {
	p, err := m.Start(ctx, req)
	if err != nil {
		return p.Lab, err
	}
	return m.Provision(ctx, p)
}

// Pending is a lab recorded by Start whose stack Provision is to create.
type Pending struct {
	Lab    labs.Lab
	clouds []Cloud // where it may go, in order
	file   string  // its template
	actor  string
	pooled bool // taken from the course's warm pool: resumed, not created
}

// Start checks a launch request and records the new lab, placed on the first cloud in order
// that is not drained (in the configuration, or by an operator at run time) and has room,
// without calling any cloud: the API answers with it at once and provisions it in the
// background. In a course with a warm pool, a ready lab of the pool is the learner's instead
// (Pending.Pooled), if the pool has one. A learner with a live lab for the course gets that
// lab back (in Pending.Lab) with labs.ErrExists.
func (m *Manager) Start(ctx context.Context, req LaunchRequest) (Pending, error) {
	if err := labs.CheckLearner(req.Learner); err != nil {
		return Pending{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := labs.CheckCourse(req.Course); err != nil {
		return Pending{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if req.Template == "" {
		req.Template = m.DefaultTemplate
	}
	file, err := m.Template(req.Template)
	if err != nil {
		return Pending{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := m.checkBudget(ctx, req.Learner, req.Course); err != nil {
		return Pending{}, err
	}
	if existing, err := m.existing(ctx, req.Learner, req.Course); !errors.Is(err, labs.ErrNotFound) {
		return Pending{Lab: existing}, err
	}
	if p, ok, err := m.takePooled(ctx, req); ok || err != nil {
		return p, err
	}
	lab, clouds, err := m.place(ctx, req)
	return Pending{Lab: lab, clouds: clouds, file: file, actor: req.Actor}, err
}

// Provision creates a started lab's stack and waits for it, failing over to the next cloud
// when a launch fails (deleting what the failed launch left). If every cloud fails, the lab
// ends deleted with the reasons in its last error. A lab deleted during its launch stops it:
// the stack is deleted and no other cloud is tried (errStopped). A lab taken from its
// course's warm pool is resumed instead.
func (m *Manager) Provision(ctx context.Context, p Pending) (labs.Lab, error) {
	if p.pooled {
		return m.Do(ctx, OpResume, p.Lab.ID, p.actor, false)
	}
	lab := p.Lab
	var failures []error
	for i, c := range p.clouds {
		if i > 0 {
			err := m.failover(ctx, &lab, c, p.actor)
			if errors.Is(err, ErrNoRoom) {
				failures = append(failures, err)
				continue
			}
			if err != nil {
				return lab, err
			}
		}
		var launched bool
		var err error
		lab, launched, err = m.launchOn(ctx, c, lab, p.file, p.actor)
		if launched || errors.Is(err, errStopped) {
			return lab, err
		}
		failures = append(failures, err)
		if ctx.Err() != nil {
			break
		}
	}
	why := errors.Join(failures...)
	lab, _ = m.updateIf(ctx, lab.ID, labs.Event{Actor: p.actor, Action: "launch-failed", Error: why.Error()},
		func(l *labs.Lab) error {
			if l.Status != labs.Launching {
				return errChanged // deleted meanwhile, or the reaper saw a stack: theirs to record
			}
			l.Status, l.DeletedAt, l.LastError = labs.Deleted, m.Now(), why.Error()
			return nil
		})
	return lab, fmt.Errorf("launch lab %s: %w", lab.ID, why)
}

// failover moves a launching lab to the next cloud, if it still has room: placed like a new
// lab, as the room seen at Start may have been taken since.
func (m *Manager) failover(ctx context.Context, lab *labs.Lab, c Cloud, actor string) error {
	return m.placing(ctx, func() error {
		counts, err := m.Registry.CountLive(ctx)
		if err != nil {
			return err
		}
		for _, t := range m.Targets {
			if t.Cloud.Name() == c.Name() && t.Capacity > 0 && counts[c.Name()] >= t.Capacity {
				return fmt.Errorf("%w: %s (full: %d of %d)", ErrNoRoom, c.Name(), counts[c.Name()], t.Capacity)
			}
		}
		*lab, err = m.updateIf(ctx, lab.ID, labs.Event{Actor: actor, Action: "failover", Cloud: c.Name(),
			Detail: "launch failed on " + lab.Cloud}, func(l *labs.Lab) error {
			if l.Status != labs.Launching {
				return fmt.Errorf("%w: lab %s is %s", errStopped, l.ID, l.Status)
			}
			l.Cloud, l.StackID, l.StackStatus = c.Name(), "", ""
			return nil
		})
		return err
	})
}

// errStopped: the lab was deleted during its launch, which stopped.
var errStopped = errors.New("the lab was deleted during its launch")

// place picks the clouds for a new lab and records it, as one step for every process.
func (m *Manager) place(ctx context.Context, req LaunchRequest) (labs.Lab, []Cloud, error) {
	var lab labs.Lab
	var targets []Cloud
	err := m.placing(ctx, func() error {
		var err error
		lab, targets, err = m.recordNew(ctx, req)
		return err
	})
	return lab, targets, err
}

// placing runs fn as the one placement under way in every process: choosing a cloud by the
// live labs each holds, then recording the choice. Waiters of this process queue on a
// channel (one polls the store's lock, not all), which gives up with ctx.
func (m *Manager) placing(ctx context.Context, fn func() error) error {
	m.placingOnce.Do(func() { m.placingTurn = make(chan struct{}, 1) })
	select {
	case m.placingTurn <- struct{}{}:
		defer func() { <-m.placingTurn }()
	case <-ctx.Done():
		return fmt.Errorf("place lab: %w", ctx.Err())
	}
	unlock, err := m.lockPlacement(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// recordNew chooses the clouds for a new lab and records it; the placement is the caller's.
func (m *Manager) recordNew(ctx context.Context, req LaunchRequest) (labs.Lab, []Cloud, error) {
	targets, err := m.placement(ctx, req.Cloud)
	if err != nil {
		return labs.Lab{}, nil, err
	}
	now := m.Now()
	id := newID()
	if m.NewID != nil {
		id = m.NewID()
	}
	lab := labs.Lab{ID: id, Learner: req.Learner, Course: req.Course, Template: req.Template,
		Cloud: targets[0].Name(), StackName: "lab-" + id, Status: labs.Launching, CreatedAt: now}
	lab, err = m.Registry.CreateLab(ctx, lab, labs.Event{At: now, Actor: req.Actor, Action: "launch",
		To: labs.Launching, Cloud: lab.Cloud, Detail: "template " + req.Template})
	if errors.Is(err, labs.ErrExists) {
		if existing, ferr := m.existing(ctx, req.Learner, req.Course); errors.Is(ferr, labs.ErrExists) {
			return existing, nil, ferr
		}
	}
	if err != nil {
		return labs.Lab{}, nil, fmt.Errorf("record lab: %w", err)
	}
	return lab, targets, nil
}

// existing is the learner's live lab for the course, with an error wrapping labs.ErrExists
// that names it; without one, the registry's error (labs.ErrNotFound).
func (m *Manager) existing(ctx context.Context, learner, course string) (labs.Lab, error) {
	lab, err := m.Registry.FindLive(ctx, learner, course)
	if err != nil {
		return lab, err
	}
	return lab, fmt.Errorf("%w: lab %s (%s)", labs.ErrExists, lab.ID, lab.Status)
}

// launchOn creates the lab's stack on one cloud and waits for it. On failure it deletes what
// it created, so the next cloud can be tried. If the lab is deleted meanwhile, the wait stops
// and the stack is deleted (stopLaunch).
func (m *Manager) launchOn(ctx context.Context, c Cloud, lab labs.Lab, file, actor string) (labs.Lab, bool, error) {
	rules := m.Rules.For(lab.Course)
	wctx, cancel := context.WithTimeout(ctx, rules.LaunchTimeout)
	defer cancel()
	var st labs.Stack
	held, err := m.slot(wctx, c, "create", lab.StackName, "")
	if err == nil {
		// sent only now, holding the slot: a lab deleted while its launch waited for the
		// cloud (with no stack, its delete took effect at once) gets none
		if fresh, ferr := m.Registry.GetLab(wctx, lab.ID); ferr == nil && deletedOrDeleting(fresh) {
			held.endUnsent(ctx)
			return m.endStopped(ctx, lab.ID, labs.Event{Actor: actor, Action: "launch-stopped", Cloud: c.Name(),
				Detail: "the lab was deleted while its launch waited for the cloud: no stack was created"}, "")
		}
		st, err = c.Create(wctx, cloud.CreateRequest{
			Name: lab.StackName, TemplateFile: file, Tags: labs.StackTags(lab, m.Site), Timeout: rules.LaunchTimeout,
			Params: map[string]string{"lab_id": lab.ID, "course": lab.Course, "learner": lab.Learner},
			Accepted: func(st labs.Stack) {
				if !m.recordStackID(ctx, c, lab.ID, st, actor) {
					cancel() // deleted meanwhile: no one waits for this stack
				}
			},
		})
		held.end(ctx, err)
	}
	if err == nil {
		kept, err := m.updateIf(ctx, lab.ID, labs.Event{Actor: actor, Action: "launched", Cloud: c.Name(), StackID: st.ID,
			RequestID: st.RequestID}, func(l *labs.Lab) error {
			if deletedOrDeleting(*l) {
				return errStopped // deleted while its stack was created
			}
			// the reaper may have seen the stack, and acted on it, before this is recorded
			// (the registry was down for a while): what it wrote is newer than st
			if l.Status == labs.Launching {
				observe(l, st, m.Now())
			}
			if len(st.Outputs) > 0 {
				l.Outputs = st.Outputs
			}
			return nil
		})
		if errors.Is(err, errStopped) {
			return m.stopLaunch(ctx, c, kept, st, actor)
		}
		return kept, err == nil, err
	}
	if fresh, ferr := m.reread(ctx, lab.ID); ferr == nil && deletedOrDeleting(fresh) {
		return m.stopLaunch(ctx, c, fresh, st, actor)
	}
	timedOut := errors.Is(wctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	var unknown error // the cloud could not be asked about a stack whose id is unknown
	if !errors.Is(err, cloud.ErrFailed) && !timedOut {
		var kept labs.Lab
		var ok bool
		if kept, ok, unknown = m.handOver(ctx, c, lab, st, actor, err); ok {
			if ctx.Err() != nil {
				return kept, true, fmt.Errorf("launch of lab %s stopped, its stack left to the reaper: %w", lab.ID, ctx.Err())
			}
			return kept, true, nil
		}
	}
	ev := labs.Event{Actor: actor, Action: "launch-attempt-failed", Cloud: c.Name(), StackID: st.ID, Error: err.Error(), RequestID: requestID(err)}
	st.Name = lab.StackName
	if unknown != nil {
		// not looked up again and deleted: it may be found just after, complete, and not
		// failed; if the create took effect, the stack is a zombie once the lab moves on
		ev.Detail = "whether the create took effect is unknown (the reaper deletes a stack left as a zombie): " + unknown.Error()
	} else {
		switch deleted, derr := m.deleteCreated(ctx, c, st, rules); {
		case derr != nil:
			ev.Detail = "cleanup failed (the reaper deletes it as a zombie): " + derr.Error()
		case deleted:
			ev.Detail = "stack deleted"
		}
	}
	lab, uerr := m.update(ctx, lab.ID, ev, func(l *labs.Lab) {
		if l.Status == labs.Launching {
			l.StackID, l.StackStatus = "", ""
		}
	})
	if uerr != nil {
		return lab, false, errors.Join(err, uerr)
	}
	return lab, false, fmt.Errorf("on %s: %w", c.Name(), err)
}

// stopLaunch ends a launch whose lab was deleted meanwhile (DELETE /v1/labs/{id} while the
// stack was being created): it deletes the stack it created, tries no other cloud, and
// finishes a delete claimed on the lab, which had no stack to delete or deleted this one.
func (m *Manager) stopLaunch(ctx context.Context, c Cloud, lab labs.Lab, st labs.Stack, actor string) (labs.Lab, bool, error) {
	ev := labs.Event{Actor: actor, Action: "launch-stopped", Cloud: c.Name(), StackID: st.ID, Detail: "the lab was deleted during its launch"}
	if lab.Status == labs.Deleting && st.ID != "" && lab.StackID == st.ID {
		// the delete has the stack's id: it deletes the stack (or the reaper does, if its
		// process stopped); a second delete beside it would only interrupt the first
		ev.LabID, ev.At, ev.From, ev.To = lab.ID, m.Now(), lab.Status, lab.Status
		ev.Detail += ": its delete deletes the stack"
		return lab, false, errors.Join(fmt.Errorf("%w: lab %s", errStopped, lab.ID), m.Registry.AddEvent(context.WithoutCancel(ctx), ev))
	}
	st.Name = lab.StackName
	switch deleted, derr := m.deleteCreated(ctx, c, st, m.Rules.For(lab.Course)); {
	case derr != nil:
		ev.Error = "delete its stack (the reaper deletes it as a zombie): " + derr.Error()
	case deleted:
		ev.Detail += ": its stack is deleted"
	}
	return m.endStopped(ctx, lab.ID, ev, st.ID)
}

// endStopped records a stopped launch (ev) and finishes a delete claimed on the lab, which had
// no stack to delete, or the one the launch created (stackID) and deleted if ev has no error.
// The error wraps errStopped.
func (m *Manager) endStopped(ctx context.Context, id string, ev labs.Event, stackID string) (labs.Lab, bool, error) {
	lab, uerr := m.update(ctx, id, ev, func(l *labs.Lab) {
		if l.Status == labs.Deleting && ev.Error == "" && (l.StackID == "" || l.StackID == stackID) {
			l.Status, l.DeletedAt = labs.Deleted, m.Now()
			l.Unclaim()
		}
	})
	return lab, false, errors.Join(fmt.Errorf("%w: lab %s", errStopped, id), uerr)
}

// deleteCreated deletes the stack the launch created, on a fresh context: the launch's may be
// what ran out. A create whose answer was lost (st has no id) may still have made a stack:
// it is looked up by its name, which is the lab's own. deleted is false when there was none.
func (m *Manager) deleteCreated(ctx context.Context, c Cloud, st labs.Stack, rules policy.Rules) (deleted bool, err error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rules.StuckAfter)
	defer cancel()
	if st.ID == "" {
		found, err := c.Get(dctx, st.Name, "")
		switch {
		case errors.Is(err, cloud.ErrNotFound) || (err == nil && found.Gone()):
			return false, nil
		case err != nil:
			return false, err
		}
		st = found
	}
	// a transient failure is tried again, backing off, while the fresh context lasts: the
	// registry may not know this stack (the lab was deleted before its id was recorded), so
	// only the reaper's next full pass would find it, minutes later
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		_, err := m.deleteStack(dctx, c, st.Name, st.ID)
		switch {
		case err == nil || errors.Is(err, cloud.ErrNotFound):
			return true, nil
		case !errors.Is(err, cloud.ErrTransient):
			return false, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-dctx.Done():
			t.Stop()
			return false, err
		}
	}
}

// recordStackID records the id of a lab's stack as soon as the cloud accepts the create,
// minutes before it completes: from then on every reader (a reaper pass, a delete) knows
// the stack for the lab's, by id. A failure to record is only logged: the stack is still
// claimed by its name until the launch records its outcome. It reports whether the launch
// should go on: false when the lab was deleted meanwhile (a delete claimed during the
// launch still gets the stack's id, to delete it).
func (m *Manager) recordStackID(ctx context.Context, c Cloud, labID string, st labs.Stack, actor string) bool {
	lab, err := m.update(ctx, labID, labs.Event{Actor: actor, Action: "stack-accepted", Cloud: c.Name(), StackID: st.ID,
		RequestID: st.RequestID, Detail: "the cloud accepted the create"}, func(l *labs.Lab) {
		if (l.Status == labs.Launching || l.Status == labs.Deleting) && l.Cloud == c.Name() && l.StackID == "" {
			l.StackID = st.ID
		}
	})
	if err != nil {
		m.Log.Warn("record the stack id", "lab", labID, "stack", st.ID, "err", err)
		return true
	}
	return !deletedOrDeleting(lab)
}

// deletedOrDeleting reports whether a lab is deleted or its delete claimed: its launch stops.
func deletedOrDeleting(l labs.Lab) bool { return l.Status == labs.Deleting || l.Status == labs.Deleted }

// reread reads the lab afresh, also when the launch was cancelled.
func (m *Manager) reread(ctx context.Context, id string) (labs.Lab, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	return m.Registry.GetLab(ctx, id)
}

// handOver keeps a stack whose create the launch lost sight of (the wait failed while the
// cloud was unreachable, the create's answer was lost, the launch was stopped) if the cloud
// may still be building it: the stack is recorded (found by its name when its id was never
// learnt) and left to the reaper, which syncs it when complete (or saw it, and acted on it,
// already) and deletes it at launch_timeout. ok is false when the cloud shows the stack
// failed or does not have it, or cannot be asked about a stack whose id is unknown (the
// error is returned as unknown): then the next cloud is tried.
func (m *Manager) handOver(ctx context.Context, c Cloud, lab labs.Lab, st labs.Stack, actor string, why error) (_ labs.Lab, ok bool, unknown error) {
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	cur, err := c.Get(gctx, lab.StackName, st.ID)
	switch {
	case errors.Is(err, cloud.ErrNotFound) || (err == nil && (cur.Gone() || strings.HasSuffix(cur.Status, "_FAILED"))):
		return lab, false, nil
	case err != nil && st.ID == "":
		return lab, false, err
	case err != nil:
		cur = labs.Stack{ID: st.ID} // the cloud cannot be asked now: the reaper follows it by its id
	}
	kept, err := m.update(ctx, lab.ID, labs.Event{Actor: actor, Action: "launch-handed-over", Cloud: c.Name(), StackID: cur.ID,
		Detail: fmt.Sprintf("the wait for the stack failed (%v); the cloud still has it (%s): the reaper follows it", why, cur.Status)},
		func(l *labs.Lab) {
			if l.Status != labs.Launching || l.Cloud != c.Name() {
				return // the reaper saw it, and acted on it, already
			}
			if l.StackID == "" {
				l.StackID = cur.ID
			}
			if cur.Status != "" {
				observe(l, cur, m.Now())
			}
		})
	if err != nil {
		m.Log.Warn("record a launch handed over to the reaper", "lab", lab.ID, "stack", cur.ID, "err", err)
		return lab, true, nil // the stack carries the lab's name: the reaper finds it
	}
	return kept, true, nil
}

// placement returns the clouds a new lab may go to, in order.
func (m *Manager) placement(ctx context.Context, only string) ([]Cloud, error) {
	counts, err := m.Registry.CountLive(ctx)
	if err != nil {
		return nil, err
	}
	drains, err := m.Registry.Drains(ctx)
	if err != nil {
		return nil, err
	}
	var out []Cloud
	var full []string
	found := false
	for _, t := range m.Targets {
		name := t.Cloud.Name()
		if only != "" && name != only {
			continue
		}
		found = true
		switch {
		case t.Drain:
			full = append(full, name+" (drained)")
		case drains[name].Actor != "":
			full = append(full, fmt.Sprintf("%s (drained by %s)", name, drains[name].Actor))
		case t.Capacity > 0 && counts[name] >= t.Capacity:
			full = append(full, fmt.Sprintf("%s (full: %d of %d)", name, counts[name], t.Capacity))
		default:
			out = append(out, t.Cloud)
		}
	}
	if only != "" && !found {
		return nil, fmt.Errorf("%w %q (configured: %v)", ErrUnknownCloud, only, m.cloudNames())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %v", ErrNoRoom, full)
	}
	return out, nil
}

func (m *Manager) cloudNames() []string {
	names := make([]string, len(m.Targets))
	for i, t := range m.Targets {
		names[i] = t.Cloud.Name()
	}
	return names
}

// Cloud returns the configured cloud of that name.
func (m *Manager) Cloud(name string) (Cloud, error) {
	for _, t := range m.Targets {
		if t.Cloud.Name() == name {
			return t.Cloud, nil
		}
	}
	return nil, fmt.Errorf("%w %q (configured: %v)", ErrUnknownCloud, name, m.cloudNames())
}

// Heartbeat records that the learner is active in the lab. A deleted lab gets ErrInvalid
// and nothing is written.
func (m *Manager) Heartbeat(ctx context.Context, id string) (labs.Lab, error) {
	lab, err := m.Registry.Heartbeat(ctx, id, m.Now())
	if errors.Is(err, labs.ErrDeleted) {
		return lab, fmt.Errorf("%w: lab %s is deleted", ErrInvalid, id)
	}
	return lab, err
}

// Leave records that the learner left the lab (the LMS saw its page closed): it is suspended
// after its course's leave_grace unless activity returns first. A deleted lab gets ErrInvalid
// and nothing is written.
func (m *Manager) Leave(ctx context.Context, id string) (labs.Lab, error) {
	lab, err := m.Registry.Leave(ctx, id, m.Now())
	if errors.Is(err, labs.ErrDeleted) {
		return lab, fmt.Errorf("%w: lab %s is deleted", ErrInvalid, id)
	}
	return lab, err
}

// Op is a single-lab action an operator or the API asks for.
type Op string

const (
	OpSuspend Op = "suspend"
	OpResume  Op = "resume"
	OpDelete  Op = "delete"
)

// Apply carries out a reaper decision after re-reading the lab and its stack: if the fresh
// state no longer calls for the action (a heartbeat arrived, someone else acted), it does
// nothing and returns false.
func (m *Manager) Apply(ctx context.Context, a policy.Action, actor string) (bool, error) {
	switch a.Kind {
	case policy.DeleteZombie, policy.DeleteOrphan:
		return m.deleteStray(ctx, a, actor)
	case policy.Hold:
		return false, nil
	}
	lab, err := m.Registry.GetLab(ctx, a.Lab.ID)
	if err != nil {
		return false, err
	}
	c, err := m.Cloud(lab.Cloud)
	if err != nil {
		return false, err
	}
	stack, err := CurrentStack(ctx, c, lab, a.Stack)
	if err != nil {
		return false, err
	}
	alive, err := ClaimAlive(ctx, m.Locks, lab)
	if err != nil {
		return false, err
	}
	now := m.Now()
	fresh, ok := policy.DecideLab(policy.Observed{Lab: lab, Stack: stack, ClaimAlive: alive}, now, m.Rules.For(lab.Course))
	if !ok || fresh.Kind != a.Kind || fresh.To != a.To {
		m.Log.Info("decision changed on re-read", "lab", lab.ID, "planned", a.Kind, "now", fresh.Kind)
		return false, nil
	}
	if lab.StackID == "" && stack != nil && stack.Name == lab.StackName {
		// the launch stopped before recording its stack, which the cloud has under the
		// lab's name: act on that stack, not on nothing
		lab.StackID = stack.ID
	}
	switch a.Kind {
	case policy.Sync, policy.Flag:
		_, err = m.updateIf(ctx, lab.ID, labs.Event{Actor: actor, Action: string(a.Kind), Detail: fresh.Reason}, func(l *labs.Lab) error {
			if l.Version != lab.Version {
				return errChanged // decided on what is no longer there (a claim, a heartbeat): the next pass decides again
			}
			if stack != nil {
				observe(l, *stack, now)
				if strings.HasSuffix(stack.Status, "_COMPLETE") {
					l.Attempts, l.NextAttemptAt, l.LastError = 0, time.Time{}, "" // sound again
				}
			}
			l.Status = fresh.To
			if fresh.To == labs.Deleted {
				l.DeletedAt = now
			}
			if l.Status != labs.Suspending && l.Status != labs.Deleting {
				l.Unclaim() // a claim seen through, or cancelled
			}
			return nil
		})
		if errors.Is(err, errChanged) {
			return false, nil
		}
		return err == nil, err
	case policy.Suspend, policy.Delete:
		op := OpSuspend
		if a.Kind == policy.Delete {
			op = OpDelete
		}
		// a delete that finishes an abandoned claim was decided, or asked for, already: a
		// heartbeat since does not stop it; any other claim stops at a learner in the lab
		finishing := a.Kind == policy.Delete && lab.Status == labs.Deleting
		r, err := m.claim(ctx, Request{Lab: lab, op: op, actor: actor, reason: fresh.Reason, force: finishing, cloud: c})
		if errors.Is(err, ErrInUse) || errors.Is(err, ErrBusy) {
			m.Log.Info("not claimed on re-read", "lab", lab.ID, "action", a.Kind, "why", err)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		_, err = m.Carry(ctx, r)
		if errors.Is(err, ErrInUse) || errors.Is(err, ErrBusy) {
			return false, nil // the learner came back before it was sent, or another actor took the lab
		}
		return err == nil, err
	}
	return false, nil
}

// StackReader reads one stack of a cloud.
type StackReader interface {
	Get(ctx context.Context, name, id string) (labs.Stack, error)
}

// CurrentStack re-reads the lab's stack (or, for a lab that has not recorded one, the stack
// the plan saw): nil when the cloud does not have it.
func CurrentStack(ctx context.Context, c StackReader, lab labs.Lab, planned labs.Stack) (*labs.Stack, error) {
	name, id := lab.StackName, lab.StackID
	if id == "" {
		name, id = planned.Name, planned.ID
	}
	if id == "" {
		return nil, nil
	}
	st, err := c.Get(ctx, name, id)
	switch {
	case err == nil:
		return &st, nil
	case errors.Is(err, cloud.ErrNotFound):
		return nil, nil
	}
	return nil, err
}

// deleteStray deletes a zombie or orphan stack after checking, on fresh reads, that it is
// still labplane's and still unclaimed.
func (m *Manager) deleteStray(ctx context.Context, a policy.Action, actor string) (bool, error) {
	c, err := m.Cloud(a.Stack.Cloud)
	if err != nil {
		return false, err
	}
	st, err := c.Get(ctx, a.Stack.Name, a.Stack.ID)
	if errors.Is(err, cloud.ErrNotFound) || (err == nil && st.Gone()) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !st.HasTag(labs.SiteTag(m.Site)) {
		return false, nil // another installation's stack, or none's: never ours to delete
	}
	stray := policy.Stray{Stack: st, FirstSeen: m.Now().Add(-m.Rules.Default.OrphanGrace)}
	if a.Kind == policy.DeleteZombie {
		lab, err := m.Registry.GetLab(ctx, st.LabID())
		if err != nil {
			return false, err
		}
		if lab.Status != labs.Deleted && lab.Claims(st) {
			return false, nil // claimed (again, or by a launch recorded since the plan)
		}
		stray.Lab = &lab
	} else if _, err := m.Registry.GetLab(ctx, st.LabID()); !errors.Is(err, labs.ErrNotFound) {
		return false, err // it has a row now (or the registry failed)
	}
	if policy.DecideStray(stray, m.Now(), m.Rules.Default).Kind != a.Kind {
		return false, nil
	}
	_, err = m.deleteStack(ctx, c, st.Name, st.ID)
	ev := labs.Event{LabID: st.LabID(), At: m.Now(), Actor: actor, Action: string(a.Kind), Cloud: st.Cloud, StackID: st.ID, Detail: a.Reason}
	if err != nil {
		ev.Error, ev.RequestID = err.Error(), requestID(err)
	}
	if rerr := m.Registry.AddEvent(ctx, ev); rerr != nil {
		return false, errors.Join(err, rerr)
	}
	return err == nil, err
}

// observe records what the cloud shows of the lab's stack.
func observe(l *labs.Lab, st labs.Stack, now time.Time) {
	if st.Status != l.StackStatus {
		l.StackStatus, l.StackStatusSince = st.Status, now
	}
	if st.ID != "" {
		l.StackID = st.ID
	}
	if len(st.Outputs) > 0 {
		l.Outputs = st.Outputs
	}
	l.Status = policy.Implied(st.Status)
}

// update applies change to a fresh copy of the lab and stores it with the event, re-reading
// and re-applying when another writer (a heartbeat, another replica) got there first. It
// records even when ctx was cancelled: what was done to a stack is always written down. A
// registry that cannot be reached (PostgreSQL restarting) is tried again until recordTimeout.
func (m *Manager) update(ctx context.Context, id string, ev labs.Event, change func(*labs.Lab)) (labs.Lab, error) {
	return m.updateIf(ctx, id, ev, func(l *labs.Lab) error { change(l); return nil })
}

// updateIf is update with a change that may refuse: an error from change (on the freshest
// copy) writes nothing and is returned as it is, with that copy.
func (m *Manager) updateIf(ctx context.Context, id string, ev labs.Event, change func(*labs.Lab) error) (labs.Lab, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	wait := recordRetry
	for stale := 0; ; {
		lab, err := m.record(ctx, id, ev, change)
		switch {
		case errors.Is(err, labs.ErrStale) && stale < 5:
			stale++
		case errors.Is(err, labs.ErrUnavailable):
			m.Log.Warn("registry unavailable: retrying to record the outcome", "lab", id, "action", ev.Action, "retry_in", wait, "err", err)
			select {
			case <-ctx.Done():
				return lab, err
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		default:
			return lab, err
		}
	}
}

// record is one attempt of updateIf.
func (m *Manager) record(ctx context.Context, id string, ev labs.Event, change func(*labs.Lab) error) (labs.Lab, error) {
	lab, err := m.Registry.GetLab(ctx, id)
	if err != nil {
		return lab, err
	}
	ev.At, ev.From = m.Now(), lab.Status
	if err := change(&lab); err != nil {
		return lab, err
	}
	ev.To = lab.Status
	if ev.Cloud == "" {
		ev.Cloud = lab.Cloud
	}
	if ev.StackID == "" {
		ev.StackID = lab.StackID
	}
	return m.Registry.UpdateLab(ctx, lab, ev)
}

// recordTimeout bounds writing an outcome to the registry once the action is done;
// recordRetry is the first wait before trying again when the registry cannot be reached.
const (
	recordTimeout = 30 * time.Second
	recordRetry   = 250 * time.Millisecond
)

// requestID is the cloud's request id carried by an error, if any.
func requestID(err error) string {
	var ce *cloud.Error
	if errors.As(err, &ce) {
		return ce.RequestID
	}
	return ""
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
