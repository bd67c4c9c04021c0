package cli_test

// The worst interleavings the simulation (internal/dev/interleave) found, pinned against the real
// local Heat, through `labplane serve`'s API as the LMS uses it and the CLI as cron and an
// operator do (issue 13). Each checks the cloud's own state as well as labplane's.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
	"github.com/gophercloud/utils/v2/openstack/clientconfig"
	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/dev/pgtest"
	"github.com/labplane/labplane/internal/dev/servetest"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

// slowCreateTemplate is faultTemplate whose create takes half a minute on Heat: long enough
// to act on the lab while its stack is CREATE_IN_PROGRESS.
var slowCreateTemplate = strings.Replace(faultTemplate, "    type: OS::Heat::TestResource\n",
	"    type: OS::Heat::TestResource\n    properties:\n      action_wait_secs: {create: 30}\n", 1)

// newInterleavingSite is a site whose lab.yaml is the quick faultTemplate, with slow.yaml
// beside it (slowCreateTemplate).
func newInterleavingSite(t *testing.T, config string) *site {
	t.Helper()
	if slowCreateTemplate == faultTemplate {
		t.Fatal("slowCreateTemplate: faultTemplate no longer has the resource it slows down")
	}
	s := newSite(t, config)
	for file, text := range map[string]string{"lab.yaml": faultTemplate, "slow.yaml": slowCreateTemplate} {
		if err := os.WriteFile(filepath.Join(s.dir, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// blockingHook is a hook command that records each run (the lab's id, one line per run in a
// file), then blocks until the test releases it; later runs pass straight through.
type blockingHook struct {
	t                  *testing.T
	command            string
	runsFile, released string
}

func newBlockingHook(t *testing.T) *blockingHook {
	dir := t.TempDir()
	h := &blockingHook{t: t, runsFile: filepath.Join(dir, "runs"), released: filepath.Join(dir, "released")}
	h.command = fmt.Sprintf(`echo "$LABPLANE_LAB_ID" >> %s && while [ ! -e %s ]; do sleep 0.1; done`, h.runsFile, h.released)
	return h
}

// runs is how many times the hook has started.
func (h *blockingHook) runs() int {
	raw, err := os.ReadFile(h.runsFile)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return strings.Count(string(raw), "\n")
}

func (h *blockingHook) release() {
	if err := os.WriteFile(h.released, nil, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// heatProject reads a clouds.yaml entry's project on the local Heat directly, as labplane's
// Heat client and as gophercloud's orchestration client (for Heat's own events).
func heatProject(t *testing.T, entry string) (*heat.Heat, *gophercloud.ServiceClient) {
	t.Helper()
	h, err := heat.Open(t.Context(), heat.Options{Name: entry, Cloud: entry, ConfigFile: os.Getenv("OS_CLIENT_CONFIG_FILE")})
	if err != nil {
		t.Fatalf("open %s: %v", entry, err)
	}
	sc, err := clientconfig.NewServiceClient(t.Context(), "orchestration", &clientconfig.ClientOpts{Cloud: entry})
	if err != nil {
		t.Fatalf("open %s's orchestration API: %v", entry, err)
	}
	return h, sc
}

// secondProject makes a project of its own on local-a's Keystone, with a member user, and
// points OS_CLIENT_CONFIG_FILE at a clouds.yaml with an entry for it, which it returns: to
// labplane a second cloud (its own stacks, its own list), without a second Keystone + Heat on
// the machine. (local-a-admin would not do: Heat lists every project's stacks to an admin.)
// The user and the project are deleted at the test's end, after what later cleanups delete.
func secondProject(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	identity, err := clientconfig.NewServiceClient(ctx, "identity", &clientconfig.ClientOpts{Cloud: "local-a-admin"})
	if err != nil {
		t.Fatalf("open local-a's identity API as its admin: %v", err)
	}
	// Keystone (uWSGI) drops idle connections: a POST on a reused one fails with a reset
	identity.HTTPClient = http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	name := fmt.Sprintf("pin-%d", time.Now().UnixNano()%1e9)
	password := rand.Text()
	project, err := projects.Create(ctx, identity, projects.CreateOpts{Name: name, DomainID: "default"}).Extract()
	if err != nil {
		t.Fatalf("create project %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := projects.Delete(context.Background(), identity, project.ID).ExtractErr(); err != nil {
			t.Errorf("delete project %s: %v", name, err)
		}
	})
	user, err := users.Create(ctx, identity, users.CreateOpts{Name: name, DomainID: "default", DefaultProjectID: project.ID, Password: password}).Extract()
	if err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := users.Delete(context.Background(), identity, user.ID).ExtractErr(); err != nil {
			t.Errorf("delete user %s: %v", name, err)
		}
	})
	pages, err := roles.List(identity, roles.ListOpts{Name: "member"}).AllPages(ctx)
	if err != nil {
		t.Fatalf("find the member role: %v", err)
	}
	member, err := roles.ExtractRoles(pages)
	if err != nil || len(member) != 1 {
		t.Fatalf("find the member role: %v %v", err, member)
	}
	if err := roles.Assign(ctx, identity, member[0].ID, roles.AssignOpts{UserID: user.ID, ProjectID: project.ID}).ExtractErr(); err != nil {
		t.Fatalf("make %s a member of its project: %v", name, err)
	}

	raw, err := os.ReadFile(lease.CloudsYAML())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Clouds map[string]map[string]any `yaml:"clouds"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	entry := maps.Clone(doc.Clouds["local-a"])
	auth, _ := entry["auth"].(map[string]any)
	auth = maps.Clone(auth)
	auth["username"], auth["password"], auth["project_name"] = name, password, name
	entry["auth"] = auth
	doc.Clouds[name] = entry
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	clouds := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(clouds, out, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", clouds)
	return name
}

// liveStacks lists the site's stacks Heat has not deleted, by lab id (from their tags).
func liveStacks(t *testing.T, h *heat.Heat, site string) map[string][]labs.Stack {
	t.Helper()
	list, err := h.List(t.Context(), labs.SiteTag(site))
	if err != nil {
		t.Fatalf("list %s's stacks on Heat: %v", site, err)
	}
	out := map[string][]labs.Stack{}
	for _, st := range list {
		if !st.Gone() {
			out[st.LabID()] = append(out[st.LabID()], st)
		}
	}
	return out
}

// trailOf is a lab's audit trail.
func trailOf(t *testing.T, st *store.Store, id string) []labs.Event {
	t.Helper()
	evs, err := st.Events(t.Context(), id, 0)
	if err != nil {
		t.Fatalf("read the audit trail of %s: %v", id, err)
	}
	return evs
}

// countEvents counts a trail's events of an action, failed or not.
func countEvents(evs []labs.Event, action string) int {
	n := 0
	for _, ev := range evs {
		if ev.Action == action {
			n++
		}
	}
	return n
}

// serveLabWithBlockingHook starts serve on the local Heat with a blockingHook as its
// before_suspend hook, a short idle_suspend_after and a scheduler that comes by every second,
// and launches a lab through the API: it returns once the lab is active (and goes idle: the
// test sends no heartbeat). The hook is released before serve stops, the lab deleted after.
func serveLabWithBlockingHook(t *testing.T, name string) (*site, *store.Store, *daemon, *blockingHook, string) {
	t.Helper()
	if lease == nil {
		t.Skip("needs the local cloud (not with -short)")
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", lease.CloudsYAML())
	hook := newBlockingHook(t)
	addr := servetest.FreeAddr(t)
	site := fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1e6)
	s := newInterleavingSite(t, fmt.Sprintf(`site: %s
store: {dsn: labplane.db}
clouds: [{name: local-a, cloud: local-a}]
templates: {lab: lab.yaml}
policy: {idle_suspend_after: 5s}
hooks: {before_suspend: %q, timeout: 5m}
scheduler: {suspend_every: 1s, launch_timeouts_every: 5s, reconcile_every: 5s, reap_every: 10s}
serve: {listen: %s, shutdown_grace: 5s}
`, site, hook.command, addr))
	st := s.open()
	var ids []string
	t.Cleanup(func() { cleanupReplicaLabs(t, st, s.config, ids) }) // after serve stops
	d := startDaemon(t, s, addr)
	t.Cleanup(hook.release) // before serve stops: a failed test leaves no hook blocking it

	id := d.launch("ann", site)
	ids = append(ids, id)
	d.waitFor("the lab to be active", time.Minute, func() bool { return d.status(id) == "active" })
	return s, st, d, hook, id
}

// #2: the learner comes back while a suspend's before_suspend hook runs. The scheduler claims
// the idle lab's suspend and starts the hook; the LMS sends a heartbeat (and keeps sending
// them); the hook ends: the suspend is cancelled before it is sent, the lab is active, and
// Heat never suspended the stack.
func TestInterleavingLearnerBackDuringSuspendHook(t *testing.T) {
	_, st, d, hook, id := serveLabWithBlockingHook(t, "pin-back")
	// no heartbeat: the lab goes idle, and the scheduler claims its suspend
	d.waitFor("the scheduler to claim the idle lab's suspend and start its hook", time.Minute, func() bool { return hook.runs() > 0 })
	if got := d.status(id); got != "suspending" {
		t.Fatalf("while before_suspend runs the lab is %q, want suspending (claimed)", got)
	}
	// the learner is back: the LMS's heartbeat is answered at once, the hook still running
	if code, body := d.call("POST", "/v1/labs/"+id+"/heartbeat", ""); code != http.StatusOK {
		t.Fatalf("heartbeat during the hook: %d %v", code, body)
	}
	beats := startHeartbeats(d, id, time.Second) // and she keeps working
	hook.release()
	d.waitFor("the suspend to be cancelled", 30*time.Second, func() bool {
		return countEvents(trailOf(t, st, id), "suspend-cancelled") == 1 && d.status(id) == "active"
	})

	lab, err := st.GetLab(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	h, orchestration := heatProject(t, "local-a")
	stack, err := h.Get(t.Context(), lab.StackName, lab.StackID)
	if err != nil || stack.Status != "CREATE_COMPLETE" {
		t.Errorf("Heat: stack %s of the lab whose learner came back: %v %q, want CREATE_COMPLETE", lab.StackName, err, stack.Status)
	}
	if n, err := heatSuspends(t.Context(), orchestration, lab.StackName, lab.StackID); err != nil || n != 0 {
		t.Errorf("Heat: stack %s was suspended %d times (want none): %v", lab.StackName, n, err)
	}
	evs := trailOf(t, st, id)
	if countEvents(evs, "suspend-claimed") != 1 || countEvents(evs, "suspend-sent") != 0 || countEvents(evs, "suspend") != 0 {
		t.Errorf("want one suspend claimed, then cancelled, never sent; the audit trail:\n%s", formatTrail(evs))
	}
	if n := hook.runs(); n != 1 {
		t.Errorf("before_suspend ran %d times, want once", n)
	}
	if p := beats.phase(""); p.failure != "" {
		t.Errorf("the learner's heartbeats after her return: %s", p.failure)
	}
	t.Logf("the lab's audit trail:\n%s", formatTrail(evs))
}

// #3: the LMS deletes a lab while its stack is still CREATE_IN_PROGRESS on Heat. The delete is
// claimed at once (202, deleting); the launch stops: its stack is deleted on Heat, and no
// other cloud is tried (the configuration has a second one, with room). Two labs: one
// deleted as soon as Heat shows its stack (its id may not be recorded yet: then the delete has
// nothing to send and the launch deletes the stack), one once its id is recorded (the delete
// deletes the stack Heat is still creating).
func TestInterleavingDeleteDuringLaunch(t *testing.T) {
	if lease == nil {
		t.Skip("needs the local cloud (not with -short)")
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", lease.CloudsYAML())
	second := secondProject(t)
	addr := servetest.FreeAddr(t)
	site := fmt.Sprintf("pin-delete-%d", time.Now().UnixNano()%1e6)
	s := newInterleavingSite(t, fmt.Sprintf(`site: %s
store: {dsn: labplane.db}
clouds: [{name: local-a, cloud: local-a}, {name: second, cloud: %s}]
templates: {lab: lab.yaml, slow: slow.yaml}
default_template: lab
scheduler: {suspend_every: 1s, launch_timeouts_every: 5s, reconcile_every: 5s, reap_every: 10s}
serve: {listen: %s, shutdown_grace: 5s}
`, site, second, addr))
	st := s.open()
	var ids []string
	t.Cleanup(func() { cleanupReplicaLabs(t, st, s.config, ids) })
	d := startDaemon(t, s, addr)
	a, _ := heatProject(t, "local-a")
	b, _ := heatProject(t, second)

	for _, c := range []struct {
		learner, when string
		ready         func(id string) bool
	}{
		{"ann", "as soon as Heat shows its stack", func(string) bool { return true }},
		{"bob", "once its stack id is recorded", func(id string) bool { return countEvents(trailOf(t, st, id), "stack-accepted") == 1 }},
	} {
		code, lab := d.call("POST", "/v1/labs", fmt.Sprintf(`{"learner":%q,"course":%q,"template":"slow"}`, c.learner, site))
		id, _ := lab["id"].(string)
		if code != http.StatusAccepted || id == "" {
			t.Fatalf("launch: %d %v", code, lab)
		}
		ids = append(ids, id)
		var created labs.Stack
		d.waitFor("Heat to be creating the stack of the lab to delete "+c.when, time.Minute, func() bool {
			var err error
			created, err = a.Get(t.Context(), "lab-"+id, "")
			return err == nil && created.Status == "CREATE_IN_PROGRESS" && c.ready(id)
		})
		code, lab = d.call("DELETE", "/v1/labs/"+id, "")
		if code != http.StatusAccepted || lab["status"] != "deleting" {
			t.Fatalf("DELETE during the launch: %d %v, want 202 and the lab deleting", code, lab)
		}
		var evs []labs.Event
		defer func() {
			if t.Failed() {
				t.Logf("lab %s, deleted %s: its audit trail:\n%s", id, c.when, formatTrail(evs))
			}
		}()
		d.waitFor("the lab to be deleted and its launch to end", 2*time.Minute, func() bool {
			evs = trailOf(t, st, id)
			ended := 0
			for _, how := range []string{"launch-stopped", "launched", "launch-failed", "launch-handed-over"} {
				ended += countEvents(evs, how)
			}
			return d.status(id) == "deleted" && ended > 0
		})
		if gone, err := a.Get(t.Context(), created.Name, created.ID); !(err == nil && gone.Gone()) && !errors.Is(err, cloud.ErrNotFound) {
			t.Errorf("Heat: the launch's stack %s (%s) after the delete: %v %q, want DELETE_COMPLETE or gone", created.Name, created.ID, err, gone.Status)
		}
		for name, h := range map[string]*heat.Heat{"local-a": a, "second": b} {
			if left := liveStacks(t, h, site)[id]; len(left) != 0 {
				t.Errorf("Heat: %s still has stacks of the deleted lab: %+v", name, left)
			}
		}
		if countEvents(evs, "launch-stopped") != 1 || countEvents(evs, "failover") != 0 || countEvents(evs, "launched") != 0 {
			t.Errorf("want the deleted lab's launch stopped, not failed over or launched; the audit trail:\n%s", formatTrail(evs))
		}
		for _, ev := range evs {
			if ev.Cloud != "" && ev.Cloud != "local-a" {
				t.Errorf("an event of the lab on %s: %+v", ev.Cloud, ev)
			}
			if ev.Action == "launch-stopped" && ev.Error != "" {
				t.Errorf("the stopped launch failed to delete its stack: %s", ev.Error)
			}
		}
		if !t.Failed() {
			t.Logf("deleted %s: the lab's audit trail:\n%s", c.when, formatTrail(evs))
		}
	}
}

// #5: cron's `labplane reap --once` beside serve's jobs. serve's suspend-idle pass claims an
// idle lab and its before_suspend hook blocks: a reap meanwhile waits for the reaper's lock
// (with a short --wait it gives up, having done nothing); a reap started before the hook ends
// runs once serve's pass is over, finds the lab suspended and does nothing to it. The hook
// ran once, Heat suspended the stack once.
func TestInterleavingCronReapBesideServe(t *testing.T) {
	s, st, d, hook, id := serveLabWithBlockingHook(t, "pin-cron")
	d.waitFor("serve's pass to claim the idle lab's suspend and start its hook", time.Minute, func() bool { return hook.runs() > 0 })

	// serve's pass holds the reaper's lock while its hook runs: cron's reap cannot plan
	res := s.run("reap", "--once", "--yes", "--wait", "2s")
	if res.code != 1 || !strings.Contains(res.err, "holds the lock") || strings.Contains(res.out, "reap at") {
		t.Fatalf("reap beside serve's running pass, --wait 2s: want exit 1 naming the lock's holder and no pass, got %s", res)
	}
	if n, status := hook.runs(), d.status(id); n != 1 || status != "suspending" {
		t.Fatalf("after the reap that gave up: the hook ran %d times, the lab is %s; want once, suspending", n, status)
	}
	cron := make(chan result, 1)
	go func() { cron <- s.run("reap", "--once", "--yes", "--wait", "2m") }()
	hook.release()
	select {
	case res = <-cron:
	case <-time.After(3 * time.Minute):
		t.Fatal("cron's reap did not end within 3 minutes of the hook's release")
	}
	if res.code != 0 || !strings.Contains(res.out, "0 actions done, 0 failed") {
		t.Errorf("cron's reap after serve's pass: want exit 0 and nothing to do, got %s", res)
	}
	// its pass ran after serve's, which held the lock until the suspend was recorded
	if got := d.status(id); got != "suspended" {
		t.Errorf("once cron's reap had its pass, the lab is %s, want suspended", got)
	}

	lab, err := st.GetLab(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	h, orchestration := heatProject(t, "local-a")
	if stack, err := h.Get(t.Context(), lab.StackName, lab.StackID); err != nil || stack.Status != "SUSPEND_COMPLETE" {
		t.Errorf("Heat: stack %s: %v %q, want SUSPEND_COMPLETE", lab.StackName, err, stack.Status)
	}
	if n, err := heatSuspends(t.Context(), orchestration, lab.StackName, lab.StackID); err != nil || n != 1 {
		t.Errorf("Heat: stack %s was suspended %d times (want once): %v", lab.StackName, n, err)
	}
	evs := trailOf(t, st, id)
	if countEvents(evs, "suspend-claimed") != 1 || countSucceeded(evs, "suspend") != 1 {
		t.Errorf("want one suspend claimed and done; the audit trail:\n%s", formatTrail(evs))
	}
	for _, ev := range evs {
		if ev.Actor == "reaper" {
			t.Errorf("cron's reap acted on the lab: %+v", ev)
		}
	}
	if n := hook.runs(); n != 1 {
		t.Errorf("before_suspend ran %d times, want once", n)
	}
	t.Logf("cron's reap:\n%s\nthe lab's audit trail:\n%s", res.out, formatTrail(evs))
}

// #7: capacity across replicas. Two `labplane serve` replicas share a PostgreSQL registry;
// local-a has capacity 1, a second cloud no limit. Four learners launch at once, two through
// each replica: exactly one lab lives on local-a (in the registry and on Heat), the others on
// the second cloud, placed there from the start (no failover).
func TestInterleavingCapacityAcrossReplicas(t *testing.T) {
	if lease == nil {
		t.Skip("needs the local cloud (not with -short)")
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", lease.CloudsYAML())
	second := secondProject(t)
	pg := pgtest.StartFor(t)
	dsn := pg.Database(t)
	addr1, addr2 := servetest.FreeAddr(t), servetest.FreeAddr(t)
	site := fmt.Sprintf("pin-capacity-%d", time.Now().UnixNano()%1e6)
	s := newInterleavingSite(t, fmt.Sprintf(`site: %s
store: {driver: postgres, dsn: '%s'}
clouds: [{name: local-a, cloud: local-a, capacity: 1}, {name: second, cloud: %s}]
templates: {lab: lab.yaml}
policy: {idle_suspend_after: 10m}
scheduler: {suspend_every: 1s, launch_timeouts_every: 5s, reconcile_every: 5s, reap_every: 10s}
serve: {listen: %s, shutdown_grace: 5s}
`, site, dsn, second, addr1))
	st, err := store.Open(context.Background(), store.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var ids []string
	t.Cleanup(func() { cleanupReplicaLabs(t, st, s.config, ids) })
	d1 := startDaemon(t, s, addr1)
	d2 := d1.replica(s, addr2)

	type launch struct {
		via  string
		code int
		lab  map[string]any
	}
	const perReplica = 2
	launches := make(chan launch, 2*perReplica)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range []*daemon{d1, d2} {
		for j := range perReplica {
			wg.Go(func() {
				<-start
				code, lab := d.call("POST", "/v1/labs", fmt.Sprintf(`{"learner":"learner-%d-%d","course":%q}`, i+1, j+1, site))
				launches <- launch{via: d.base, code: code, lab: lab}
			})
		}
	}
	close(start)
	wg.Wait()
	close(launches)
	for l := range launches {
		id, _ := l.lab["id"].(string)
		if l.code != http.StatusAccepted || id == "" {
			t.Fatalf("launch through %s: %d %v", l.via, l.code, l.lab)
		}
		ids = append(ids, id)
	}
	d1.waitFor("every lab to be active", 2*time.Minute, func() bool {
		for _, id := range ids {
			if d2.status(id) != "active" {
				return false
			}
		}
		return true
	})

	onA := map[string]bool{}
	for _, id := range ids {
		if lab := d1.lab(id); lab["cloud"] == "local-a" {
			onA[id] = true
		}
	}
	if len(onA) != 1 {
		t.Errorf("the registry has %d labs on local-a (capacity 1): %v", len(onA), sortedKeys(onA))
	}
	a, _ := heatProject(t, "local-a")
	b, _ := heatProject(t, second)
	stacksA, stacksB := liveStacks(t, a, site), liveStacks(t, b, site)
	if len(stacksA) != 1 {
		t.Errorf("Heat: local-a has stacks of %d labs (capacity 1): %v", len(stacksA), stacksA)
	}
	for _, id := range ids {
		want, other := stacksB, stacksA
		if onA[id] {
			want, other = stacksA, stacksB
		}
		if len(want[id]) != 1 || len(other[id]) != 0 {
			t.Errorf("Heat: lab %s (on local-a: %v) has %d stacks where the registry puts it, %d on the other cloud",
				id, onA[id], len(want[id]), len(other[id]))
		}
		if evs := trailOf(t, st, id); countEvents(evs, "failover") != 0 {
			t.Errorf("lab %s failed over: placed where there was no room; its audit trail:\n%s", id, formatTrail(evs))
		}
	}
	t.Logf("on local-a: %v; on %s: the other %d", sortedKeys(onA), second, len(ids)-len(onA))
}
