package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
)

// A suspend or a delete is claimed before anything else happens: the lab is recorded
// Suspending or Deleting with ClaimedAt, then its hooks run, then it waits for a cloud slot,
// then it is sent: recorded with SentAt, on the condition that the claim is still the one it
// took and, for a suspend, that the learner has not come back meanwhile. So a learner who
// returns while the hooks run or the suspend waits for a slot cancels it (the LMS is
// answered with the lab going down only once nothing can stop it); other actors leave a
// claimed lab alone, so an action's hooks run once; and a claim whose process stopped is
// taken over after stuck_after (the policy: a delete is finished, a suspend decided again).

// Errors of a request that finds the lab busy, beside ErrInUse (the learner is there, or
// came back before the suspend was sent).
var (
	// ErrBusy: another action is under way on the lab (claimed, and not older than stuck_after).
	ErrBusy = errors.New("another action is under way on the lab")
	// errChanged: the lab changed since the decision was taken; nothing is written.
	errChanged = errors.New("lab changed since it was read")
)

// Request is a checked suspend, resume or delete of a lab; a suspend or a delete is claimed
// on the lab. Carry carries it out.
type Request struct {
	// Lab is the lab as the request left it: Suspending or Deleting with its claim.
	Lab           labs.Lab
	op            Op
	actor, reason string
	force         bool
	cloud         Cloud
}

// Do performs op on a lab by hand (CLI, API): Claim, then Carry. A suspend or delete of a
// lab in use (a heartbeat or resume within idle_suspend_after) is refused with ErrInUse
// unless force.
func (m *Manager) Do(ctx context.Context, op Op, id, actor string, force bool) (labs.Lab, error) {
	r, err := m.Claim(ctx, op, id, actor, force)
	if err != nil {
		return r.Lab, err
	}
	return m.Carry(ctx, r)
}

// Claim checks a request and, for a suspend or a delete, claims the lab for it: from the
// moment Claim returns, the action is recorded and survives the process (the reaper finishes
// a delete, and decides a suspend again, after stuck_after). The API answers with it and
// carries it out in the background. A delete takes over a suspend under way; any other
// claim on a claimed lab is ErrBusy.
func (m *Manager) Claim(ctx context.Context, op Op, id, actor string, force bool) (Request, error) {
	lab, err := m.Registry.GetLab(ctx, id)
	if err != nil {
		return Request{Lab: lab}, err
	}
	if lab.Status == labs.Deleted {
		return Request{Lab: lab}, fmt.Errorf("%w: lab %s is already deleted", ErrInvalid, id)
	}
	c, err := m.Cloud(lab.Cloud)
	if err != nil {
		return Request{Lab: lab}, err
	}
	return m.claim(ctx, Request{Lab: lab, op: op, actor: actor, reason: "requested by " + actor, force: force, cloud: c})
}

// claim records r's claim on the freshest copy of its lab.
func (m *Manager) claim(ctx context.Context, r Request) (Request, error) {
	if r.Lab.StackID == "" && r.op != OpDelete {
		// refused before any hook runs: nothing is done
		return r, fmt.Errorf("%w: lab %s has no stack yet (%s)", ErrInvalid, r.Lab.ID, r.Lab.Status)
	}
	rules := m.Rules.For(r.Lab.Course)
	now := m.Now()
	to := labs.Suspending
	switch r.op {
	case OpResume:
		// no claim: nothing to cancel, no hook before
		return r, m.checkBudget(ctx, r.Lab.Learner, r.Lab.Course)
	case OpDelete:
		to = labs.Deleting
	}
	me, err := m.self(ctx)
	if err != nil {
		return r, err
	}
	lab, err := m.updateIf(ctx, r.Lab.ID, labs.Event{Actor: r.actor, Action: string(r.op) + "-claimed", Detail: r.reason}, func(l *labs.Lab) error {
		switch {
		case l.Status == labs.Deleted:
			return fmt.Errorf("%w: lab %s is already deleted", ErrInvalid, l.ID)
		case l.Cloud != r.Lab.Cloud || (l.StackID != "" && r.Lab.StackID != "" && l.StackID != r.Lab.StackID):
			return fmt.Errorf("%w: lab %s moved to another stack", ErrBusy, l.ID)
		case l.Claimed(now, rules.StuckAfter) && !(r.op == OpDelete && l.Status == labs.Suspending):
			// a delete takes over a suspend under way; any other claim is left to a live
			// claimant, and taken over from a dead one
			alive, err := ClaimAlive(ctx, m.Locks, *l)
			if err != nil {
				return err
			}
			if alive {
				return fmt.Errorf("%w: lab %s is %s since %s (%s)", ErrBusy, l.ID, l.Status, l.ClaimedAt.Format(time.RFC3339), l.ClaimedBy)
			}
		}
		if err := m.checkInUse(*l, r.op, rules, r.force, now); err != nil {
			return err
		}
		if l.StackID == "" {
			// the launch stopped before recording its stack, which the cloud has under the
			// lab's name (Apply found it): act on that stack, not on nothing
			l.StackID = r.Lab.StackID
		}
		l.Status, l.ClaimedAt, l.ClaimedBy, l.SentAt = to, now, me, time.Time{}
		return nil
	})
	r.Lab = lab
	return r, err
}

// checkInUse refuses a suspend or delete of a lab in use, unless force.
func (m *Manager) checkInUse(lab labs.Lab, op Op, rules policy.Rules, force bool, now time.Time) error {
	if force || !rules.InUse(lab, now) {
		return nil
	}
	return fmt.Errorf("%w: lab %s was active %s ago (idle_suspend_after %s); use --force to %s it anyway",
		ErrInUse, lab.ID, now.Sub(lab.LastUsed()).Round(time.Second), rules.IdleSuspendAfter, op)
}

// Carry carries out a claimed request: the hooks before, the wait for the cloud, the send
// (unless the claim was cancelled or taken over meanwhile; a resume, unless the learner's
// budget was spent meanwhile), the outcome recorded. The claim
// must be sent within stuck_after of being taken: after that it may be taken over.
func (m *Manager) Carry(ctx context.Context, r Request) (labs.Lab, error) {
	lab := r.Lab
	rules := m.Rules.For(lab.Course)
	sctx := ctx
	if r.op != OpResume {
		// a claim is sent within stuck_after of being taken, or left to be taken over (a
		// timeout, not a deadline at ClaimedAt: m.Now may be another clock than the context's)
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(ctx, rules.StuckAfter-m.Now().Sub(lab.ClaimedAt))
		defer cancel()
	}
	switch r.op {
	case OpSuspend:
		m.runHook(sctx, "before_suspend", m.Hooks.BeforeSuspend, lab, r.actor)
	case OpDelete:
		m.runHook(sctx, "before_delete", m.Hooks.BeforeDelete, lab, r.actor)
	}
	c := r.cloud
	held, err := m.slot(sctx, c, string(r.op), lab.StackName, lab.StackID)
	if err != nil {
		return m.outcome(ctx, r, lab, labs.Stack{}, err) // not sent: the claim ends
	}
	if r.op == OpResume {
		// the budget checked at the claim, and again now that the resume goes: a heartbeat
		// may have spent it (and claimed the lab's suspend) while the resume waited for the slot
		err = m.checkBudget(ctx, lab.Learner, lab.Course)
	} else {
		// sent only now, holding the slot: a learner back while the hooks ran or the
		// action waited for the cloud cancels it
		for {
			lab, err = m.send(sctx, r)
			// the registry down (send retried for recordTimeout): the claim can be neither
			// sent unrecorded nor released; it is tried again until its time is up
			if !errors.Is(err, labs.ErrUnavailable) || sctx.Err() != nil {
				break
			}
		}
	}
	if err != nil {
		held.endUnsent(ctx)
		return lab, err
	}
	var st labs.Stack
	switch {
	case lab.StackID == "":
		// a launch that has not got its stack: nothing on the cloud to delete (the launch
		// deletes what it creates from now on, seeing the lab deleted)
		st = labs.Stack{Status: "DELETE_COMPLETE"}
		held.endUnsent(ctx)
	case r.op == OpSuspend:
		st, err = c.Suspend(ctx, lab.StackName, lab.StackID)
	case r.op == OpResume:
		st, err = c.Resume(ctx, lab.StackName, lab.StackID)
	case r.op == OpDelete:
		st, err = c.Delete(ctx, lab.StackName, lab.StackID)
	}
	held.end(ctx, err) // the record needs no slot (a no-op if it was let go unsent)
	if r.op == OpDelete && errors.Is(err, cloud.ErrNotFound) {
		st, err = labs.Stack{Status: "DELETE_COMPLETE"}, nil
	}
	return m.outcome(ctx, r, lab, st, err)
}

// send records that r's claim goes to the cloud now, if it is still r's and, for a suspend
// not forced, the learner has not come back since it was taken. A suspend the learner's
// return cancels is undone (ErrInUse). It returns the lab as it is sent: a delete's stack may
// have been recorded by the launch since the claim.
func (m *Manager) send(ctx context.Context, r Request) (labs.Lab, error) {
	if err := ctx.Err(); err != nil {
		// not sent within stuck_after (or stopped): the claim is left to be taken over
		return r.Lab, fmt.Errorf("%s lab %s: not sent: %w", r.op, r.Lab.ID, err)
	}
	rules := m.Rules.For(r.Lab.Course)
	errBack := fmt.Errorf("%w: the learner came back to lab %s before the suspend was sent: it is cancelled", ErrInUse, r.Lab.ID)
	now := m.Now()
	lab, err := m.updateIf(ctx, r.Lab.ID, labs.Event{Actor: r.actor, Action: string(r.op) + "-sent", Detail: r.reason}, func(l *labs.Lab) error {
		switch {
		case !l.ClaimedAt.Equal(r.Lab.ClaimedAt) || l.Status != r.Lab.Status:
			return fmt.Errorf("%w: the %s of lab %s was cancelled or taken over (now %s)", ErrBusy, r.op, l.ID, l.Status)
		case r.op == OpSuspend && !r.force && rules.InUse(*l, now):
			return errBack
		}
		l.SentAt = now
		return nil
	})
	if errors.Is(err, errBack) {
		_, uerr := m.updateIf(ctx, r.Lab.ID, labs.Event{Actor: r.actor, Action: "suspend-cancelled",
			Detail: "the learner came back before the suspend was sent"}, func(l *labs.Lab) error {
			if !l.ClaimedAt.Equal(r.Lab.ClaimedAt) || l.Status != labs.Suspending {
				return errChanged // cancelled or taken over already
			}
			l.Status = policy.Implied(l.StackStatus)
			l.Unclaim()
			return nil
		})
		if uerr != nil && !errors.Is(uerr, errChanged) {
			return lab, errors.Join(err, uerr) // the claim stays: the reaper cancels it (the learner is in the lab)
		}
	}
	return lab, err
}

// outcome records what became of r's call on the cloud and ends its claim. A claim another
// actor took over meanwhile (a delete over a suspend) is left to it: only the event is added.
func (m *Manager) outcome(ctx context.Context, r Request, lab labs.Lab, st labs.Stack, err error) (labs.Lab, error) {
	now := m.Now()
	rules := m.Rules.For(lab.Course)
	ev := labs.Event{Actor: r.actor, Action: string(r.op), Cloud: r.cloud.Name(), StackID: lab.StackID, Detail: r.reason, RequestID: st.RequestID}
	if err != nil {
		ev.Error, ev.RequestID = err.Error(), requestID(err)
	}
	lab, uerr := m.updateIf(ctx, lab.ID, ev, func(l *labs.Lab) error {
		if !l.ClaimedAt.Equal(lab.ClaimedAt) {
			return errChanged
		}
		l.Unclaim()
		// a delete sent before the launch recorded its stack deleted nothing: the launch, seeing
		// the lab deleting with its stack recorded, leaves that stack to the delete, so the lab
		// stays deleting, its delete unfinished, for the next pass to finish
		unfinished := r.op == OpDelete && lab.StackID == "" && l.StackID != ""
		switch {
		case unfinished:
		case st.Status != "":
			observe(l, st, now)
		case r.op == OpSuspend:
			l.Status = policy.Implied(l.StackStatus) // nothing learnt: as last seen, decided again
		}
		if r.op == OpDelete && err != nil {
			l.Status = labs.Deleting // not Failed (DELETE_FAILED): a delete asked for is finished, whoever is back
		}
		switch {
		case unfinished:
			l.Status = labs.Deleting
		case err == nil:
			l.Attempts, l.NextAttemptAt, l.LastError = 0, time.Time{}, ""
			switch r.op {
			case OpResume:
				l.LastResumedAt = now
			case OpDelete:
				l.Status, l.DeletedAt = labs.Deleted, now
			}
		case errors.Is(err, cloud.ErrConflict) || ctx.Err() != nil:
			// someone else is acting on the stack, or we were stopped: not the stack's failure
			l.LastError = err.Error()
		case errors.Is(err, cloud.ErrTransient):
			// the cloud (or the way to it) failed, not the stack: tried again after a
			// backoff, but an outage does not use up max_attempts
			l.NextAttemptAt = now.Add(rules.Backoff(1))
			l.LastError = err.Error()
		default:
			l.Attempts++
			l.NextAttemptAt = now.Add(rules.Backoff(l.Attempts))
			l.LastError = err.Error()
			if l.Attempts >= rules.MaxAttempts {
				l.Status = labs.NeedsOperator
			}
		}
		return nil
	})
	if errors.Is(uerr, errChanged) {
		ev.LabID, ev.At, ev.From, ev.To = lab.ID, now, lab.Status, lab.Status
		ev.Detail += " (the lab's status was recorded by another actor meanwhile: a delete that took the lab over, or a pass that saw the outcome first)"
		uerr = m.Registry.AddEvent(context.WithoutCancel(ctx), ev)
	}
	if err == nil && uerr == nil && r.op == OpResume {
		m.runHook(ctx, "after_resume", m.Hooks.AfterResume, lab, r.actor)
	}
	if err != nil {
		return lab, fmt.Errorf("%s lab %s: %w", r.op, lab.ID, err)
	}
	return lab, uerr
}

// Retry is the action that fixes a lab whose last action failed or that needs an operator,
// done again by hand: the one its stack's last seen status shows failed or stuck
// (SUSPEND_FAILED or a suspend stuck in progress: a suspend; a resume likewise), or a delete
// for a stack whose create or delete failed or never finished (there is nothing else to do
// with it). ok is false when no action would fix it: the lab is not failed nor flagged, or
// its stack is sound (the reaper's next full pass brings the lab back in line).
func Retry(l labs.Lab) (op Op, ok bool) {
	if l.Status != labs.Failed && l.Status != labs.NeedsOperator {
		return "", false
	}
	action, state, _ := strings.Cut(l.StackStatus, "_")
	if l.StackStatus != "" && state != "FAILED" && state != "IN_PROGRESS" {
		return "", false
	}
	switch action {
	case "SUSPEND":
		return OpSuspend, true
	case "RESUME":
		return OpResume, true
	}
	return OpDelete, true // CREATE, DELETE, or no stack seen yet
}
