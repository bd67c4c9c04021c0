package lifecycle_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/store"
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

// A claimed lab is left alone by every other actor while its claimant lives, and is taken
// over at once when the claimant's process dies (its lock goes with it): a delete asked for
// is finished by the next pass, whoever came back.
func TestAClaimIsExclusiveWhileItsProcessLives(t *testing.T) {
	ms := replicas(t, 2, []lifecycle.Target{{Cloud: fakecloud.New("a", 0, time.Millisecond)}})
	dying, other := ms[0], ms[1]
	ctx := context.Background()
	lab, err := other.Launch(ctx, lifecycle.LaunchRequest{Learner: "ann", Course: "os101"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dying.Claim(ctx, lifecycle.OpDelete, lab.ID, "api:lms", true); err != nil {
		t.Fatal(err)
	}
	// the claimant stops here: nothing was sent
	if _, err := other.Do(ctx, lifecycle.OpSuspend, lab.ID, "op", true); !errors.Is(err, lifecycle.ErrBusy) {
		t.Errorf("suspend of a lab claimed for a delete by a live process: %v; want ErrBusy", err)
	}
	st := other.Targets[0].Cloud.(*fakecloud.Cloud).Stacks()[0]
	decide := func() policy.Action {
		t.Helper()
		l, err := other.Registry.GetLab(ctx, lab.ID)
		if err != nil {
			t.Fatal(err)
		}
		alive, err := lifecycle.ClaimAlive(ctx, other.Locks, l)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := policy.DecideLab(policy.Observed{Lab: l, Stack: &st, ClaimAlive: alive}, time.Now(), testRules)
		return a
	}
	if a := decide(); a.Kind != policy.Hold {
		t.Errorf("while the claimant lives the policy says %s (%s); want hold", a.Kind, a.Reason)
	}
	if _, err := other.Heartbeat(ctx, lab.ID); err != nil { // the learner is there: a delete asked for is finished anyway
		t.Fatal(err)
	}
	dying.Registry.(*store.Store).Close() // the claimant's process dies
	a := decide()
	if a.Kind != policy.Delete {
		t.Fatalf("the claimant dead: the policy says %s (%s); want delete", a.Kind, a.Reason)
	}
	if done, err := other.Apply(ctx, a, "reaper"); err != nil || !done {
		t.Fatalf("Apply = %v, %v", done, err)
	}
	got, err := other.Registry.GetLab(ctx, lab.ID)
	if err != nil || got.Status != labs.Deleted || got.ClaimedBy != "" {
		t.Errorf("lab %+v, %v; want deleted, no claim", got, err)
	}
	if left := other.Targets[0].Cloud.(*fakecloud.Cloud).Stacks(); len(left) != 0 {
		t.Errorf("stacks left: %+v", left)
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

// A process whose lock is lost while it lives (on PostgreSQL, its connection dropped) has its
// claims look dead to the others, which may take them over: its claims from then on name a
// new lock, held, so that none is taken under a lock that no longer vouches for it.
func TestALostProcessLockIsTakenAgainUnderANewName(t *testing.T) {
	ms := replicas(t, 2, []lifecycle.Target{{Cloud: fakecloud.New("a", 0, time.Millisecond)}})
	m, other := ms[0], ms[1]
	locks := &losingLocks{Store: m.Registry.(*store.Store)}
	m.Locks, m.Self = locks, "r1"
	ctx := context.Background()
	a, err := other.Launch(ctx, lifecycle.LaunchRequest{Learner: "ann", Course: "os101"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := other.Launch(ctx, lifecycle.LaunchRequest{Learner: "bob", Course: "os101"})
	if err != nil {
		t.Fatal(err)
	}
	alive := func(l labs.Lab) bool {
		t.Helper()
		ok, err := lifecycle.ClaimAlive(ctx, other.Locks, l)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	before, err := m.Claim(ctx, lifecycle.OpDelete, a.ID, "op", true)
	if err != nil {
		t.Fatal(err)
	}
	if before.Lab.ClaimedBy != "proc.r1" || !alive(before.Lab) {
		t.Fatalf("claimed by %q, alive %v; want proc.r1, alive", before.Lab.ClaimedBy, alive(before.Lab))
	}
	locks.lose()
	if alive(before.Lab) {
		t.Fatal("the lock lost, its claim still looks alive: the test proves nothing")
	}
	after, err := m.Claim(ctx, lifecycle.OpDelete, b.ID, "op", true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(after.Lab.ClaimedBy, "proc.r1-") || !alive(after.Lab) {
		t.Errorf("after the loss, claimed by %q, alive %v; want a new lock proc.r1-..., alive", after.Lab.ClaimedBy, alive(after.Lab))
	}
}

// losingLocks are a store's locks whose holds the test can lose, as PostgreSQL's are when
// their connection drops: lose releases every lock held and ends its held context.
type losingLocks struct {
	*store.Store
	holds []func()
}

func (l *losingLocks) TryHold(ctx context.Context, key string) (context.Context, func(context.Context) error, bool, error) {
	held, unlock, ok, err := l.Store.TryHold(ctx, key)
	if !ok || err != nil {
		return held, unlock, ok, err
	}
	held, cancel := context.WithCancelCause(held)
	l.holds = append(l.holds, func() {
		_ = unlock(context.Background())
		cancel(store.ErrLockLost)
	})
	return held, unlock, true, nil
}

func (l *losingLocks) lose() {
	for _, h := range l.holds {
		h()
	}
	l.holds = nil
}
