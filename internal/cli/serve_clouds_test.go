package cli_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/cli"
	"github.com/labplane/labplane/internal/dev/heattest"
	"github.com/labplane/labplane/internal/dev/servetest"
)

// useCloudsYAML writes a clouds.yaml with an entry per fake cloud, named as in clouds, and
// points OS_CLIENT_CONFIG_FILE at it.
func useCloudsYAML(t *testing.T, clouds map[string]*heattest.Server) {
	t.Helper()
	all := map[string]any{}
	for name, srv := range clouds {
		raw, err := os.ReadFile(heattest.WriteCloudsYAML(t, name, srv.URL()+"/v3", heattest.Password))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Clouds map[string]any `yaml:"clouds"`
		}
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		all[name] = doc.Clouds[name]
	}
	out, err := yaml.Marshal(map[string]any{"clouds": all})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", p)
}

// longestRun is the cloud's reaper job whose run in progress has gone on longest, and for how
// long (from labplane_scheduler_job_running_seconds; "" and 0 if none is running).
func (d *daemon) longestRun(cloud string) (job string, running time.Duration) {
	for _, j := range reaperJobs {
		name := cli.JobName(j, cloud)
		secs := d.metric(fmt.Sprintf(`labplane_scheduler_job_running_seconds{job=%q}`, name))
		if r := time.Duration(secs * float64(time.Second)); r > running {
			job, running = name, r
		}
	}
	return job, running
}

// Two clouds under one `labplane serve`: cloud a hangs (every request, its lists and gets
// included, waits until released) with a pass of its reaper jobs caught in the hang, and cloud
// b's idle lab is still suspended by the scheduler in the time an idle lab takes, far within
// the bounds that would end a's pass (the request, list and pass timeouts, 2 minutes each);
// when it is, a's pass is still the one hanging, and a's idle lab untouched. /readyz names
// cloud a (and not b); released, a catches up and serve stops cleanly.
func TestServeCloudHangingDoesNotHoldOtherClouds(t *testing.T) {
	heatA, heatB := newFaultHeat(t), newFaultHeat(t)
	useCloudsYAML(t, map[string]*heattest.Server{"a": heatA, "b": heatB})
	addr := servetest.FreeAddr(t)
	const (
		idle = 3 * time.Second
		// what would end a's hung pass: every one far beyond the wait for b's suspend
		aBound = 2 * time.Minute
		// b's idle lab must be suspended within this of its last heartbeat: idle, a tick of
		// suspend-idle and the suspend take a few seconds; generous for a loaded machine
		bSuspendBound = 30 * time.Second
	)
	s := newSite(t, fmt.Sprintf(`site: serve-clouds
store: {dsn: labplane.db}
clouds:
  - {name: a, cloud: a, capacity: 1, request_timeout: %[1]s}
  - {name: b, cloud: b, capacity: 1, request_timeout: %[1]s}
templates: {lab: lab.yaml}
policy: {idle_suspend_after: %[2]s}
scheduler: {suspend_every: 1s, reap_every: 1s, reconcile_every: 1s, launch_timeouts_every: 1s, pass_timeout: %[1]s}
serve: {listen: %[3]s, shutdown_grace: 2s}
`, aBound, idle, addr))
	if err := os.WriteFile(filepath.Join(s.dir, "lab.yaml"), []byte(faultTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, s, addr)
	// Runs before the daemon's stop, pass or fail: a's hung requests go on, and serve need not
	// wait out its shutdown_grace for them.
	t.Cleanup(func() { heatA.SetMode(heattest.Normal) })

	// One lab on each cloud (capacity 1 each), kept busy by heartbeats until a hangs: neither
	// can go idle before that, however slow the machine.
	onCloud := map[string]string{}
	var hbs []*heartbeater
	for _, learner := range []string{"ann", "bob"} {
		id := d.launch(learner, "os101")
		hbs = append(hbs, startHeartbeats(d, id, 200*time.Millisecond))
		cloud, _ := d.lab(id)["cloud"].(string) // placed when the launch is accepted
		onCloud[cloud] = id
	}
	labA, labB := onCloud["a"], onCloud["b"]
	if labA == "" || labB == "" {
		t.Fatalf("the labs are not one on each cloud: %v", onCloud)
	}
	for _, id := range []string{labA, labB} {
		d.waitFor("lab "+id+" to be active", 20*time.Second, func() bool { return d.status(id) == "active" })
	}
	if code, checks := d.readiness(); code != http.StatusOK {
		t.Fatalf("/readyz before a hangs: %d %v", code, checks)
	}

	// --- a hangs; wait for a pass of one of its jobs to be caught in the hang.
	heatA.SetMode(heattest.Hanging)
	var hungJob string
	d.waitFor("a pass of a reaper job on cloud a to hang", 20*time.Second, func() bool {
		_, hanging, _ := heatA.State()
		job, running := d.longestRun("a")
		hungJob = job
		return hanging > 0 && running > 0
	})
	hungAt := time.Now() // a's pass began before this, and is still going
	suspendsB := d.metric(fmt.Sprintf(`labplane_scheduler_job_runs_total{job=%q,result="done"}`, cli.JobName("suspend-idle", "b")))
	// The learners leave: both labs go idle from their last heartbeat.
	for _, hb := range hbs {
		hb.end()
	}
	quiet := time.Now()
	for _, id := range []string{labA, labB} {
		if st := d.status(id); st != "active" {
			t.Fatalf("lab %s is %s before it could go idle, want active", id, st)
		}
	}
	t.Logf("cloud a hanging: %s caught in the hang", hungJob)

	// /readyz, while a hangs, in the background: its check of a waits out /readyz's own 5 s.
	type readiness struct {
		code   int
		checks map[string]string
	}
	ready := make(chan readiness, 1)
	go func() {
		code, checks := d.readiness()
		ready <- readiness{code, checks}
	}()

	// --- b's idle lab is suspended by the scheduler, with a's pass still hung.
	took := d.waitFor("the scheduler to suspend cloud b's idle lab while cloud a hangs", bSuspendBound,
		func() bool { return d.status(labB) == "suspended" })
	sinceHung := time.Since(hungAt)
	mode, hanging, _ := heatA.State()
	job, running := d.longestRun("a")
	t.Logf("cloud b's idle lab suspended %s after the heartbeats stopped (idle_suspend_after %s; a's timeouts %s); "+
		"cloud a: %s, %d requests hanging, %s running for %s", took.Round(time.Millisecond), idle, aBound,
		mode, hanging, job, running.Round(time.Millisecond))
	if mode != heattest.Hanging || hanging == 0 {
		t.Errorf("cloud a when b's lab was suspended: %s with %d requests hanging, want hanging", mode, hanging)
	}
	if running < sinceHung {
		t.Errorf("cloud a's pass caught in the hang (%s) is over when b's lab was suspended: %s longest running for %s, "+
			"the hang began over %s ago", hungJob, job, running, sinceHung)
	}
	if st := d.status(labA); st != "active" {
		t.Errorf("cloud a's lab is %s while a hangs, want active (untouched)", st)
	}
	if n := d.metric(fmt.Sprintf(`labplane_scheduler_job_runs_total{job=%q,result="done"}`, cli.JobName("suspend-idle", "b"))); n <= suspendsB {
		t.Errorf("suspend-idle:b recorded no run done while a hung (%v before, %v after)", suspendsB, n)
	}
	// the metric an alert watches: b listed since a hung, a not
	listedA := d.metric(`labplane_cloud_listed_timestamp_seconds{cloud="a"}`)
	listedB := d.metric(`labplane_cloud_listed_timestamp_seconds{cloud="b"}`)
	if listedA > float64(hungAt.Unix()) || listedB < float64(hungAt.Unix()) {
		t.Errorf("labplane_cloud_listed_timestamp_seconds: a %v, b %v; a hung at %d: want b listed since, a not", listedA, listedB, hungAt.Unix())
	}
	// b's suspend-idle runs meter its lab hours: running, and used while the heartbeats came
	for _, state := range []string{"running", "used"} {
		if h := d.metric(`labplane_lab_hours_total{cloud="b",course="os101",state="` + state + `"}`); h <= 0 {
			t.Errorf("labplane_lab_hours_total of b's lab, %s: %v, want some", state, h)
		}
	}
	if elapsed := time.Since(quiet); elapsed >= aBound/2 {
		t.Errorf("b's lab was suspended %s after it went idle: not well within a's bounds (%s)", elapsed, aBound)
	}

	r := <-ready
	t.Logf("/readyz while a hangs: %d %v", r.code, r.checks)
	if r.code != http.StatusServiceUnavailable || r.checks["cloud a"] != "failed" || r.checks["cloud b"] != "ok" || r.checks["store"] != "ok" {
		t.Errorf("/readyz while a hangs: %d %v; want 503 naming cloud a, cloud b and the store ok", r.code, r.checks)
	}

	// --- a is released: its hung pass goes on, and its idle lab is suspended in turn.
	heatA.SetMode(heattest.Normal)
	caught := d.waitFor("the scheduler to suspend cloud a's idle lab once a is released", 30*time.Second,
		func() bool { return d.status(labA) == "suspended" })
	t.Logf("cloud a released: its idle lab suspended %s later", caught.Round(time.Millisecond))

	stopped, err := d.stop(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("serve stopped in %s", stopped.Round(time.Millisecond))
	if d.code != 0 {
		t.Errorf("serve exited %d; log:\n%s", d.code, d.logs)
	}
}
