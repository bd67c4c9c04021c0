package lifecycle_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
)

// Issue 13's #2, pinned: a learner who comes back while a suspend's before_suspend hook runs
// cancels the suspend. The lab shows suspending while the hook runs, and is active after it;
// the cloud never sees the suspend.
func TestReturnDuringTheHookCancelsTheSuspend(t *testing.T) {
	r := newRig(t, "a")
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute) // idle
	var during labs.Lab
	r.mgr.Hooks = lifecycle.Hooks{BeforeSuspend: "notify", Timeout: 10 * time.Second,
		Run: func(ctx context.Context, _ string, _ []string) ([]byte, error) {
			during = r.lab(lab.ID)
			r.heartbeat(lab.ID) // the LMS, for the learner back in the lab
			return nil, nil
		}}
	a := policy.Action{Kind: policy.Suspend, Lab: lab, Stack: r.clouds["a"].Stacks()[0]}
	done, err := r.mgr.Apply(context.Background(), a, "reaper")
	if err != nil || done {
		t.Fatalf("Apply = %v, %v; want not done, no error", done, err)
	}
	if during.Status != labs.Suspending || during.ClaimedAt.IsZero() {
		t.Errorf("during the hook the lab was %s, claimed at %s; want suspending, claimed", during.Status, during.ClaimedAt)
	}
	got := r.lab(lab.ID)
	if got.Status != labs.Active || !got.ClaimedAt.IsZero() || !got.SentAt.IsZero() {
		t.Errorf("after: %s claimed %s sent %s; want active, no claim", got.Status, got.ClaimedAt, got.SentAt)
	}
	if n := r.clouds["a"].Calls("suspend"); n != 0 {
		t.Errorf("the cloud saw %d suspends", n)
	}
	if acts := actions(r.events(lab.ID)); !slices.Contains(acts, "suspend-cancelled") || slices.Contains(acts, "suspend-sent") {
		t.Errorf("events %v", acts)
	}
}

// A return after the suspend was sent does not undo it (it cannot be taken back): the
// learner is told the lab is suspending, and gets it resumed from there.
func TestReturnAfterTheSendDoesNotCancel(t *testing.T) {
	r := newRig(t, "a")
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute)
	r.mgr.Targets[0].Cloud = beforeSuspend{Cloud: r.clouds["a"], meanwhile: func() { r.heartbeat(lab.ID) }}
	if _, err := r.do(lifecycle.OpSuspend, lab.ID, false); err != nil {
		t.Fatal(err)
	}
	if got := r.lab(lab.ID); got.Status != labs.Suspended {
		t.Errorf("lab %s; want suspended", got.Status)
	}
}

// beforeSuspend runs meanwhile when its suspend is called, before the cloud acts.
type beforeSuspend struct {
	*fakecloud.Cloud
	meanwhile func()
}

func (c beforeSuspend) Suspend(ctx context.Context, name, id string) (labs.Stack, error) {
	c.meanwhile()
	return c.Cloud.Suspend(ctx, name, id)
}

// A claimed lab is left alone by every other actor, and its claim is taken over once it is
// older than stuck_after (its process stopped): a delete is finished, a suspend decided again.
func TestAClaimIsExclusiveUntilAbandoned(t *testing.T) {
	r := newRig(t, "a")
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute)
	if _, err := r.mgr.Claim(context.Background(), lifecycle.OpDelete, lab.ID, "api:lms", true); err != nil {
		t.Fatal(err)
	}
	// the claimant stops here (killed): nothing was sent
	if _, err := r.do(lifecycle.OpSuspend, lab.ID, true); !errors.Is(err, lifecycle.ErrBusy) {
		t.Errorf("suspend of a lab claimed for a delete: %v; want ErrBusy", err)
	}
	st := r.clouds["a"].Stacks()[0]
	obs := policy.Observed{Lab: r.lab(lab.ID), Stack: &st}
	if a, _ := policy.DecideLab(obs, r.clock.Now(), testRules); a.Kind != policy.Hold {
		t.Errorf("while claimed the policy says %s (%s); want hold", a.Kind, a.Reason)
	}
	r.clock.Add(testRules.StuckAfter)
	r.heartbeat(lab.ID) // the learner is there: a delete asked for is finished anyway
	obs.Lab = r.lab(lab.ID)
	a, _ := policy.DecideLab(obs, r.clock.Now(), testRules)
	if a.Kind != policy.Delete {
		t.Fatalf("abandoned delete claim: the policy says %s (%s); want delete", a.Kind, a.Reason)
	}
	if done, err := r.mgr.Apply(context.Background(), a, "reaper"); err != nil || !done {
		t.Fatalf("Apply = %v, %v", done, err)
	}
	if got := r.lab(lab.ID); got.Status != labs.Deleted || len(r.clouds["a"].Stacks()) != 0 {
		t.Errorf("lab %s, stacks %+v; want deleted, none", got.Status, r.clouds["a"].Stacks())
	}
}

// Issue 13's #3, pinned: a lab deleted while its stack is being created stops its launch:
// the stack is deleted, no other cloud is tried, and the lab ends deleted.
func TestDeleteDuringTheLaunchStopsIt(t *testing.T) {
	r := newRig(t, "a", "b")
	slow := fakecloud.New("a", 4, 200*time.Millisecond)
	accepted := make(chan struct{})
	r.clouds["a"], r.mgr.Targets[0].Cloud = slow, onAccepted{Cloud: slow, accepted: accepted}
	p, err := r.mgr.Start(context.Background(), lifecycle.LaunchRequest{Learner: "ann", Course: "os101", Actor: "api:lms"})
	if err != nil {
		t.Fatal(err)
	}
	launched := make(chan error, 1)
	go func() {
		_, err := r.mgr.Provision(context.Background(), p)
		launched <- err
	}()
	<-accepted // the create is under way
	if _, err := r.mgr.Do(context.Background(), lifecycle.OpDelete, p.Lab.ID, "api:lms", true); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := <-launched; err == nil {
		t.Error("the launch of a deleted lab reported success")
	}
	if left := slow.Stacks(); len(left) != 0 {
		t.Errorf("stacks left on a: %+v", left)
	}
	if n := r.clouds["b"].Calls("create"); n != 0 {
		t.Errorf("the launch failed over to b (%d creates)", n)
	}
	if got := r.lab(p.Lab.ID); got.Status != labs.Deleted {
		t.Errorf("lab %s; want deleted", got.Status)
	}
}

// onAccepted closes accepted once the cloud has accepted a create (and the launch recorded
// the stack's id).
type onAccepted struct {
	*fakecloud.Cloud
	accepted chan struct{}
}

func (c onAccepted) Create(ctx context.Context, r cloud.CreateRequest) (labs.Stack, error) {
	record := r.Accepted
	r.Accepted = func(st labs.Stack) {
		record(st)
		close(c.accepted)
	}
	return c.Cloud.Create(ctx, r)
}
