// Package policy decides what to do with lab stacks. It is pure: observed labs, the time and
// the rules in; actions out. No I/O, no clock. The reaper observes, calls Decide, acts; and
// before it acts on a lab it re-reads the lab and its stack and asks DecideLab again.
package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// Kind is what an action does.
type Kind string

const (
	// Suspend the lab's stack in place.
	Suspend Kind = "suspend"
	// Delete the lab's stack and mark the lab deleted.
	Delete Kind = "delete"
	// DeleteZombie deletes a labplane stack that the registry does not claim: its lab is
	// deleted, or the lab now owns another stack (a launch that failed over).
	DeleteZombie Kind = "delete-zombie"
	// DeleteOrphan deletes a labplane stack with no registry row, after orphan_grace.
	DeleteOrphan Kind = "delete-orphan"
	// Sync brings the registry in line with the cloud (status, stack status); no cloud call.
	Sync Kind = "sync"
	// Flag marks the lab as needing an operator (max_attempts failures, or stuck); no cloud call.
	Flag Kind = "flag"
	// Hold explains why nothing is done to a lab that would otherwise be acted on (a recent
	// heartbeat, a backoff, an orphan within its grace, a flagged lab). It changes nothing.
	Hold Kind = "hold"
)

// Changes reports whether the action changes the cloud or the registry.
func (k Kind) Changes() bool { return k != Hold }

// Destructive reports whether the action deletes a stack.
func (k Kind) Destructive() bool { return k == Delete || k == DeleteZombie || k == DeleteOrphan }

// Action is one decision. Lab is the registry row (zero for an orphan), Stack what the cloud
// showed (zero when it has no stack), To the status a Sync or Flag records.
type Action struct {
	Kind   Kind        `json:"kind"`
	Lab    labs.Lab    `json:"lab"`
	Stack  labs.Stack  `json:"stack"`
	To     labs.Status `json:"to,omitempty"`
	Reason string      `json:"reason"`
}

// Cloud is the cloud the action is on.
func (a Action) Cloud() string {
	if a.Stack.Cloud != "" {
		return a.Stack.Cloud
	}
	return a.Lab.Cloud
}

// Observed is a live registry row with the stack the cloud reports for it; Stack is nil when
// the cloud does not have it.
type Observed struct {
	Lab   labs.Lab
	Stack *labs.Stack
	// ClaimAlive: the process named by the lab's claim (labs.Lab.ClaimedBy) is alive.
	ClaimAlive bool
}

// Stray is a labplane-tagged stack the registry does not claim. Lab is its row when there is
// one (a deleted lab, or a live lab that owns another stack): that is a zombie. Without a
// row it is an orphan, first seen by labplane at FirstSeen.
type Stray struct {
	Stack     labs.Stack
	Lab       *labs.Lab
	FirstSeen time.Time
}

// DecideStray decides about a labplane stack the registry does not claim.
func DecideStray(s Stray, now time.Time, r Rules) Action {
	a := Action{Stack: s.Stack}
	if s.Lab != nil {
		a.Lab = *s.Lab
	}
	switch {
	case !s.Stack.Managed():
		a.Kind, a.Reason = Hold, "not tagged "+labs.TagManaged+": never touched"
	case s.Lab != nil && s.Lab.Status != labs.Deleted && s.Lab.Claims(s.Stack):
		a.Kind, a.Reason = Hold, "lab "+s.Lab.ID+" claims it: it was recorded after this pass read the registry (a launch under way)"
	case s.Lab != nil && s.Lab.Status != labs.Deleted && s.Lab.StackID == s.Stack.ID:
		// Heat's stack ids are unique: this is the lab's own stack, listed through a second
		// configured cloud (two clouds.yaml entries reaching one project, an admin's among them)
		a.Kind, a.Reason = Hold, fmt.Sprintf("the stack of lab %s on %s, seen through cloud %s too: do two configured clouds reach one project?", s.Lab.ID, s.Lab.Cloud, s.Stack.Cloud)
	case s.Lab != nil && s.Lab.Status == labs.Deleted:
		a.Kind, a.Reason = DeleteZombie, "zombie: the registry says lab "+s.Lab.ID+" is deleted, the cloud still has its stack"
	case s.Lab != nil:
		a.Kind, a.Reason = DeleteZombie, fmt.Sprintf("zombie: lab %s owns stack %s on %s, not this one", s.Lab.ID, s.Lab.StackName, s.Lab.Cloud)
	case now.Sub(s.FirstSeen) >= r.OrphanGrace:
		a.Kind, a.Reason = DeleteOrphan, fmt.Sprintf("orphan: no registry row, seen for %s (orphan_grace %s)", round(now.Sub(s.FirstSeen)), r.OrphanGrace)
	default:
		a.Kind, a.Reason = Hold, fmt.Sprintf("orphan: no registry row, seen for %s; deleted after orphan_grace %s", round(now.Sub(s.FirstSeen)), r.OrphanGrace)
	}
	return a
}

// DecideLab decides about one live lab. ok is false when there is nothing to do or say.
func DecideLab(o Observed, now time.Time, r Rules) (Action, bool) {
	lab := o.Lab
	if o.Stack == nil || o.Stack.Gone() {
		return decideGone(lab, now, r)
	}
	st := *o.Stack
	a := Action{Lab: lab, Stack: st}
	if !st.Managed() {
		a.Kind, a.Reason = Hold, "stack is not tagged "+labs.TagManaged+": never touched"
		return a, true
	}
	action, state := st.Phase()
	implied := Implied(st.Status)
	// in use (which guards every suspend and delete) means a heartbeat or resume within
	// idle_suspend_after
	idle := now.Sub(IdleSince(lab, st.Status, now))
	used := lab.LastUsed()
	inUse := r.InUse(lab, now)
	expired := r.DeleteAfter > 0 && now.Sub(lab.CreatedAt) >= r.DeleteAfter

	if a, ok := holdClaimed(a, lab, o.ClaimAlive, now, r, inUse); ok {
		return a, true
	}
	if lab.Status == labs.Deleting {
		inUse = false // a delete asked for, or decided, already: finished whoever is back
	}

	// What the stack's state calls for, before the guards.
	var want Kind
	var why string
	switch {
	case lab.Status == labs.Deleting && action != "DELETE":
		// a delete that failed, or was abandoned (holdClaimed holds a live claim): finished
		want, why = Delete, "a delete was claimed and did not finish"
	case lab.Status == labs.NeedsOperator && state != "COMPLETE":
		a.Kind, a.Reason = Hold, "needs an operator: "+orDefault(lab.LastError, st.StatusReason)
		return a, true
	case lab.Status == labs.NeedsOperator:
		a.Kind, a.To = Sync, implied
		a.Reason = "back to a sound state (" + st.Status + ") after needing an operator"
		return a, true
	case state == "IN_PROGRESS":
		since := lab.StackStatusSince
		if lab.StackStatus != st.Status || since.IsZero() {
			since = now
		}
		switch {
		case action == "CREATE" && now.Sub(lab.CreatedAt) >= r.LaunchTimeout:
			want, why = Delete, fmt.Sprintf("launch still in CREATE_IN_PROGRESS after %s (launch_timeout %s)", round(now.Sub(lab.CreatedAt)), r.LaunchTimeout)
		case action == "CREATE":
		case now.Sub(since) < r.StuckAfter:
		case action == "DELETE" || expired:
			want, why = Delete, fmt.Sprintf("stuck in %s for %s (stuck_after %s)", st.Status, round(now.Sub(since)), r.StuckAfter)
		default:
			a.Kind, a.To = Flag, labs.NeedsOperator
			a.Reason = fmt.Sprintf("stuck in %s for %s (stuck_after %s): needs an operator", st.Status, round(now.Sub(since)), r.StuckAfter)
			return a, true
		}
	case state == "FAILED" && (action == "CREATE" || action == "DELETE"):
		want, why = Delete, fmt.Sprintf("%s: %s", st.Status, st.StatusReason)
	case expired:
		want, why = Delete, fmt.Sprintf("older than delete_after %s (created %s ago)", r.DeleteAfter, round(now.Sub(lab.CreatedAt)))
	case action == "SUSPEND" && state == "COMPLETE":
	case idle >= r.IdleSuspendAfter:
		// running, or a failed suspend or resume: bring it to rest
		want, why = Suspend, fmt.Sprintf("idle for %s (idle_suspend_after %s)", round(idle), r.IdleSuspendAfter)
	case r.goneAt(lab, now):
		want, why = Suspend, fmt.Sprintf("left %s ago (leave_grace %s)", round(now.Sub(lab.LeftAt)), r.LeaveGrace)
	}

	if want == "" {
		return syncOrNothing(a)
	}
	a.Kind, a.Reason = want, why
	switch {
	case inUse:
		a.Kind, a.Reason = Hold, fmt.Sprintf("would %s (%s) but it is in use: active %s ago (idle_suspend_after %s)", want, why, round(now.Sub(used)), r.IdleSuspendAfter)
	case lab.Attempts >= r.MaxAttempts:
		a.Kind, a.To = Flag, labs.NeedsOperator
		a.Reason = fmt.Sprintf("would %s (%s) but %d attempts failed (max_attempts %d): needs an operator", want, why, lab.Attempts, r.MaxAttempts)
		if lab.Status == labs.NeedsOperator {
			a.Kind = Hold
		}
	case now.Before(lab.NextAttemptAt):
		a.Kind, a.Reason = Hold, fmt.Sprintf("would %s (%s); backing off after %d failed attempts until %s", want, why, lab.Attempts, lab.NextAttemptAt.Format(time.RFC3339))
	}
	return a, true
}

// holdClaimed handles a suspend or a delete labplane claimed on the lab (labs.Lab.ClaimedAt)
// whose request the stack does not show yet: its claimant is running its hooks, waiting for a
// cloud slot, or sending it, and nobody else acts meanwhile; a learner back before a suspend
// is sent cancels it. ok is false when there is no such claim, or its process is dead (alive
// is false), or it is older than stuck_after: then DecideLab decides the lab again.
func holdClaimed(a Action, lab labs.Lab, alive bool, now time.Time, r Rules, inUse bool) (Action, bool) {
	action, _ := a.Stack.Phase()
	claimed := alive && lab.Claimed(now, r.StuckAfter)
	since := round(now.Sub(lab.ClaimedAt))
	switch {
	case lab.Status == labs.Suspending && action != "SUSPEND" && inUse && lab.SentAt.IsZero():
		a.Kind, a.To = Sync, Implied(a.Stack.Status)
		a.Reason = "the learner came back before the suspend was sent: it is cancelled"
	case lab.Status == labs.Suspending && action != "SUSPEND" && claimed:
		a.Kind, a.Reason = Hold, fmt.Sprintf("a suspend is under way (claimed %s ago): its hooks run, it waits for a cloud slot, or it was sent", since)
	case lab.Status == labs.Deleting && action != "DELETE" && claimed:
		a.Kind, a.Reason = Hold, fmt.Sprintf("a delete is under way (claimed %s ago)", since)
	default:
		return a, false
	}
	return a, true
}

// decideGone handles a live lab whose stack the cloud does not have.
func decideGone(lab labs.Lab, now time.Time, r Rules) (Action, bool) {
	a := Action{Lab: lab, Kind: Sync, To: labs.Deleted}
	switch {
	case lab.Status == labs.Launching && lab.StackID == "" && now.Sub(lab.CreatedAt) < r.LaunchTimeout:
		return Action{}, false // a launch that has not created its stack yet
	case lab.Status == labs.Launching && lab.StackID == "":
		a.Reason = fmt.Sprintf("launch never created a stack within launch_timeout %s", r.LaunchTimeout)
	case lab.Status == labs.Deleting:
		a.Reason = "delete finished"
	default:
		a.Reason = "stack is gone from the cloud"
	}
	return a, true
}

// syncOrNothing records what the cloud shows when the registry differs.
func syncOrNothing(a Action) (Action, bool) {
	to := Implied(a.Stack.Status)
	if to == a.Lab.Status && a.Stack.Status == a.Lab.StackStatus && a.Lab.StackID == a.Stack.ID {
		return Action{}, false
	}
	a.Kind, a.To = Sync, to
	a.Reason = fmt.Sprintf("cloud shows %s", a.Stack.Status)
	return a, true
}

// Implied is the registry status a Heat stack status means.
func Implied(stackStatus string) labs.Status {
	action, state, _ := strings.Cut(stackStatus, "_")
	switch {
	case stackStatus == "DELETE_COMPLETE":
		return labs.Deleted
	case state == "FAILED":
		return labs.Failed
	case state == "IN_PROGRESS":
		switch action {
		case "CREATE":
			return labs.Launching
		case "SUSPEND":
			return labs.Suspending
		case "RESUME":
			return labs.Resuming
		case "DELETE":
			return labs.Deleting
		}
		return labs.Active
	case action == "SUSPEND":
		return labs.Suspended
	}
	return labs.Active
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// round keeps durations readable in reasons: 1h2m3s, 45s.
func round(d time.Duration) time.Duration {
	if d > time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}
