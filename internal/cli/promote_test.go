package cli_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cli"
	"github.com/labplane/labplane/internal/health"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/release"
	"github.com/labplane/labplane/internal/runs"
	"github.com/labplane/labplane/internal/store"
)

// servePlatform serves a platform's health endpoints on loopback: lms and cms /heartbeat
// reporting *rel (or 503 when it is empty), and guacd's handshake. It returns their ports.
func servePlatform(t *testing.T, rel *string) (lms, cms, guacd int) {
	t.Helper()
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		var n int
		fmt.Sscan(p, &n)
		return n
	}
	for i, svc := range []string{"lms", "cms"} {
		// as edx-platform's heartbeat and the openedx role's release file answer
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.Host, map[string]string{"lms": "lms.", "cms": "studio."}[svc]) { // the site names of writeEnv
				http.Error(w, "unknown site "+r.Host, http.StatusBadRequest)
				return
			}
			if r.URL.Path == "/labplane/release" {
				fmt.Fprintln(w, *rel)
				return
			}
			ok := *rel != ""
			if !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			json.NewEncoder(w).Encode(map[string]health.HeartbeatCheck{"sql": {Status: ok, Message: "OK"}, "modulestore": {Status: true, Message: "OK"}})
		}))
		t.Cleanup(srv.Close)
		if i == 0 {
			lms = port(srv.Listener.Addr().String())
		} else {
			cms = port(srv.Listener.Addr().String())
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 256)
			conn.Read(buf)
			conn.Write([]byte(health.EncodeInstruction("args", "VERSION_1_5_0", "hostname", "port")))
			conn.Close()
		}
	}()
	return lms, cms, port(ln.Addr().String())
}

func writeEnv(t *testing.T, inventories, name, release string, lms, cms, guacd int, hosts string) {
	t.Helper()
	spec := fmt.Sprintf(`release: %s
artifact: /nowhere/edx-platform-{release}.tar.gz
hosts:
%s
settings:
  lms_site_name: lms.%s
  cms_site_name: studio.%s
  lms_port: %d
  cms_port: %d
  guacd_port: %d
  guacd_apt_repository: "deb http://127.0.0.1/repo ./"
  guacd_apt_key: guacd.asc
  guacd_version: 1.5.5-1
secrets:
  secret_key: {env: LABPLANE_PROMOTE_TEST_SECRET}
`, release, hosts, name, name, lms, cms, guacd)
	dir := filepath.Join(inventories, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "environment.yml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "guacd.asc"), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The gate, the plan, release list|show and the environment lock, against a real registry
// and real health checks of services on loopback (no Ansible: nothing is deployed).
func TestPromoteGateAndLock(t *testing.T) {
	t.Setenv("LABPLANE_PROMOTE_TEST_SECRET", "secret-value-123")
	s := newSite(t, registryOnly)
	inv := filepath.Join(s.dir, "inventories")
	staging := "r2"
	lms, cms, guacd := servePlatform(t, &staging)
	writeEnv(t, inv, "staging", "r2", lms, cms, guacd, `  lms: [{name: s-lms1, address: 127.0.0.1}]
  cms: [{name: s-cms1, address: 127.0.0.1}]
  guacd: [{name: s-guacd1, address: 127.0.0.1}]`)
	writeEnv(t, inv, "production", "r1", lms, cms, guacd, `  lms: [{name: lms1, address: 127.0.0.2}, {name: lms2, address: 127.0.0.3}]
  cms: [{name: cms1, address: 127.0.0.4}]
  guacd: [{name: guacd1, address: 127.0.0.5}]`)
	run := func(args ...string) result {
		t.Helper()
		return s.run(append([]string{"--project", moduleRoot(t), "--inventories", inv, "--state-dir", s.dir + "/state"}, args...)...)
	}

	st := s.open()
	now := time.Now()
	record := func(id, env, rel string, ago time.Duration, status runs.Status, hosts ...string) {
		t.Helper()
		r := runs.Run{ID: id, Kind: runs.Deploy, Environment: env, Release: rel, Actor: "ci", StartedAt: now.Add(-ago)}
		if err := st.CreateRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		r.Status, r.FinishedAt, r.Recap = status, now.Add(-ago+time.Minute), map[string]runs.HostRecap{}
		for _, h := range hosts {
			r.Recap[h] = runs.HostRecap{OK: 20}
		}
		if err := st.FinishRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	record("run-p1", "production", "r1", 48*time.Hour, runs.Succeeded, "lms1", "lms2", "cms1", "guacd1")
	record("run-s1", "staging", "r1", 72*time.Hour, runs.Succeeded, "s-lms1", "s-cms1", "s-guacd1")
	record("run-s2", "staging", "r2", 2*time.Hour, runs.Succeeded, "s-lms1", "s-cms1", "s-guacd1")

	// release list and show
	r := run("release", "list", "--output", "json")
	var sums []release.Summary
	if err := json.Unmarshal([]byte(r.out), &sums); r.code != cli.ExitOK || err != nil || len(sums) != 3 ||
		sums[0].Release != "r2" || sums[0].Environment != "staging" || len(sums[0].Hosts) != 3 {
		t.Fatalf("release list: %v\n%s", err, r)
	}
	if r := run("release", "show", "r1"); r.code != cli.ExitOK || !strings.Contains(r.out, "run-p1") || !strings.Contains(r.out, "lms1,lms2") {
		t.Errorf("release show r1: %s", r)
	}
	if r := run("release", "show", "r9"); r.code != cli.ExitBadInput {
		t.Errorf("release show of a release never deployed: %s", r)
	}

	// a secret of the target missing: refused before the gate, nothing started
	t.Setenv("LABPLANE_PROMOTE_TEST_SECRET", "")
	r = run("promote", "--from", "staging", "--to", "production", "--yes")
	if r.code != cli.ExitBadInput || !strings.Contains(r.err, "secrets.secret_key: environment variable LABPLANE_PROMOTE_TEST_SECRET is not set") ||
		strings.Contains(r.out, "GATE") || strings.Contains(r.err, "rollback") {
		t.Errorf("promote with the target's secret missing: %s", r)
	}
	if ps, err := st.ListPromotions(t.Context(), "production"); err != nil || len(ps) != 0 {
		t.Errorf("promotions recorded after a refusal: %v %v", ps, err)
	}
	t.Setenv("LABPLANE_PROMOTE_TEST_SECRET", "secret-value-123")

	// the gate passes after the soak time, and the plan has a batch per host (serial 1)
	r = run("promote", "--from", "staging", "--to", "production", "--serial", "1", "--dry-run", "--output", "json")
	var res struct {
		Gate    release.Verdict  `json:"gate"`
		Batches []platform.Batch `json:"batches"`
	}
	if err := json.Unmarshal([]byte(r.out), &res); r.code != cli.ExitOK || err != nil || !res.Gate.Pass || res.Gate.Release != "r2" ||
		len(res.Batches) != 4 || res.Batches[1].Limit() != "lms2" {
		t.Fatalf("promote --dry-run: %v\n%s", err, r)
	}
	// too fresh
	r = run("promote", "--from", "staging", "--to", "production", "--soak", "3h", "--dry-run")
	if r.code != cli.ExitBadInput || !strings.Contains(r.out, "REFUSES r2") || !strings.Contains(r.out, "less than the soak time 3h0m0s") {
		t.Errorf("promote of a too fresh release: %s", r)
	}
	// another release than the source's
	r = run("promote", "--from", "staging", "--to", "production", "--release", "r3", "--dry-run")
	if r.code != cli.ExitBadInput || !strings.Contains(r.out, "staging runs r2, not r3") {
		t.Errorf("promote of a release the source does not run: %s", r)
	}
	// unhealthy: /heartbeat answers 503 (not a dry run: refused before anything is changed)
	staging = ""
	r = run("promote", "--from", "staging", "--to", "production", "--yes")
	if r.code != cli.ExitBadInput || !strings.Contains(r.out, "unhealthy: lms on s-lms1") || !strings.Contains(r.err, "gate refused") {
		t.Errorf("promote of an unhealthy source: %s", r)
	}
	staging = "r2"

	// one deploy or promotion per environment: the second is told who holds it
	holder := platform.Lock{Environment: "production", Kind: "promote", Holder: "0194-other", Actor: "ci:pipeline-7",
		PID: 4242, Host: "runner-3", Since: now}
	_, unlock, err := s.open().LockEnvironment(t.Context(), holder)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"promote", "--from", "staging", "--to", "production", "--yes"},
		{"deploy", "production", "--yes"},
	} {
		r := run(args...)
		if r.code != cli.ExitBadInput || !strings.Contains(r.err, "environment production is busy: promote 0194-other by ci:pipeline-7 (pid 4242 on runner-3)") {
			t.Errorf("%s while production is held: %s", args[0], r)
		}
	}
	if err := unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	// a dry run takes no lock, and the lock is free again
	if r := run("promote", "--from", "staging", "--to", "production", "--dry-run"); r.code != cli.ExitOK {
		t.Errorf("dry run after unlock: %s", r)
	}

	// once production runs r2 (a promotion), its spec's r1 is a downgrade: refused before Ansible
	record("run-p2", "production", "r2", time.Hour, runs.Succeeded, "lms1", "lms2", "cms1", "guacd1")
	r = run("deploy", "production", "--yes")
	if r.code != cli.ExitBadInput || !strings.Contains(r.err, "production runs r2 on lms1, a release production got after r1") ||
		!strings.Contains(r.err, "set release: r2 in ") || !strings.Contains(r.err, "--allow-downgrade") {
		t.Errorf("deploy production (spec r1) while it runs r2: %s", r)
	}
	if rs, err := st.ListRuns(t.Context(), runs.Filter{Environment: "production"}); err != nil || len(rs) != 2 {
		t.Errorf("production's runs after a refused deploy: %d, %v", len(rs), err)
	}
}

// resumeSite is a site with a one-host staging running stagingRelease (healthy) and a
// one-host production running r1 (by the records): for the promotions resumed.
func resumeSite(t *testing.T, stagingRelease string) (*site, *store.Store, []string) {
	t.Helper()
	t.Setenv("LABPLANE_PROMOTE_TEST_SECRET", "secret-value-123")
	s := newSite(t, registryOnly)
	inv := filepath.Join(s.dir, "inventories")
	rel := stagingRelease
	lms, cms, guacd := servePlatform(t, &rel)
	writeEnv(t, inv, "staging", stagingRelease, lms, cms, guacd, `  lms: [{name: s-lms1, address: 127.0.0.1}]
  cms: [{name: s-cms1, address: 127.0.0.1}]
  guacd: [{name: s-guacd1, address: 127.0.0.1}]`)
	writeEnv(t, inv, "production", "r1", lms, cms, guacd, `  lms: [{name: lms1, address: 127.0.0.2}]
  cms: [{name: cms1, address: 127.0.0.4}]
  guacd: [{name: guacd1, address: 127.0.0.5}]`)
	st := s.open()
	now := time.Now()
	for _, r := range []runs.Run{
		{ID: "run-p1", Environment: "production", Release: "r1", StartedAt: now.Add(-48 * time.Hour)},
		{ID: "run-s", Environment: "staging", Release: stagingRelease, StartedAt: now.Add(-2 * time.Hour)},
	} {
		r.Kind, r.Actor = runs.Deploy, "ci"
		if err := st.CreateRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		r.Status, r.FinishedAt, r.Recap = runs.Succeeded, r.StartedAt.Add(time.Minute), map[string]runs.HostRecap{}
		for _, h := range []string{"lms1", "cms1", "guacd1", "s-lms1", "s-cms1", "s-guacd1"} {
			if strings.HasPrefix(h, "s-") == (r.Environment == "staging") {
				r.Recap[h] = runs.HostRecap{OK: 20}
			}
		}
		if err := st.FinishRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	return s, st, []string{"--project", moduleRoot(t), "--inventories", inv, "--state-dir", s.dir + "/state",
		"promote", "--from", "staging", "--to", "production", "--yes", "--resume"}
}

// A resumed promotion holds the target in its own name: a promotion started meanwhile is told
// which one runs (not a new id no record has). The resumed one is held in its backup hook
// (the promotion was interrupted before its backup), which then fails: nothing is deployed.
func TestPromoteResumeHoldsTheTargetInItsName(t *testing.T) {
	s, st, args := resumeSite(t, "r2")
	now := time.Now()
	interrupted := platform.Promotion{ID: "0194-interrupted", From: "staging", To: "production", Release: "r2", Previous: "r1",
		Actor: "ci", StartedAt: now.Add(-time.Hour), Status: platform.Interrupted, Phase: platform.PhaseBackup, Serial: "100%",
		Batches: []platform.Batch{{Hosts: []string{"lms1"}}, {Hosts: []string{"cms1"}}, {Hosts: []string{"guacd1"}}}, FailedBatch: -1}
	if err := st.SavePromotion(t.Context(), interrupted); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(s.dir, "hold")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() { done <- s.run(append(args, "--backup-hook", `read line < "`+fifo+`"; exit 3`)...) }()

	// the resumed promotion runs (recorded running: the target is held), in its hook
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for running := false; !running; {
		select {
		case r := <-done:
			t.Fatalf("the resumed promotion ended: %s", r)
		case <-tick.C:
			p, err := st.GetPromotion(t.Context(), interrupted.ID)
			running = err == nil && p.Status == platform.Promoting
		}
	}
	if r := s.run(args...); r.code != cli.ExitBadInput || !strings.Contains(r.err, "environment production is busy: promote 0194-interrupted by ") {
		t.Errorf("a promotion while 0194-interrupted is resumed: %s", r)
	}
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("go\n")
	f.Close()
	r := <-done
	if r.code != cli.ExitFailed || !strings.Contains(r.err, "backup failed, nothing was deployed") {
		t.Errorf("the resumed promotion whose backup fails: %s", r)
	}
	if p, err := st.GetPromotion(t.Context(), interrupted.ID); err != nil || p.Status != platform.PromotionFailed || len(p.Runs) != 1 || p.Runs[0] != "hook" {
		t.Errorf("recorded %+v %v", p, err)
	}
}

// A promotion interrupted while it rolled back is carried on with --resume whatever the source
// runs meanwhile: going back needs no gate. (The rollback's deploy then fails here, as there
// is no host at the target's addresses: what counts is that it is attempted, not refused.)
func TestPromoteResumesARollbackWhateverTheSource(t *testing.T) {
	s, st, args := resumeSite(t, "r3") // staging has moved on since the promotion of r2
	now := time.Now()
	interrupted := platform.Promotion{ID: "0194-rolling-back", From: "staging", To: "production", Release: "r2", Previous: "r1",
		Actor: "ci", StartedAt: now.Add(-time.Hour), Status: platform.Interrupted, Phase: platform.PhaseRollback, Serial: "100%",
		Batches: []platform.Batch{{Hosts: []string{"lms1"}}, {Hosts: []string{"cms1"}}, {Hosts: []string{"guacd1"}}},
		Done:    1, FailedBatch: 1, Error: "batch 2 of 3 (cms1) failed on cms1: 503"}
	if err := st.SavePromotion(t.Context(), interrupted); err != nil {
		t.Fatal(err)
	}
	r := s.run(args...)
	if r.code == cli.ExitBadInput || strings.Contains(r.err, "not staging's r3") {
		t.Fatalf("the resumed rollback was refused: %s", r)
	}
	p, err := st.GetPromotion(t.Context(), interrupted.ID)
	if _, noAnsible := exec.LookPath("ansible-playbook"); noAnsible != nil {
		// go test -short on a machine without Ansible: the rollback was attempted all the same,
		// and failed at its start saying what to install
		if err != nil || p.Status != platform.PromotionFailed || !strings.Contains(p.Error, "rollback: ansible-playbook not found: install Ansible") {
			t.Fatalf("recorded %+v %v\n%s", p, err, r)
		}
		return
	}
	if err != nil || p.Status != platform.PromotionFailed || !strings.Contains(p.Error, "rollback: ") || len(p.Runs) != 1 {
		t.Fatalf("recorded %+v %v\n%s", p, err, r)
	}
	if run, err := st.GetRun(t.Context(), p.Runs[0]); err != nil || run.Kind != runs.Rollback || run.Release != "r1" ||
		run.Options.Limit != "lms1,cms1" {
		t.Errorf("the rollback's run %+v %v", run, err)
	}
}
