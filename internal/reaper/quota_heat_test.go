package reaper_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
)

// A create that Heat refuses because the project holds max_stacks_per_tenant stacks places the
// lab on the next cloud: local-quota (Heat's max_stacks_per_tenant is localcloud.QuotaStacks for
// its learner project), filled to its limit here, then local-a. Heat refuses it before any stack
// exists (HTTP 400 RequestLimitExceeded, cloud.ErrInvalid): the trail names the refusal with
// Heat's message and request id, and local-quota keeps nothing of the lab.
func TestHeatQuotaRefusalFailsOver(t *testing.T) {
	t.Parallel()
	rules := policy.Rules{IdleSuspendAfter: time.Hour, LaunchTimeout: 10 * time.Minute, StuckAfter: 10 * time.Minute,
		OrphanGrace: time.Hour, MaxAttempts: 3, RetryBackoff: time.Minute}
	r := newHeatRig(t, policy.Set{Default: rules}, target{name: "local-quota"}, target{name: "local-a"})
	ctx := context.Background()
	quota := fmt.Sprintf("maximum stacks per tenant, %d.", localcloud.QuotaStacks)

	// fill the project to its limit with stacks of no resources (the rig's cleanup deletes
	// them by their tag): create until Heat refuses, as stacks a run before this one failed to
	// delete count as well
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, []byte("heat_template_version: 2018-08-31\nresources: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	filled := 0
	for ; ; filled++ {
		if filled > localcloud.QuotaStacks {
			t.Fatalf("local-quota took %d stacks without a refusal: is its max_stacks_per_tenant %d? (an instance started before it was set: labplane dev cloud down --name local-quota)",
				filled, localcloud.QuotaStacks)
		}
		_, err := r.heat["local-quota"].Create(ctx, cloud.CreateRequest{Name: fmt.Sprintf("quota-fill-%d-%s", filled, r.course),
			TemplateFile: empty, Tags: []string{"untagged-by-labplane=" + r.course}, Timeout: time.Minute})
		var ce *cloud.Error
		if errors.As(err, &ce) && errors.Is(err, cloud.ErrInvalid) && ce.HTTPStatus == 400 && strings.Contains(ce.Message, quota) {
			break
		}
		if err != nil {
			t.Fatalf("fill local-quota: %v", err)
		}
	}
	t.Logf("local-quota full after %d stacks of this test", filled)

	lab := r.launch("quinn", "", "")
	got := r.lab(lab.ID)
	if got.Cloud != "local-a" || got.Status != labs.Active || got.StackStatus != "CREATE_COMPLETE" || got.StackID == "" {
		t.Fatalf("the lab after the refusal: %s %s %s %q, want active on local-a", got.Cloud, got.Status, got.StackStatus, got.StackID)
	}
	if s := r.status("local-a", asStack(got)); s != "CREATE_COMPLETE" {
		t.Errorf("the lab's stack on local-a: %s", s)
	}

	events, err := r.store.Events(ctx, lab.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, ev := range events {
		trail = append(trail, ev.Action+"@"+ev.Cloud)
	}
	if want := "launch@local-quota launch-attempt-failed@local-quota failover@local-a stack-accepted@local-a launched@local-a"; strings.Join(trail, " ") != want {
		t.Fatalf("trail:\n got %s\nwant %s", strings.Join(trail, " "), want)
	}
	refused := events[1]
	t.Logf("the refusal in the trail: %s (request id %s)", refused.Error, refused.RequestID)
	if !strings.Contains(refused.Error, "HTTP 400") || !strings.Contains(refused.Error, quota) ||
		!strings.HasPrefix(refused.RequestID, "req-") || !strings.Contains(refused.Error, refused.RequestID) ||
		refused.StackID != "" || refused.Detail != "" {
		t.Errorf("launch-attempt-failed event: %+v", refused)
	}
	if !strings.Contains(events[2].Detail, "launch failed on local-quota") {
		t.Errorf("failover event: %+v", events[2])
	}

	// nothing of the lab on local-quota: no stack (by its tag, by its name), no slot held
	if left, err := r.heat["local-quota"].List(ctx, "labplane-lab="+lab.ID); err != nil || len(left) != 0 {
		t.Errorf("local-quota holds the lab's stacks %+v (%v)", left, err)
	}
	if s := r.status("local-quota", labs.Stack{Name: lab.StackName}); s != "GONE" {
		t.Errorf("local-quota has a stack named %s: %s", lab.StackName, s)
	}
	for i := range 6 { // the rig's max_in_flight
		if op, ok, err := r.store.Operation(ctx, "local-quota", i); err != nil || ok {
			t.Errorf("local-quota's slot %d: %+v %v (%v), want free", i, op, ok, err)
		}
	}
}
