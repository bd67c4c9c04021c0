package reaper_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/store"
)

// offsetClock is the real clock moved forward by hand: Heat runs in real time, the policy's
// hours pass in an instant.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}
func (c *offsetClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

type heatRig struct {
	t      testing.TB
	course string // unique per test: every lab stack of the test carries course=<course>
	store  *store.Store
	heat   map[string]*heat.Heat
	clock  *offsetClock
	mgr    *lifecycle.Manager
	reaper *reaper.Reaper
}

// target is a cloud of the rig in placement order.
type target struct {
	name        string
	capacity    int
	maxInFlight int // 6 if zero
	observe     func(op string, took time.Duration, err error)
	poll        time.Duration // the longest between two reads of a stack: 250 ms if zero
}

func newHeatRig(t testing.TB, rules policy.Set, targets ...target) *heatRig {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local clouds (not with -short)")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.SQLite, filepath.Join(t.TempDir(), "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r := &heatRig{t: t, course: fmt.Sprintf("e2e-%s-%d", strings.ToLower(t.Name()[8:14]), time.Now().UnixNano()%1e6),
		store: st, heat: map[string]*heat.Heat{}, clock: &offsetClock{}}
	var lts []lifecycle.Target
	var rcs []reaper.Cloud
	for _, tg := range targets {
		if tg.maxInFlight == 0 {
			tg.maxInFlight = 6
		}
		if tg.poll == 0 {
			tg.poll = 250 * time.Millisecond
		}
		h, err := heat.Open(ctx, heat.Options{Name: tg.name, PollInterval: tg.poll, Logger: log, Observe: tg.observe})
		if err != nil {
			t.Fatal(err)
		}
		r.heat[tg.name] = h
		lts = append(lts, lifecycle.Target{Cloud: h, Capacity: tg.capacity, MaxInFlight: tg.maxInFlight})
		rcs = append(rcs, h)
	}
	templates := map[string]string{"lab": "lab.yaml", "failing": "failing.yaml", "slow": "slow.yaml", "servers": "servers.yaml"}
	r.mgr = &lifecycle.Manager{Site: r.course, Registry: st, Locks: st, Slots: store.NewWaiter(st), Targets: lts, Rules: rules, Now: r.clock.Now, Log: log, DefaultTemplate: "lab",
		Template: func(name string) (string, error) {
			if f, ok := templates[name]; ok {
				return filepath.Abs(filepath.Join("../../examples/templates", f))
			}
			if filepath.IsAbs(name) {
				return name, nil // a template the test wrote
			}
			return "", fmt.Errorf("no template %q", name)
		}}
	r.reaper = &reaper.Reaper{Site: r.course, Registry: st, Clouds: rcs, Applier: r.mgr, Rules: rules, Now: r.clock.Now, Log: log, Actor: "reaper"}
	t.Cleanup(r.cleanup)
	return r
}

// cleanup deletes every stack the test made, whatever happened. It allows 10 minutes: the
// class-leaves benchmark leaves 50 stacks, whose deletes in parallel took over 3 minutes on
// a busy machine.
func (r *heatRig) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range r.heat {
		for _, tag := range []string{"course=" + r.course, "untagged-by-labplane=" + r.course} {
			left, err := h.List(ctx, tag)
			if err != nil {
				r.t.Logf("cleanup %s: %v", h.Name(), err)
				continue
			}
			for _, st := range left {
				wg.Go(func() {
					if _, err := h.Delete(ctx, st.Name, st.ID); err != nil {
						r.t.Logf("cleanup %s: %v", st.Name, err)
					}
				})
			}
		}
	}
	wg.Wait()
}

func (r *heatRig) launch(learner, template, cloudName string) labs.Lab {
	r.t.Helper()
	lab, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: learner, Course: r.course,
		Template: template, Cloud: cloudName, Actor: "test"})
	if err != nil {
		r.t.Fatalf("launch %s: %v", learner, err)
	}
	return lab
}

// adopt creates a stack directly on the cloud for a lab row made by hand (a stuck launch,
// a stack that failed) and records the row. wait=false returns as soon as Heat has the stack.
func (r *heatRig) adopt(cloudName, learner, template string, params map[string]string, status labs.Status, wait bool) labs.Lab {
	r.t.Helper()
	id := learner + "-" + r.course
	lab := labs.Lab{ID: id, Learner: learner, Course: r.course, Template: template, Cloud: cloudName,
		StackName: "lab-" + id, Status: status, CreatedAt: r.clock.Now()}
	st := r.stack(cloudName, lab.StackName, template, params, labs.StackTags(lab, r.course), wait)
	lab.StackID = st.ID
	lab, err := r.store.CreateLab(context.Background(), lab, labs.Event{At: r.clock.Now(), Actor: "test", Action: "adopt"})
	if err != nil {
		r.t.Fatal(err)
	}
	return lab
}

func (r *heatRig) stack(cloudName, name, template string, params map[string]string, tags []string, wait bool) labs.Stack {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	file, _ := r.mgr.Template(template)
	req := cloud.CreateRequest{Name: name, TemplateFile: file, Params: params, Tags: tags, Timeout: 10 * time.Minute}
	if !wait {
		// return as soon as Heat has the stack, however long its answer takes on a busy machine
		req.Accepted = func(labs.Stack) { cancel() }
	}
	st, err := r.heat[cloudName].Create(ctx, req)
	if st.ID == "" {
		r.t.Fatalf("create %s: %v", name, err)
	}
	return st
}

func (r *heatRig) pass() reaper.Result {
	r.t.Helper()
	res, err := r.reaper.Run(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, o := range res.Outcomes {
		r.t.Logf("  %s %s %s: done=%v err=%s (%s)", o.Action.Kind, o.Action.Lab.ID, o.Action.Stack.Status, o.Done, o.Error, o.Action.Reason)
	}
	return res
}

func (r *heatRig) lab(id string) labs.Lab {
	r.t.Helper()
	l, err := r.store.GetLab(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return l
}

// status is what Heat says of a stack now ("GONE" when it is not there).
func (r *heatRig) status(cloudName string, st labs.Stack) string {
	r.t.Helper()
	got, err := r.heat[cloudName].Get(context.Background(), st.Name, st.ID)
	if errors.Is(err, cloud.ErrNotFound) || (err == nil && got.Gone()) {
		return "GONE"
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return got.Status
}

func outcome(res reaper.Result, labID string) (reaper.Outcome, bool) {
	for _, o := range res.Outcomes {
		if o.Action.Lab.ID == labID {
			return o, true
		}
	}
	return reaper.Outcome{}, false
}

func held(res reaper.Result, id, fragment string) bool {
	for _, a := range res.Plan.Held {
		if (a.Lab.ID == id || a.Stack.ID == id) && strings.Contains(a.Reason, fragment) {
			return true
		}
	}
	return false
}

func asStack(l labs.Lab) labs.Stack { return labs.Stack{Name: l.StackName, ID: l.StackID} }

// One cloud, every kind of lab the reaper meets, against the real Heat.
func TestHeatReaperOnRealStacks(t *testing.T) {
	t.Parallel()
	rules := policy.Rules{IdleSuspendAfter: time.Minute, DeleteAfter: 3 * time.Hour, LaunchTimeout: 10 * time.Minute,
		StuckAfter: 10 * time.Minute, OrphanGrace: 30 * time.Minute, MaxAttempts: 2, RetryBackoff: time.Minute}
	r := newHeatRig(t, policy.Set{Default: rules}, target{name: "local-a"})
	ctx := context.Background()

	// the labs, created side by side
	var idle, busy, old, zombie labs.Lab
	var orphan, untagged, otherSite labs.Stack
	var wg sync.WaitGroup
	wg.Go(func() { idle = r.launch("idle", "", "") })
	wg.Go(func() { busy = r.launch("busy", "", "") })
	wg.Go(func() { old = r.launch("old", "", "") })
	wg.Go(func() { zombie = r.launch("zombie", "", "") })
	wg.Go(func() {
		orphan = r.stack("local-a", "lab-orphan"+r.course, "lab", nil,
			labs.StackTags(labs.Lab{ID: "orphan-" + r.course, Course: r.course, Learner: "nobody"}, r.course), true)
	})
	wg.Go(func() {
		// labplane's tags, but another installation's: to this one it is not an orphan, it is not there
		otherSite = r.stack("local-a", "lab-othersite"+r.course, "lab", nil,
			labs.StackTags(labs.Lab{ID: "othersite-" + r.course, Course: r.course, Learner: "nobody"}, "another-site"), true)
	})
	wg.Go(func() {
		untagged = r.stack("local-a", "not-labplane-"+r.course, "lab", nil, []string{"untagged-by-labplane=" + r.course}, true)
	})
	wg.Go(func() {
		// a launch that fails: the stack it made is deleted, the lab ends deleted
		_, err := r.mgr.Launch(ctx, lifecycle.LaunchRequest{Learner: "failing", Course: r.course, Template: "failing", Actor: "test"})
		if !errors.Is(err, cloud.ErrFailed) {
			t.Errorf("a failing template must fail the launch with ErrFailed, got %v", err)
		}
	})
	wg.Wait()
	// a launch that never finished (its create takes 10 minutes), a stack stuck suspending,
	// a stack whose suspend fails (it failed to create)
	never := r.adopt("local-a", "never", "slow", map[string]string{"create_wait": "600"}, labs.Launching, false)
	stuck := r.adopt("local-a", "stuck", "slow", map[string]string{"create_wait": "0", "suspend_wait": "600"}, labs.Active, true)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := r.heat["local-a"].Suspend(sctx, stuck.StackName, stuck.StackID)
	cancel()
	if err == nil {
		t.Fatal("the slow suspend was meant to be still in progress")
	}
	badSuspend := r.adopt("local-a", "badsuspend", "failing", nil, labs.Active, true)
	if _, err := r.heat["local-a"].Suspend(ctx, badSuspend.StackName, badSuspend.StackID); !errors.Is(err, cloud.ErrFailed) {
		t.Fatalf("suspending a CREATE_FAILED stack: want SUSPEND_FAILED, got %v", err)
	}
	zl := r.lab(zombie.ID)
	zl.Status, zl.DeletedAt = labs.Deleted, r.clock.Now()
	if _, err := r.store.UpdateLab(ctx, zl, labs.Event{At: r.clock.Now(), Actor: "test", Action: "forget"}); err != nil {
		t.Fatal(err)
	}
	if list, _ := r.store.ListLabs(ctx, labs.Filter{Learner: "failing"}); len(list) != 1 || list[0].Status != labs.Deleted {
		t.Fatalf("the failed launch's lab: %+v", list)
	}

	// pass 1, two minutes later: busy has a heartbeat, the rest is idle
	r.clock.Add(2 * time.Minute)
	if _, err := r.mgr.Heartbeat(ctx, busy.ID); err != nil {
		t.Fatal(err)
	}
	res := r.pass()
	if o, ok := outcome(res, idle.ID); !ok || o.Action.Kind != policy.Suspend || !o.Done {
		t.Errorf("idle lab: want suspended, got %+v", o)
	}
	if _, ok := outcome(res, busy.ID); ok {
		t.Error("the busy lab was acted on")
	}
	if o, ok := outcome(res, zombie.ID); !ok || o.Action.Kind != policy.DeleteZombie || !o.Done {
		t.Errorf("zombie: want deleted, got %+v", o)
	}
	if o, ok := outcome(res, badSuspend.ID); !ok || o.Action.Kind != policy.Suspend || o.Error == "" {
		t.Errorf("bad suspend: want a failed suspend, got %+v", o)
	}
	if !held(res, orphan.ID, "orphan") {
		t.Errorf("the orphan must be held within its grace: %+v", res.Plan.Held)
	}
	if got := r.lab(idle.ID); got.Status != labs.Suspended || r.status("local-a", asStack(got)) != "SUSPEND_COMPLETE" {
		t.Errorf("idle lab: registry %s, heat %s", got.Status, r.status("local-a", asStack(got)))
	}
	if got := r.lab(badSuspend.ID); got.Attempts != 1 || got.LastError == "" {
		t.Errorf("bad suspend after one failure: attempts %d error %q", got.Attempts, got.LastError)
	}
	if r.status("local-a", asStack(zombie)) != "GONE" {
		t.Error("the zombie's stack is still there")
	}

	// pass 2, an hour later: old has a heartbeat; the stuck launch and the orphan are due,
	// the stuck suspend is flagged, the bad suspend fails a second (max) time
	r.clock.Add(time.Hour)
	if _, err := r.mgr.Heartbeat(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	res = r.pass()
	if o, ok := outcome(res, never.ID); !ok || o.Action.Kind != policy.Delete || !o.Done {
		t.Errorf("launch past launch_timeout: want deleted, got %+v", o)
	}
	if o, ok := outcome(res, stuck.ID); !ok || o.Action.Kind != policy.Flag || !o.Done {
		t.Errorf("stuck suspend: want flagged, got %+v", o)
	}
	if got := r.lab(stuck.ID); got.Status != labs.NeedsOperator {
		t.Errorf("stuck suspend: %s", got.Status)
	}
	if got := r.lab(badSuspend.ID); got.Status != labs.NeedsOperator || got.Attempts != 2 {
		t.Errorf("bad suspend after max_attempts: %s attempts %d", got.Status, got.Attempts)
	}
	var orphanDeleted bool
	for _, o := range res.Outcomes {
		orphanDeleted = orphanDeleted || (o.Action.Kind == policy.DeleteOrphan && o.Action.Stack.ID == orphan.ID && o.Done)
	}
	if !orphanDeleted || r.status("local-a", orphan) != "GONE" {
		t.Errorf("the orphan must be deleted after its grace: %+v", res.Outcomes)
	}
	if r.status("local-a", asStack(never)) != "GONE" {
		t.Error("the stuck launch's stack is still there")
	}

	// pass 3, past delete_after: old (suspended in pass 1) has a heartbeat again, so it is
	// in use and kept; idle is deleted; flagged labs are held
	r.clock.Add(2 * time.Hour)
	if _, err := r.mgr.Heartbeat(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	res = r.pass()
	if !held(res, old.ID, "in use") || r.lab(old.ID).Status == labs.Deleted || r.status("local-a", asStack(old)) == "GONE" {
		t.Errorf("old lab with a heartbeat: want held in use, got held %+v", res.Plan.Held)
	}
	if o, ok := outcome(res, idle.ID); !ok || o.Action.Kind != policy.Delete || !o.Done || r.status("local-a", asStack(idle)) != "GONE" {
		t.Errorf("suspended lab past delete_after: want deleted, got %+v", o)
	}
	if !held(res, badSuspend.ID, "needs an operator") || !held(res, stuck.ID, "needs an operator") {
		t.Errorf("flagged labs must be held for an operator: %+v", res.Plan.Held)
	}
	if r.status("local-a", untagged) != "CREATE_COMPLETE" {
		t.Error("a stack without labplane's tag was touched")
	}
	if r.status("local-a", otherSite) != "CREATE_COMPLETE" {
		t.Error("another site's stack was touched")
	}
	events, err := r.store.Events(ctx, badSuspend.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var failedSuspends int
	for _, ev := range events {
		if ev.Action == "suspend" && ev.Error != "" && strings.Contains(ev.Error, "SUSPEND") {
			failedSuspends++
		}
	}
	if failedSuspends != 2 {
		t.Errorf("want two failed suspends audited with Heat's reason, got %+v", events)
	}
}

// Two clouds: placement by capacity, failover, and one cloud stopped half-way through a
// delete, which Heat then reports as DELETE_FAILED and the reaper retries.
func TestHeatTwoCloudsOneStoppedHalfWay(t *testing.T) {
	t.Parallel()
	rules := policy.Rules{IdleSuspendAfter: time.Minute, LaunchTimeout: 10 * time.Minute, StuckAfter: 10 * time.Minute,
		OrphanGrace: time.Hour, MaxAttempts: 3, RetryBackoff: time.Minute}
	short := rules
	short.DeleteAfter = time.Minute
	r := newHeatRig(t, policy.Set{Default: rules}, target{name: "local-a", capacity: 2}, target{name: "local-b"})
	r.mgr.Rules.Courses = map[string]policy.Rules{r.course + "-short": short}
	r.reaper.Rules = r.mgr.Rules
	ctx := context.Background()
	slowDelete := filepath.Join(t.TempDir(), "slowdelete.yaml")
	if err := os.WriteFile(slowDelete, []byte(`heat_template_version: 2018-08-31
resources:
  slow: {type: OS::Heat::TestResource, properties: {value: x, action_wait_secs: {delete: 25}}}
`), 0o644); err != nil {
		t.Fatal(err)
	}

	// first, a launch that fails everywhere: it fails over from local-a to local-b and cleans up
	{
		lab, err := r.mgr.Launch(ctx, lifecycle.LaunchRequest{Learner: "failover", Course: r.course, Template: "failing", Actor: "test"})
		if err == nil || lab.Status != labs.Deleted {
			t.Fatalf("a launch failing everywhere: %v %s", err, lab.Status)
		}
		events, _ := r.store.Events(ctx, lab.ID, 0)
		var trail []string
		for _, ev := range events {
			trail = append(trail, ev.Action+"@"+ev.Cloud)
		}
		if want := "launch@local-a stack-accepted@local-a launch-attempt-failed@local-a failover@local-b stack-accepted@local-b launch-attempt-failed@local-b launch-failed@local-b"; strings.Join(trail, " ") != want {
			t.Errorf("failover trail:\n got %s\nwant %s", strings.Join(trail, " "), want)
		}
	}

	// then three labs for a cloud with room for two, and one pinned to local-b
	var placed []labs.Lab
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, l := range []string{"p1", "p2", "p3"} {
		wg.Go(func() {
			lab := r.launch(l, "", "")
			mu.Lock()
			placed = append(placed, lab)
			mu.Unlock()
		})
	}
	var doomed labs.Lab
	wg.Go(func() {
		var err error
		doomed, err = r.mgr.Launch(ctx, lifecycle.LaunchRequest{Learner: "doomed", Course: r.course + "-short",
			Template: slowDelete, Cloud: "local-b", Actor: "test"})
		if err != nil {
			t.Errorf("launch on local-b: %v", err)
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	perCloud := map[string]int{}
	for _, l := range placed {
		perCloud[l.Cloud]++
	}
	if perCloud["local-a"] != 2 || perCloud["local-b"] != 1 {
		t.Errorf("capacity 2 on local-a: want 2 labs there and 1 on local-b, got %v", perCloud)
	}
	for _, h := range r.heat {
		if left, _ := h.List(ctx, "learner=failover"); len(left) != 0 {
			t.Errorf("the failed launch left stacks on %s: %+v", h.Name(), left)
		}
	}

	// everything idle; the doomed lab is past its delete time: the pass deletes it on local-b
	// (25 s in Heat) and, while that runs, local-b goes down
	r.clock.Add(2 * time.Minute)
	results := make(chan reaper.Result, 1)
	go func() { results <- r.pass() }()
	deadline := time.Now().Add(time.Minute)
	for r.status("local-b", asStack(doomed)) != "DELETE_IN_PROGRESS" {
		if time.Now().After(deadline) {
			t.Fatal("the delete never started")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := lease.Stop(ctx, "local-b"); err != nil {
		t.Fatal(err)
	}
	res := <-results
	for _, l := range placed {
		o, ok := outcome(res, l.ID)
		switch {
		case !ok || o.Action.Kind != policy.Suspend:
			t.Errorf("lab %s on %s: want a suspend, got %+v", l.ID, l.Cloud, o)
		case l.Cloud == "local-a" && !o.Done:
			t.Errorf("lab %s on local-a: want suspended whatever local-b does, got %+v", l.ID, o)
		}
	}
	if o, ok := outcome(res, doomed.ID); !ok || o.Error == "" {
		t.Errorf("the delete on the stopped cloud must fail: %+v", o)
	}

	// local-b down: a pass handles local-a and reports local-b
	res = r.pass()
	if res.Plan.CloudErrors["local-b"] == "" || !res.Failed() {
		t.Errorf("local-b's outage must be reported: %+v", res.Plan.CloudErrors)
	}

	if err := lease.Start(ctx, "local-b", io.Discard); err != nil {
		t.Fatal(err)
	}
	after := r.status("local-b", asStack(doomed))
	t.Logf("after the restart Heat shows the doomed stack as %s", after)
	if after != "DELETE_FAILED" && after != "DELETE_IN_PROGRESS" && after != "GONE" {
		t.Errorf("unexpected status after the restart: %s", after)
	}
	// after the backoffs the reaper deletes it again and catches up on local-b. A suspend
	// that local-b's engine was running when it stopped may stay SUSPEND_IN_PROGRESS for
	// good (Heat does not reset it): past stuck_after it is flagged for an operator.
	for i := 0; i < 8 && !allSettled(r, append([]labs.Lab{doomed}, placed...)); i++ {
		r.clock.Add(5 * time.Minute)
		r.pass()
		time.Sleep(time.Second)
	}
	for _, l := range placed {
		got := r.lab(l.ID)
		stuck := l.Cloud == "local-b" && got.Status == labs.NeedsOperator && got.StackStatus == "SUSPEND_IN_PROGRESS"
		if got.Status != labs.Suspended && !stuck {
			events, _ := r.store.Events(ctx, l.ID, 0)
			t.Errorf("lab %s on %s at the end: %s (%s); events: %+v", l.ID, l.Cloud, got.Status, got.StackStatus, events)
		}
	}
	if got := r.lab(doomed.ID); got.Status != labs.Deleted || r.status("local-b", asStack(doomed)) != "GONE" {
		t.Errorf("the doomed lab after the retry: %s / %s", got.Status, r.status("local-b", asStack(doomed)))
	}
	events, _ := r.store.Events(ctx, doomed.ID, 0)
	var deletes []string
	for _, ev := range events {
		if ev.Action == "delete" {
			deletes = append(deletes, fmt.Sprintf("error=%v", ev.Error != ""))
		}
	}
	if len(deletes) < 2 || deletes[0] != "error=true" || deletes[len(deletes)-1] != "error=false" {
		t.Errorf("want a failed delete then a successful one in the audit trail, got %v", deletes)
	}
}

// allSettled: every lab is suspended, deleted or left to an operator.
func allSettled(r *heatRig, ls []labs.Lab) bool {
	for _, l := range ls {
		if s := r.lab(l.ID).Status; s != labs.Suspended && s != labs.Deleted && s != labs.NeedsOperator {
			return false
		}
	}
	return true
}

// Open edX's identifiers on the real local Heat: a lab for a 255-character course key and an
// anonymous student id is launched, its stack carries tags Heat keeps (the long course as a
// digest, nothing over 80 characters), the registry keeps the full key, and a full pass knows
// the stack for the lab's (no zombie, no orphan), suspends it once idle, and finds it by the
// course key.
func TestHeatOpenEdXIdentifiers(t *testing.T) {
	t.Parallel()
	rules := testRules
	rules.LaunchTimeout = 10 * time.Minute // a loaded Heat (the whole suite at once) took over a minute
	r := newHeatRig(t, policy.Set{Default: rules}, target{name: "local-a"})
	ctx := context.Background()
	course := "course-v1:hastexo+" + r.course + "+" + strings.Repeat("9", 255-len("course-v1:hastexo+++")-len(r.course)) + "x"
	const learner = "0123456789abcdef0123456789abcdef"
	lab, err := r.mgr.Launch(ctx, lifecycle.LaunchRequest{Learner: learner, Course: course, Actor: "test"})
	t.Cleanup(func() {
		if lab.ID != "" && lab.Status != labs.Deleted {
			if _, err := r.mgr.Do(context.Background(), lifecycle.OpDelete, lab.ID, "test", true); err != nil {
				t.Errorf("delete lab %s: %v", lab.ID, err)
			}
		}
	})
	if err != nil || lab.Status != labs.Active {
		t.Fatalf("launch with a %d-character course key: %s %v", len(course), lab.Status, err)
	}
	if got := r.lab(lab.ID); got.Course != course || got.Learner != learner {
		t.Errorf("the registry keeps %q / %q, want the full identifiers", got.Course, got.Learner)
	}
	st, err := r.heat["local-a"].Get(ctx, lab.StackName, lab.StackID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range st.Tags {
		if len(tag) > labs.MaxTagLen {
			t.Errorf("Heat keeps tag %q of %d characters", tag, len(tag))
		}
	}
	if st.LabID() != lab.ID || !st.HasTag("learner="+learner) || !slices.ContainsFunc(st.Tags, func(t string) bool { return strings.HasPrefix(t, "course-digest=") }) {
		t.Errorf("stack tags %v: want the lab's tag, the learner's and a digest of the course", st.Tags)
	}
	r.clock.Add(10 * time.Minute)
	res := r.pass()
	for _, o := range res.Outcomes {
		if o.Action.Kind == policy.DeleteZombie || o.Action.Kind == policy.DeleteOrphan {
			t.Errorf("the full pass took the lab's stack for a stray: %s %s", o.Action.Kind, o.Action.Reason)
		}
	}
	if got := r.lab(lab.ID); got.Status != labs.Suspended {
		t.Errorf("after a full pass, idle: %s, want suspended", got.Status)
	}
	if found, err := r.store.ListLabs(ctx, labs.Filter{Course: course, Learner: learner}); err != nil || len(found) != 1 || found[0].ID != lab.ID {
		t.Errorf("listed by course key and learner: %v %v", found, err)
	}
}
