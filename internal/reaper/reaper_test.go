package reaper_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/store"
)

var testRules = policy.Rules{
	IdleSuspendAfter: 2 * time.Minute,
	DeleteAfter:      14 * 24 * time.Hour,
	LaunchTimeout:    time.Minute,
	StuckAfter:       10 * time.Minute,
	OrphanGrace:      time.Hour,
	MaxAttempts:      3,
	RetryBackoff:     time.Minute,
}

type rig struct {
	t      testing.TB
	store  *store.Store
	clouds []*fakecloud.Cloud
	clock  *clock.Manual
	mgr    *lifecycle.Manager
	reaper *reaper.Reaper
}

func newRig(t testing.TB, clouds ...*fakecloud.Cloud) *rig {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite", filepath.Join(t.TempDir(), "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := clock.NewManual(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	targets := make([]lifecycle.Target, len(clouds))
	rc := make([]reaper.Cloud, len(clouds))
	for i, c := range clouds {
		targets[i] = lifecycle.Target{Cloud: c}
		rc[i] = c
	}
	rules := policy.Set{Default: testRules}
	mgr := &lifecycle.Manager{Site: "test", Registry: st, Locks: st, Targets: targets, Rules: rules, Now: clk.Now, Log: log,
		Template: func(string) (string, error) { return "/lab.yaml", nil }, DefaultTemplate: "lab"}
	return &rig{t: t, store: st, clouds: clouds, clock: clk, mgr: mgr,
		reaper: &reaper.Reaper{Site: "test", Registry: st, Clouds: rc, Applier: mgr, Rules: rules, Now: clk.Now, Log: log, Actor: "reaper"}}
}

func (r *rig) launch(learner string) labs.Lab {
	r.t.Helper()
	lab, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: learner, Course: "os101", Actor: "test"})
	if err != nil {
		r.t.Fatalf("launch %s: %v", learner, err)
	}
	return lab
}

func (r *rig) pass() reaper.Result {
	r.t.Helper()
	res, err := r.reaper.Run(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return res
}

func (r *rig) lab(id string) labs.Lab {
	r.t.Helper()
	l, err := r.store.GetLab(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return l
}

func kinds(res reaper.Result) map[policy.Kind]int {
	out := map[policy.Kind]int{}
	for _, o := range res.Outcomes {
		if o.Done {
			out[o.Action.Kind]++
		}
	}
	return out
}

// A learner who left (POST /leave) has their lab suspended leave_grace later by the
// suspend-idle job (the labs due only), long before idle_suspend_after; one who left and came
// back, and one who never left, keep theirs; a leave after the lab is suspended is harmless.
func TestLeftLabsAreSuspendedAfterTheGrace(t *testing.T) {
	r := newRig(t, fakecloud.New("a", 4, time.Millisecond))
	rules := testRules
	rules.IdleSuspendAfter, rules.LeaveGrace = 30*time.Minute, 3*time.Minute
	r.reaper.Rules, r.mgr.Rules = policy.Set{Default: rules}, policy.Set{Default: rules}
	left, back, stayed := r.launch("left"), r.launch("back"), r.launch("stayed")
	ctx := context.Background()
	for _, id := range []string{left.ID, back.ID} {
		if _, err := r.mgr.Leave(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	due := func() reaper.Result {
		t.Helper()
		res, err := r.reaper.RunDue(ctx, func(policy.Action) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	r.clock.Add(2 * time.Minute)
	if _, err := r.mgr.Heartbeat(ctx, back.ID); err != nil {
		t.Fatal(err)
	}
	if res := due(); kinds(res)[policy.Suspend] != 0 {
		t.Fatalf("within leave_grace: %+v", res.Outcomes)
	}
	r.clock.Add(time.Minute + time.Second)
	res := due()
	if kinds(res)[policy.Suspend] != 1 || r.lab(left.ID).Status != labs.Suspended {
		t.Fatalf("leave_grace after the leave: %+v; left lab %s", res.Outcomes, r.lab(left.ID).Status)
	}
	if r.lab(back.ID).Status != labs.Active || r.lab(stayed.ID).Status != labs.Active {
		t.Errorf("back: %s, stayed: %s; want both active", r.lab(back.ID).Status, r.lab(stayed.ID).Status)
	}
	if _, err := r.mgr.Leave(ctx, left.ID); err != nil {
		t.Errorf("a leave of a suspended lab: %v", err)
	}
	if res := due(); len(res.Outcomes) != 0 {
		t.Errorf("a pass after: %+v", res.Outcomes)
	}
}

func TestIdleLabsAreSuspendedAndActiveOnesKept(t *testing.T) {
	r := newRig(t, fakecloud.New("a", 4, time.Millisecond))
	idle, active := r.launch("idle"), r.launch("active")
	r.clock.Add(5 * time.Minute)
	if _, err := r.mgr.Heartbeat(context.Background(), active.ID); err != nil {
		t.Fatal(err)
	}
	res := r.pass()
	if res.Failed() || kinds(res)[policy.Suspend] != 1 {
		t.Fatalf("want one suspend, got %+v", res.Outcomes)
	}
	if got := r.lab(idle.ID); got.Status != labs.Suspended || got.StackStatus != "SUSPEND_COMPLETE" {
		t.Errorf("idle lab: %s / %s", got.Status, got.StackStatus)
	}
	if got := r.lab(active.ID); got.Status != labs.Active {
		t.Errorf("active lab: %s", got.Status)
	}
	// a second pass changes nothing: idempotent
	if res := r.pass(); len(res.Outcomes) != 0 {
		t.Errorf("second pass acted: %+v", res.Outcomes)
	}
}

func TestFailedSuspendBacksOffWithoutBlockingOthers(t *testing.T) {
	c := fakecloud.New("a", 2, time.Millisecond)
	r := newRig(t, c)
	bad := r.launch("bad")
	var good []labs.Lab
	for _, l := range []string{"g1", "g2", "g3", "g4"} {
		good = append(good, r.launch(l))
	}
	c.FailNext("suspend", bad.StackName, 2)
	r.clock.Add(5 * time.Minute)

	res := r.pass()
	if kinds(res)[policy.Suspend] != 4 || !res.Failed() {
		t.Fatalf("want 4 suspends done and one failure, got %+v", res.Outcomes)
	}
	for _, g := range good {
		if got := r.lab(g.ID); got.Status != labs.Suspended {
			t.Errorf("lab %s: %s", g.ID, got.Status)
		}
	}
	b := r.lab(bad.ID)
	if b.Attempts != 1 || b.Status != labs.Failed || !b.NextAttemptAt.Equal(r.clock.Now().Add(time.Minute)) {
		t.Fatalf("bad lab after 1 failure: %+v", b)
	}
	// within the backoff: held, no call
	calls := c.Calls("suspend")
	res = r.pass()
	if len(res.Outcomes) != 0 || len(res.Plan.Held) != 1 || !strings.Contains(res.Plan.Held[0].Reason, "backing off") {
		t.Fatalf("want the bad lab held in backoff, got %+v held %+v", res.Outcomes, res.Plan.Held)
	}
	if c.Calls("suspend") != calls {
		t.Error("a suspend was called during the backoff")
	}
	// after it: tried again, fails again, backoff doubles
	r.clock.Add(time.Minute)
	r.pass()
	if b = r.lab(bad.ID); b.Attempts != 2 || !b.NextAttemptAt.Equal(r.clock.Now().Add(2*time.Minute)) {
		t.Fatalf("bad lab after 2 failures: attempts %d next %s", b.Attempts, b.NextAttemptAt)
	}
	r.clock.Add(2 * time.Minute)
	if res = r.pass(); kinds(res)[policy.Suspend] != 1 {
		t.Fatalf("third try should succeed: %+v", res.Outcomes)
	}
	if b = r.lab(bad.ID); b.Status != labs.Suspended || b.Attempts != 0 {
		t.Errorf("bad lab at the end: %s attempts %d", b.Status, b.Attempts)
	}
}

func TestDeleteFailedIsRetriedUpToMaxAttemptsThenFlagged(t *testing.T) {
	c := fakecloud.New("a", 2, time.Millisecond)
	r := newRig(t, c)
	lab := r.launch("ann")
	c.FailNext("delete", lab.StackName, 10)
	r.clock.Add(15 * 24 * time.Hour)
	for i := 1; i <= 3; i++ {
		res := r.pass()
		if len(res.Outcomes) != 1 || res.Outcomes[0].Action.Kind != policy.Delete || res.Outcomes[0].Error == "" {
			t.Fatalf("pass %d: want a failed delete, got %+v", i, res.Outcomes)
		}
		r.clock.Add(time.Hour)
	}
	got := r.lab(lab.ID)
	if got.Status != labs.NeedsOperator || got.Attempts != 3 || got.StackStatus != "DELETE_FAILED" {
		t.Fatalf("after 3 failures: %s attempts %d %s", got.Status, got.Attempts, got.StackStatus)
	}
	calls := c.Calls("delete")
	res := r.pass()
	if len(res.Outcomes) != 0 || len(res.Plan.Held) != 1 || !strings.Contains(res.Plan.Held[0].Reason, "needs an operator") {
		t.Fatalf("flagged lab: want held for an operator, got %+v / %+v", res.Outcomes, res.Plan.Held)
	}
	if c.Calls("delete") != calls {
		t.Error("the reaper kept deleting a flagged lab")
	}
}

func TestRecentHeartbeatProtectsPastDeleteTime(t *testing.T) {
	c := fakecloud.New("a", 2, time.Millisecond)
	r := newRig(t, c)
	lab := r.launch("ann")
	r.clock.Add(14*24*time.Hour + time.Minute)
	if _, err := r.mgr.Heartbeat(context.Background(), lab.ID); err != nil {
		t.Fatal(err)
	}
	r.clock.Add(time.Minute)
	res := r.pass()
	if len(res.Outcomes) != 0 || len(res.Plan.Held) != 1 || !strings.Contains(res.Plan.Held[0].Reason, "in use") {
		t.Fatalf("want held (in use), got %+v / %+v", res.Outcomes, res.Plan.Held)
	}
	if c.Calls("delete")+c.Calls("suspend") != 0 {
		t.Fatal("a lab in use was acted on")
	}
	r.clock.Add(2 * time.Minute)
	if res = r.pass(); kinds(res)[policy.Delete] != 1 {
		t.Fatalf("once idle it is deleted: %+v", res.Outcomes)
	}
}

func TestHeartbeatBetweenPlanAndActionWins(t *testing.T) {
	c := fakecloud.New("a", 2, time.Millisecond)
	r := newRig(t, c)
	lab := r.launch("ann")
	r.clock.Add(5 * time.Minute)
	plan, err := r.reaper.Plan(context.Background())
	if err != nil || len(plan.Actions) != 1 {
		t.Fatalf("plan: %v %+v", err, plan.Actions)
	}
	if _, err := r.mgr.Heartbeat(context.Background(), lab.ID); err != nil {
		t.Fatal(err)
	}
	res, err := r.reaper.Execute(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcomes[0].Done || res.Outcomes[0].Error != "" || c.Calls("suspend") != 0 {
		t.Fatalf("the re-read must skip the suspend: %+v", res.Outcomes)
	}
}

func TestZombiesDeletedOrphansAfterGraceUntaggedNeverTouched(t *testing.T) {
	c := fakecloud.New("a", 2, time.Millisecond)
	r := newRig(t, c)
	zombieLab := r.launch("zed")
	// the registry says deleted, the cloud still has the stack
	zl := r.lab(zombieLab.ID)
	zl.Status = labs.Deleted
	if _, err := r.store.UpdateLab(context.Background(), zl, labs.Event{At: r.clock.Now(), Actor: "test", Action: "forget"}); err != nil {
		t.Fatal(err)
	}
	orphan := c.Put(labs.Stack{Name: "lab-gone", Status: "CREATE_COMPLETE", Tags: labs.StackTags(labs.Lab{ID: "gone", Course: "x", Learner: "y"}, "test")})
	foreign := c.Put(labs.Stack{Name: "not-ours", Status: "CREATE_COMPLETE", Tags: []string{"course=os101"}})
	otherSite := c.Put(labs.Stack{Name: "lab-elsewhere", Status: "CREATE_COMPLETE", Tags: labs.StackTags(labs.Lab{ID: "elsewhere", Course: "x", Learner: "y"}, "another-site")})

	res := r.pass()
	if kinds(res)[policy.DeleteZombie] != 1 {
		t.Fatalf("want the zombie deleted: %+v", res.Outcomes)
	}
	if len(res.Plan.Held) != 1 || res.Plan.Held[0].Stack.ID != orphan.ID || !strings.Contains(res.Plan.Held[0].Reason, "orphan") {
		t.Fatalf("want the orphan held within grace: %+v", res.Plan.Held)
	}
	r.clock.Add(59 * time.Minute)
	if res = r.pass(); len(res.Outcomes) != 0 {
		t.Fatalf("orphan deleted before its grace: %+v", res.Outcomes)
	}
	r.clock.Add(time.Minute)
	if res = r.pass(); kinds(res)[policy.DeleteOrphan] != 1 {
		t.Fatalf("want the orphan deleted after its grace: %+v", res.Outcomes)
	}
	left := c.Stacks()
	if len(left) != 2 || left[0].ID != otherSite.ID || left[1].ID != foreign.ID {
		t.Fatalf("only the untagged stack and the other site's must be left, got %+v", left)
	}
	events, err := r.store.Events(context.Background(), "gone", 0)
	if err != nil || len(events) != 1 || events[0].Action != string(policy.DeleteOrphan) {
		t.Fatalf("the orphan deletion is audited: %v %+v", err, events)
	}
}

func TestOneCloudDownDoesNotStopTheOther(t *testing.T) {
	a, b := fakecloud.New("a", 2, time.Millisecond), fakecloud.New("b", 2, time.Millisecond)
	r := newRig(t, a, b)
	onA := r.launch("ann")
	r.mgr.Targets[0].Drain = true // place the next lab on b
	onB := r.launch("bob")
	if onB.Cloud != "b" {
		t.Fatalf("drained cloud a still got a lab: %s", onB.Cloud)
	}
	r.clock.Add(5 * time.Minute)
	a.SetDown(errors.New("connection refused"))
	res := r.pass()
	if !res.Failed() || res.Plan.CloudErrors["a"] == "" {
		t.Fatalf("cloud a's outage must be reported: %+v", res.Plan.CloudErrors)
	}
	if r.lab(onB.ID).Status != labs.Suspended || r.lab(onA.ID).Status != labs.Active {
		t.Fatalf("b's lab must be suspended, a's left alone: %s %s", r.lab(onB.ID).Status, r.lab(onA.ID).Status)
	}
	a.SetDown(nil)
	if res = r.pass(); res.Failed() || r.lab(onA.ID).Status != labs.Suspended {
		t.Fatalf("the next pass catches up: %+v %s", res.Outcomes, r.lab(onA.ID).Status)
	}
}

func TestKilledHalfWayTheNextPassFinishes(t *testing.T) {
	c := fakecloud.New("a", 2, 200*time.Millisecond)
	r := newRig(t, c)
	var ids []string
	for _, l := range []string{"a1", "a2", "a3", "a4", "a5", "a6"} {
		ids = append(ids, r.launch(l).ID)
	}
	r.clock.Add(5 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := r.reaper.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kinds(res)[policy.Suspend] == len(ids) {
		t.Fatal("the pass was meant to be cut short")
	}
	// the stacks the killed pass left in SUSPEND_IN_PROGRESS finish on the cloud
	for _, st := range c.Stacks() {
		if strings.HasSuffix(st.Status, "_IN_PROGRESS") {
			c.SetStatus(st.ID, "SUSPEND_COMPLETE")
		}
	}
	r.pass()
	for _, id := range ids {
		if got := r.lab(id); got.Status != labs.Suspended {
			t.Errorf("lab %s after the second pass: %s (%s)", id, got.Status, got.StackStatus)
		}
	}
}

func TestBoundIsOnWorkInFlight(t *testing.T) {
	c := fakecloud.New("a", 5, 20*time.Millisecond)
	r := newRig(t, c)
	for i := range 40 {
		r.launch("l" + string(rune('a'+i/26)) + string(rune('a'+i%26)))
	}
	r.clock.Add(5 * time.Minute)
	res := r.pass()
	if kinds(res)[policy.Suspend] != 40 {
		t.Fatalf("want 40 suspends, got %v", kinds(res))
	}
	if got := c.MaxInFlightSeen(); got != 5 {
		t.Errorf("max in flight seen %d, want exactly the bound 5", got)
	}
}

// silentList is a cloud whose list never answers: it returns only when its context ends.
type silentList struct {
	reaper.Cloud
	ended chan error // the list's context's error, once it gave up
}

func (s silentList) List(ctx context.Context, _ ...string) ([]labs.Stack, error) {
	<-ctx.Done()
	s.ended <- ctx.Err()
	return nil, ctx.Err()
}

// A cloud whose list does not answer costs a pass its list's deadline: it is reported, and
// the other cloud's labs are handled in the same pass.
func TestSlowCloudListIsReportedOthersHandled(t *testing.T) {
	a, b := fakecloud.New("a", 2, time.Millisecond), fakecloud.New("b", 2, time.Millisecond)
	r := newRig(t, a, b)
	onA := r.launch("ann")
	r.mgr.Targets[0].Drain = true // place the next lab on b
	onB := r.launch("bob")
	r.clock.Add(5 * time.Minute)
	slow := silentList{Cloud: a, ended: make(chan error, 1)}
	r.reaper.Clouds[0] = slow
	r.reaper.ListTimeout = 100 * time.Millisecond
	res := r.pass()
	if err := <-slow.ended; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the slow list ended with %v, want its deadline", err)
	}
	if !res.Failed() || res.Plan.CloudErrors["a"] == "" {
		t.Fatalf("cloud a's silence must be reported: %+v", res.Plan.CloudErrors)
	}
	if r.lab(onB.ID).Status != labs.Suspended || r.lab(onA.ID).Status != labs.Active {
		t.Fatalf("b's lab must be suspended, a's left alone: %s %s", r.lab(onB.ID).Status, r.lab(onA.ID).Status)
	}
}

// A pass whose actions do not finish ends at PassTimeout anyway, with the actions it cut
// short failed, recorded, and not counted as failed attempts: the next pass takes them up.
func TestPassEndsAtItsTimeout(t *testing.T) {
	c := fakecloud.NewWith(fakecloud.Options{Name: "a", MaxInFlight: 1,
		Latencies: map[string]time.Duration{"create": time.Millisecond, "suspend": time.Hour}})
	r := newRig(t, c)
	var ids []string
	for _, l := range []string{"a1", "a2", "a3"} {
		ids = append(ids, r.launch(l).ID)
	}
	r.clock.Add(5 * time.Minute)
	r.reaper.PassTimeout = 200 * time.Millisecond
	start := time.Now()
	res := r.pass() // with a context that never ends
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the pass took %v, its timeout is 200ms", took)
	}
	if len(res.Outcomes) != len(ids) {
		t.Fatalf("want %d suspends planned, got %+v", len(ids), res.Outcomes)
	}
	for _, o := range res.Outcomes {
		if o.Done || o.Error == "" {
			t.Errorf("lab %s: done %v, error %q: want cut short", o.Action.Lab.ID, o.Done, o.Error)
		}
	}
	for _, id := range ids {
		if got := r.lab(id); got.Attempts != 0 || got.LastError == "" {
			t.Errorf("lab %s: %d attempts, last error %q: want the cut recorded, not counted", id, got.Attempts, got.LastError)
		}
	}
}

// listThen is a cloud that runs then once, right after its first list returns.
type listThen struct {
	reaper.Cloud
	then func()
}

func (c *listThen) List(ctx context.Context, tags ...string) ([]labs.Stack, error) {
	stacks, err := c.Cloud.List(ctx, tags...)
	if then := c.then; then != nil {
		c.then = nil
		then()
	}
	return stacks, err
}

// A lab launched while a pass lists its cloud is read by the pass (the registry is paged after
// the listing) but its stack is not in the listing: the pass reads its stack on its own, and
// neither calls the lab's stack gone nor its launch a failure.
func TestLabLaunchedDuringTheListing(t *testing.T) {
	c := fakecloud.New("a", 0, 0)
	r := newRig(t, c)
	var launched labs.Lab
	r.reaper.Clouds = []reaper.Cloud{&listThen{Cloud: c, then: func() { launched = r.launch("ann") }}}
	gets := c.Calls("get")
	p, err := r.reaper.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if launched.StackID == "" || p.Labs != 1 || p.Stacks != 0 {
		t.Fatalf("launched %+v during the listing; plan saw %d labs, %d stacks listed: want the lab, its stack not listed", launched, p.Labs, p.Stacks)
	}
	if n := c.Calls("get") - gets; n != 1 {
		t.Errorf("%d gets: want the lab's stack read once on its own", n)
	}
	if !slices.Equal(p.Listed, []string{"a"}) {
		t.Errorf("clouds listed %v, want [a]", p.Listed)
	}
	for _, a := range append(p.Actions, p.Held...) {
		t.Errorf("a lab launched during the listing: %s %s (%s), want nothing to do", a.Kind, a.Lab.ID, a.Reason)
	}
}

// Overdue counts the running labs the policy would have suspended grace ago already, by
// cloud (0 for a cloud with none), from the registry alone: not one in use, idle for less
// than grace past its bound, under a course's longer bound, or not running.
func TestOverdue(t *testing.T) {
	r := newRig(t, fakecloud.New("a", 0, 0), fakecloud.New("b", 0, 0), fakecloud.New("c", 0, 0))
	r.reaper.Rules.Default.LeaveGrace = 3 * time.Minute
	long := testRules
	long.IdleSuspendAfter = time.Hour
	r.reaper.Rules.Courses = map[string]policy.Rules{"long": long}
	now := r.clock.Now()
	const grace = time.Minute
	idle := testRules.IdleSuspendAfter // 2 minutes
	add := func(id, cloud, course string, status labs.Status, lastBeat, left time.Time) {
		t.Helper()
		lab := labs.Lab{ID: id, Learner: "l-" + id, Course: course, Template: "lab", Cloud: cloud, StackName: "lab-" + id, StackID: "s-" + id,
			Status: status, StackStatus: "CREATE_COMPLETE", CreatedAt: now.Add(-time.Hour), LastHeartbeat: lastBeat, LeftAt: left,
			StackStatusSince: now.Add(-time.Hour)}
		if _, err := r.store.CreateLab(context.Background(), lab, labs.Event{At: lab.CreatedAt, Actor: "test", Action: "launch"}); err != nil {
			t.Fatal(err)
		}
	}
	add("over", "a", "os101", labs.Active, now.Add(-idle-grace-time.Second), time.Time{})
	add("over-b", "b", "os101", labs.Active, now.Add(-idle-10*time.Minute), time.Time{})
	add("left", "b", "os101", labs.Active, now.Add(-5*time.Minute), now.Add(-5*time.Minute)) // left 5 min ago: grace 3 + 1
	add("just-due", "a", "os101", labs.Active, now.Add(-idle-grace/2), time.Time{})
	add("in-use", "a", "os101", labs.Active, now.Add(-time.Second), time.Time{})
	add("long-course", "a", "long", labs.Active, now.Add(-30*time.Minute), time.Time{})
	add("suspended", "a", "os101", labs.Suspended, now.Add(-time.Hour), time.Time{})
	got, err := r.reaper.Overdue(context.Background(), grace)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"a": 1, "b": 2, "c": 0}; !maps.Equal(got, want) {
		t.Errorf("Overdue = %v, want %v", got, want)
	}
}
