package cli_test

// Fault injection against `labplane serve`: the registry's PostgreSQL stopped and started
// under the daemon, and a cloud that answers 500s, then hangs. What must hold: the daemon
// keeps serving what it can, /readyz says what is wrong, nothing is lost, and the next tick
// catches up.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", to find the test server's data directory

	"github.com/labplane/labplane/internal/cli"
	"github.com/labplane/labplane/internal/dev/certtest"
	"github.com/labplane/labplane/internal/dev/heattest"
	"github.com/labplane/labplane/internal/dev/pgtest"
	"github.com/labplane/labplane/internal/dev/servetest"
	"github.com/labplane/labplane/internal/dev/syncbuffer"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

// ---------------------------------------------------------------------------------------
// An in-process Keystone v3 + Heat that can be switched to fail (heattest.Server).

// newFaultHeat starts a fake cloud whose stacks have faultTemplate's output.
func newFaultHeat(t *testing.T) *heattest.Server {
	heat := heattest.New(t)
	heat.Outputs = func(name string) map[string]any { return map[string]any{"guacamole_host": name + ".labs.example"} }
	return heat
}

// faultTemplate is a lab template with no nested files (the fake does not run templates).
const faultTemplate = `heat_template_version: 2018-08-31
parameters:
  lab_id: {type: string}
  course: {type: string}
  learner: {type: string}
resources:
  gateway:
    type: OS::Heat::TestResource
outputs:
  guacamole_host:
    value: {get_attr: [gateway, output]}
`

// ---------------------------------------------------------------------------------------
// `labplane serve` in-process, and an LMS calling it.

type daemon struct {
	t      *testing.T
	base   string
	token  string
	logs   *syncbuffer.Buffer
	cancel context.CancelFunc
	exited chan int
	client *http.Client

	stopOnce sync.Once
	code     int
}

// startDaemon runs `labplane serve` for the site on addr until stop (or the test's end).
func startDaemon(t *testing.T, s *site, addr string) *daemon {
	t.Helper()
	res := s.run("token", "create", "--name", "lms")
	if res.code != 0 {
		t.Fatalf("token create: %s", res)
	}
	return runDaemon(t, s, addr, strings.TrimSpace(res.out))
}

// replica runs another `labplane serve` of the site d serves (the same registry) on addr,
// for the same LMS (d's token), until stop (or the test's end).
func (d *daemon) replica(s *site, addr string) *daemon {
	d.t.Helper()
	return runDaemon(d.t, s, addr, d.token)
}

func runDaemon(t *testing.T, s *site, addr, token string) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{t: t, base: "http://" + addr, token: token, logs: &syncbuffer.Buffer{},
		cancel: cancel, exited: make(chan int, 1), client: &http.Client{Timeout: 20 * time.Second}}
	go func() {
		d.exited <- cli.Run(ctx, []string{"labplane", "--config", s.config, "serve", "--listen", addr},
			cli.IO{In: strings.NewReader(""), Out: d.logs, Err: d.logs})
	}()
	t.Cleanup(func() {
		if _, err := d.stop(time.Minute); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("serve's log:\n%s", d.logs)
		}
	})
	d.waitFor("the API to answer", 20*time.Second, func() bool {
		code, _ := d.call("GET", "/healthz", "")
		return code == http.StatusOK
	})
	return d
}

// stop cancels serve's context (what SIGTERM does) and waits for it to exit.
func (d *daemon) stop(limit time.Duration) (took time.Duration, err error) {
	d.stopOnce.Do(func() {
		began := time.Now()
		d.cancel()
		select {
		case d.code = <-d.exited:
			took = time.Since(began)
			d.client.CloseIdleConnections()
		case <-time.After(limit):
			err = fmt.Errorf("serve did not exit within %s after its context was cancelled; log:\n%s", limit, d.logs)
		}
	})
	return took, err
}

// running fails the test if serve has exited.
func (d *daemon) running() {
	d.t.Helper()
	select {
	case code := <-d.exited:
		d.exited <- code
		d.t.Fatalf("serve exited %d; log:\n%s", code, d.logs)
	default:
	}
}

// call sends a request with the LMS's token: the status (0 if no answer) and the JSON body.
func (d *daemon) call(method, path, body string) (int, map[string]any) {
	code, out, _ := d.callRaw(method, path, body)
	return code, out
}

func (d *daemon) callRaw(method, path, body string) (int, map[string]any, string) {
	req, _ := http.NewRequest(method, d.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, string(raw)
}

func (d *daemon) waitFor(what string, limit time.Duration, ok func() bool) time.Duration {
	d.t.Helper()
	began := time.Now()
	for !ok() {
		if time.Since(began) > limit {
			d.t.Fatalf("waited %s for %s; serve's log:\n%s", limit, what, d.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(began)
}

func (d *daemon) lab(id string) map[string]any {
	_, lab := d.call("GET", "/v1/labs/"+id, "")
	return lab
}

func (d *daemon) status(id string) string {
	s, _ := d.lab(id)["status"].(string)
	return s
}

// launch asks for a lab and returns its id.
func (d *daemon) launch(learner, course string) string {
	d.t.Helper()
	code, lab := d.call("POST", "/v1/labs", fmt.Sprintf(`{"learner":%q,"course":%q}`, learner, course))
	id, _ := lab["id"].(string)
	if code != http.StatusAccepted || id == "" {
		d.t.Fatalf("launch for %s: %d %v", learner, code, lab)
	}
	return id
}

// readiness is GET /readyz: the status and each check's result.
func (d *daemon) readiness() (int, map[string]string) {
	code, body := d.call("GET", "/readyz", "")
	checks := map[string]string{}
	if m, ok := body["checks"].(map[string]any); ok {
		for k, v := range m {
			checks[k], _ = v.(string)
		}
	}
	return code, checks
}

// metric is the value of one series on /metrics (0 if absent).
func (d *daemon) metric(series string) float64 {
	resp, err := d.client.Get(d.base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// jobRuns is the metric of a job's runs on the cloud "fake" with a result.
func jobRuns(job, result string) string {
	return fmt.Sprintf(`labplane_scheduler_job_runs_total{job=%q,result=%q}`, cli.JobName(job, "fake"), result)
}

var reaperJobs = []string{"suspend-idle", "reap", "reconcile", "launch-timeouts"}

// count is the length of a JSON list (-1 if v is not one).
func count(v any) int {
	l, ok := v.([]any)
	if !ok {
		return -1
	}
	return len(l)
}

// errorCode is the code of an API error body ({"error": {"code", "message"}}).
func errorCode(body map[string]any) (code, msg string) {
	e, _ := body["error"].(map[string]any)
	code, _ = e["code"].(string)
	msg, _ = e["message"].(string)
	return code, msg
}

// heartbeater sends the LMS's heartbeats for a lab every interval and keeps the worst
// latency and any failure, per phase of the test.
type heartbeater struct {
	d    *daemon
	mu   sync.Mutex
	lab  string
	last phaseStats
	stop chan struct{}
	done chan struct{}
}

type phaseStats struct {
	n       int
	worst   time.Duration
	total   time.Duration
	failure string
}

func (p phaseStats) String() string {
	if p.n == 0 {
		return "no heartbeats"
	}
	return fmt.Sprintf("%d heartbeats, mean %s, worst %s", p.n, (p.total / time.Duration(p.n)).Round(time.Microsecond),
		p.worst.Round(time.Microsecond))
}

func startHeartbeats(d *daemon, lab string, every time.Duration) *heartbeater {
	h := &heartbeater{d: d, lab: lab, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			select {
			case <-h.stop:
				return
			case <-time.After(every):
			}
			h.mu.Lock()
			lab := h.lab
			h.mu.Unlock()
			if lab == "" {
				continue
			}
			began := time.Now()
			code, raw, text := d.callRaw("POST", "/v1/labs/"+lab+"/heartbeat", "")
			took := time.Since(began)
			h.mu.Lock()
			h.last.n++
			h.last.total += took
			h.last.worst = max(h.last.worst, took)
			if code != http.StatusOK && h.last.failure == "" {
				h.last.failure = fmt.Sprintf("heartbeat %s: %d %v %s", lab, code, raw, text)
			}
			h.mu.Unlock()
		}
	}()
	d.t.Cleanup(h.end)
	return h
}

// phase returns the stats since the last call and starts a new phase heartbeating lab
// ("" pauses).
func (h *heartbeater) phase(lab string) phaseStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.last
	h.last, h.lab = phaseStats{}, lab
	return p
}

func (h *heartbeater) end() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// ---------------------------------------------------------------------------------------
// PostgreSQL stopped and started under the daemon.

// pgControl stops and starts a server pgtest started, in place: same data directory, same
// port (both from postgresql.conf).
type pgControl struct {
	t              *testing.T
	pgCtl, dataDir string
	logFile        string
	stopped        bool
}

func newPGControl(t *testing.T, adminDSN string) *pgControl {
	t.Helper()
	db, err := sql.Open("pgx", adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var dataDir string
	var pid int
	if err := db.QueryRow(`SELECT current_setting('data_directory'), pg_backend_pid()`).Scan(&dataDir, &pid); err != nil {
		t.Fatalf("find the server's data directory: %v", err)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)) // .../bin/postgres
	if err != nil {
		t.Fatalf("find the server's binaries: %v", err)
	}
	p := &pgControl{t: t, pgCtl: filepath.Join(filepath.Dir(exe), "pg_ctl"), dataDir: dataDir,
		logFile: filepath.Join(filepath.Dir(dataDir), "postgres.log")}
	t.Cleanup(func() {
		if p.stopped {
			p.start() // for pgtest's own cleanup (drop the database, stop)
		}
	})
	return p
}

func (p *pgControl) pgctl(args ...string) {
	p.t.Helper()
	argv := append([]string{p.pgCtl}, args...)
	if os.Geteuid() == 0 {
		argv = append([]string{"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"}, argv...)
	}
	out, err := os.CreateTemp("", "pgctl-*.log") // a file, not a pipe: the server must not hold ours
	if err != nil {
		p.t.Fatal(err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		p.t.Fatalf("pg_ctl %s: %v\n%s", args[0], err, b)
	}
}

func (p *pgControl) stop() {
	p.t.Helper()
	p.pgctl("stop", "-D", p.dataDir, "-m", "fast", "-w", "-t", "30")
	p.stopped = true
}

func (p *pgControl) start() {
	p.t.Helper()
	p.pgctl("start", "-D", p.dataDir, "-l", p.logFile, "-w", "-t", "60")
	p.stopped = false
}

// The registry's PostgreSQL stopped under a running daemon, then started again: /healthz
// stays up, /readyz names the store, requests that need the store answer 503 with a JSON
// error (not 500, not 401) and the daemon does not exit; once PostgreSQL is back, /readyz
// recovers, the scheduler catches up (labs that went idle during the outage are suspended),
// launches and heartbeats work, and every lab launched before the outage is still there.
func TestFaultStoreStoppedAndStarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server: not with -short")
	}
	t.Setenv(pgtest.EnvDSN, "") // a server of this test's own: it is stopped and started
	pg := pgtest.StartFor(t)
	dsn := pg.Database(t)
	ctl := newPGControl(t, pg.DSN())

	heat := newFaultHeat(t)
	heat.UseCloudsYAML()
	addr := servetest.FreeAddr(t)
	const idle = 8 * time.Second
	s := newSite(t, fmt.Sprintf(`site: faults-pg
store: {driver: postgres, dsn: '%s'}
clouds: [{name: fake, cloud: fake}]
templates: {lab: lab.yaml}
policy: {idle_suspend_after: %s}
scheduler: {suspend_every: 1s, reap_every: 2s, reconcile_every: 2s, launch_timeouts_every: 2s}
serve: {listen: %s, shutdown_grace: 5s, token_cache: 1s}
`, dsn, idle, addr))
	if err := os.WriteFile(filepath.Join(s.dir, "lab.yaml"), []byte(faultTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, s, addr)

	// Three labs, launched and recorded before the outage.
	var ids []string
	for _, learner := range []string{"ann", "bob", "cy"} {
		ids = append(ids, d.launch(learner, "os101"))
	}
	st, err := store.Open(context.Background(), "postgres", dsn) // the test's own look at the registry
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range ids {
		d.waitFor("lab "+id+"'s launch to be recorded", 20*time.Second, func() bool {
			evs, _ := st.Events(context.Background(), id, 0)
			return slices.ContainsFunc(evs, func(ev labs.Event) bool { return ev.Action == "launched" }) && d.status(id) == "active"
		})
	}
	if code, checks := d.readiness(); code != http.StatusOK {
		t.Fatalf("/readyz before the outage: %d %v", code, checks)
	}
	// A fourth whose stack completes during the outage: its outcome must still be recorded.
	heat.Lock()
	heat.CreateDur = 2 * time.Second
	heat.Unlock()
	eve := d.launch("eve", "os101")
	launched := time.Now()
	d.waitFor("eve's stack to be created", 10*time.Second, func() bool { return heat.StackStatus("lab-"+eve) != "" })

	// PostgreSQL goes away.
	ctl.stop()
	stopped := time.Now()
	if st := heat.StackStatus("lab-" + eve); st != "CREATE_IN_PROGRESS" {
		t.Fatalf("eve's stack is %s when PostgreSQL stopped; want it still being created", st)
	}
	var storeCheck string
	noticed := d.waitFor("/readyz to report the store", 15*time.Second, func() bool {
		code, checks := d.readiness()
		storeCheck = checks["store"]
		return code == http.StatusServiceUnavailable && storeCheck != "ok" && storeCheck != "" && checks["cloud fake"] == "ok"
	})
	t.Logf("PostgreSQL stopped: /readyz noticed in %s: store check %q", noticed.Round(time.Millisecond), storeCheck)
	if code, _ := d.call("GET", "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz during the store outage: %d, want 200 (the process is alive)", code)
	}
	// Requests that need the store: at once, and again once the token cache (1s) has expired,
	// so that the token check itself needs the store.
	requests := []struct{ method, path, body string }{
		{"GET", "/v1/labs/" + ids[0], ""},
		{"GET", "/v1/labs", ""},
		{"POST", "/v1/labs/" + ids[0] + "/heartbeat", ""},
		{"POST", "/v1/labs", `{"learner":"dee","course":"os101"}`},
		{"POST", "/v1/labs/" + ids[1] + "/resume", ""},
		{"DELETE", "/v1/labs/" + ids[2], ""},
	}
	for _, round := range []string{"token cached", "token cache expired"} {
		if round == "token cache expired" {
			time.Sleep(1500 * time.Millisecond)
		}
		for _, r := range requests {
			code, body, raw := d.callRaw(r.method, r.path, r.body)
			errCode, msg := errorCode(body)
			if code != http.StatusServiceUnavailable || errCode != "store_unavailable" || msg == "" {
				t.Errorf("%s: %s %s during the store outage: %d %s; want 503 with error code store_unavailable",
					round, r.method, r.path, code, strings.TrimSpace(raw))
			}
		}
	}
	if code, _, raw := d.callRaw("GET", "/readyz", ""); strings.Contains(raw, dsn) || strings.Contains(d.logs.String(), dsn) {
		t.Errorf("the DSN (with its password) shows: /readyz %d %s", code, raw)
	}
	// Let the labs go idle while the store is down (no heartbeat can be recorded) and the
	// scheduler's ticks fail; the daemon must not exit.
	if wait := time.Until(launched.Add(idle + 1500*time.Millisecond)); wait > 0 {
		time.Sleep(wait)
	}
	d.running()
	if code, _ := d.call("GET", "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz after %s of store outage: %d", time.Since(stopped).Round(time.Second), code)
	}

	// PostgreSQL comes back, same data directory and port.
	ctl.start()
	outage := time.Since(stopped)
	recovered := d.waitFor("/readyz to recover", 20*time.Second, func() bool {
		code, _ := d.readiness()
		return code == http.StatusOK
	})
	t.Logf("PostgreSQL started after %s of outage: /readyz recovered in %s", outage.Round(time.Millisecond), recovered.Round(time.Millisecond))
	if code, body, raw := d.callRaw("GET", "/v1/labs", ""); code != http.StatusOK || count(body["labs"]) != 4 {
		t.Errorf("the first listing after the store came back: %d %s", code, raw)
	}
	doneBefore := d.metric(jobRuns("suspend-idle", "done"))

	// The next tick catches up: the labs that went idle during the outage are suspended.
	suspended := func(ids ...string) func() bool {
		return func() bool {
			for _, id := range ids {
				if d.status(id) != "suspended" {
					return false
				}
			}
			return true
		}
	}
	caught := d.waitFor("the scheduler to suspend the labs that went idle during the outage", 15*time.Second, suspended(ids...))
	t.Logf("the scheduler suspended the %d labs that went idle during the outage %s after /readyz recovered", len(ids), caught.Round(time.Millisecond))
	// eve's idle time counts from when labplane first recorded its create complete, after the outage
	caughtEve := d.waitFor("the scheduler to suspend eve", idle+15*time.Second, suspended(eve))
	t.Logf("eve, whose create completed during the outage, suspended %s after /readyz recovered (idle_suspend_after %s)",
		(caught + caughtEve).Round(time.Millisecond), idle)
	all := append([]string{eve}, ids...)
	d.waitFor("a suspend-idle run done after the outage", 10*time.Second, func() bool {
		return d.metric(jobRuns("suspend-idle", "done")) > doneBefore
	})
	// eve's launch, done on the cloud during the outage, is recorded now.
	d.waitFor("eve's launch to be recorded", 20*time.Second, func() bool {
		lab, err := st.GetLab(context.Background(), eve)
		evs, _ := st.Events(context.Background(), eve, 0)
		return err == nil && len(lab.Outputs) > 0 && slices.ContainsFunc(evs, func(ev labs.Event) bool { return ev.Action == "launched" })
	})
	if !strings.Contains(d.logs.String(), `msg="registry unavailable: retrying to record the outcome" lab=`+eve+` action=launched`) {
		t.Errorf("eve's launch did not meet the outage (no retry logged):\n%s", d.logs)
	}

	// Launches and heartbeats work again, without restarting labplane.
	heat.Lock()
	heat.CreateDur = 0
	heat.Unlock()
	dee := d.launch("dee", "os101")
	d.waitFor("the lab launched after the outage to be active", 20*time.Second, func() bool { return d.status(dee) == "active" })
	if code, body := d.call("POST", "/v1/labs/"+dee+"/heartbeat", ""); code != http.StatusOK {
		t.Errorf("heartbeat after the outage: %d %v", code, body)
	}

	took, err := d.stop(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if d.code != 0 {
		t.Errorf("serve exited %d after %s; log:\n%s", d.code, took, d.logs)
	}

	// Nothing lost: every lab launched before the outage is there, suspended, with its whole
	// trail, and its row agrees with the trail.
	rows, err := st.ListLabs(context.Background(), labs.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 {
		t.Errorf("%d labs in the registry, want 5 (4 before the outage, 1 after): %+v", len(rows), rows)
	}
	for _, id := range all {
		lab, err := st.GetLab(context.Background(), id)
		if err != nil {
			t.Errorf("lab %s launched before the outage: %v", id, err)
			continue
		}
		evs, err := st.Events(context.Background(), id, 0)
		if err != nil {
			t.Fatal(err)
		}
		var trail []string
		for _, ev := range evs {
			if ev.Action != "sync" && ev.Action != "stack-accepted" && (ev.Action != "suspend" || ev.Error == "") {
				trail = append(trail, ev.Action)
			}
		}
		want := []string{"launch", "launched", "suspend-claimed", "suspend-sent", "suspend"}
		if id == eve && slices.Equal(trail, []string{"launch", "suspend-claimed", "suspend-sent", "suspend", "launched"}) {
			// the scheduler saw eve's stack, and suspended it, before its launch's retry got
			// through: fine, as long as the late record did not undo the suspend
			want = trail
		}
		if lab.Status != labs.Suspended || lab.StackID == "" || len(lab.Outputs) == 0 || !slices.Equal(trail, want) {
			t.Errorf("lab %s: status %s, stack %q, outputs %v, trail (syncs and stack-accepted aside) %v; want suspended with its outputs and %v",
				id, lab.Status, lab.StackID, lab.Outputs, trail, want)
		}
		checkRowMatchesTrail(t, lab, evs)
	}
}

// checkRowMatchesTrail checks that a lab's row and its audit trail agree: no action half
// written (a row changed without its event, or an event without its change).
func checkRowMatchesTrail(t *testing.T, lab labs.Lab, evs []labs.Event) {
	t.Helper()
	var last *labs.Event
	for i := range evs {
		if evs[i].To != "" {
			last = &evs[i]
		}
	}
	if last == nil {
		t.Errorf("lab %s has no event with a status", lab.ID)
		return
	}
	if last.To != lab.Status {
		t.Errorf("lab %s is %s but its last event (%s by %s) says %s", lab.ID, lab.Status, last.Action, last.Actor, last.To)
	}
}

// ---------------------------------------------------------------------------------------
// A cloud answering 500s, then hanging.

// A cloud that answers 500 to everything, then hangs: /readyz names the cloud (the store
// stays ok), heartbeats and reads keep working and stay fast, the scheduler's jobs record
// their failures and, once the cloud is back, all run again and catch up (an idle lab gets
// suspended); with the cloud hanging mid-action, SIGTERM still exits within shutdown_grace
// plus a little, and the hung actions are recorded as failed, with rows and trails agreeing.
func TestFaultCloudFailingThenHanging(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon through a minute of real time: not with -short")
	}
	heat := newFaultHeat(t)
	heat.UseCloudsYAML()
	addr := servetest.FreeAddr(t)
	const (
		idle  = 5 * time.Second
		grace = 3 * time.Second
	)
	s := newSite(t, fmt.Sprintf(`site: faults-cloud
store: {dsn: labplane.db}
clouds: [{name: fake, cloud: fake, max_in_flight: 4}]
templates: {lab: lab.yaml}
policy: {idle_suspend_after: %s}
scheduler: {suspend_every: 1s, reap_every: 2s, reconcile_every: 2s, launch_timeouts_every: 2s}
serve: {listen: %s, shutdown_grace: %s}
`, idle, addr, grace))
	if err := os.WriteFile(filepath.Join(s.dir, "lab.yaml"), []byte(faultTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, s, addr)

	// idler goes idle while the cloud fails; busy's learner keeps working.
	idler := d.launch("ann", "os101")
	busy := d.launch("bob", "os101")
	hb := startHeartbeats(d, busy, 200*time.Millisecond)
	launched := time.Now()
	for _, id := range []string{idler, busy} {
		d.waitFor("lab "+id+" to be active", 20*time.Second, func() bool { return d.status(id) == "active" })
	}
	if code, checks := d.readiness(); code != http.StatusOK {
		t.Fatalf("/readyz before the fault: %d %v", code, checks)
	}
	t.Logf("cloud normal: %s", hb.phase(busy))

	// --- Every request answers 500.
	failedBefore := map[string]float64{}
	for _, j := range reaperJobs {
		failedBefore[j] = d.metric(jobRuns(j, "failed"))
	}
	heat.SetMode(heattest.Failing)
	var cloudCheck string
	noticed := d.waitFor("/readyz to report the failing cloud", 10*time.Second, func() bool {
		code, checks := d.readiness()
		cloudCheck = checks["cloud fake"]
		if code == http.StatusServiceUnavailable && checks["store"] != "ok" {
			t.Errorf("the store check failed with the cloud: %v", checks)
		}
		return code == http.StatusServiceUnavailable && cloudCheck == "failed"
	})
	if !strings.Contains(d.logs.String(), "HTTP 500") {
		t.Errorf("serve's log does not say why the cloud is not ready")
	}
	t.Logf("cloud failing: /readyz noticed in %s: %q", noticed.Round(time.Millisecond), cloudCheck)
	d.waitFor("the scheduler's jobs to record failed runs", 10*time.Second, func() bool {
		return d.metric(jobRuns("suspend-idle", "failed")) > failedBefore["suspend-idle"] &&
			d.metric(jobRuns("reap", "failed")) > failedBefore["reap"]
	})
	// A launch while the only cloud fails: accepted, then recorded as failed, with the
	// cloud's answer in the lab and its trail.
	failedLaunch := d.launch("cy", "os101")
	d.waitFor("the launch on the failing cloud to end", 10*time.Second, func() bool { return d.status(failedLaunch) == "deleted" })
	if lab := d.lab(failedLaunch); !strings.Contains(fmt.Sprint(lab["last_error"]), "HTTP 500") {
		t.Errorf("the failed launch's last_error does not say what the cloud answered: %v", lab)
	}
	// idler goes idle while the cloud fails: nothing can be done, nothing is marked failed.
	if wait := time.Until(launched.Add(idle + 2*time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	if lab := d.lab(idler); lab["status"] != "active" || lab["last_error"] != nil {
		t.Errorf("the idle lab while its cloud fails: %v; want active, untouched (its cloud cannot be listed)", lab)
	}
	if code, body := d.call("GET", "/v1/labs?course=os101&include_deleted=true", ""); code != http.StatusOK || count(body["labs"]) != 3 {
		t.Errorf("listing while the cloud fails: %d %v", code, body)
	}
	failing := hb.phase(busy)
	t.Logf("cloud failing: %s", failing)
	if failing.failure != "" {
		t.Errorf("while the cloud fails: %s", failing.failure)
	}
	if _, _, failed := heat.State(); failed == 0 {
		t.Error("the fake cloud answered no request with 500")
	}

	// --- The cloud is normal again: /readyz recovers, the next tick catches up.
	doneBefore := map[string]float64{}
	for _, j := range reaperJobs {
		doneBefore[j] = d.metric(jobRuns(j, "done"))
	}
	heat.SetMode(heattest.Normal)
	recovered := d.waitFor("/readyz to recover", 10*time.Second, func() bool {
		code, _ := d.readiness()
		return code == http.StatusOK
	})
	caught := d.waitFor("the scheduler to suspend the lab that went idle", 20*time.Second, func() bool { return d.status(idler) == "suspended" })
	t.Logf("cloud normal again: /readyz recovered in %s, the idle lab suspended in %s", recovered.Round(time.Millisecond), caught.Round(time.Millisecond))
	d.waitFor("every job to run again", 20*time.Second, func() bool {
		for _, j := range reaperJobs {
			if d.metric(jobRuns(j, "done")) <= doneBefore[j] {
				return false
			}
		}
		return true
	})
	if st := d.status(busy); st != "active" {
		t.Errorf("the lab with heartbeats is %s after the cloud came back, want active", st)
	}

	// --- The cloud hangs, with a suspend (by the scheduler) and a resume (by the API) in
	// the middle of their waits.
	heat.HangAfter("SUSPEND")
	hb.phase(idler) // busy's learner leaves: the scheduler suspends it after idle_suspend_after
	d.waitFor("the scheduler's suspend of the lab that went idle to reach the cloud", 20*time.Second, func() bool {
		mode, hanging, _ := heat.State()
		return mode == heattest.Hanging && hanging > 0
	})
	if code, body := d.call("POST", "/v1/labs/"+idler+"/resume", ""); code != http.StatusAccepted {
		t.Fatalf("resume while the cloud hangs: %d %v", code, body)
	}
	d.waitFor("the resume to hang on the cloud", 10*time.Second, func() bool {
		_, hanging, _ := heat.State()
		return hanging >= 2
	})
	began := time.Now()
	code, checks := d.readiness()
	readyTook := time.Since(began)
	if code != http.StatusServiceUnavailable || checks["cloud fake"] == "ok" || checks["store"] != "ok" {
		t.Errorf("/readyz while the cloud hangs: %d %v; want 503 naming the cloud, the store ok", code, checks)
	}
	t.Logf("cloud hanging: /readyz answered in %s: %q", readyTook.Round(time.Millisecond), checks["cloud fake"])
	if code, body := d.call("GET", "/v1/labs/"+busy, ""); code != http.StatusOK {
		t.Errorf("GET while the cloud hangs: %d %v", code, body)
	}
	hanging := hb.phase("") // heartbeats of idler during the hang (and /readyz's 5 s)
	t.Logf("cloud hanging: %s", hanging)
	if hanging.failure != "" || hanging.n < 5 {
		t.Errorf("heartbeats while the cloud hangs: %s %s", hanging, hanging.failure)
	}
	if hanging.worst > time.Second {
		t.Errorf("a heartbeat took %s while the cloud hung, want well under a second", hanging.worst)
	}
	hb.end()

	// SIGTERM with both actions hung.
	took, err := d.stop(grace + time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGTERM with the cloud hanging: serve exited %d in %s (shutdown_grace %s)", d.code, took.Round(time.Millisecond), grace)
	if d.code != 0 {
		t.Errorf("serve exited %d; log:\n%s", d.code, d.logs)
	}
	if took > grace+3*time.Second {
		t.Errorf("serve took %s to exit, want at most shutdown_grace (%s) and a little", took, grace)
	}
	heat.SetMode(heattest.Normal)

	// The hung actions are recorded as failed, and every row agrees with its trail.
	st := s.open()
	ctx := context.Background()
	want := map[string]struct{ action, actor string }{busy: {"suspend", "scheduler@"}, idler: {"resume", "api:lms"}}
	for id, w := range want {
		lab, err := st.GetLab(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := st.Events(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		last := evs[len(evs)-1]
		if last.Action != w.action || !strings.HasPrefix(last.Actor, w.actor) || last.Error == "" || lab.LastError == "" {
			t.Errorf("lab %s: the hung %s is not recorded as failed: last event %+v, last_error %q; log:\n%s",
				id, w.action, last, lab.LastError, d.logs)
		} else {
			t.Logf("the hung %s by %s, recorded: %s", w.action, last.Actor, last.Error)
		}
		checkRowMatchesTrail(t, lab, evs)
	}
	all, err := st.ListLabs(ctx, labs.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, lab := range all {
		evs, err := st.Events(ctx, lab.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkRowMatchesTrail(t, lab, evs)
	}
	if leaked := regexp.MustCompile(`lp_[A-Za-z0-9_-]{43}`).FindString(d.logs.String()); leaked != "" {
		t.Error("a token appears in serve's log")
	}

	// The next pass, with the cloud back, brings the registry to the cloud's truth: the
	// suspend Heat finished after labplane stopped waiting is found and recorded.
	if res := s.run("reap", "--once", "--yes"); res.code != 0 {
		t.Errorf("reap after the restart: %s", res)
	}
	for _, id := range []string{busy, idler} {
		lab, err := st.GetLab(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if cloudSays := heat.StackStatus("lab-" + id); lab.Status != labs.Suspended || lab.StackStatus != cloudSays {
			t.Errorf("lab %s after the next pass: %s (%s), the cloud says %s; want suspended, as on the cloud", id, lab.Status, lab.StackStatus, cloudSays)
		}
	}
}

// serve bounds every phase of a connection (serve.read_timeout, idle_timeout; headers up to
// 32 KiB): a client that sends half a body, one that keeps a connection open and silent, and one
// with an oversized header hold nothing for long, and the API answers the next client at once.
func TestServeBoundsSlowAndIdleClients(t *testing.T) {
	heat := newFaultHeat(t)
	heat.UseCloudsYAML()
	addr := servetest.FreeAddr(t)
	s := newSite(t, fmt.Sprintf(`site: timeouts
store: {dsn: labplane.db}
clouds: [{name: fake, cloud: fake}]
templates: {lab: lab.yaml}
serve: {listen: %s, read_timeout: 1s, idle_timeout: 1s, shutdown_grace: 2s}
`, addr))
	if err := os.WriteFile(filepath.Join(s.dir, "lab.yaml"), []byte(faultTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, s, addr)
	// closedWithin sends what on a new connection and reports how long the server took to
	// close it, reading whatever it answered.
	closedWithin := func(what string) (time.Duration, string) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		began := time.Now()
		if _, err := io.WriteString(conn, what); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		answer, _ := io.ReadAll(conn) // until the server closes it (or the deadline)
		return time.Since(began), string(answer)
	}
	half := "POST /v1/labs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + d.token + "\r\nContent-Length: 100\r\n\r\n{\"learner\":"
	if took, answer := closedWithin(half); took > 5*time.Second {
		t.Errorf("half a body: the connection was held %s (read_timeout 1s): %q", took, answer)
	}
	idle := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" // answered, then kept alive and silent
	if took, answer := closedWithin(idle); took > 5*time.Second || !strings.Contains(answer, "200 OK") {
		t.Errorf("an idle kept-alive connection: held %s (idle_timeout 1s), answered %q", took, answer)
	}
	big := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("x", 40<<10) + "\r\n\r\n"
	if _, answer := closedWithin(big); !strings.Contains(answer, "431") {
		t.Errorf("a 40 KiB header: %.80q, want 431", answer)
	}
	if code, _ := d.call("GET", "/v1/labs", ""); code != http.StatusOK {
		t.Errorf("the API after them: %d", code)
	}
}

// serve over TLS with certificates made by the test: a client must trust the CA and show a
// certificate it signed; plain HTTP gets nothing; a renewed certificate is served after a
// SIGHUP to new connections while a connection made before goes on. Without TLS, serve
// refuses an address other than loopback unless serve.insecure_listen.
func TestServeTLS(t *testing.T) {
	heat := newFaultHeat(t)
	heat.UseCloudsYAML()
	ca := certtest.NewCA(t, "labplane-test-ca")
	srvCert := ca.Server(t, "serve", "127.0.0.1")
	lmsCert := ca.Client(t, "lms")
	addr := servetest.FreeAddr(t)
	s := newSite(t, fmt.Sprintf(`site: tls
store: {dsn: labplane.db}
clouds: [{name: fake, cloud: fake}]
templates: {lab: lab.yaml}
serve: {listen: %s, shutdown_grace: 2s, tls: {cert_file: %s, key_file: %s, client_ca_file: %s}}
`, addr, srvCert.CertFile, srvCert.KeyFile, ca.CertFile))
	if err := os.WriteFile(filepath.Join(s.dir, "lab.yaml"), []byte(faultTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(s.run("token", "create", "--name", "lms").out)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncbuffer.Buffer{}
	exited := make(chan int, 1)
	go func() {
		exited <- cli.Run(ctx, []string{"labplane", "--config", s.config, "serve"}, cli.IO{In: strings.NewReader(""), Out: logs, Err: logs})
	}()
	defer func() {
		cancel()
		if code := <-exited; code != 0 {
			t.Errorf("serve exited %d:\n%s", code, logs)
		}
	}()
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	pair, err := tls.LoadX509KeyPair(lmsCert.CertFile, lmsCert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	newClient := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	lms := newClient(pair)
	// serial is the serial of the certificate the server showed for GET /v1/labs.
	serial := func(c *http.Client) (string, error) {
		req, _ := http.NewRequest("GET", "https://"+addr+"/v1/labs", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET /v1/labs: %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := serial(lms)
		if err == nil && got == srvCert.Serial.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve over TLS never answered: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "serving on https://") {
		t.Errorf("serve does not say it serves HTTPS:\n%s", logs)
	}
	if _, err := serial(newClient()); err == nil {
		t.Error("a client without a certificate was answered")
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was answered 200")
		}
		resp.Body.Close()
	}

	renewed := ca.Server(t, "serve", "127.0.0.1") // the same files, a new certificate
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if got, err := serial(newClient(pair)); err == nil && got == renewed.Serial.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate was never served after SIGHUP:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err := serial(lms); err != nil || got != srvCert.Serial.String() {
		t.Errorf("the connection made before the reload: %s, %v; want it kept, with the first certificate", got, err)
	}

	// without TLS: loopback only, unless insecure_listen
	plain := newSite(t, "clouds: [{name: fake, cloud: fake}]\ntemplates: {lab: lab.yaml}\nserve: {listen: \"0.0.0.0:0\"}\n")
	if res := plain.run("config", "validate"); res.code != 2 || !strings.Contains(res.err, "serve.listen: 0.0.0.0:0 is not a loopback address") {
		t.Errorf("config validate with a public address and no TLS: %s", res)
	}
}
