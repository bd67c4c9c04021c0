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
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
)

// Registry is what the Manager needs of the store.
type Registry interface {
	CreateLab(ctx context.Context, lab labs.Lab, ev labs.Event) (labs.Lab, error)
	GetLab(ctx context.Context, id string) (labs.Lab, error)
	FindLive(ctx context.Context, learner, course string) (labs.Lab, error)
	UpdateLab(ctx context.Context, lab labs.Lab, ev labs.Event) (labs.Lab, error)
	Heartbeat(ctx context.Context, id string, at time.Time) (labs.Lab, error)
	AddEvent(ctx context.Context, ev labs.Event) error
	CountLive(ctx context.Context) (map[string]int, error)
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
	Hooks           Hooks
	Now             func() time.Time
	// NewID names a new lab; nil: 12 random hex digits.
	NewID func() string
	Log   *slog.Logger

	// Placement is the lock (the store's) that makes choosing a cloud and recording the new
	// lab one step across every process sharing the registry, so that launches in flight at
	// once do not all see the same free room. Required to launch.
	Placement Locker
	// Slots, if set, bound each cloud's actions in flight to its Target.MaxInFlight across
	// every process sharing the registry.
	Slots Slots

	// placing queues this process's placements before the Placement lock, which is polled:
	// a placement waiting here is handed the turn at once when the one before ends, and only
	// one goroutine per process polls the lock. It is a channel of one place, not a mutex,
	// so that a launch waiting for it gives up with its context.
	placingOnce sync.Once
	placing     chan struct{}
}

// Errors that mean the request was wrong (callers exit 2), beside labs.ErrNotFound and labs.ErrExists.
var (
	ErrInUse        = errors.New("lab is in use")
	ErrUnknownCloud = errors.New("unknown cloud")
	ErrInvalid      = errors.New("invalid request")
	// ErrNoRoom: no cloud can take a new lab (all full or drained). A job failure, not bad input.
	ErrNoRoom = errors.New("no cloud has room for a new lab")
)

// LaunchRequest asks for a lab. Template and Cloud are optional.
type LaunchRequest struct {
	Learner, Course, Template, Cloud string
	Actor                            string
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`)

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
}

// Start checks a launch request and records the new lab, placed on the first cloud in order
// that is not drained and has room, without calling any cloud: the API answers with it at
// once and provisions it in the background. A learner with a live lab for the course gets
// that lab back (in Pending.Lab) with labs.ErrExists.
func (m *Manager) Start(ctx context.Context, req LaunchRequest) (Pending, error) {
	if !idPattern.MatchString(req.Learner) {
		return Pending{}, fmt.Errorf("%w: learner %q: use 1-128 letters, digits and ._@+-", ErrInvalid, req.Learner)
	}
	if !idPattern.MatchString(req.Course) {
		return Pending{}, fmt.Errorf("%w: course %q: use 1-128 letters, digits and ._@+-", ErrInvalid, req.Course)
	}
	if req.Template == "" {
		req.Template = m.DefaultTemplate
	}
	file, err := m.Template(req.Template)
	if err != nil {
		return Pending{}, err
	}
	if existing, err := m.Registry.FindLive(ctx, req.Learner, req.Course); err == nil {
		return Pending{Lab: existing}, fmt.Errorf("%w: lab %s (%s)", labs.ErrExists, existing.ID, existing.Status)
	} else if !errors.Is(err, labs.ErrNotFound) {
		return Pending{}, err
	}
	lab, clouds, err := m.place(ctx, req)
	return Pending{Lab: lab, clouds: clouds, file: file, actor: req.Actor}, err
}

// Provision creates a started lab's stack and waits for it, failing over to the next cloud
// when a launch fails (deleting what the failed launch left). If every cloud fails, the lab
// ends deleted with the reasons in its last error.
func (m *Manager) Provision(ctx context.Context, p Pending) (labs.Lab, error) {
	lab := p.Lab
	var failures []error
	for i, c := range p.clouds {
		if i > 0 {
			var err error
			if lab, err = m.update(ctx, lab.ID, labs.Event{Actor: p.actor, Action: "failover", Cloud: c.Name(),
				Detail: "launch failed on " + lab.Cloud}, func(l *labs.Lab) {
				l.Cloud, l.StackID, l.StackStatus, l.Status = c.Name(), "", "", labs.Launching
			}); err != nil {
				return lab, err
			}
		}
		var launched bool
		var err error
		lab, launched, err = m.launchOn(ctx, c, lab, p.file, p.actor)
		if launched {
			return lab, nil
		}
		failures = append(failures, err)
		if ctx.Err() != nil {
			break
		}
	}
	why := errors.Join(failures...)
	lab, _ = m.update(ctx, lab.ID, labs.Event{Actor: p.actor, Action: "launch-failed", Error: why.Error()},
		func(l *labs.Lab) {
			l.Status, l.DeletedAt, l.LastError = labs.Deleted, m.Now(), why.Error()
		})
	return lab, fmt.Errorf("launch lab %s: %w", lab.ID, why)
}

// place picks the clouds for a new lab and records it, as one step for every process.
func (m *Manager) place(ctx context.Context, req LaunchRequest) (labs.Lab, []Cloud, error) {
	m.placingOnce.Do(func() { m.placing = make(chan struct{}, 1) })
	select {
	case m.placing <- struct{}{}:
		defer func() { <-m.placing }()
	case <-ctx.Done():
		return labs.Lab{}, nil, fmt.Errorf("place lab: %w", ctx.Err())
	}
	unlock, err := m.lockPlacement(ctx)
	if err != nil {
		return labs.Lab{}, nil, err
	}
	defer unlock()
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
		existing, ferr := m.Registry.FindLive(ctx, req.Learner, req.Course)
		if ferr == nil {
			return existing, nil, fmt.Errorf("%w: lab %s (%s)", labs.ErrExists, existing.ID, existing.Status)
		}
	}
	if err != nil {
		return labs.Lab{}, nil, fmt.Errorf("record lab: %w", err)
	}
	return lab, targets, nil
}

// launchOn creates the lab's stack on one cloud and waits for it. On failure it deletes what
// it created, so the next cloud can be tried.
func (m *Manager) launchOn(ctx context.Context, c Cloud, lab labs.Lab, file, actor string) (labs.Lab, bool, error) {
	rules := m.Rules.For(lab.Course)
	wctx, cancel := context.WithTimeout(ctx, rules.LaunchTimeout)
	defer cancel()
	var st labs.Stack
	release, err := m.slot(wctx, c, "create", lab.StackName)
	if err == nil {
		st, err = c.Create(wctx, cloud.CreateRequest{
			Name: lab.StackName, TemplateFile: file, Tags: labs.StackTags(lab, m.Site), Timeout: rules.LaunchTimeout,
			Params:   map[string]string{"lab_id": lab.ID, "course": lab.Course, "learner": lab.Learner},
			Accepted: func(st labs.Stack) { m.recordStackID(ctx, c, lab.ID, st, actor) },
		})
		release()
	}
	if err != nil && st.ID != "" && m.recordedLive(ctx, lab.ID, st.ID) {
		// the wait lost sight of the stack (the cloud failed for a while) and meanwhile the
		// reaper saw it complete, recorded it and maybe acted on it: the launch did not fail,
		// and deleting the stack now would destroy a live lab
		m.Log.Warn("launch wait failed, but the stack was recorded live meanwhile: keeping it", "lab", lab.ID, "stack", st.ID, "err", err)
		err = nil
	}
	if err == nil {
		lab, err = m.update(ctx, lab.ID, labs.Event{Actor: actor, Action: "launched", Cloud: c.Name(), StackID: st.ID,
			RequestID: st.RequestID}, func(l *labs.Lab) {
			// the reaper may have seen the stack, and acted on it, before this is recorded
			// (the registry was down for a while): what it wrote is newer than st
			if l.Status == labs.Launching {
				observe(l, st, m.Now())
			}
			if len(st.Outputs) > 0 {
				l.Outputs = st.Outputs
			}
		})
		return lab, err == nil, err
	}
	ev := labs.Event{Actor: actor, Action: "launch-attempt-failed", Cloud: c.Name(), StackID: st.ID, Error: err.Error(), RequestID: requestID(err)}
	if st.ID != "" {
		// clean up on a fresh context: the launch's may be what ran out
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rules.StuckAfter)
		if _, derr := m.deleteStack(dctx, c, st.Name, st.ID); derr != nil {
			ev.Detail = "cleanup failed (the reaper deletes it as a zombie): " + derr.Error()
		} else {
			ev.Detail = "stack deleted"
		}
		cancel()
	}
	lab, uerr := m.update(ctx, lab.ID, ev, func(l *labs.Lab) { l.StackID, l.StackStatus = "", "" })
	if uerr != nil {
		return lab, false, errors.Join(err, uerr)
	}
	return lab, false, fmt.Errorf("on %s: %w", c.Name(), err)
}

// recordStackID records the id of a lab's stack as soon as the cloud accepts the create,
// minutes before it completes: from then on every reader (a reaper pass, a delete) knows
// the stack for the lab's, by id. A failure to record is only logged: the stack is still
// claimed by its name until the launch records its outcome.
func (m *Manager) recordStackID(ctx context.Context, c Cloud, labID string, st labs.Stack, actor string) {
	_, err := m.update(ctx, labID, labs.Event{Actor: actor, Action: "stack-accepted", Cloud: c.Name(), StackID: st.ID,
		RequestID: st.RequestID, Detail: "the cloud accepted the create"}, func(l *labs.Lab) {
		if l.Status == labs.Launching && l.Cloud == c.Name() && l.StackID == "" {
			l.StackID = st.ID
		}
	})
	if err != nil {
		m.Log.Warn("record the stack id", "lab", labID, "stack", st.ID, "err", err)
	}
}

// recordedLive reports whether the registry has the lab on this stack with a status only an
// observed, completed create leads to (the reaper synced it, then maybe suspended it).
func (m *Manager) recordedLive(ctx context.Context, labID, stackID string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout) // also when the launch was cancelled
	defer cancel()
	l, err := m.Registry.GetLab(ctx, labID)
	if err != nil || l.StackID != stackID {
		return false
	}
	switch l.Status {
	case labs.Active, labs.Suspending, labs.Suspended, labs.Resuming:
		return true
	}
	return false
}

// placement returns the clouds a new lab may go to, in order.
func (m *Manager) placement(ctx context.Context, only string) ([]Cloud, error) {
	counts, err := m.Registry.CountLive(ctx)
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

// Op is a single-lab action an operator or the API asks for.
type Op string

const (
	OpSuspend Op = "suspend"
	OpResume  Op = "resume"
	OpDelete  Op = "delete"
)

// Do performs op on a lab by hand (CLI, API). A suspend or delete of a lab in use (a
// heartbeat or resume within idle_suspend_after) is refused with ErrInUse unless force.
func (m *Manager) Do(ctx context.Context, op Op, id, actor string, force bool) (labs.Lab, error) {
	lab, err := m.Registry.GetLab(ctx, id)
	if err != nil {
		return lab, err
	}
	if lab.Status == labs.Deleted {
		return lab, fmt.Errorf("%w: lab %s is already deleted", ErrInvalid, id)
	}
	rules := m.Rules.For(lab.Course)
	if op != OpResume && !force {
		if since := m.Now().Sub(lab.LastUsed()); since < rules.IdleSuspendAfter {
			return lab, fmt.Errorf("%w: lab %s was active %s ago (idle_suspend_after %s); use --force to %s it anyway",
				ErrInUse, id, since.Round(time.Second), rules.IdleSuspendAfter, op)
		}
	}
	c, err := m.Cloud(lab.Cloud)
	if err != nil {
		return lab, err
	}
	return m.act(ctx, c, lab, op, actor, "requested by "+actor)
}

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
	stack, err := currentStack(ctx, c, lab, a.Stack)
	if err != nil {
		return false, err
	}
	now := m.Now()
	fresh, ok := policy.DecideLab(policy.Observed{Lab: lab, Stack: stack}, now, m.Rules.For(lab.Course))
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
		_, err = m.update(ctx, lab.ID, labs.Event{Actor: actor, Action: string(a.Kind), Detail: fresh.Reason}, func(l *labs.Lab) {
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
		})
		return err == nil, err
	case policy.Suspend:
		_, err = m.act(ctx, c, lab, OpSuspend, actor, fresh.Reason)
	case policy.Delete:
		_, err = m.act(ctx, c, lab, OpDelete, actor, fresh.Reason)
	}
	return err == nil, err
}

// currentStack re-reads the lab's stack (or, for a lab that has not recorded one, the stack
// the plan saw): nil when the cloud does not have it.
func currentStack(ctx context.Context, c Cloud, lab labs.Lab, planned labs.Stack) (*labs.Stack, error) {
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

// act runs one cloud action on a lab with its hooks and records the outcome.
func (m *Manager) act(ctx context.Context, c Cloud, lab labs.Lab, op Op, actor, reason string) (labs.Lab, error) {
	if lab.StackID == "" && op != OpDelete {
		// refused before any hook runs: nothing is done
		return lab, fmt.Errorf("%w: lab %s has no stack yet (%s)", ErrInvalid, lab.ID, lab.Status)
	}
	switch op {
	case OpSuspend:
		m.runHook(ctx, "before_suspend", m.Hooks.BeforeSuspend, lab, actor)
	case OpDelete:
		m.runHook(ctx, "before_delete", m.Hooks.BeforeDelete, lab, actor)
	}
	var st labs.Stack
	release, err := m.slot(ctx, c, string(op), lab.StackName)
	if err == nil {
		switch {
		case lab.StackID == "":
			// a launch that never got its stack: nothing on the cloud to delete
			st = labs.Stack{Status: "DELETE_COMPLETE"}
		case op == OpSuspend:
			st, err = c.Suspend(ctx, lab.StackName, lab.StackID)
		case op == OpResume:
			st, err = c.Resume(ctx, lab.StackName, lab.StackID)
		case op == OpDelete:
			st, err = c.Delete(ctx, lab.StackName, lab.StackID)
		}
		release()
	}
	if op == OpDelete && errors.Is(err, cloud.ErrNotFound) {
		st, err = labs.Stack{Status: "DELETE_COMPLETE"}, nil
	}
	now := m.Now()
	rules := m.Rules.For(lab.Course)
	ev := labs.Event{Actor: actor, Action: string(op), Cloud: c.Name(), StackID: lab.StackID, Detail: reason, RequestID: st.RequestID}
	if err != nil {
		ev.Error, ev.RequestID = err.Error(), requestID(err)
	}
	lab, uerr := m.update(ctx, lab.ID, ev, func(l *labs.Lab) {
		if st.Status != "" {
			observe(l, st, now)
		}
		switch {
		case err == nil:
			l.Attempts, l.NextAttemptAt, l.LastError = 0, time.Time{}, ""
			switch op {
			case OpResume:
				l.LastResumedAt = now
			case OpDelete:
				l.Status, l.DeletedAt = labs.Deleted, now
			}
		case errors.Is(err, cloud.ErrConflict) || ctx.Err() != nil:
			// someone else is acting on the stack, or we were stopped: not the stack's failure
			l.LastError = err.Error()
		default:
			l.Attempts++
			l.NextAttemptAt = now.Add(rules.Backoff(l.Attempts))
			l.LastError = err.Error()
			if l.Attempts >= rules.MaxAttempts {
				l.Status = labs.NeedsOperator
			}
		}
	})
	if err == nil && uerr == nil && op == OpResume {
		m.runHook(ctx, "after_resume", m.Hooks.AfterResume, lab, actor)
	}
	if err != nil {
		return lab, fmt.Errorf("%s lab %s: %w", op, lab.ID, err)
	}
	return lab, uerr
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

// record is one attempt of update.
func (m *Manager) record(ctx context.Context, id string, ev labs.Event, change func(*labs.Lab)) (labs.Lab, error) {
	lab, err := m.Registry.GetLab(ctx, id)
	if err != nil {
		return lab, err
	}
	ev.At, ev.From = m.Now(), lab.Status
	change(&lab)
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
