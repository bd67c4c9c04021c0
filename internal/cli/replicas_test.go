package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stackevents"
	"github.com/gophercloud/utils/v2/openstack/clientconfig"

	"github.com/labplane/labplane/internal/dev/pgtest"
	"github.com/labplane/labplane/internal/dev/servetest"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

// The scheduler's settings of TestReplicasTakeOver, and the bound derived from them.
const (
	replicaIdleAfter    = 5 * time.Second
	replicaSuspendEvery = 2 * time.Second
	// replicaTakeoverBound is how long the surviving replicas may take, from the kill, to
	// bring every lab to rest. The killed replica's advisory lock ends with its connection at
	// once, so a survivor takes it at the next tick: at most suspend_every (2 s) away, or
	// 2 x 2 s when another job sharing the lock wins that tick (the reap job, every 3 s, also
	// suspends). The labs the killed replica had in flight then need only a sync once Heat
	// is done; those it had not reached need one Heat suspend (2 to 5 s each here, 4 in
	// flight, so one round). 4 s + 5 s + 5 s (observing, recording) is 14 s; 30 s leaves
	// room for a loaded 2-core machine. Measured: 3.7 to 7.4 s. Under the whole suite's load
	// Heat's suspends took 14 s once: the bound then grows with the Heat suspend time measured
	// in the run (takeoverBound).
	replicaTakeoverBound = 30 * time.Second
	replicaLabs          = 6
)

// takeoverBound is replicaTakeoverBound, or more when Heat is slow in this run: a survivor
// takes the jobs' lock within two suspend_every ticks, waits up to the 5 s a process leaves a
// slot still busy with the dead replica's suspend before asking Heat again, and needs at most
// two rounds of Heat suspends (of heatSuspend each, measured from the idle labs' first suspend,
// which includes a tick), then 5 s to observe and record.
func takeoverBound(heatSuspend time.Duration) time.Duration {
	return max(replicaTakeoverBound, 2*replicaSuspendEvery+5*time.Second+2*heatSuspend+5*time.Second)
}

// Three `labplane serve` replicas share one PostgreSQL registry. Every API request works on
// any of them (launch through the first, heartbeats through the second, reads through the
// third). The learners leave; the replica running the reaper's jobs is SIGKILLed as soon as
// it has recorded the first suspend of the round, with labs still to do. The others take
// over within a bound derived from the configuration, every lab ends suspended (in the
// registry and in Heat), and no lab is suspended twice: a suspend the dead replica had in
// flight is finished by Heat and recorded by a survivor as a sync.
func TestReplicasTakeOverWhenTheJobRunnerDies(t *testing.T) {
	if lease == nil {
		t.Skip("needs the local cloud (not with -short)")
	}
	clouds := lease.CloudsYAML()
	t.Setenv("OS_CLIENT_CONFIG_FILE", clouds) // for the in-process commands (token, cleanup)
	ctx := context.Background()

	// PostgreSQL, stopped last (cleanups run in reverse order), pass or fail.
	pg := pgtest.StartFor(t)
	_, dsn, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	root := moduleRoot(t)
	bin := buildReplicaBinary(t, root, dir)

	site := fmt.Sprintf("replicas-%d", time.Now().UnixNano()%1e6)
	tmpl, err := filepath.Abs(filepath.Join(root, "examples", "templates", "lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "labplane.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`site: %s
store:
  driver: postgres
  dsn: %q
clouds: [{name: local-a, cloud: local-a}]
templates: {lab: %q}
policy: {idle_suspend_after: %s}
scheduler: {suspend_every: %s, reap_every: 3s, reconcile_every: 5s, launch_timeouts_every: 5s}
`, site, dsn, tmpl, replicaIdleAfter, replicaSuspendEvery)), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCLI("", false, "--config", config, "token", "create", "--name", "lms")
	if res.code != 0 {
		t.Fatalf("token create: %s", res)
	}
	token := strings.TrimSpace(res.out)

	st, err := store.Open(ctx, store.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	// The labs are deleted after the replicas are stopped (registered before them), whatever
	// happened: the shared local cloud must not fill up. The success path deletes them
	// through the API first; this finishes whatever is left.
	var ids []string
	t.Cleanup(func() { cleanupReplicaLabs(t, st, config, ids) })

	c := &replicaSet{t: t, token: token, client: &http.Client{Timeout: 15 * time.Second}}
	for i := 1; i <= 3; i++ {
		c.start(bin, config, clouds, dir, i)
	}
	for _, r := range c.replicas {
		c.waitFor(r.name+" to answer /healthz", time.Minute, 100*time.Millisecond, func() bool {
			if r.dead() {
				c.fatalf("%s exited before serving: %v", r.name, r.waitErr)
			}
			code, _ := c.call(r, "GET", "/healthz", "")
			return code == http.StatusOK
		})
	}
	r1, r2, r3 := c.replicas[0], c.replicas[1], c.replicas[2]

	// Launch through replica 1.
	learners := map[string]string{}
	for i := 1; i <= replicaLabs; i++ {
		learner := fmt.Sprintf("learner-%d", i)
		code, body := c.call(r1, "POST", "/v1/labs", fmt.Sprintf(`{"learner":%q,"course":%q}`, learner, site))
		var lab apiLab
		if code != http.StatusAccepted || json.Unmarshal(body, &lab) != nil || lab.ID == "" {
			c.fatalf("launch for %s through %s: %d %s", learner, r1.name, code, body)
		}
		ids = append(ids, lab.ID)
		learners[lab.ID] = learner
	}

	// Heartbeats through replica 2 (so that no lab goes idle before the last is up), reads
	// through replica 3, until every lab is active.
	heartbeatAll := func() {
		for _, id := range ids {
			code, body := c.call(r2, "POST", "/v1/labs/"+id+"/heartbeat", "")
			var hb struct {
				ID            string    `json:"id"`
				LastHeartbeat time.Time `json:"last_heartbeat"`
			}
			if code != http.StatusOK || json.Unmarshal(body, &hb) != nil || hb.ID != id || hb.LastHeartbeat.IsZero() {
				c.fatalf("heartbeat of %s through %s: %d %s", id, r2.name, code, body)
			}
		}
	}
	c.waitFor("every lab to be active", 4*time.Minute, time.Second, func() bool {
		heartbeatAll()
		active := 0
		for _, id := range ids {
			lab := c.lab(r3, id)
			switch lab.Status {
			case labs.Active:
				active++
			case labs.Launching:
			default:
				c.fatalf("lab %s (launched through %s, read through %s) is %s: %s", id, r1.name, r3.name, lab.Status, lab.LastError)
			}
		}
		return active == len(ids)
	})
	code, body := c.call(r3, "GET", "/v1/labs?course="+site, "")
	var list struct {
		Labs []apiLab `json:"labs"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Labs) != len(ids) {
		c.fatalf("list through %s: %d %s", r3.name, code, body)
	}
	for _, l := range list.Labs {
		if learners[l.ID] != l.Learner || l.Status != labs.Active || l.Cloud != "local-a" {
			c.fatalf("list through %s: unexpected lab %+v", r3.name, l)
		}
	}
	if evs := auditTrail(t, st); countSucceeded(evs, "suspend") != 0 {
		c.fatalf("a lab was suspended while its learner was sending heartbeats:\n%s", formatTrail(evs))
	}

	// The learners leave. Wait for the first suspend of the round, find who recorded it, and
	// SIGKILL that replica at once: the others are then in flight or not yet started.
	heartbeatAll()
	left := time.Now()
	var first labs.Event
	c.waitFor("the first suspend of the idle labs", replicaIdleAfter+replicaTakeoverBound+time.Minute, 50*time.Millisecond, func() bool {
		for _, ev := range auditTrail(t, st) {
			if ev.Action == "suspend" && ev.Error == "" {
				first = ev
				return true
			}
		}
		return false
	})
	victim := c.byActor(first.Actor)
	if victim == nil {
		c.fatalf("the first suspend was recorded by %q, not by one of the replicas' schedulers", first.Actor)
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.fatalf("SIGKILL %s: %v", victim.name, err)
	}
	killed := time.Now()
	victim.killed = true
	select {
	case <-victim.exited:
	case <-time.After(10 * time.Second):
		c.fatalf("%s did not die of SIGKILL", victim.name)
	}
	atKill := auditTrail(t, st)
	doneByVictim := map[string]bool{}
	for _, ev := range atKill {
		if ev.Action == "suspend" && ev.Error == "" && ev.Actor == first.Actor {
			doneByVictim[ev.LabID] = true
		}
	}
	t.Logf("the learners left at %s; %s (%s) recorded the first suspend (lab %s) %.2fs later and was SIGKILLed %.3fs after that, with %d of %d labs suspended",
		left.Format("15:04:05.000"), victim.name, first.Actor, first.LabID, first.At.Sub(left).Seconds(),
		killed.Sub(first.At).Seconds(), len(doneByVictim), len(ids))
	if len(doneByVictim) == len(ids) {
		c.fatalf("%s had suspended every lab before it was killed: nothing was left to take over", victim.name)
	}
	var survivors []*serveReplica
	for _, r := range c.replicas {
		if r != victim {
			survivors = append(survivors, r)
		}
	}

	// The survivors finish the round within the bound.
	bound := takeoverBound(first.At.Sub(left) - replicaIdleAfter)
	var allDone time.Time
	c.waitFor(fmt.Sprintf("every lab suspended within %s of the kill", bound), bound-time.Since(killed), 100*time.Millisecond, func() bool {
		for i, id := range ids {
			lab := c.lab(survivors[i%len(survivors)], id)
			if lab.Status != labs.Suspended || lab.StackStatus != "SUSPEND_COMPLETE" {
				return false
			}
		}
		allDone = time.Now()
		return true
	})
	evs := auditTrail(t, st)
	var takeover labs.Event
	for _, ev := range evs {
		if ev.Error == "" && strings.HasPrefix(ev.Actor, "scheduler@") && ev.Actor != victim.actor() && !ev.At.Before(killed) {
			takeover = ev
			break
		}
	}
	if takeover.ID == 0 {
		c.fatalf("no replica acted after %s was killed, yet every lab is suspended:\n%s", victim.name, formatTrail(evs))
	}
	t.Logf("TAKEOVER: %s took over %.2fs after the kill (%s of lab %s); every lab suspended %.2fs after the kill (bound %s)",
		c.byActor(takeover.Actor).name, takeover.At.Sub(killed).Seconds(), takeover.Action, takeover.LabID,
		allDone.Sub(killed).Seconds(), bound)

	// In Heat too: every stack is suspended, and Heat's own events show one suspend each.
	h, err := heat.Open(ctx, heat.Options{Name: "local-a", Cloud: "local-a", ConfigFile: clouds})
	if err != nil {
		c.fatalf("open local-a: %v", err)
	}
	orchestration, err := clientconfig.NewServiceClient(ctx, "orchestration", &clientconfig.ClientOpts{Cloud: "local-a"})
	if err != nil {
		c.fatalf("open local-a's orchestration API: %v", err)
	}
	for _, id := range ids {
		lab, err := st.GetLab(ctx, id)
		if err != nil {
			c.fatalf("registry: %v", err)
		}
		stack, err := h.Get(ctx, lab.StackName, lab.StackID)
		if err != nil || stack.Status != "SUSPEND_COMPLETE" {
			c.fatalf("Heat: stack %s of lab %s: %v %s", lab.StackName, id, err, stack.Status)
		}
		if n, err := heatSuspends(ctx, orchestration, lab.StackName, lab.StackID); err != nil || n != 1 {
			t.Errorf("Heat: stack %s of lab %s was suspended %d times (want 1): %v", lab.StackName, id, n, err)
		}
	}

	// No lab acted on twice; who finished what.
	actors := map[string]bool{}
	for _, ev := range evs {
		if strings.HasPrefix(ev.Actor, "scheduler@") {
			actors[ev.Actor] = true
		}
	}
	var how []string
	for _, id := range ids {
		var mine []labs.Event
		for _, ev := range evs {
			if ev.LabID == id {
				mine = append(mine, ev)
			}
		}
		if n := countSucceeded(mine, "suspend"); n != 1 && !(n == 0 && finishedBySync(mine)) {
			t.Errorf("lab %s: %d successful suspends (want one, or none and a sync to suspended); its audit trail:\n%s", id, n, formatTrail(mine))
		}
		for _, ev := range mine {
			if ev.Action == "suspend" && ev.Error != "" {
				t.Logf("lab %s: a failed suspend by %s: %s", id, ev.Actor, ev.Error)
			}
		}
		how = append(how, fmt.Sprintf("%s: %s", id, finishedBy(mine, victim.actor())))
	}
	t.Logf("who finished each lab:\n  %s", strings.Join(how, "\n  "))
	if len(actors) < 2 {
		t.Errorf("the scheduler's actors over the run: %v; want at least two replicas", sortedKeys(actors))
	}
	// The reaper's jobs share one lock: no two replicas ever ran one at the same time.
	runs := c.jobRuns()
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if b.replica != a.replica && b.start.Before(a.end.Add(-logSlack)) {
				t.Errorf("%s ran %s from %s to %s while %s ran %s from %s to %s", b.replica, b.job, b.start.Format("15:04:05.000"),
					b.end.Format("15:04:05.000"), a.replica, a.job, a.start.Format("15:04:05.000"), a.end.Format("15:04:05.000"))
			}
		}
	}
	t.Logf("%d job runs finished across the replicas, none overlapping", len(runs))
	var after []string
	for _, r := range runs {
		if !r.start.Before(killed) && len(after) < 4 {
			after = append(after, fmt.Sprintf("%s %s at +%.2fs (%s)", r.replica, r.job, r.start.Sub(killed).Seconds(), r.end.Sub(r.start).Round(time.Millisecond)))
		}
	}
	t.Logf("the first job runs after the kill: %s", strings.Join(after, ", "))
	if t.Failed() {
		c.fatalf("see above")
	}
	// /readyz waits for a free in-flight slot of the cloud (Heat.Check takes one), so a replica
	// busy with cloud work answers 503 for a while: allow that much.
	for _, r := range survivors {
		c.waitFor(r.name+" /readyz to answer 200", 20*time.Second, 500*time.Millisecond, func() bool {
			code, body := c.call(r, "GET", "/readyz", "")
			if code != http.StatusOK {
				t.Logf("%s /readyz: %d %s", r.name, code, body)
			}
			return code == http.StatusOK
		})
	}

	// Clean up through the API (the fallback cleanup does whatever this leaves).
	for i, id := range ids {
		if code, body := c.call(survivors[i%len(survivors)], "DELETE", "/v1/labs/"+id, ""); code != http.StatusAccepted {
			c.fatalf("delete %s: %d %s", id, code, body)
		}
	}
	c.waitFor("every lab deleted", 3*time.Minute, 500*time.Millisecond, func() bool {
		for i, id := range ids {
			if c.lab(survivors[(i+1)%len(survivors)], id).Status != labs.Deleted {
				return false
			}
		}
		return true
	})
	// SIGTERM: the survivors exit 0.
	for _, r := range survivors {
		if code := r.stop(45 * time.Second); code != 0 {
			t.Errorf("%s exited %d on SIGTERM; its log:\n%s", r.name, code, replicaLogTail(r.log, 30))
		}
	}
}

// apiLab is a lab as the API returns it.
type apiLab struct {
	ID          string      `json:"id"`
	Learner     string      `json:"learner"`
	Cloud       string      `json:"cloud"`
	Status      labs.Status `json:"status"`
	StackStatus string      `json:"stack_status"`
	LastError   string      `json:"last_error"`
}

// buildReplicaBinary builds the binary from the module root into dir.
func buildReplicaBinary(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "labplane")
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build labplane: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/labplane")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// replicaSet is the replicas and an API client.
type replicaSet struct {
	t        *testing.T
	token    string
	client   *http.Client
	replicas []*serveReplica
}

// serveReplica is one `labplane serve` process this test started.
type serveReplica struct {
	name   string
	addr   string
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
	// waitErr is cmd.Wait's result, set before exited is closed.
	waitErr error
	killed  bool
}

func (r *serveReplica) dead() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// actor is how the replica's scheduler signs the audit trail: "scheduler@<host>/<pid>".
func (r *serveReplica) actor() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("scheduler@%s/%d", host, r.cmd.Process.Pid)
}

// stop sends SIGTERM, then SIGKILL to its process group after timeout; it returns the exit
// code (-1 for a signal).
func (r *serveReplica) stop(timeout time.Duration) int {
	if !r.dead() {
		_ = syscall.Kill(r.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(timeout):
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL) // its own group: only what it started
			<-r.exited
		}
	}
	return r.cmd.ProcessState.ExitCode()
}

// start starts replica i; it is stopped at the end of the test, pass or fail.
func (c *replicaSet) start(bin, config, clouds, dir string, i int) {
	c.t.Helper()
	r := &serveReplica{name: fmt.Sprintf("replica %d", i), addr: servetest.FreeAddr(c.t), log: filepath.Join(dir, fmt.Sprintf("replica-%d.log", i)),
		exited: make(chan struct{})}
	f, err := os.Create(r.log)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close() // the child has its own copy
	r.cmd = exec.Command(bin, "--config", config, "--log-level", "debug", "serve", "--listen", r.addr)
	r.cmd.Stdout, r.cmd.Stderr = f, f
	r.cmd.Env = append(envWithout(os.Environ(), "LABPLANE_CONFIG", "LABPLANE_LOG_LEVEL", "OS_CLIENT_CONFIG_FILE"), "OS_CLIENT_CONFIG_FILE="+clouds)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", r.name, err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.exited)
	}()
	c.replicas = append(c.replicas, r)
	c.t.Cleanup(func() {
		if code := r.stop(45 * time.Second); code != 0 && !r.killed && !c.t.Failed() {
			c.t.Errorf("%s exited %d; its log:\n%s", r.name, code, replicaLogTail(r.log, 30))
		}
	})
}

func envWithout(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// byActor returns the replica whose scheduler is actor ("scheduler@host/pid"), or nil.
func (c *replicaSet) byActor(actor string) *serveReplica {
	i := strings.LastIndexByte(actor, '/')
	if !strings.HasPrefix(actor, "scheduler@") || i < 0 {
		return nil
	}
	pid, err := strconv.Atoi(actor[i+1:])
	if err != nil {
		return nil
	}
	for _, r := range c.replicas {
		if r.cmd.Process.Pid == pid {
			return r
		}
	}
	return nil
}

// call makes an API request; a connection error is code 0 with the error as the body.
func (c *replicaSet) call(r *serveReplica, method, path, body string) (int, []byte) {
	req, err := http.NewRequest(method, "http://"+r.addr+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// lab reads a lab through r; a failed read fails the test.
func (c *replicaSet) lab(r *serveReplica, id string) apiLab {
	code, body := c.call(r, "GET", "/v1/labs/"+id, "")
	var lab apiLab
	if code != http.StatusOK || json.Unmarshal(body, &lab) != nil || lab.ID != id {
		c.fatalf("GET /v1/labs/%s through %s: %d %s", id, r.name, code, body)
	}
	return lab
}

// waitFor polls ok until it holds, failing the test with the replicas' logs after limit.
func (c *replicaSet) waitFor(what string, limit, every time.Duration, ok func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			c.fatalf("waited %s for %s", limit.Round(time.Millisecond), what)
		}
		time.Sleep(every)
	}
}

// fatalf fails the test with the last lines of every replica's log.
func (c *replicaSet) fatalf(format string, args ...any) {
	c.t.Helper()
	var b strings.Builder
	for _, r := range c.replicas {
		state := "running"
		if r.dead() {
			state = fmt.Sprintf("exited: %v", r.waitErr)
		}
		fmt.Fprintf(&b, "\n--- %s (pid %d, %s, %s), last lines of %s:\n%s", r.name, r.cmd.Process.Pid, r.addr, state, r.log, replicaLogTail(r.log, 25))
	}
	c.t.Fatalf(format+"%s", append(args, b.String())...)
}

// jobRun is one finished run of a scheduler job, from a replica's log.
type jobRun struct {
	replica, job string
	start, end   time.Time
}

// logSlack covers the log's millisecond timestamps.
const logSlack = 5 * time.Millisecond

var jobDoneLine = regexp.MustCompile(`^time=(\S+) level=\w+ msg="job (?:done|failed)" replica=\S+ job=(\S+) took=(\S+)`)

// jobRuns reads every finished job run from the replicas' logs, sorted by start; a run
// spans [end - took, end], inside the time its replica held the lock.
func (c *replicaSet) jobRuns() []jobRun {
	var runs []jobRun
	for _, r := range c.replicas {
		raw, err := os.ReadFile(r.log)
		if err != nil {
			c.t.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			m := jobDoneLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			end, err1 := time.Parse(time.RFC3339Nano, m[1])
			took, err2 := time.ParseDuration(m[3])
			if err1 != nil || err2 != nil {
				c.t.Fatalf("%s: cannot read %q: %v %v", r.log, line, err1, err2)
			}
			runs = append(runs, jobRun{replica: r.name, job: m[2], start: end.Add(-took), end: end})
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].start.Before(runs[j].start) })
	return runs
}

// replicaLogTail returns the last n lines of a file.
func replicaLogTail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func auditTrail(t *testing.T, st *store.Store) []labs.Event {
	t.Helper()
	evs, err := st.Events(context.Background(), "", 0)
	if err != nil {
		t.Fatalf("read the audit trail: %v", err)
	}
	return evs
}

// countOK counts the successful events of an action.
func countSucceeded(evs []labs.Event, action string) int {
	n := 0
	for _, ev := range evs {
		if ev.Action == action && ev.Error == "" {
			n++
		}
	}
	return n
}

// finishedBySync reports whether a sync recorded the lab suspended.
func finishedBySync(evs []labs.Event) bool {
	for _, ev := range evs {
		if ev.Action == "sync" && ev.Error == "" && ev.To == labs.Suspended {
			return true
		}
	}
	return false
}

// finishedBy tells who brought a lab to rest.
func finishedBy(evs []labs.Event, victim string) string {
	var parts []string
	for _, ev := range evs {
		if (ev.Action == "suspend" || ev.Action == "sync") && strings.HasPrefix(ev.Actor, "scheduler@") {
			who := "a survivor"
			if ev.Actor == victim {
				who = "the killed replica"
			}
			s := fmt.Sprintf("%s by %s (%s -> %s)", ev.Action, who, ev.From, ev.To)
			if ev.Error != "" {
				s += " FAILED: " + ev.Error
			}
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

// formatTrail prints events one a line.
func formatTrail(evs []labs.Event) string {
	var b bytes.Buffer
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %s %s %-8s %-10s %s -> %s", ev.At.Format("15:04:05.000000"), ev.LabID, ev.Action, ev.Actor, ev.From, ev.To)
		if ev.Error != "" {
			fmt.Fprintf(&b, " error=%q", ev.Error)
		}
		if ev.Detail != "" {
			fmt.Fprintf(&b, " (%s)", ev.Detail)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// heatSuspends counts the suspends Heat started on a stack: its stack-level
// SUSPEND_IN_PROGRESS events.
func heatSuspends(ctx context.Context, sc *gophercloud.ServiceClient, name, id string) (int, error) {
	pages, err := stackevents.List(sc, name, id, stackevents.ListOpts{ResourceNames: []string{name}}).AllPages(ctx)
	if err != nil {
		return 0, err
	}
	evs, err := stackevents.ExtractEvents(pages)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ev := range evs {
		if ev.PhysicalResourceID == id && ev.ResourceStatus == "SUSPEND_IN_PROGRESS" {
			n++
		}
	}
	return n, nil
}

// cleanupReplicaLabs deletes, with the CLI, every lab of ids the registry does not have deleted,
// then sweeps what a launch cut short may have left (zombies) with a reap.
func cleanupReplicaLabs(t *testing.T, st *store.Store, config string, ids []string) {
	left := 0
	for _, id := range ids {
		lab, err := st.GetLab(context.Background(), id)
		if err == nil && lab.Status == labs.Deleted {
			continue
		}
		left++
		if res := runCLI("", false, "--config", config, "labs", "delete", id, "--yes", "--force"); res.code != 0 {
			t.Logf("cleanup: delete %s: %s", id, res)
		}
	}
	if left > 0 {
		if res := runCLI("", false, "--config", config, "reap", "--once", "--yes"); res.code != 0 {
			t.Logf("cleanup: reap: %s", res)
		}
	}
}
