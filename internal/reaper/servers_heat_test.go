package reaper_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/dev/localcloud/localcloudtest"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
)

// nova is the compute API of local-servers as its learner sees it: the truth about the servers
// behind a lab's stack, checked apart from what Heat says.
type nova struct {
	t  testing.TB
	sc *gophercloud.ServiceClient
}

func openNova(t testing.TB, entry string) *nova {
	t.Helper()
	return &nova{t: t, sc: localcloudtest.Nova(t, entry)}
}

// servers are the ids of a lab's servers (servers.yaml's output "servers", a JSON list).
func (n *nova) servers(lab labs.Lab) []string {
	n.t.Helper()
	var ids []string
	if err := json.Unmarshal([]byte(lab.Outputs["servers"]), &ids); err != nil || len(ids) != 2 {
		n.t.Fatalf("lab %s: output servers %q: want two server ids (%v)", lab.ID, lab.Outputs["servers"], err)
	}
	return ids
}

// status is Nova's status of a server ("GONE" when Nova does not know it).
func (n *nova) status(id string) string {
	n.t.Helper()
	s, err := servers.Get(context.Background(), n.sc, id).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return "GONE"
	}
	if err != nil {
		n.t.Fatalf("nova: server %s: %v", id, err)
	}
	return s.Status
}

// statuses is Nova's status of each server of a lab.
func (n *nova) statuses(lab labs.Lab) []string {
	var out []string
	for _, id := range n.servers(lab) {
		out = append(out, n.status(id))
	}
	return out
}

// remove deletes a server behind Heat's back and waits until Nova no longer has it.
func (n *nova) remove(id string) {
	n.t.Helper()
	if err := servers.Delete(context.Background(), n.sc, id).ExtractErr(); err != nil {
		n.t.Fatalf("nova: delete server %s: %v", id, err)
	}
	for deadline := time.Now().Add(2 * time.Minute); n.status(id) != "GONE"; {
		if time.Now().After(deadline) {
			n.t.Fatalf("nova: server %s still there 2 minutes after its delete", id)
		}
		time.Sleep(200 * time.Millisecond) // Nova has no way to wait on a delete
	}
}

func equalAll(got []string, want string) bool {
	for _, s := range got {
		if s != want {
			return false
		}
	}
	return len(got) > 0
}

// Labs of real servers (examples/templates/servers.yaml on local-servers: Nova with the fake
// driver), with Nova's own view of the servers checked: an idle lab suspended by the reaper
// (its servers SUSPENDED), then resumed (ACTIVE); a lab one of whose servers was deleted behind
// Heat's back, whose suspend fails (SUSPEND_FAILED), is retried after the backoff and then
// flagged for an operator; a suspended lab resumed after one of its servers was deleted by hand.
func TestHeatServers(t *testing.T) {
	t.Parallel()
	rules := policy.Rules{IdleSuspendAfter: time.Minute, DeleteAfter: 24 * time.Hour, LaunchTimeout: 10 * time.Minute,
		StuckAfter: 10 * time.Minute, OrphanGrace: time.Hour, MaxAttempts: 2, RetryBackoff: time.Minute}
	r := newHeatRig(t, policy.Set{Default: rules}, target{name: "local-servers"})
	n := openNova(t, "local-servers")
	ctx := context.Background()

	var idle, broken, gone labs.Lab
	var wg sync.WaitGroup
	wg.Go(func() { idle = r.launch("idle", "servers", "local-servers") })
	wg.Go(func() { broken = r.launch("broken", "servers", "local-servers") })
	wg.Go(func() { gone = r.launch("gone", "servers", "local-servers") })
	wg.Wait()
	for _, l := range []labs.Lab{idle, broken, gone} {
		if got := n.statuses(l); !equalAll(got, "ACTIVE") {
			t.Fatalf("lab %s after its launch: servers %v, want ACTIVE", l.ID, got)
		}
		if l.Outputs["guacamole_password"] == "" || l.Outputs["guacamole_host"] == "" || l.Outputs["guacamole_private_key"] == "" {
			t.Errorf("lab %s: Guacamole's connection details missing from the outputs %v", l.ID, l.Outputs.Redacted())
		}
	}
	// one of broken's servers deleted by hand: its stack cannot be suspended
	n.remove(n.servers(broken)[1])

	// pass 1: every lab idle. idle and gone are suspended, broken's suspend fails
	r.clock.Add(2 * time.Minute)
	res := r.pass()
	for _, l := range []labs.Lab{idle, gone} {
		if o, ok := outcome(res, l.ID); !ok || o.Action.Kind != policy.Suspend || !o.Done {
			t.Errorf("lab %s: want suspended, got %+v", l.ID, o)
		}
		got := r.lab(l.ID)
		if got.Status != labs.Suspended || r.status("local-servers", asStack(got)) != "SUSPEND_COMPLETE" {
			t.Errorf("lab %s: registry %s, heat %s", l.ID, got.Status, r.status("local-servers", asStack(got)))
		}
		if s := n.statuses(l); !equalAll(s, "SUSPENDED") {
			t.Errorf("lab %s suspended: nova says its servers are %v", l.ID, s)
		}
	}
	if o, ok := outcome(res, broken.ID); !ok || o.Action.Kind != policy.Suspend || o.Done || o.Error == "" {
		t.Errorf("broken: want a failed suspend, got %+v", o)
	}
	if st := r.status("local-servers", asStack(broken)); st != "SUSPEND_FAILED" {
		t.Errorf("broken: heat says %s, want SUSPEND_FAILED", st)
	}
	got := r.lab(broken.ID)
	if got.Attempts != 1 || got.LastError == "" || !got.NextAttemptAt.After(r.clock.Now()) {
		t.Errorf("broken after one failure: attempts %d, next attempt %s, error %q", got.Attempts, got.NextAttemptAt, got.LastError)
	}
	// half-suspended: the server left is as Heat's failed suspend left it
	t.Logf("broken after its failed suspend: servers %v; %s", n.statuses(broken), got.LastError)

	// within the backoff: held, not tried
	r.clock.Add(30 * time.Second)
	if res = r.pass(); !held(res, broken.ID, "backing off") {
		t.Errorf("broken within its backoff: want held, got held %+v, outcomes %+v", res.Plan.Held, res.Outcomes)
	}
	// after it: tried again, fails again, max_attempts reached: flagged for an operator
	r.clock.Add(time.Minute)
	res = r.pass()
	if o, ok := outcome(res, broken.ID); !ok || o.Action.Kind != policy.Suspend || o.Error == "" {
		t.Errorf("broken after its backoff: want a second failed suspend, got %+v", o)
	}
	if got := r.lab(broken.ID); got.Status != labs.NeedsOperator || got.Attempts != 2 {
		t.Errorf("broken after max_attempts: %s, attempts %d", got.Status, got.Attempts)
	}
	if res = r.pass(); !held(res, broken.ID, "needs an operator") {
		t.Errorf("broken flagged: want held for an operator, got %+v", res.Plan.Held)
	}

	// idle resumed: its servers ACTIVE again
	if _, err := r.mgr.Do(ctx, lifecycle.OpResume, idle.ID, "test", false); err != nil {
		t.Fatalf("resume idle: %v", err)
	}
	if got := r.lab(idle.ID); got.Status != labs.Active || r.status("local-servers", asStack(got)) != "RESUME_COMPLETE" {
		t.Errorf("idle resumed: registry %s, heat %s", got.Status, r.status("local-servers", asStack(got)))
	}
	if s := n.statuses(idle); !equalAll(s, "ACTIVE") {
		t.Errorf("idle resumed: nova says its servers are %v", s)
	}

	// gone resumed after one of its (suspended) servers was deleted by hand: Heat cannot
	// resume it; the failure is the lab's, recorded and counted against max_attempts
	n.remove(n.servers(gone)[0])
	_, err := r.mgr.Do(ctx, lifecycle.OpResume, gone.ID, "test", false)
	if !errors.Is(err, cloud.ErrFailed) {
		t.Errorf("resume of a lab with a server deleted: want ErrFailed, got %v", err)
	}
	if st := r.status("local-servers", asStack(gone)); st != "RESUME_FAILED" {
		t.Errorf("gone: heat says %s, want RESUME_FAILED", st)
	}
	got = r.lab(gone.ID)
	if got.Status != labs.Failed || got.Attempts != 1 || got.LastError == "" {
		t.Errorf("gone after its failed resume: %s, attempts %d, error %q", got.Status, got.Attempts, got.LastError)
	}
	t.Logf("gone after its failed resume: servers %v; %s", []string{"GONE", n.status(n.servers(gone)[1])}, got.LastError)
}
