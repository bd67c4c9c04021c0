package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
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

const templateFile = "/templates/lab.yaml"

type rig struct {
	t      *testing.T
	store  *store.Store
	clouds map[string]*fakecloud.Cloud
	clock  *clock.Manual
	mgr    *lifecycle.Manager
}

// newRig builds a manager on a real SQLite registry and one fake cloud per name, in that
// placement order. The only template is "lab".
func newRig(t *testing.T, names ...string) *rig {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite", filepath.Join(t.TempDir(), "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := clock.NewManual(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	r := &rig{t: t, store: st, clouds: map[string]*fakecloud.Cloud{}, clock: clk}
	var targets []lifecycle.Target
	for _, n := range names {
		c := fakecloud.New(n, 4, time.Millisecond)
		r.clouds[n] = c
		targets = append(targets, lifecycle.Target{Cloud: c})
	}
	r.mgr = &lifecycle.Manager{
		Site:     "test",
		Registry: st,
		Locks:    st,
		Targets:  targets,
		Template: func(name string) (string, error) {
			if name == "lab" {
				return templateFile, nil
			}
			return "", fmt.Errorf("no template named %q", name)
		},
		DefaultTemplate: "lab",
		Rules:           policy.Set{Default: testRules},
		Hooks:           lifecycle.Hooks{Timeout: 10 * time.Second},
		Now:             clk.Now,
		Log:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	return r
}

func (r *rig) launch(learner, course string) labs.Lab {
	r.t.Helper()
	lab, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: learner, Course: course, Actor: "test"})
	if err != nil {
		r.t.Fatalf("launch %s/%s: %v", learner, course, err)
	}
	return lab
}

func (r *rig) lab(id string) labs.Lab {
	r.t.Helper()
	l, err := r.store.GetLab(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return l
}

func (r *rig) events(id string) []labs.Event {
	r.t.Helper()
	evs, err := r.store.Events(context.Background(), id, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	return evs
}

func (r *rig) lastEvent(id string) labs.Event {
	r.t.Helper()
	evs := r.events(id)
	if len(evs) == 0 {
		r.t.Fatalf("lab %s has no events", id)
	}
	return evs[len(evs)-1]
}

func (r *rig) allLabs() []labs.Lab {
	r.t.Helper()
	all, err := r.store.ListLabs(context.Background(), labs.Filter{})
	if err != nil {
		r.t.Fatal(err)
	}
	return all
}

func (r *rig) heartbeat(id string) {
	r.t.Helper()
	if _, err := r.mgr.Heartbeat(context.Background(), id); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) do(op lifecycle.Op, id string, force bool) (labs.Lab, error) {
	return r.mgr.Do(context.Background(), op, id, "op", force)
}

func actions(evs []labs.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Action
	}
	return out
}

func stackNames(c *fakecloud.Cloud) []string {
	var out []string
	for _, st := range c.Stacks() {
		out = append(out, st.Name)
	}
	return out
}

func TestLaunchPlacesOnFirstCloudInOrder(t *testing.T) {
	r := newRig(t, "a", "b")
	lab := r.launch("ann", "os101")

	got := r.lab(lab.ID)
	if got.Cloud != "a" || got.Status != labs.Active || got.StackStatus != "CREATE_COMPLETE" || got.StackID == "" {
		t.Fatalf("lab after launch: cloud %s status %s stack %s/%q", got.Cloud, got.Status, got.StackStatus, got.StackID)
	}
	if got.StackName != "lab-"+got.ID || got.Template != "lab" || got.Outputs["lab_id"] != got.ID {
		t.Errorf("stack name %q, template %q, outputs %v", got.StackName, got.Template, got.Outputs)
	}
	stacks := r.clouds["a"].Stacks()
	if len(stacks) != 1 || stacks[0].ID != got.StackID || stacks[0].Status != "CREATE_COMPLETE" {
		t.Fatalf("cloud a: %+v", stacks)
	}
	wantTags := []string{"labplane", "labplane-lab=" + got.ID, "course=os101", "learner=ann"}
	for _, tag := range wantTags {
		if !slices.Contains(stacks[0].Tags, tag) {
			t.Errorf("stack tags %v lack %q", stacks[0].Tags, tag)
		}
	}
	if n := len(r.clouds["b"].Stacks()); n != 0 {
		t.Errorf("cloud b got %d stacks", n)
	}
	if acts := actions(r.events(lab.ID)); !slices.Equal(acts, []string{"launch", "stack-accepted", "launched"}) {
		t.Errorf("events %v", acts)
	}
	ev := r.lastEvent(lab.ID)
	if ev.From != labs.Launching || ev.To != labs.Active || ev.Cloud != "a" || ev.StackID != got.StackID || ev.Actor != "test" {
		t.Errorf("launched event %+v", ev)
	}
}

func TestLaunchPlacement(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares the rig; it may launch labs (on a, the first cloud).
		setup     func(t *testing.T, r *rig)
		wantCloud string
	}{
		{"first cloud has room", func(*testing.T, *rig) {}, "a"},
		{"drained cloud is skipped", func(_ *testing.T, r *rig) { r.mgr.Targets[0].Drain = true }, "b"},
		{"a cloud an operator drained is skipped", func(t *testing.T, r *rig) {
			if err := r.store.DrainCloud(t.Context(), labs.Drain{Cloud: "a", At: r.clock.Now(), Actor: "api:ops"}); err != nil {
				t.Fatal(err)
			}
		}, "b"},
		{"undrained, it takes labs again", func(t *testing.T, r *rig) {
			if err := r.store.DrainCloud(t.Context(), labs.Drain{Cloud: "a", At: r.clock.Now(), Actor: "api:ops"}); err != nil {
				t.Fatal(err)
			}
			if err := r.store.UndrainCloud(t.Context(), "a"); err != nil {
				t.Fatal(err)
			}
		}, "a"},
		{"full cloud is skipped", func(_ *testing.T, r *rig) {
			r.mgr.Targets[0].Capacity = 1
			r.launch("first", "os101")
		}, "b"},
		{"a suspended lab counts against capacity", func(t *testing.T, r *rig) {
			r.mgr.Targets[0].Capacity = 1
			lab := r.launch("first", "os101")
			if got, err := r.do(lifecycle.OpSuspend, lab.ID, true); err != nil || got.Status != labs.Suspended {
				t.Fatalf("suspend: %v %s", err, got.Status)
			}
		}, "b"},
		{"a deleted lab does not count", func(t *testing.T, r *rig) {
			r.mgr.Targets[0].Capacity = 1
			lab := r.launch("first", "os101")
			if _, err := r.do(lifecycle.OpDelete, lab.ID, true); err != nil {
				t.Fatal(err)
			}
		}, "a"},
		{"capacity with room left", func(_ *testing.T, r *rig) {
			r.mgr.Targets[0].Capacity = 2
			r.launch("first", "os101")
		}, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "a", "b")
			tt.setup(t, r)
			createsA, createsB := r.clouds["a"].Calls("create"), r.clouds["b"].Calls("create")
			lab := r.launch("ann", "os101")
			if lab.Cloud != tt.wantCloud || r.lab(lab.ID).Cloud != tt.wantCloud {
				t.Fatalf("placed on %s, want %s", lab.Cloud, tt.wantCloud)
			}
			other := map[string]string{"a": "b", "b": "a"}[tt.wantCloud]
			before := map[string]int{"a": createsA, "b": createsB}
			if got := r.clouds[other].Calls("create"); got != before[other] {
				t.Errorf("cloud %s was asked to create (%d calls)", other, got-before[other])
			}
			if !slices.Contains(stackNames(r.clouds[tt.wantCloud]), lab.StackName) {
				t.Errorf("cloud %s lacks %s: %v", tt.wantCloud, lab.StackName, stackNames(r.clouds[tt.wantCloud]))
			}
		})
	}
}

func TestLaunchPinnedCloud(t *testing.T) {
	t.Run("lands there though the first has room", func(t *testing.T) {
		r := newRig(t, "a", "b")
		lab, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: "ann", Course: "os101", Cloud: "b"})
		if err != nil || lab.Cloud != "b" || lab.Status != labs.Active {
			t.Fatalf("pinned launch: %v %s %s", err, lab.Cloud, lab.Status)
		}
		if n := r.clouds["a"].Calls("create"); n != 0 {
			t.Errorf("cloud a got %d creates", n)
		}
	})
	t.Run("no failover", func(t *testing.T) {
		r := newRig(t, "a", "b")
		r.clouds["b"].FailNext("create", "", 1)
		lab, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: "ann", Course: "os101", Cloud: "b"})
		if err == nil {
			t.Fatal("a failed pinned launch returned no error")
		}
		if n := r.clouds["a"].Calls("create"); n != 0 {
			t.Fatalf("failed over to a (%d creates)", n)
		}
		if got := r.lab(lab.ID); got.Status != labs.Deleted || got.LastError == "" {
			t.Errorf("lab after a failed pinned launch: %s %q", got.Status, got.LastError)
		}
		if acts := actions(r.events(lab.ID)); slices.Contains(acts, "failover") {
			t.Errorf("events %v", acts)
		}
		if left := stackNames(r.clouds["b"]); len(left) != 0 {
			t.Errorf("cloud b kept %v", left)
		}
	})
	t.Run("unknown cloud", func(t *testing.T) {
		r := newRig(t, "a", "b")
		_, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: "ann", Course: "os101", Cloud: "c"})
		if !errors.Is(err, lifecycle.ErrUnknownCloud) {
			t.Fatalf("want ErrUnknownCloud, got %v", err)
		}
		if n := len(r.allLabs()); n != 0 {
			t.Errorf("%d rows written", n)
		}
	})
	t.Run("pinned to a drained cloud", func(t *testing.T) {
		r := newRig(t, "a", "b")
		r.mgr.Targets[1].Drain = true
		_, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: "ann", Course: "os101", Cloud: "b"})
		if !errors.Is(err, lifecycle.ErrNoRoom) {
			t.Fatalf("want ErrNoRoom, got %v", err)
		}
		if n := len(r.allLabs()); n != 0 {
			t.Errorf("%d rows written", n)
		}
	})
}

// A launch pinned to a cloud an operator drained finds no room, and says who drained it.
func TestLaunchPinnedToACloudDrainedAtRunTime(t *testing.T) {
	r := newRig(t, "a", "b")
	if err := r.store.DrainCloud(t.Context(), labs.Drain{Cloud: "b", At: r.clock.Now(), Actor: "api:ops"}); err != nil {
		t.Fatal(err)
	}
	_, err := r.mgr.Launch(t.Context(), lifecycle.LaunchRequest{Learner: "ann", Course: "os101", Cloud: "b"})
	if !errors.Is(err, lifecycle.ErrNoRoom) || !strings.Contains(err.Error(), "b (drained by api:ops)") {
		t.Fatalf("want ErrNoRoom naming the drain, got %v", err)
	}
}

func TestLaunchNoRoomWritesNothing(t *testing.T) {
	r := newRig(t, "a", "b")
	r.mgr.Targets[0].Drain = true
	r.mgr.Targets[1].Capacity = 1
	first := r.launch("first", "os101")
	_, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: "ann", Course: "os101"})
	if !errors.Is(err, lifecycle.ErrNoRoom) {
		t.Fatalf("want ErrNoRoom, got %v", err)
	}
	if all := r.allLabs(); len(all) != 1 || all[0].ID != first.ID {
		t.Fatalf("rows: %+v", all)
	}
	if c := r.clouds["a"].Calls("create") + r.clouds["b"].Calls("create"); c != 1 {
		t.Errorf("%d creates, want only the first lab's", c)
	}
}

func TestLaunchFailsOverAndCleansUp(t *testing.T) {
	r := newRig(t, "a", "b")
	r.clouds["a"].FailNext("create", "", 1)
	lab := r.launch("ann", "os101")

	got := r.lab(lab.ID)
	if got.Cloud != "b" || got.Status != labs.Active || got.StackStatus != "CREATE_COMPLETE" {
		t.Fatalf("after failover: %s %s %s", got.Cloud, got.Status, got.StackStatus)
	}
	if left := r.clouds["a"].Stacks(); len(left) != 0 {
		t.Errorf("the failed stack was left on a: %+v", left)
	}
	if r.clouds["a"].Calls("delete") != 1 {
		t.Errorf("cloud a: %d deletes, want the cleanup", r.clouds["a"].Calls("delete"))
	}
	onB := r.clouds["b"].Stacks()
	if len(onB) != 1 || onB[0].ID != got.StackID || onB[0].Name != lab.StackName {
		t.Fatalf("cloud b: %+v (lab stack %s)", onB, got.StackID)
	}
	evs := r.events(lab.ID)
	if acts := actions(evs); !slices.Equal(acts, []string{"launch", "stack-accepted", "launch-attempt-failed", "failover", "stack-accepted", "launched"}) {
		t.Fatalf("events %v", acts)
	}
	failed, failover, launched := evs[2], evs[3], evs[5]
	if failed.Cloud != "a" || !strings.Contains(failed.Error, "injected failure") || failed.RequestID != "req-fake" ||
		failed.Detail != "stack deleted" || failed.StackID == "" {
		t.Errorf("launch-attempt-failed event %+v", failed)
	}
	if failover.Cloud != "b" || !strings.Contains(failover.Detail, "launch failed on a") {
		t.Errorf("failover event %+v", failover)
	}
	if launched.Cloud != "b" || launched.StackID != got.StackID || launched.To != labs.Active {
		t.Errorf("launched event %+v", launched)
	}
}

// quotaRefusing is a cloud whose creates are refused before any stack exists, as Heat refuses
// one past max_stacks_per_tenant (HTTP 400 RequestLimitExceeded, cloud.ErrInvalid).
type quotaRefusing struct{ *fakecloud.Cloud }

const quotaMessage = "Request limit exceeded: You have reached the maximum stacks per tenant, 2. Please delete some stacks."

func (c quotaRefusing) Create(_ context.Context, r cloud.CreateRequest) (labs.Stack, error) {
	return labs.Stack{}, &cloud.Error{Cloud: c.Name(), Op: "create", Stack: r.Name, Kind: cloud.ErrInvalid,
		HTTPStatus: 400, RequestID: "req-quota", Message: quotaMessage}
}

// A create the cloud refuses (its quota is full) moves the lab to the next cloud, with the
// refusal in the trail; there is nothing to delete on the refusing cloud.
func TestLaunchRefusedCreateFailsOver(t *testing.T) {
	r := newRig(t, "a", "b")
	r.mgr.Targets[0].Cloud = quotaRefusing{r.clouds["a"]}
	lab := r.launch("ann", "os101")

	got := r.lab(lab.ID)
	if got.Cloud != "b" || got.Status != labs.Active || got.StackStatus != "CREATE_COMPLETE" {
		t.Fatalf("after failover: %s %s %s", got.Cloud, got.Status, got.StackStatus)
	}
	evs := r.events(lab.ID)
	if acts := actions(evs); !slices.Equal(acts, []string{"launch", "launch-attempt-failed", "failover", "stack-accepted", "launched"}) {
		t.Fatalf("events %v", acts)
	}
	if failed := evs[1]; failed.Cloud != "a" || !strings.Contains(failed.Error, quotaMessage) || failed.RequestID != "req-quota" ||
		failed.StackID != "" || failed.Detail != "" {
		t.Errorf("launch-attempt-failed event %+v", failed)
	}
	if a := r.clouds["a"]; len(a.Stacks()) != 0 || a.Calls("delete") != 0 {
		t.Errorf("cloud a: stacks %+v, %d deletes; want none", a.Stacks(), a.Calls("delete"))
	}
}

func TestLaunchFailsEverywhere(t *testing.T) {
	r := newRig(t, "a", "b")
	r.clouds["a"].FailNext("create", "", 1)
	r.clouds["b"].FailNext("create", "", 1)
	lab, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: "ann", Course: "os101", Actor: "test"})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, bad := range []error{lifecycle.ErrNoRoom, lifecycle.ErrInvalid, labs.ErrExists} {
		if errors.Is(err, bad) {
			t.Errorf("a failed launch is a job failure, not %v: %v", bad, err)
		}
	}
	if lab.ID == "" {
		t.Fatal("the failed lab is not returned")
	}
	got := r.lab(lab.ID)
	if got.Status != labs.Deleted || got.DeletedAt.IsZero() || !strings.Contains(got.LastError, "cloud a") ||
		!strings.Contains(got.LastError, "cloud b") {
		t.Fatalf("lab after failing everywhere: %s deleted %s error %q", got.Status, got.DeletedAt, got.LastError)
	}
	for name, c := range r.clouds {
		if left := c.Stacks(); len(left) != 0 {
			t.Errorf("cloud %s kept %+v", name, left)
		}
	}
	want := []string{"launch", "stack-accepted", "launch-attempt-failed", "failover", "stack-accepted", "launch-attempt-failed", "launch-failed"}
	if acts := actions(r.events(lab.ID)); !slices.Equal(acts, want) {
		t.Errorf("events %v, want %v", acts, want)
	}
	// the dead attempt does not block the learner
	again := r.launch("ann", "os101")
	if again.ID == lab.ID || again.Cloud != "a" {
		t.Errorf("relaunch: %+v", again)
	}
}

func TestLaunchExistingLabIsReturned(t *testing.T) {
	r := newRig(t, "a")
	first := r.launch("ann", "os101")
	got, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: "ann", Course: "os101"})
	if !errors.Is(err, labs.ErrExists) || got.ID != first.ID {
		t.Fatalf("want the existing lab with ErrExists, got %s, %v", got.ID, err)
	}
	if n := r.clouds["a"].Calls("create"); n != 1 {
		t.Errorf("%d creates, want 1", n)
	}
	if n := len(r.allLabs()); n != 1 {
		t.Errorf("%d rows", n)
	}
	// another course is another lab
	r.launch("ann", "os102")

	if _, err := r.do(lifecycle.OpDelete, first.ID, true); err != nil {
		t.Fatal(err)
	}
	next := r.launch("ann", "os101")
	if next.ID == first.ID || next.Status != labs.Active {
		t.Fatalf("launch after delete: %+v", next)
	}
	if n := len(r.clouds["a"].Stacks()); n != 2 {
		t.Errorf("cloud a has %d stacks, want os102's and the new os101's", n)
	}
}

func TestLaunchRejectsBadInputWritingNothing(t *testing.T) {
	tests := []struct {
		name                       string
		learner, course, template  string
		wantInvalid, wantUnknownTp bool
	}{
		{name: "empty learner", course: "os101", wantInvalid: true},
		{name: "learner with a space", learner: "ann b", course: "os101", wantInvalid: true},
		{name: "learner too long", learner: strings.Repeat("a", 256), course: "os101", wantInvalid: true},
		{name: "learner with a colon", learner: "ann:b", course: "os101", wantInvalid: true},
		{name: "empty course", learner: "ann", wantInvalid: true},
		{name: "course with a comma", learner: "ann", course: "os,101", wantInvalid: true},
		{name: "course starting with a dash", learner: "ann", course: "-os101", wantInvalid: true},
		{name: "unknown template", learner: "ann", course: "os101", template: "nope", wantUnknownTp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "a")
			_, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: tt.learner, Course: tt.course, Template: tt.template})
			switch {
			case err == nil:
				t.Fatal("want an error")
			case tt.wantInvalid && !errors.Is(err, lifecycle.ErrInvalid):
				t.Fatalf("want ErrInvalid, got %v", err)
			case tt.wantUnknownTp && !strings.Contains(err.Error(), `"nope"`):
				t.Fatalf("want the unknown template named, got %v", err)
			}
			if n := len(r.allLabs()); n != 0 {
				t.Errorf("%d rows written", n)
			}
			if evs := r.events(""); len(evs) != 0 {
				t.Errorf("events written: %v", actions(evs))
			}
			if n := r.clouds["a"].Calls("create"); n != 0 {
				t.Errorf("%d creates", n)
			}
		})
	}
	t.Run("longest learner accepted", func(t *testing.T) {
		r := newRig(t, "a")
		r.launch(strings.Repeat("a", 128), "os101")
	})
}

func TestDoGuardsLabsInUse(t *testing.T) {
	r := newRig(t, "a")
	c := r.clouds["a"]
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute)
	r.heartbeat(lab.ID)
	r.clock.Add(time.Minute) // within idle_suspend_after (2m)
	before := r.lab(lab.ID)

	for _, op := range []lifecycle.Op{lifecycle.OpSuspend, lifecycle.OpDelete} {
		if _, err := r.do(op, lab.ID, false); !errors.Is(err, lifecycle.ErrInUse) {
			t.Fatalf("%s of a lab in use: want ErrInUse, got %v", op, err)
		}
	}
	if n := c.Calls("suspend") + c.Calls("delete"); n != 0 {
		t.Fatalf("%d cloud calls for refused actions", n)
	}
	if got := r.lab(lab.ID); got.Status != labs.Active || got.Version != before.Version {
		t.Fatalf("lab changed: %s version %d (was %d)", got.Status, got.Version, before.Version)
	}
	if acts := actions(r.events(lab.ID)); !slices.Equal(acts, []string{"launch", "stack-accepted", "launched"}) {
		t.Errorf("refusals wrote events: %v", acts)
	}

	// force: done
	got, err := r.do(lifecycle.OpSuspend, lab.ID, true)
	if err != nil || got.Status != labs.Suspended || got.StackStatus != "SUSPEND_COMPLETE" {
		t.Fatalf("forced suspend: %v %s %s", err, got.Status, got.StackStatus)
	}
	if st := c.Stacks(); len(st) != 1 || st[0].Status != "SUSPEND_COMPLETE" {
		t.Fatalf("cloud: %+v", st)
	}
	ev := r.lastEvent(lab.ID)
	if ev.Action != "suspend" || ev.Actor != "op" || ev.From != labs.Suspending || ev.To != labs.Suspended || ev.Error != "" {
		t.Errorf("suspend event %+v", ev)
	}

	// resume is never refused and counts as use
	r.clock.Add(time.Hour)
	got, err = r.do(lifecycle.OpResume, lab.ID, false)
	if err != nil || got.Status != labs.Active || !got.LastResumedAt.Equal(r.clock.Now()) {
		t.Fatalf("resume: %v %s resumed at %s (now %s)", err, got.Status, got.LastResumedAt, r.clock.Now())
	}
	r.clock.Add(30 * time.Second)
	if _, err := r.do(lifecycle.OpDelete, lab.ID, false); !errors.Is(err, lifecycle.ErrInUse) {
		t.Fatalf("delete right after a resume: want ErrInUse, got %v", err)
	}

	// once idle, no force is needed
	r.clock.Add(2 * time.Minute)
	got, err = r.do(lifecycle.OpDelete, lab.ID, false)
	if err != nil || got.Status != labs.Deleted || got.DeletedAt.IsZero() {
		t.Fatalf("delete: %v %s", err, got.Status)
	}
	if st := c.Stacks(); len(st) != 0 {
		t.Fatalf("the stack is still there: %+v", st)
	}

	// a deleted lab cannot be acted on; an unknown one is not found
	for _, op := range []lifecycle.Op{lifecycle.OpSuspend, lifecycle.OpResume, lifecycle.OpDelete} {
		if _, err := r.do(op, lab.ID, true); !errors.Is(err, lifecycle.ErrInvalid) {
			t.Errorf("%s of a deleted lab: want ErrInvalid, got %v", op, err)
		}
		if _, err := r.do(op, "nosuchlab", true); !errors.Is(err, labs.ErrNotFound) {
			t.Errorf("%s of an unknown lab: want ErrNotFound, got %v", op, err)
		}
	}
	if _, err := r.mgr.Heartbeat(context.Background(), lab.ID); !errors.Is(err, lifecycle.ErrInvalid) {
		t.Errorf("heartbeat of a deleted lab: want ErrInvalid, got %v", err)
	}
	if _, err := r.mgr.Heartbeat(context.Background(), "nosuchlab"); !errors.Is(err, labs.ErrNotFound) {
		t.Errorf("heartbeat of an unknown lab: want ErrNotFound, got %v", err)
	}
}

func TestFailedActionBookkeeping(t *testing.T) {
	r := newRig(t, "a")
	c := r.clouds["a"]
	lab := r.launch("ann", "os101")
	c.FailNext("suspend", lab.StackName, 10)
	r.clock.Add(10 * time.Minute)

	wantBackoff := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute}
	wantStatus := []labs.Status{labs.Failed, labs.Failed, labs.NeedsOperator}
	for i := range 3 {
		_, err := r.do(lifecycle.OpSuspend, lab.ID, false)
		if !errors.Is(err, cloud.ErrFailed) {
			t.Fatalf("attempt %d: want the cloud's failure, got %v", i+1, err)
		}
		got := r.lab(lab.ID)
		now := r.clock.Now()
		if got.Attempts != i+1 || !got.NextAttemptAt.Equal(now.Add(wantBackoff[i])) || got.Status != wantStatus[i] ||
			got.StackStatus != "SUSPEND_FAILED" || !strings.Contains(got.LastError, "injected failure") {
			t.Fatalf("after %d failures: attempts %d next %s (want %s) status %s stack %s error %q",
				i+1, got.Attempts, got.NextAttemptAt, now.Add(wantBackoff[i]), got.Status, got.StackStatus, got.LastError)
		}
		ev := r.lastEvent(lab.ID)
		if ev.Action != "suspend" || ev.RequestID != "req-fake" || !strings.Contains(ev.Error, "injected failure") ||
			ev.To != wantStatus[i] {
			t.Fatalf("event after %d failures: %+v", i+1, ev)
		}
		r.clock.Add(wantBackoff[i])
	}

	c.FailNext("suspend", lab.StackName, 0)
	got, err := r.do(lifecycle.OpSuspend, lab.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != labs.Suspended || got.Attempts != 0 || !got.NextAttemptAt.IsZero() || got.LastError != "" {
		t.Fatalf("after a success: %s attempts %d next %s error %q", got.Status, got.Attempts, got.NextAttemptAt, got.LastError)
	}
	if ev := r.lastEvent(lab.ID); ev.Error != "" || ev.From != labs.Suspending || ev.To != labs.Suspended {
		t.Errorf("success event %+v", ev)
	}
}

func TestFailedActionUsesCourseRules(t *testing.T) {
	r := newRig(t, "a")
	strict := testRules
	strict.MaxAttempts, strict.RetryBackoff = 1, 5*time.Minute
	r.mgr.Rules.Courses = map[string]policy.Rules{"strict": strict}
	lab := r.launch("ann", "strict")
	r.clouds["a"].FailNext("delete", lab.StackName, 1)
	r.clock.Add(10 * time.Minute)
	if _, err := r.do(lifecycle.OpDelete, lab.ID, false); err == nil {
		t.Fatal("want the delete to fail")
	}
	got := r.lab(lab.ID)
	if got.Status != labs.NeedsOperator || got.Attempts != 1 || !got.NextAttemptAt.Equal(r.clock.Now().Add(5*time.Minute)) ||
		got.StackStatus != "DELETE_FAILED" {
		t.Fatalf("after one failure with max_attempts 1: %s attempts %d next %s %s", got.Status, got.Attempts, got.NextAttemptAt, got.StackStatus)
	}
}

// A cloud that cannot be reached fails the action without using up max_attempts (an outage
// is not the stack's failure): the lab keeps its status and backs off.
func TestTransientFailureBacksOffWithoutCounting(t *testing.T) {
	r := newRig(t, "a")
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute)
	r.clouds["a"].SetDown(errors.New("connection refused"))
	if _, err := r.do(lifecycle.OpSuspend, lab.ID, false); !errors.Is(err, cloud.ErrTransient) {
		t.Fatalf("want a transient error, got %v", err)
	}
	got := r.lab(lab.ID)
	if got.Status != labs.Active || got.StackStatus != "CREATE_COMPLETE" || got.Attempts != 0 ||
		!got.NextAttemptAt.After(r.clock.Now()) || !got.ClaimedAt.IsZero() || !strings.Contains(got.LastError, "connection refused") {
		t.Fatalf("after a transient failure: %s %s attempts %d next %s claimed %s %q", got.Status, got.StackStatus,
			got.Attempts, got.NextAttemptAt, got.ClaimedAt, got.LastError)
	}
}

func TestLaunchPastLaunchTimeoutFailsOver(t *testing.T) {
	r := newRig(t, "a", "b")
	slow := fakecloud.New("a", 4, 500*time.Millisecond)
	r.clouds["a"], r.mgr.Targets[0].Cloud = slow, slow
	fast := testRules
	fast.LaunchTimeout = 100 * time.Millisecond
	r.mgr.Rules.Default = fast
	lab := r.launch("ann", "os101")
	if lab.Cloud != "b" || lab.Status != labs.Active {
		t.Fatalf("want the lab on b, got %s %s", lab.Cloud, lab.Status)
	}
	if left := slow.Stacks(); len(left) != 0 {
		t.Errorf("the timed-out create was left on a: %+v", left)
	}
	evs := r.events(lab.ID)
	if acts := actions(evs); !slices.Equal(acts, []string{"launch", "stack-accepted", "launch-attempt-failed", "failover", "stack-accepted", "launched"}) {
		t.Fatalf("events %v", acts)
	}
	if !strings.Contains(evs[2].Error, "deadline exceeded") || evs[2].Detail != "stack deleted" {
		t.Errorf("launch-attempt-failed event %+v", evs[2])
	}
}

// A launch stopped while its stack is being created (serve shutting down) neither fails over
// nor deletes the stack: it hands the stack to the reaper, which follows it by its id.
func TestCancelledLaunchHandsItsStackOver(t *testing.T) {
	r := newRig(t, "a", "b")
	slow := fakecloud.New("a", 4, 500*time.Millisecond)
	r.clouds["a"], r.mgr.Targets[0].Cloud = slow, slow
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	lab, err := r.mgr.Launch(ctx, lifecycle.LaunchRequest{Learner: "ann", Course: "os101"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the launch's context's", err)
	}
	if n := r.clouds["b"].Calls("create"); n != 0 {
		t.Errorf("a stopped launch went on to b (%d creates)", n)
	}
	left := slow.Stacks()
	if len(left) != 1 {
		t.Fatalf("stacks on a: %+v; want the one being created, kept", left)
	}
	if got := r.lab(lab.ID); got.Status != labs.Launching || got.Cloud != "a" || got.StackID != left[0].ID {
		t.Errorf("lab %s on %s, stack %q; want launching on a with stack %s", got.Status, got.Cloud, got.StackID, left[0].ID)
	}
	if acts := actions(r.events(lab.ID)); !slices.Equal(acts, []string{"launch", "stack-accepted", "launch-handed-over"}) {
		t.Errorf("events %v", acts)
	}
}

func TestConcurrentLaunchesRespectCapacity(t *testing.T) {
	r := newRig(t, "a", "b")
	r.mgr.Targets[0].Capacity = 2
	var wg sync.WaitGroup
	placed := make([]labs.Lab, 6)
	errs := make([]error, len(placed))
	for i := range placed {
		wg.Go(func() {
			placed[i], errs[i] = r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: fmt.Sprintf("l%d", i), Course: "os101"})
		})
	}
	wg.Wait()
	perCloud := map[string]int{}
	for i, l := range placed {
		if errs[i] != nil {
			t.Fatalf("launch %d: %v", i, errs[i])
		}
		perCloud[l.Cloud]++
	}
	if perCloud["a"] != 2 || perCloud["b"] != 4 {
		t.Fatalf("placed %v, want 2 on a (its capacity) and 4 on b", perCloud)
	}
	if n := len(r.clouds["a"].Stacks()); n != 2 {
		t.Errorf("cloud a has %d stacks", n)
	}
}

func TestHeartbeatOnADeletedLabWritesNothing(t *testing.T) {
	r := newRig(t, "a")
	lab := r.launch("ann", "os101")
	if _, err := r.do(lifecycle.OpDelete, lab.ID, true); err != nil {
		t.Fatal(err)
	}
	before := r.lab(lab.ID)
	r.clock.Add(time.Minute)
	if _, err := r.mgr.Heartbeat(context.Background(), lab.ID); !errors.Is(err, lifecycle.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
	if after := r.lab(lab.ID); after.Version != before.Version || !after.LastHeartbeat.Equal(before.LastHeartbeat) {
		t.Errorf("a heartbeat on a deleted lab wrote: version %d -> %d", before.Version, after.Version)
	}
}

// moveOnCloud is a cloud whose create, once the stack is complete, lets the test act on
// the lab before the launch records it (the reaper syncing and suspending it meanwhile).
type moveOnCloud struct {
	*fakecloud.Cloud
	meanwhile func(st labs.Stack)
}

func (c moveOnCloud) Create(ctx context.Context, r cloud.CreateRequest) (labs.Stack, error) {
	st, err := c.Cloud.Create(ctx, r)
	if err == nil {
		c.meanwhile(st)
	}
	return st, err
}

// A launch recorded late (the registry was down when the stack completed) must not undo
// what was recorded since: the reaper saw the stack, and suspended the idle lab, first.
func TestALateLaunchRecordKeepsTheNewerState(t *testing.T) {
	r := newRig(t, "a")
	var suspended labs.Lab
	r.mgr.Targets[0].Cloud = moveOnCloud{Cloud: r.clouds["a"], meanwhile: func(st labs.Stack) {
		lab, err := r.store.FindLive(context.Background(), "ann", "os101")
		if err != nil {
			t.Fatal(err)
		}
		r.clouds["a"].SetStatus(st.ID, "SUSPEND_COMPLETE")
		lab.Status, lab.StackID, lab.StackStatus = labs.Suspended, st.ID, "SUSPEND_COMPLETE"
		suspended, err = r.store.UpdateLab(context.Background(), lab, labs.Event{At: r.clock.Now(), Actor: "reaper",
			Action: "suspend", From: labs.Launching, To: labs.Suspended})
		if err != nil {
			t.Fatal(err)
		}
	}}
	lab := r.launch("ann", "os101")
	if lab.Status != labs.Suspended || lab.StackStatus != "SUSPEND_COMPLETE" || lab.StackID != suspended.StackID {
		t.Errorf("after the late launch record: %s %s %s; want it suspended as the reaper recorded", lab.Status, lab.StackStatus, lab.StackID)
	}
	if len(lab.Outputs) == 0 {
		t.Error("the launch's outputs were not recorded")
	}
	if acts := actions(r.events(lab.ID)); !slices.Equal(acts, []string{"launch", "stack-accepted", "suspend", "launched"}) {
		t.Errorf("events %v", acts)
	}
}

// flakyRegistry answers ErrUnavailable (PostgreSQL restarting) to the first updates.
type flakyRegistry struct {
	*store.Store
	mu    sync.Mutex
	fails int
}

func (f *flakyRegistry) UpdateLab(ctx context.Context, lab labs.Lab, ev labs.Event) (labs.Lab, error) {
	f.mu.Lock()
	fail := f.fails > 0
	if fail {
		f.fails--
	}
	f.mu.Unlock()
	if fail {
		return labs.Lab{}, fmt.Errorf("update lab %q: %w", lab.ID, store.ErrUnavailable)
	}
	return f.Store.UpdateLab(ctx, lab, ev)
}

// The outcome of an action is written down even if the registry is down for a moment when
// the action ends: a launch's stack is not taken for a failed launch.
func TestAnOutcomeIsRecordedOnceTheRegistryIsBack(t *testing.T) {
	r := newRig(t, "a", "b")
	flaky := &flakyRegistry{Store: r.store, fails: 2}
	r.mgr.Registry = flaky
	lab := r.launch("ann", "os101")
	if lab.Status != labs.Active || lab.Cloud != "a" || len(lab.Outputs) == 0 {
		t.Fatalf("lab %s on %s, outputs %v; want active on a", lab.Status, lab.Cloud, lab.Outputs)
	}
	if acts := actions(r.events(lab.ID)); !slices.Equal(acts, []string{"launch", "stack-accepted", "launched"}) {
		t.Errorf("events %v", acts)
	}
	if n := r.clouds["b"].Calls("create"); n != 0 {
		t.Errorf("the launch failed over to b (%d creates)", n)
	}
}

// lostSightCloud is a cloud whose create completes, but whose wait loses sight of the stack
// (the cloud answered 500s for a while) until after the reaper saw it complete, recorded it
// and suspended the idle lab: the wait then ends with the conflict it sees.
type lostSightCloud struct {
	*fakecloud.Cloud
	meanwhile func(st labs.Stack)
}

func (c lostSightCloud) Create(ctx context.Context, r cloud.CreateRequest) (labs.Stack, error) {
	st, err := c.Cloud.Create(ctx, r)
	if err != nil {
		return st, err
	}
	c.meanwhile(st)
	st.Status = "SUSPEND_COMPLETE"
	return st, &cloud.Error{Cloud: c.Name(), Op: "create", Stack: r.Name, Kind: cloud.ErrConflict,
		Message: "the stack went to SUSPEND_COMPLETE while waiting for CREATE (another action?)"}
}

// A launch whose wait failed after the reaper had recorded its stack as live did not fail:
// the stack is not deleted, the lab is not failed over nor marked deleted.
func TestALaunchTheReaperRecordedIsNotUndone(t *testing.T) {
	r := newRig(t, "a", "b")
	r.mgr.Targets[0].Cloud = lostSightCloud{Cloud: r.clouds["a"], meanwhile: func(st labs.Stack) {
		lab, err := r.store.FindLive(context.Background(), "ann", "os101")
		if err != nil {
			t.Fatal(err)
		}
		r.clouds["a"].SetStatus(st.ID, "SUSPEND_COMPLETE")
		lab.Status, lab.StackID, lab.StackStatus = labs.Suspended, st.ID, "SUSPEND_COMPLETE"
		if _, err := r.store.UpdateLab(context.Background(), lab, labs.Event{At: r.clock.Now(), Actor: "reaper",
			Action: "suspend", From: labs.Launching, To: labs.Suspended}); err != nil {
			t.Fatal(err)
		}
	}}
	lab, err := r.mgr.Launch(context.Background(), lifecycle.LaunchRequest{Learner: "ann", Course: "os101", Actor: "test"})
	if err != nil {
		t.Errorf("launch: %v", err)
	}
	got := r.lab(lab.ID)
	if got.Status != labs.Suspended || got.Cloud != "a" || got.StackID == "" {
		t.Errorf("lab %s on %s, stack %q; want it suspended on a, as the reaper recorded", got.Status, got.Cloud, got.StackID)
	}
	if stacks := r.clouds["a"].Stacks(); len(stacks) != 1 || stacks[0].Status != "SUSPEND_COMPLETE" {
		t.Errorf("the lab's stack on a: %+v; want it kept", stacks)
	}
	if n := r.clouds["b"].Calls("create"); n != 0 {
		t.Errorf("the launch failed over to b (%d creates)", n)
	}
	if acts := actions(r.events(lab.ID)); !slices.Equal(acts, []string{"launch", "stack-accepted", "suspend", "launch-handed-over"}) {
		t.Errorf("events %v", acts)
	}
}

// gatedRegistry holds a delete's record of being sent (delete-sent) until released, and the
// launch's record of its stack (stack-accepted) until the delete has been sent: the order in
// which a delete sent just before the create's answer was recorded, and finished just after.
type gatedRegistry struct {
	*store.Store
	sent, resume chan struct{}
}

func (g *gatedRegistry) UpdateLab(ctx context.Context, lab labs.Lab, ev labs.Event) (labs.Lab, error) {
	if ev.Action == "stack-accepted" {
		<-g.sent
	}
	stored, err := g.Store.UpdateLab(ctx, lab, ev)
	if ev.Action == "delete-sent" {
		close(g.sent)
		<-g.resume
	}
	return stored, err
}

// A delete sent before the launch recorded its stack (so it had no stack to delete), whose
// outcome is recorded after the launch stopped and left the stack to it: the lab stays
// deleting, its delete unfinished, and the policy's next delete removes the stack. Before,
// the lab was recorded deleted with its stack still being created on the cloud.
func TestDeleteSentBeforeTheLaunchRecordedItsStack(t *testing.T) {
	r := newRig(t, "a")
	g := &gatedRegistry{Store: r.store, sent: make(chan struct{}), resume: make(chan struct{})}
	r.mgr.Registry = g
	ctx := context.Background()
	p, err := r.mgr.Start(ctx, lifecycle.LaunchRequest{Learner: "ann", Course: "os101", Actor: "lms"})
	if err != nil {
		t.Fatal(err)
	}
	lab := p.Lab
	launched := make(chan error, 1)
	go func() { _, err := r.mgr.Provision(ctx, p); launched <- err }()
	// the delete once the create is sent: a delete claimed before, the launch sees and sends none
	for deadline := time.Now().Add(10 * time.Second); r.clouds["a"].Calls("create") == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the launch sent no create")
		}
		time.Sleep(time.Millisecond)
	}
	deleted := make(chan labs.Lab, 1)
	go func() {
		l, err := r.mgr.Do(ctx, lifecycle.OpDelete, lab.ID, "lms", false)
		if err != nil {
			t.Errorf("delete: %v", err)
		}
		deleted <- l
	}()
	if err := <-launched; err == nil {
		t.Fatal("the launch went on after the delete")
	}
	close(g.resume)
	<-deleted

	got := r.lab(lab.ID)
	stacks := r.clouds["a"].Stacks()
	if got.Status != labs.Deleting || got.StackID == "" || got.ClaimedAt != (time.Time{}) || len(stacks) != 1 || stacks[0].Gone() {
		t.Fatalf("after the delete: lab %s (stack %q, claimed %v), stacks %+v: want the lab deleting, unclaimed, its stack still there", got.Status, got.StackID, got.ClaimedAt, stacks)
	}
	// the next pass finishes the delete
	r.mgr.Registry = r.store
	a, ok := policy.DecideLab(policy.Observed{Lab: got, Stack: &stacks[0]}, r.clock.Now(), testRules)
	if !ok || a.Kind != policy.Delete {
		t.Fatalf("the policy on the lab left deleting: %+v, %v", a, ok)
	}
	if done, err := r.mgr.Apply(ctx, a, "reaper"); err != nil || !done {
		t.Fatalf("the pass's delete: %v, %v", done, err)
	}
	left := r.clouds["a"].Stacks()
	if got := r.lab(lab.ID); got.Status != labs.Deleted || (len(left) != 0 && !left[0].Gone()) {
		t.Errorf("after the pass: lab %s, stacks %+v: want it deleted, its stack gone", got.Status, left)
	}
}
