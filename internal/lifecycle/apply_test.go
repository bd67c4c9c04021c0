package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
)

// plan decides about a lab as the reaper does, from the registry row and the cloud's stack.
func (r *rig) plan(id string) policy.Action {
	r.t.Helper()
	lab := r.lab(id)
	var stack *labs.Stack
	for _, st := range r.clouds[lab.Cloud].Stacks() {
		if st.ID == lab.StackID || (lab.StackID == "" && st.Name == lab.StackName) {
			stack = &st
		}
	}
	a, ok := policy.DecideLab(policy.Observed{Lab: lab, Stack: stack}, r.clock.Now(), testRules)
	if !ok {
		r.t.Fatalf("nothing to do for lab %s", id)
	}
	return a
}

func (r *rig) apply(a policy.Action) (bool, error) {
	return r.mgr.Apply(context.Background(), a, "reaper")
}

func TestApplySuspendsAnIdleLab(t *testing.T) {
	r := newRig(t, "a")
	lab := r.launch("ann", "os101")
	r.clock.Add(5 * time.Minute)
	a := r.plan(lab.ID)
	if a.Kind != policy.Suspend {
		t.Fatalf("want a suspend planned, got %s (%s)", a.Kind, a.Reason)
	}
	done, err := r.apply(a)
	if !done || err != nil {
		t.Fatalf("apply: %v %v", done, err)
	}
	if got := r.lab(lab.ID); got.Status != labs.Suspended {
		t.Fatalf("status %s", got.Status)
	}
	if ev := r.lastEvent(lab.ID); ev.Action != "suspend" || ev.Actor != "reaper" || ev.Detail != a.Reason {
		t.Errorf("event %+v", ev)
	}
}

func TestApplySkipsASuspendWhenAHeartbeatArrivedAfterThePlan(t *testing.T) {
	r := newRig(t, "a")
	lab := r.launch("ann", "os101")
	r.clock.Add(5 * time.Minute)
	a := r.plan(lab.ID)
	if a.Kind != policy.Suspend {
		t.Fatalf("want a suspend planned, got %s", a.Kind)
	}
	r.heartbeat(lab.ID)
	done, err := r.apply(a)
	if done || err != nil {
		t.Fatalf("want (false, nil), got (%v, %v)", done, err)
	}
	if n := r.clouds["a"].Calls("suspend"); n != 0 {
		t.Errorf("%d suspend calls", n)
	}
	if got := r.lab(lab.ID); got.Status != labs.Active {
		t.Errorf("status %s", got.Status)
	}
}

func TestApplySkipsADeleteWhenAHeartbeatArrivedAfterThePlan(t *testing.T) {
	// past delete_after the fresh decision is a Hold (in use), not "nothing": the kind differs
	r := newRig(t, "a")
	lab := r.launch("ann", "os101")
	r.clock.Add(15 * 24 * time.Hour)
	a := r.plan(lab.ID)
	if a.Kind != policy.Delete {
		t.Fatalf("want a delete planned, got %s", a.Kind)
	}
	r.heartbeat(lab.ID)
	if fresh := r.plan(lab.ID); fresh.Kind != policy.Hold {
		t.Fatalf("the fresh decision should be a hold, got %s", fresh.Kind)
	}
	done, err := r.apply(a)
	if done || err != nil {
		t.Fatalf("want (false, nil), got (%v, %v)", done, err)
	}
	if n := r.clouds["a"].Calls("delete"); n != 0 || len(r.clouds["a"].Stacks()) != 1 {
		t.Errorf("%d delete calls, stacks %v", n, stackNames(r.clouds["a"]))
	}
	if got := r.lab(lab.ID); got.Status != labs.Active {
		t.Errorf("status %s", got.Status)
	}
}

func TestApplySkipsAnOrphanThatGotARow(t *testing.T) {
	for _, rowAppears := range []bool{false, true} {
		name := map[bool]string{false: "still an orphan: deleted", true: "a row appeared: skipped"}[rowAppears]
		t.Run(name, func(t *testing.T) {
			r := newRig(t, "a")
			c := r.clouds["a"]
			ghost := labs.Lab{ID: "ghost1", Learner: "gil", Course: "os101", Template: "lab", Cloud: "a",
				StackName: "lab-ghost1", Status: labs.Launching}
			st := c.Put(labs.Stack{Name: ghost.StackName, Status: "CREATE_COMPLETE", Tags: labs.StackTags(ghost, "test")})
			a := policy.DecideStray(policy.Stray{Stack: st, FirstSeen: r.clock.Now()}, r.clock.Now().Add(2*time.Hour), testRules)
			if a.Kind != policy.DeleteOrphan {
				t.Fatalf("want a delete-orphan planned, got %s", a.Kind)
			}
			r.clock.Add(2 * time.Hour)
			if rowAppears {
				if _, err := r.store.CreateLab(t.Context(), ghost, labs.Event{At: r.clock.Now(), Actor: "test", Action: "launch"}); err != nil {
					t.Fatal(err)
				}
			}
			done, err := r.apply(a)
			if err != nil || done == rowAppears {
				t.Fatalf("apply: (%v, %v)", done, err)
			}
			if left := len(c.Stacks()) == 1; left != rowAppears {
				t.Fatalf("stack left: %v, want %v", left, rowAppears)
			}
			evs := r.events(ghost.ID)
			if rowAppears {
				if c.Calls("delete") != 0 || len(evs) != 1 || evs[0].Action != "launch" {
					t.Errorf("deletes %d, events %v", c.Calls("delete"), actions(evs))
				}
			} else if len(evs) != 1 || evs[0].Action != string(policy.DeleteOrphan) || evs[0].StackID != st.ID || evs[0].Actor != "reaper" {
				t.Errorf("orphan deletion events %+v", evs)
			}
		})
	}
}

func TestApplyNeverDeletesAnUntaggedStack(t *testing.T) {
	r := newRig(t, "a")
	c := r.clouds["a"]
	// a stack of another tool that looks like ours but for the labplane tag
	foreign := c.Put(labs.Stack{Name: "lab-foreign", Status: "CREATE_COMPLETE", Tags: []string{"labplane-lab=foreign", "course=os101"}})
	// and a lab whose stack lost its labplane tag
	lab := r.lab(r.launch("ann", "os101").ID)
	untagged := c.Put(labs.Stack{ID: lab.StackID, Name: lab.StackName, Status: "CREATE_COMPLETE", Tags: []string{"course=os101"}})
	r.clock.Add(15 * 24 * time.Hour) // past delete_after, idle

	actions := []policy.Action{
		{Kind: policy.DeleteOrphan, Stack: foreign, Reason: "test"},
		{Kind: policy.DeleteZombie, Stack: foreign, Reason: "test"},
		{Kind: policy.DeleteZombie, Stack: untagged, Lab: lab, Reason: "test"},
		{Kind: policy.Delete, Lab: lab, Stack: untagged, Reason: "test"},
	}
	for _, a := range actions {
		if done, _ := r.apply(a); done {
			t.Errorf("%s of an untagged stack was carried out", a.Kind)
		}
	}
	if n := c.Calls("delete"); n != 0 {
		t.Fatalf("%d delete calls", n)
	}
	if n := len(c.Stacks()); n != 2 {
		t.Fatalf("%d stacks left, want both", n)
	}
	if got := r.lab(lab.ID); got.Status == labs.Deleted {
		t.Error("the lab was marked deleted")
	}
}

func TestApplyDeletesAStuckLaunchWhoseStackIDWasNeverRecorded(t *testing.T) {
	// A launch that was killed before its create call returned leaves a row without a stack
	// id and a stack on the cloud (the reaper finds it by name). Past launch_timeout the
	// reaper deletes it: the stack must go, not just the row.
	r := newRig(t, "a")
	c := r.clouds["a"]
	lab := labs.Lab{ID: "stuck1", Learner: "ann", Course: "os101", Template: "lab", Cloud: "a",
		StackName: "lab-stuck1", Status: labs.Launching, CreatedAt: r.clock.Now()}
	if _, err := r.store.CreateLab(t.Context(), lab, labs.Event{At: r.clock.Now(), Actor: "test", Action: "launch"}); err != nil {
		t.Fatal(err)
	}
	st := c.Put(labs.Stack{Name: lab.StackName, Status: "CREATE_IN_PROGRESS", Tags: labs.StackTags(lab, "test")})
	r.clock.Add(2 * time.Minute) // past launch_timeout (1m)

	a := r.plan(lab.ID)
	if a.Kind != policy.Delete || a.Stack.ID != st.ID {
		t.Fatalf("want a delete of %s planned, got %s of %q (%s)", st.ID, a.Kind, a.Stack.ID, a.Reason)
	}
	done, err := r.apply(a)
	if !done || err != nil {
		t.Fatalf("apply: (%v, %v)", done, err)
	}
	if left := c.Stacks(); len(left) != 0 {
		t.Errorf("the stack keeps billing: %+v", left)
	}
	if c.Calls("delete") != 1 {
		t.Errorf("%d delete calls", c.Calls("delete"))
	}
	got := r.lab(lab.ID)
	if got.Status != labs.Deleted || got.StackID != st.ID {
		t.Errorf("lab: %s, stack id %q", got.Status, got.StackID)
	}
	if ev := r.lastEvent(lab.ID); ev.Action != "delete" || ev.StackID != st.ID {
		t.Errorf("delete event %+v", ev)
	}
}

func TestApplySyncsAGoneStack(t *testing.T) {
	r := newRig(t, "a")
	lab := r.lab(r.launch("ann", "os101").ID)
	// the stack was deleted behind labplane's back
	if _, err := r.clouds["a"].Delete(t.Context(), lab.StackName, lab.StackID); err != nil {
		t.Fatal(err)
	}
	a := r.plan(lab.ID)
	if a.Kind != policy.Sync || a.To != labs.Deleted {
		t.Fatalf("want a sync to deleted, got %s %s", a.Kind, a.To)
	}
	if done, err := r.apply(a); !done || err != nil {
		t.Fatalf("apply: (%v, %v)", done, err)
	}
	if got := r.lab(lab.ID); got.Status != labs.Deleted || got.DeletedAt.IsZero() {
		t.Errorf("lab: %s deleted at %s", got.Status, got.DeletedAt)
	}
}
