package interleave

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
)

// The bounds the invariants hold labplane to.
const (
	// readyWithin: a learner at work (the LMS beating for them) has a running lab within
	// this, unless something failed meanwhile: the slowest create or resume of the simulated
	// clouds (90 s), behind a queue for the clouds' slots, plus the LMS's polling.
	readyWithin = 10 * time.Minute
	// deletedStackWithin: a lab the registry says is deleted has no stack left running on a
	// cloud for longer than this (a delete takes up to a minute on the simulated clouds).
	deletedStackWithin = 3 * time.Minute
	// zombieWithin: the same when a fault (a kill, an outage) struck since the delete: the
	// stack is then left to the reaper's next full pass (every 5 minutes), which deletes it
	// as a zombie, plus the cloud's own time.
	zombieWithin = 7 * time.Minute
	// passWithin: a reaper pass ends within this; a pass that does not holds the lock that
	// every suspend waits for.
	passWithin = 10 * time.Minute
	// checkEvery spaces the checks that read the whole registry: fine enough for bounds of
	// minutes.
	checkEvery = 30 * time.Second
)

// truth is what really happened, as the simulation saw it: what the LMS was told, and what
// the clouds and hooks were asked to do.
type truth struct {
	// answered: the times of a lab's launch-or-gets and heartbeats the LMS got an answer to
	// (2xx), in order; toldUp: the last such answer that showed the lab up or coming up (not
	// suspending, suspended, deleting or deleted).
	answered map[string][]time.Time
	toldUp   map[string]time.Time
	// left: the last leave of a lab the LMS got an answer to.
	left map[string]time.Time
	// reset: labs the LMS deleted.
	reset map[string]bool
	// present: learners at work, since when and with which lab.
	present map[string]presence
	// hooks counts hook runs by "command lab claim-time": an action's hooks run once.
	hooks map[string]int
	// owners: the learner each lab was first seen live with (a pool lab: once taken).
	owners map[string]string
	// budgetClaims: the claim time of each lab's suspend claimed by a spent budget
	// (lifecycle.BudgetActor); spent: when a learner's first such claim in a course was.
	budgetClaims map[string]time.Time
	spent        map[seat]time.Time
}

// seat is a learner in a course.
type seat struct{ learner, course string }

type presence struct {
	since time.Time
	lab   string
}

func newTruth() truth {
	return truth{answered: map[string][]time.Time{}, toldUp: map[string]time.Time{}, left: map[string]time.Time{}, reset: map[string]bool{},
		present: map[string]presence{}, hooks: map[string]int{}, owners: map[string]string{}, budgetClaims: map[string]time.Time{},
		spent: map[seat]time.Time{}}
}

// Kind names an invariant.
type Kind string

// The invariants.
const (
	// SuspendedInUse: a suspend reached the cloud for a lab the LMS had been answered about
	// within idle_suspend_after, before the suspend was sent (which should have cancelled
	// it), or with the lab shown up; but for the suspend a spent time budget claimed (see
	// SpentLaunch).
	SuspendedInUse Kind = "suspended-in-use"
	// LiveStackDeleted: a delete reached the cloud for the stack a live lab is on.
	LiveStackDeleted Kind = "live-stack-deleted"
	// NotReady: a learner at work had no running lab within readyWithin, with nothing
	// failing meanwhile.
	NotReady Kind = "not-ready"
	// DeletedRunsOn: a lab deleted in the registry kept a stack on a cloud for longer than
	// deletedStackWithin (zombieWithin when a fault struck since).
	DeletedRunsOn Kind = "deleted-lab-runs-on"
	// PassStuck: a reaper pass did not end within passWithin.
	PassStuck Kind = "pass-stuck"
	// HooksTwice: one action's hooks ran twice.
	HooksTwice Kind = "hooks-twice"
	// OverCapacity: a cloud held more live labs than its capacity.
	OverCapacity Kind = "over-capacity"
	// OverInFlight: a cloud saw more operations at once than its max_in_flight.
	OverInFlight Kind = "over-in-flight"
	// NotSettled: after the quiet time, something was not at rest.
	NotSettled Kind = "not-settled"
	// TwoLive: a learner held two live labs in one course, a pool lab taken included (the
	// registry keeps one live lab per learner and course, and store.TakePooled meets it).
	TwoLive Kind = "two-live-labs"
	// PoolTakenTwice: a lab of a warm pool went to a second learner: taken twice, or its
	// learner changed once it had one (store.TakePooled takes only a lab with no learner, in
	// one versioned update).
	PoolTakenTwice Kind = "pool-taken-twice"
	// PoolOverfilled: a course's warm pool held more live labs than its size. Fill counts the
	// pool's live labs, launching ones included, under the pool's lock, and launches only what
	// lacks, before it unlocks; a lab leaves the pool by a take or a delete and never comes
	// back. So the pool's size bounds it at every instant, whatever Fills, takes and kills
	// interleave (a Fill killed half-way launches nothing more: its labs are counted).
	PoolOverfilled Kind = "pool-overfilled"
	// PoolResumed: a resume reached a cloud for a lab of a warm pool, which no learner had
	// taken: a pool lab is kept suspended until a launch takes it (and Provision resumes it).
	PoolResumed Kind = "pool-lab-resumed"
	// SpentLaunch: after a learner's spent time budget claimed the suspend of their lab in a
	// course (lifecycle.SuspendSpent), the LMS got a 2xx to a launch for them in the course,
	// or a create or a resume of one of their labs there reached a cloud. Their time used
	// only grows, and no extension is modelled: every launch and resume is refused
	// (lifecycle.ErrBudgetExhausted), a resume that waited for a cloud slot included.
	// SuspendedInUse allows that suspend, and that one only: claimed by the budget, with the
	// learner's time used up when it is sent.
	SpentLaunch Kind = "launch-after-budget"
)

// Violation is an invariant broken: when, what, and the steps that led to it.
type Violation struct {
	Kind  Kind
	At    time.Time
	What  string
	Trace []string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s at %s: %s", v.Kind, v.At.UTC().Format("15:04:05.000"), v.What)
}

// violate records a broken invariant; the first of each kind keeps the steps that led to it.
func (w *world) violate(kind Kind, format string, args ...any) {
	v := Violation{Kind: kind, At: time.Now(), What: fmt.Sprintf(format, args...)}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kinds[kind] >= maxPerKind {
		return
	}
	w.turns.note("VIOLATION %s", v)
	if w.kinds[kind] == 0 {
		v.Trace = w.turns.lastTrace()
	}
	w.kinds[kind]++
	w.violated = append(w.violated, v)
}

// maxPerKind bounds the violations of each kind a run records.
const maxPerKind = 3

func (w *world) cloudDown(c *simCloud) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return c.down
}

// answered notes that the LMS got an answer about lab, showing it in status: the learner
// was there.
func (w *world) answered(lab string, status labs.Status) {
	if lab == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.truth.answered[lab] = append(w.truth.answered[lab], time.Now())
	switch status {
	case labs.Suspending, labs.Suspended, labs.Deleting, labs.Deleted:
	default:
		w.truth.toldUp[lab] = time.Now()
	}
}

// lastBefore returns the last of times (in order) before t, or the last of all when t is zero.
func lastBefore(times []time.Time, t time.Time) (time.Time, bool) {
	for i := len(times) - 1; i >= 0; i-- {
		if t.IsZero() || times[i].Before(t) {
			return times[i], true
		}
	}
	return time.Time{}, false
}

// left notes that the LMS told labplane the learner left the lab, and got an answer.
func (w *world) left(lab string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.truth.left[lab] = time.Now()
}

func (w *world) reset(lab string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.truth.reset[lab] = true
	for name, p := range w.truth.present {
		if p.lab == lab {
			w.truth.present[name] = presence{since: time.Now()}
		}
	}
}

// present notes that a learner is at work with lab (a new lab restarts the wait for it).
func (w *world) present(name, lab string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.truth.present[name]
	if !ok || (p.lab != lab && p.lab != "") {
		p.since = time.Now()
	}
	p.lab = lab
	w.truth.present[name] = p
}

func (w *world) leaves(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.truth.present, name)
}

// hookRuns checks that a before_suspend or before_delete hook runs once for each action:
// each claim of the lab (see labs.Lab.ClaimedAt). (An after_resume runs once for each resume
// that succeeds: two LMS requests may resume a lab one after the other.)
func (w *world) hookRuns(command, lab string) {
	if command == "after_resume" {
		return
	}
	row, err := w.checker.GetLab(context.Background(), lab)
	if err != nil {
		return
	}
	action := row.ClaimedAt
	w.mu.Lock()
	key := fmt.Sprintf("%s %s %s", command, lab, action.Format(time.RFC3339Nano))
	w.truth.hooks[key]++
	runs := w.truth.hooks[key]
	w.mu.Unlock()
	if runs > 1 {
		w.violate(HooksTwice, "%s ran for lab %s a %s time for one action (claimed at %s)", command, lab, ordinal(runs), action.Format("15:04:05.000"))
	}
}

// passStarts and passEnds track the reaper passes in progress.
func (w *world) passStarts(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.passes[key] = time.Now()
}

func (w *world) passEnds(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.passes, key)
}

// actionStarts checks a suspend, a resume or a delete as it reaches the cloud: no suspend of
// a lab in use (but by its learner's spent budget), no delete of the stack a live lab is on,
// no resume as launchStarts says.
func (w *world) actionStarts(c *simCloud, op, stackID string) {
	stacks := c.fake.Stacks()
	i := slices.IndexFunc(stacks, func(s labs.Stack) bool { return s.ID == stackID })
	if i < 0 {
		return
	}
	st := stacks[i]
	lab := st.LabID()
	now := time.Now()
	w.mu.Lock()
	answered := w.truth.answered[lab]
	up, toldUp := w.truth.toldUp[lab]
	left, hasLeft := w.truth.left[lab]
	reset := w.truth.reset[lab]
	w.mu.Unlock()
	if op == "resume" {
		w.launchStarts(op, lab)
		return
	}
	row, err := w.checker.GetLab(context.Background(), lab)
	if err != nil {
		return
	}
	if op == "suspend" {
		// the LMS answered before the suspend was sent (a return it should have cancelled),
		// or showed the lab up: an answer at the instant it was sent came after it
		// A learner who left (and was neither answered before the send nor shown the lab up
		// since) may have the lab suspended leave_grace after: a return after the send comes
		// too late to stop it.
		last, seen := lastBefore(answered, row.SentAt)
		gone := hasLeft && !left.Before(last) && !(toldUp && left.Before(up)) && now.Sub(left) >= rules.LeaveGrace
		back := seen && now.Sub(last) < rules.IdleSuspendAfter
		inUse := back || (toldUp && now.Sub(up) < rules.IdleSuspendAfter)
		if gone && inUse {
			w.mu.Lock()
			w.leftSuspends++ // sooner than idleness would have: the leave's doing
			w.mu.Unlock()
		}
		if !gone && inUse && !w.budgetSuspend(row) {
			w.violate(SuspendedInUse, "suspend of lab %s (stack %s on %s) in use: the LMS was answered about it %s ago, the suspend sent %s ago (idle_suspend_after %s)",
				lab, st.Name, c.name, now.Sub(last), now.Sub(row.SentAt), rules.IdleSuspendAfter)
		}
	}
	if op != "delete" || reset {
		return
	}
	action, state := st.Phase()
	ownStack := row.Cloud == c.name && (row.StackID == st.ID || (row.StackID == "" && row.StackName == st.Name))
	timedOut := action == "CREATE" && state == "IN_PROGRESS" && now.Sub(row.CreatedAt) >= rules.LaunchTimeout
	switch row.Status {
	case labs.Launching, labs.Active, labs.Suspending, labs.Suspended, labs.Resuming:
		if ownStack && state != "FAILED" && action != "DELETE" && !timedOut {
			w.violate(LiveStackDeleted, "delete of stack %s on %s (%s), the stack of live lab %s (registry: %s, stack id %q): the lab is lost",
				st.Name, c.name, st.Status, lab, row.Status, row.StackID)
		}
	}
}

// afterWrite checks, after each write to the registry, that no cloud holds more live labs
// than its capacity.
func (w *world) afterWrite() {
	counts, err := w.checker.CountLive(context.Background())
	if err != nil {
		return
	}
	for _, c := range w.clouds {
		if counts[c.name] > c.capacity {
			w.violate(OverCapacity, "cloud %s holds %d live labs, its capacity is %d", c.name, counts[c.name], c.capacity)
		}
	}
}

// afterAdd checks, after a write that gives a learner or a pool a lab (a create, a take: an
// update never does, the lifecycle revives no deleted lab and owned checks the learner), that
// no learner holds two live labs in a course and no warm pool more than its size.
func (w *world) afterAdd() {
	rows, err := w.checker.ListLabs(context.Background(), labs.Filter{Statuses: labs.LiveStatuses()})
	if err != nil {
		return
	}
	seats, pooled := map[seat][]string{}, map[string]int{}
	for _, r := range rows {
		if r.Pooled() {
			pooled[r.Course]++
		} else {
			seats[seat{r.Learner, r.Course}] = append(seats[seat{r.Learner, r.Course}], r.ID)
		}
	}
	for _, r := range rows { // in order: a run replays its violations too
		if ids := seats[seat{r.Learner, r.Course}]; len(ids) > 1 && ids[0] == r.ID {
			w.violate(TwoLive, "learner %s holds %d live labs in %s: %s", r.Learner, len(ids), r.Course, strings.Join(ids, ", "))
		}
	}
	for _, course := range courses {
		if n, size := pooled[course], w.pools[course].Size; n > size {
			w.violate(PoolOverfilled, "the warm pool of %s holds %d live labs, its size is %d", course, n, size)
		}
	}
}

// owned checks the learner of a lab as a write left it: a lab's learner, once it has one (a
// pool lab once taken), never changes; take says whether the write took it from a pool.
func (w *world) owned(lab labs.Lab, take bool) {
	w.mu.Lock()
	was, ok := w.truth.owners[lab.ID]
	if !ok && !lab.Pooled() {
		w.truth.owners[lab.ID] = lab.Learner
	}
	if take {
		w.poolTakes++
	}
	w.mu.Unlock()
	switch {
	case ok && take:
		w.violate(PoolTakenTwice, "lab %s of the warm pool of %s taken by %s, already taken by %s", lab.ID, lab.Course, lab.Learner, was)
	case ok && was != lab.Learner:
		w.violate(PoolTakenTwice, "lab %s is %s's, it was %s's", lab.ID, lab.Learner, was)
	}
}

// updated notes a claim of a suspend by a spent time budget.
func (w *world) updated(lab labs.Lab, ev labs.Event) {
	if ev.Actor != lifecycle.BudgetActor || ev.Action != string(lifecycle.OpSuspend)+"-claimed" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.truth.budgetClaims[lab.ID] = lab.ClaimedAt
	w.budgetClaims++
	if s := (seat{lab.Learner, lab.Course}); w.truth.spent[s].IsZero() {
		w.truth.spent[s] = time.Now()
	}
}

// budgetSuspend reports whether the lab's suspend is the one its learner's spent budget
// claimed, with their time in the course used up.
func (w *world) budgetSuspend(row labs.Lab) bool {
	w.mu.Lock()
	at, ok := w.truth.budgetClaims[row.ID]
	w.mu.Unlock()
	if !ok || !at.Equal(row.ClaimedAt) {
		return false
	}
	used, added, err := w.checker.Usage(context.Background(), row.Learner, row.Course)
	return err == nil && ruleSet.For(row.Course).Budget(used, added).Exhausted()
}

// spentBefore returns when the learner's budget in the course was spent, if it was before
// now: a launch or a resume that checked the budget at the instant it was spent went with it.
func (w *world) spentBefore(learner, course string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.truth.spent[seat{learner, course}]
	return at, ok && time.Now().After(at)
}

// launchAnswered checks the LMS's 2xx to a launch for a learner: not once their budget is spent.
func (w *world) launchAnswered(learner, course, lab string) {
	if at, ok := w.spentBefore(learner, course); ok {
		w.violate(SpentLaunch, "a launch for %s in %s was answered with lab %s, their time budget spent at %s",
			learner, course, lab, at.UTC().Format("15:04:05.000"))
	}
}

// launchStarts checks a create or a resume as it reaches the cloud: never of a pool lab no
// learner took (a resume), nor for a learner whose budget is spent.
func (w *world) launchStarts(op, lab string) {
	row, err := w.checker.GetLab(context.Background(), lab)
	if err != nil {
		return
	}
	if op == "resume" && row.Pooled() {
		w.violate(PoolResumed, "resume of lab %s of the warm pool of %s, which no learner took", lab, row.Course)
	}
	if at, ok := w.spentBefore(row.Learner, row.Course); ok {
		w.violate(SpentLaunch, "%s of lab %s of %s in %s, their time budget spent at %s", op, lab, row.Learner, row.Course, at.UTC().Format("15:04:05.000"))
	}
}

// checkOverTime checks what can only break as time passes.
func (w *world) checkOverTime(ctx context.Context, settling bool) {
	now := time.Now()
	for _, c := range w.clouds {
		if n := c.fake.MaxInFlightSeen(); n > c.maxInFlight && n > c.inFlightReported {
			c.inFlightReported = n
			w.violate(OverInFlight, "cloud %s had %d operations in flight at once, max_in_flight is %d", c.name, n, c.maxInFlight)
		}
	}
	w.mu.Lock()
	var stuck []string
	for key, since := range w.passes {
		if now.Sub(since) > passWithin {
			stuck = append(stuck, fmt.Sprintf("%s (for %s)", key, now.Sub(since)))
		}
	}
	wide := now.Sub(w.lastWide) >= checkEvery
	if wide {
		w.lastWide = now
	}
	present := make(map[string]presence, len(w.truth.present))
	for k, v := range w.truth.present {
		present[k] = v
	}
	lastFault := w.lastFault
	w.mu.Unlock()
	if len(stuck) > 0 {
		slices.Sort(stuck)
		w.violate(PassStuck, "reaper passes still running after %s: %s; no lab is suspended meanwhile", passWithin, strings.Join(stuck, ", "))
	}
	if !wide {
		return
	}
	rows, err := w.checker.ListLabs(ctx, labs.Filter{})
	if err != nil {
		return
	}
	byID := make(map[string]labs.Lab, len(rows))
	for _, r := range rows {
		byID[r.ID] = r
	}
	stacks := w.stacks()
	for _, st := range stacks {
		row, ok := byID[st.LabID()]
		within := deletedStackWithin
		if lastFault.After(row.DeletedAt) {
			within = zombieWithin
		}
		if ok && row.Status == labs.Deleted && !strings.HasPrefix(st.Status, "DELETE_") && now.Sub(row.DeletedAt) > within {
			w.violate(DeletedRunsOn, "lab %s was deleted %s ago, its stack %s on %s still is %s", row.ID, now.Sub(row.DeletedAt), st.Name, st.Cloud, st.Status)
		}
	}
	for name, p := range present {
		if now.Sub(p.since) < readyWithin || lastFault.After(p.since) || p.lab == "" {
			continue
		}
		row := byID[p.lab]
		if st, ok := stackOf(stacks, row); ok && running(st) {
			continue
		}
		w.violate(NotReady, "%s has been at work for %s and lab %s does not run (registry: %s, stack %s)", name, now.Sub(p.since), p.lab, row.Status, row.StackStatus)
		w.mu.Lock()
		w.truth.present[name] = presence{since: now, lab: p.lab} // once per wait
		w.mu.Unlock()
	}
}

// checkSettled checks that, after the quiet time, everything is at rest: every lab left is
// suspended on its stack, every labplane stack belongs to one, the registry agrees.
func (w *world) checkSettled(ctx context.Context) {
	rows, err := w.checker.ListLabs(ctx, labs.Filter{Statuses: labs.LiveStatuses()})
	if err != nil {
		w.violate(NotSettled, "read the registry at the end: %v", err)
		return
	}
	stacks := w.stacks()
	claimed := map[labs.StackKey]bool{}
	for _, row := range rows {
		st, ok := stackOf(stacks, row)
		switch {
		case !ok:
			w.violate(NotSettled, "at rest, lab %s is %s in the registry and has no stack", row.ID, row.Status)
		case row.Status == labs.NeedsOperator && !running(st):
			// flagged for an operator (max_attempts failures): an alert, not a silent cost
		case row.Status != labs.Suspended || st.Status != "SUSPEND_COMPLETE":
			w.violate(NotSettled, "at rest, lab %s is %s in the registry, its stack %s", row.ID, row.Status, st.Status)
		case policy.Implied(st.Status) != row.Status || st.Status != row.StackStatus:
			w.violate(NotSettled, "at rest, lab %s is %s (%s) in the registry, its stack %s", row.ID, row.Status, row.StackStatus, st.Status)
		}
		if ok {
			claimed[labs.StackKey{Cloud: st.Cloud, ID: st.ID}] = true
		}
	}
	for _, st := range stacks {
		if !claimed[labs.StackKey{Cloud: st.Cloud, ID: st.ID}] {
			w.violate(NotSettled, "at rest, stack %s on %s (%s, lab %s) belongs to no live lab", st.Name, st.Cloud, st.Status, st.LabID())
		}
	}
}

// stacks lists every stack on every cloud.
func (w *world) stacks() []labs.Stack {
	var out []labs.Stack
	for _, c := range w.clouds {
		out = append(out, c.fake.Stacks()...)
	}
	return out
}

// stackOf finds a lab's stack: by id, or by name while the lab has not recorded one.
func stackOf(stacks []labs.Stack, row labs.Lab) (labs.Stack, bool) {
	for _, st := range stacks {
		if st.Cloud == row.Cloud && (st.ID == row.StackID || (row.StackID == "" && st.Name == row.StackName)) {
			return st, true
		}
	}
	return labs.Stack{}, false
}

// running reports whether a stack is up for the learner.
func running(st labs.Stack) bool {
	return st.Status == "CREATE_COMPLETE" || st.Status == "RESUME_COMPLETE"
}

func ordinal(n int) string {
	switch n {
	case 2:
		return "second"
	case 3:
		return "third"
	}
	return fmt.Sprintf("%dth", n)
}
