// Package reaper brings every lab stack on every cloud where the policy says: it observes
// (the registry and each cloud's labplane-tagged stacks), decides (policy.DecideLab, DecideStray), acts
// (through the lifecycle Manager, which re-reads each stack before acting; each cloud bounds
// its own operations in flight) and records. A pass is idempotent: killed half-way, the next
// pass sees the cloud's truth and finishes the job. One cloud down, or slow, does not stop
// the others, and a pass always ends: each cloud's list has a deadline of its own, and the
// whole pass one too.
package reaper

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
)

// Cloud is what the reaper needs of a cloud: its stacks, all of them (a full pass) or one
// (the due labs' pass).
type Cloud interface {
	Name() string
	List(ctx context.Context, tags ...string) ([]labs.Stack, error)
	lifecycle.StackReader
}

// Registry is what the reaper needs of the store.
type Registry interface {
	ListLabs(ctx context.Context, f labs.Filter) ([]labs.Lab, error)
	// DueLabs returns the labs that may be due to be brought to rest (store.DueLabs).
	DueLabs(ctx context.Context, idleBefore, leftBefore time.Time) ([]labs.Lab, error)
	GetLab(ctx context.Context, id string) (labs.Lab, error)
	Orphans(ctx context.Context) (map[labs.StackKey]time.Time, error)
	SeeOrphan(ctx context.Context, cloud, stackID, stackName string, now time.Time) (time.Time, error)
	ForgetOrphan(ctx context.Context, cloud, stackID string) error
	// TryLock tells whether a claim's process is alive (lifecycle.ClaimAlive).
	TryLock(ctx context.Context, key string) (unlock func(context.Context) error, ok bool, err error)
}

// Applier carries out one decision after re-reading the lab and its stack.
type Applier interface {
	Apply(ctx context.Context, a policy.Action, actor string) (bool, error)
}

var _ Applier = (*lifecycle.Manager)(nil)

// Reaper runs passes.
type Reaper struct {
	// Site names this installation: only stacks tagged labs.SiteTag(Site) are observed.
	Site     string
	Registry Registry
	Clouds   []Cloud
	Applier  Applier
	Rules    policy.Set
	Now      func() time.Time
	Log      *slog.Logger
	// Actor names the reaper in the audit trail ("reaper", "scheduler@host").
	Actor string
	// ListTimeout bounds each cloud's list while observing (default DefaultListTimeout): a
	// cloud that has not answered by then is reported in Plan.CloudErrors, and the others
	// are observed and acted on.
	ListTimeout time.Duration
	// Only, if set, is the one cloud this reaper works on (ForCloud): it reads that cloud's
	// labs and stacks, and no other's.
	Only string
	// MostInFlight, if set, is the most actions a cloud may have in flight at once (its
	// max_in_flight, or an auto bound's ceiling; 0: no bound): Execute runs that many workers
	// for the cloud's actions, not a goroutine for each action waiting for a slot.
	MostInFlight func(cloud string) int
	// PassTimeout bounds a pass: Run and RunOnly from the plan to the last outcome, and Plan
	// and Execute each when called alone (default DefaultPassTimeout). When it is up, the
	// actions still going are cancelled (a lifecycle action records its outcome even then,
	// and a cancelled one counts as no failed attempt) and the pass ends: the next pass
	// finishes the job. A pass that could run on holds the scheduler's lock, and with it
	// every suspend on every cloud.
	PassTimeout time.Duration
	// OnOutcome, if set, is told of each action's outcome as Execute has it, from the
	// goroutine that carried it out (a terminal's progress).
	OnOutcome func(Outcome)
}

// ForCloud returns a reaper of this one's for one cloud only, for a job of its own: serve runs
// each cloud's jobs under that cloud's lock (LockKey), so that several replicas work on several
// clouds at once and no cloud's pass waits for another's.
func (r *Reaper) ForCloud(name string) *Reaper {
	one := *r
	one.Only, one.Clouds = name, nil
	for _, c := range r.Clouds {
		if c.Name() == name {
			one.Clouds = []Cloud{c}
		}
	}
	return &one
}

// LockKey is the key of the lock a reaper holds while it works on a cloud: one pass at a time
// on a cloud, across every process sharing the registry.
func LockKey(cloud string) string { return "reaper." + cloud }

// The defaults of ListTimeout and PassTimeout.
const (
	// DefaultListTimeout: a list is a few requests of at most a minute each
	// (heat.DefaultRequestTimeout); a cloud that takes longer is as good as down this pass.
	DefaultListTimeout = 2 * time.Minute
	// DefaultPassTimeout: config.DefaultPassTimeout, for a Reaper built without a
	// configuration.
	DefaultPassTimeout = 10 * time.Minute
)

// errPassTimeout is the cause of a pass's context ending at PassTimeout.
var errPassTimeout = errors.New("reaper: the pass ran out of time")

// bound gives ctx the pass's deadline (an earlier one that ctx has stays).
func (r *Reaper) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, cmp.Or(r.PassTimeout, DefaultPassTimeout), errPassTimeout)
}

// Plan is what a pass will do: the actions that change something, the holds that explain
// why a due lab is left alone, and the clouds that could not be observed.
type Plan struct {
	At      time.Time       `json:"at"`
	Labs    int             `json:"labs_observed"`
	Stacks  int             `json:"stacks_observed"`
	Actions []policy.Action `json:"actions"`
	Held    []policy.Action `json:"held"`
	// CloudErrors: a cloud that could not be listed; its labs are left for the next pass.
	CloudErrors map[string]string `json:"cloud_errors,omitempty"`
	// Listed: the clouds whose stacks this pass listed (a full pass; PlanDue lists none).
	Listed []string `json:"clouds_listed,omitempty"`
}

// Outcome is what became of one action.
type Outcome struct {
	Action policy.Action `json:"action"`
	// Done: the action was carried out. Not done and no error: a fresh read no longer called for it.
	Done     bool          `json:"done"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Result is a pass that acted.
type Result struct {
	Plan     Plan          `json:"plan"`
	Outcomes []Outcome     `json:"outcomes"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// Failed reports whether any cloud could not be observed or any action failed.
func (r Result) Failed() bool {
	if len(r.Plan.CloudErrors) > 0 {
		return true
	}
	for _, o := range r.Outcomes {
		if o.Error != "" {
			return true
		}
	}
	return false
}

// Plan observes every cloud and the registry and decides. It writes nothing.
//
// Each cloud's labplane stacks are listed first; then the registry's live labs are read a
// page at a time (pageSize) and each is decided as it comes, so that a pass holds the
// listings and one page of labs, not every lab there is. A lab written since its cloud was
// listed (or shortly before: replicas' clocks differ by up to clockSkew) has its stack read
// again on its own, as PlanDue reads them: no decision weighs a registry row newer than the
// cloud's view of its stack. The stacks no lab claims are strays: zombies and orphans.
func (r *Reaper) Plan(ctx context.Context) (Plan, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	seen, err := r.Registry.Orphans(ctx)
	if err != nil {
		return Plan{}, fmt.Errorf("list orphans: %w", err)
	}
	listedFrom := r.Now().Add(-clockSkew)
	listed := r.listAll(ctx)
	now := r.Now()
	p := Plan{At: now, CloudErrors: map[string]string{}}
	views := make(map[string]*cloudView, len(listed))
	for name, l := range listed {
		if l.err != nil {
			p.CloudErrors[name] = l.err.Error()
			r.Log.Error("cloud unavailable: its labs wait for the next pass", "cloud", name, "err", l.err)
			continue
		}
		views[name] = newCloudView(l.stacks)
		p.Stacks += len(l.stacks)
		p.Listed = append(p.Listed, name)
	}
	slices.Sort(p.Listed)

	var written []labs.Lab // since the listing: their stacks are read again
	f := labs.Filter{Statuses: labs.LiveStatuses(), Cloud: r.Only, Limit: pageSize}
	for {
		page, err := r.Registry.ListLabs(ctx, f)
		if err != nil {
			return Plan{}, fmt.Errorf("list labs: %w", err)
		}
		for _, lab := range page {
			p.Labs++
			view, ok := views[lab.Cloud]
			if !ok {
				if _, listedOK := listed[lab.Cloud]; !listedOK {
					p.CloudErrors[lab.Cloud] = "not in the configuration: its labs are not managed"
				}
				continue
			}
			st := view.claim(lab)
			if !lab.UpdatedAt.Before(listedFrom) {
				written = append(written, lab)
				continue
			}
			o := policy.Observed{Lab: lab, Stack: st}
			if o.ClaimAlive, err = lifecycle.ClaimAlive(ctx, r.Registry, lab); err != nil {
				return Plan{}, fmt.Errorf("is the claim of lab %s alive: %w", lab.ID, err)
			}
			p.add(policy.DecideLab(o, now, r.Rules.For(lab.Course)))
		}
		if len(page) < pageSize {
			break
		}
		f.After = page[len(page)-1].ID
	}
	if _, err := r.readAndDecide(ctx, written, &p); err != nil { // their stacks were counted listed
		return Plan{}, err
	}

	for _, c := range r.Clouds { // in the configuration's order, not the map's: a pass is the same every time
		view, ok := views[c.Name()]
		if !ok {
			continue
		}
		for i, st := range view.stacks {
			if view.claimed[i] {
				continue
			}
			stray := policy.Stray{Stack: st, FirstSeen: now}
			if t, ok := seen[labs.StackKey{Cloud: st.Cloud, ID: st.ID}]; ok {
				stray.FirstSeen = t
			}
			if id := st.LabID(); id != "" {
				lab, err := r.Registry.GetLab(ctx, id)
				switch {
				case err == nil:
					stray.Lab = &lab
				case !errors.Is(err, labs.ErrNotFound):
					return Plan{}, fmt.Errorf("look up lab %s of stack %s: %w", id, st.ID, err)
				}
			}
			p.add(policy.DecideStray(stray, now, r.Rules.Default), true)
		}
	}
	sort.SliceStable(p.Actions, func(i, j int) bool { return p.Actions[i].Cloud() < p.Actions[j].Cloud() })
	return p, nil
}

// pageSize is how many labs Plan reads from the registry at a time.
const pageSize = 1000

// clockSkew is how far apart the clocks of the processes writing the registry may be: a lab
// written this long before a cloud's listing began is read again, as one written after it.
const clockSkew = time.Minute

// add puts a decision in the plan: an action if it changes something, a hold if it explains.
func (p *Plan) add(a policy.Action, ok bool) {
	switch {
	case !ok:
	case a.Kind.Changes():
		p.Actions = append(p.Actions, a)
	default:
		p.Held = append(p.Held, a)
	}
}

// cloudView is one cloud's listing while a pass plans: its stacks, found by id or by name,
// and which of them a lab claims.
type cloudView struct {
	stacks       []labs.Stack
	byID, byName map[string]int
	claimed      []bool
}

func newCloudView(stacks []labs.Stack) *cloudView {
	v := &cloudView{stacks: stacks, byID: make(map[string]int, len(stacks)), byName: make(map[string]int, len(stacks)),
		claimed: make([]bool, len(stacks))}
	for i, st := range stacks {
		v.byID[st.ID], v.byName[st.Name] = i, i
	}
	return v
}

// claim marks the lab's stack (by id, or by name before the lab recorded an id) as the lab's
// and returns it, or nil when the listing does not have it.
func (v *cloudView) claim(lab labs.Lab) *labs.Stack {
	i, found := v.byID[lab.StackID]
	if lab.StackID == "" {
		i, found = v.byName[lab.StackName]
	}
	if !found {
		return nil
	}
	v.claimed[i] = true
	return &v.stacks[i]
}

// PlanDue is Plan for the labs that may be due to be brought to rest, and no other: it asks
// the registry for them (running labs idle longer than the shortest idle_suspend_after of any
// course, and those with a suspend or delete under way) and reads only their stacks, one by
// one, instead of every lab and every cloud's whole list. With nothing due it calls no cloud.
// It sees no orphans and no zombies (that is the full pass's work).
func (r *Reaper) PlanDue(ctx context.Context) (Plan, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	now := r.Now()
	due, err := r.dueAt(ctx, now)
	if err != nil {
		return Plan{}, err
	}
	p := Plan{At: now, Labs: len(due), CloudErrors: map[string]string{}}
	if p.Stacks, err = r.readAndDecide(ctx, due, &p); err != nil {
		return Plan{}, err
	}
	for name, err := range p.CloudErrors {
		r.Log.Error("cloud unavailable: its due labs wait for the next pass", "cloud", name, "err", err)
	}
	sort.SliceStable(p.Actions, func(i, j int) bool { return p.Actions[i].Cloud() < p.Actions[j].Cloud() })
	return p, nil
}

// dueAt asks the registry for this reaper's labs that may be due to be brought to rest at at:
// running labs idle longer than the shortest idle_suspend_after of any course (or left longer
// than the shortest leave_grace), and those with a suspend or delete under way.
func (r *Reaper) dueAt(ctx context.Context, at time.Time) ([]labs.Lab, error) {
	idle, left := shortest(r.Rules)
	due, err := r.Registry.DueLabs(ctx, at.Add(-idle), at.Add(-left))
	if err != nil {
		return nil, fmt.Errorf("list the labs due: %w", err)
	}
	if r.Only != "" {
		due = slices.DeleteFunc(due, func(l labs.Lab) bool { return l.Cloud != r.Only })
	}
	return due, nil
}

// readAndDecide reads each lab's stack on its own (at most dueReads at once), adds what the
// policy decides to p, in the labs' order, and returns how many stacks it found. A cloud that
// fails a read goes in p.CloudErrors, and its lab waits for the next pass.
func (r *Reaper) readAndDecide(ctx context.Context, due []labs.Lab, p *Plan) (found int, _ error) {
	clouds := make(map[string]Cloud, len(r.Clouds))
	for _, c := range r.Clouds {
		clouds[c.Name()] = c
	}
	type decision struct {
		action policy.Action
		ok     bool
	}
	decided := make([]decision, len(due))
	var mu sync.Mutex
	var wg sync.WaitGroup
	reads := make(chan struct{}, dueReads)
	for i, lab := range due {
		c, ok := clouds[lab.Cloud]
		if !ok {
			p.CloudErrors[lab.Cloud] = "not in the configuration: its labs are not managed"
			continue
		}
		alive, err := lifecycle.ClaimAlive(ctx, r.Registry, lab)
		if err != nil {
			wg.Wait()
			return 0, fmt.Errorf("is the claim of lab %s alive: %w", lab.ID, err)
		}
		reads <- struct{}{}
		wg.Go(func() {
			defer func() { <-reads }()
			rctx, cancel := context.WithTimeout(ctx, cmp.Or(r.ListTimeout, DefaultListTimeout))
			defer cancel()
			st, err := lifecycle.CurrentStack(rctx, c, lab, labs.Stack{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				p.CloudErrors[lab.Cloud] = err.Error()
				return
			}
			if st != nil {
				found++
			}
			a, ok := policy.DecideLab(policy.Observed{Lab: lab, Stack: st, ClaimAlive: alive}, p.At, r.Rules.For(lab.Course))
			decided[i] = decision{a, ok}
		})
	}
	wg.Wait()
	for _, d := range decided {
		p.add(d.action, d.ok)
	}
	return found, nil
}

// Overdue counts, by cloud (each configured cloud, and any other a lab is on), the running
// labs the policy would have suspended grace ago already: idle past their course's
// idle_suspend_after, or left leave_grace ago, by more than grace. It reads the registry only
// (the labs that may be due, as PlanDue): the suspend backlog, for the metrics.
func (r *Reaper) Overdue(ctx context.Context, grace time.Duration) (map[string]int, error) {
	then := r.Now().Add(-grace)
	due, err := r.dueAt(ctx, then)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(r.Clouds))
	for _, c := range r.Clouds { // every cloud has a count, 0 included: a graph's line, not a gap
		out[c.Name()] = 0
	}
	for _, lab := range due {
		if lab.Status == labs.Active && !r.Rules.For(lab.Course).InUse(lab, then) {
			out[lab.Cloud]++
		}
	}
	return out, nil
}

// dueReads bounds the stacks PlanDue reads at once.
const dueReads = 16

// shortest is the shortest idle_suspend_after and leave_grace of any course: the registry's
// cut-offs for a lab that may be idle, or left.
func shortest(rules policy.Set) (idle, leaveGrace time.Duration) {
	idle, leaveGrace = rules.Default.IdleSuspendAfter, rules.Default.LeaveGrace
	for _, r := range rules.Courses {
		idle, leaveGrace = min(idle, r.IdleSuspendAfter), min(leaveGrace, r.LeaveGrace)
	}
	return idle, leaveGrace
}

// RunDue plans the due labs (PlanDue) and executes the actions keep selects: the
// suspend-idle job, whose cost grows with the labs due, not with the labs there are.
func (r *Reaper) RunDue(ctx context.Context, keep func(policy.Action) bool) (Result, error) {
	return r.runPlanned(ctx, r.PlanDue, keep)
}

// runPlanned plans with plan and executes the actions keep selects, within the pass's bound.
func (r *Reaper) runPlanned(ctx context.Context, plan func(context.Context) (Plan, error), keep func(policy.Action) bool) (Result, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	p, err := plan(ctx)
	if err != nil {
		return Result{}, err
	}
	kept := p.Actions[:0:0]
	for _, a := range p.Actions {
		if keep(a) {
			kept = append(kept, a)
		}
	}
	p.Actions = kept
	return r.Execute(ctx, p)
}

// Run plans and executes the plan.
func (r *Reaper) Run(ctx context.Context) (Result, error) { return r.RunOnly(ctx, All) }

// RunOnly plans and executes the actions keep selects: the scheduler runs parts of a pass
// (suspending idle labs, reconciling, timing out launches) on intervals of their own.
func (r *Reaper) RunOnly(ctx context.Context, keep func(policy.Action) bool) (Result, error) {
	return r.runPlanned(ctx, r.Plan, keep)
}

// All keeps every action: a full pass.
func All(policy.Action) bool { return true }

// SuspendIdle keeps suspends, the deletes asked for (or decided) whose claim did not finish,
// and the registry syncs that come with observing: what brings labs to rest.
func SuspendIdle(a policy.Action) bool {
	return a.Kind == policy.Suspend || a.Kind == policy.Sync || (a.Kind == policy.Delete && a.Lab.Status == labs.Deleting)
}

// Reconcile keeps what brings the registry and the clouds together: zombies, orphans, labs
// whose stack is gone.
func Reconcile(a policy.Action) bool {
	return a.Kind == policy.DeleteZombie || a.Kind == policy.DeleteOrphan || (a.Kind == policy.Sync && a.To == labs.Deleted)
}

// LaunchTimeouts keeps the deletes of launches that failed or did not finish in time, and
// launches that never made a stack.
func LaunchTimeouts(a policy.Action) bool {
	action, _ := a.Stack.Phase()
	return (a.Kind == policy.Delete && action == "CREATE") ||
		(a.Kind == policy.Sync && a.To == labs.Deleted && a.Lab.Status == labs.Launching)
}

// Execute carries out a plan: each cloud's actions start at once, as many as it may have in
// flight (MostInFlight), and its in-flight bound paces them, so a class leaving at once is
// suspended as fast as the clouds allow. Each
// action re-reads its lab and stack first and is skipped if they no longer call for it.
func (r *Reaper) Execute(ctx context.Context, p Plan) (Result, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	start := time.Now()
	if err := r.recordOrphans(ctx, p); err != nil {
		return Result{}, err
	}
	res := Result{Plan: p, Outcomes: make([]Outcome, len(p.Actions))}
	byCloud := map[string][]int{} // the actions' places in the plan, by cloud
	for i, a := range p.Actions {
		byCloud[a.Cloud()] = append(byCloud[a.Cloud()], i)
	}
	var wg sync.WaitGroup
	for cloud, todo := range byCloud {
		workers := len(todo)
		if r.MostInFlight != nil {
			if most := r.MostInFlight(cloud); most > 0 {
				workers = min(workers, most)
			}
		}
		next := make(chan int, len(todo))
		for _, i := range todo {
			next <- i
		}
		close(next)
		for range workers {
			wg.Go(func() {
				for i := range next {
					res.Outcomes[i] = r.apply(ctx, p.Actions[i])
					if r.OnOutcome != nil {
						r.OnOutcome(res.Outcomes[i])
					}
				}
			})
		}
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if errors.Is(context.Cause(ctx), errPassTimeout) {
		r.Log.Warn("reaper pass ran out of time: the actions it cut short are for the next pass",
			"pass_timeout", cmp.Or(r.PassTimeout, DefaultPassTimeout), "actions", len(p.Actions))
	}
	return res, nil
}

// apply carries out one action of a pass and says how it went.
func (r *Reaper) apply(ctx context.Context, a policy.Action) Outcome {
	t0 := time.Now()
	done, err := r.Applier.Apply(ctx, a, r.Actor)
	o := Outcome{Action: a, Done: done, Duration: time.Since(t0)}
	if err != nil {
		o.Error = err.Error()
		r.Log.Warn("action failed", "kind", a.Kind, "lab", a.Lab.ID, "cloud", a.Cloud(), "err", err)
	} else if done {
		r.Log.Info("action done", "kind", a.Kind, "lab", a.Lab.ID, "cloud", a.Cloud(), "reason", a.Reason)
		if a.Kind == policy.DeleteOrphan {
			if err := r.Registry.ForgetOrphan(ctx, a.Stack.Cloud, a.Stack.ID); err != nil {
				r.Log.Warn("forget orphan", "stack", a.Stack.ID, "err", err)
			}
		}
	}
	return o
}

// recordOrphans remembers when each orphan was first seen (orphan_grace counts from it).
func (r *Reaper) recordOrphans(ctx context.Context, p Plan) error {
	for _, a := range append(p.Held, p.Actions...) {
		if a.Lab.ID == "" && a.Stack.ID != "" && a.Stack.Managed() {
			if _, err := r.Registry.SeeOrphan(ctx, a.Stack.Cloud, a.Stack.ID, a.Stack.Name, p.At); err != nil {
				return fmt.Errorf("record orphan %s: %w", a.Stack.ID, err)
			}
		}
	}
	return nil
}

type listing struct {
	stacks []labs.Stack
	err    error
}

// listAll lists this site's stacks on every cloud at once, each within ListTimeout.
func (r *Reaper) listAll(ctx context.Context) map[string]listing {
	timeout := cmp.Or(r.ListTimeout, DefaultListTimeout)
	out := make(map[string]listing, len(r.Clouds))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range r.Clouds {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			stacks, err := c.List(ctx, labs.TagManaged, labs.SiteTag(r.Site))
			mu.Lock()
			out[c.Name()] = listing{stacks, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}
