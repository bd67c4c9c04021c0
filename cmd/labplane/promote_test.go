package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cli"
	"github.com/labplane/labplane/internal/dev/testhosts/standins"
	"github.com/labplane/labplane/internal/dev/testhosts/testhoststest"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/release"
	"github.com/labplane/labplane/internal/runs"
	"github.com/labplane/labplane/internal/store"
)

// labplane runs the command line against one registry, the project's playbooks and the
// inventories of the platforms: what an operator (or CI) does, exit codes included.
type labplane struct {
	t                       *testing.T
	config, state, inv, dir string
	st                      *store.Store
	// secrets must never be in what labplane prints
	secrets []string
}

func newLabplane(t *testing.T, inventories string) *labplane {
	t.Helper()
	dir := t.TempDir()
	l := &labplane{t: t, config: filepath.Join(dir, "labplane.yaml"), state: filepath.Join(dir, "state"), inv: inventories, dir: dir}
	if err := os.WriteFile(l.config, []byte("store:\n  dsn: labplane.db\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// opened (and migrated) before any command: the commands then open it side by side
	st, err := store.Open(t.Context(), store.SQLite, filepath.Join(dir, "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l.st = st
	return l
}

type result struct {
	code     int
	out, err string
	took     time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %s\nstdout:\n%s\nstderr:\n%s", r.code, r.took.Round(100*time.Millisecond), r.out, r.err)
}

// run runs labplane with args until it ends or ctx is cancelled (Ctrl-C).
func (l *labplane) run(ctx context.Context, args ...string) result {
	return l.runAt(ctx, false, args...)
}

// runAt is run, with stderr a terminal or not (progress drawn on it: by mpb, which draws on a
// buffer as on a terminal 30 columns wide).
func (l *labplane) runAt(ctx context.Context, terminal bool, args ...string) result {
	var out, errOut bytes.Buffer
	root := projectRoot()
	all := append([]string{"labplane", "--config", l.config, "--project", root, "--inventories", l.inv,
		"--state-dir", l.state, "--log-level", "warn"}, args...)
	t0 := time.Now()
	code := cli.Run(ctx, all, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errOut, ErrTerminal: terminal})
	r := result{code: code, out: out.String(), err: errOut.String(), took: time.Since(t0)}
	l.t.Logf("labplane %s: exit %d in %.1fs", strings.Join(args, " "), code, r.took.Seconds())
	for _, secret := range l.secrets {
		if strings.Contains(r.out+r.err, secret) {
			l.t.Errorf("labplane %s printed a secret key", strings.Join(args, " "))
		}
	}
	return r
}

// start runs labplane in the background; wait returns its result.
func (l *labplane) start(ctx context.Context, args ...string) (wait func() result) {
	done := make(chan result, 1)
	go func() { done <- l.run(ctx, args...) }()
	var once sync.Once
	var r result
	return func() result {
		once.Do(func() { r = <-done })
		return r
	}
}

// promoteResult is promote --output json's answer.
type promoteResult struct {
	Gate      release.Verdict     `json:"gate"`
	Batches   []platform.Batch    `json:"batches"`
	Promotion *platform.Promotion `json:"promotion"`
	Error     string              `json:"error"`
}

func decodePromote(t *testing.T, r result) promoteResult {
	t.Helper()
	var res promoteResult
	if err := json.Unmarshal([]byte(r.out), &res); err != nil {
		t.Fatalf("promote --output json: %v\n%s", err, r)
	}
	return res
}

// promotion is the newest promotion to env.
func (l *labplane) promotion(t *testing.T, env string) (platform.Promotion, bool) {
	t.Helper()
	ps, err := l.st.ListPromotions(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) == 0 {
		return platform.Promotion{}, false
	}
	return ps[0], true
}

// waitFor waits until cond holds, or the command it watches ends first (then it fails the
// test). It gives up a minute before the test's deadline (go test -timeout), not sooner: on a
// busy machine one host's deploy took more than 5 minutes.
func waitFor(t *testing.T, what string, ended <-chan struct{}, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var timeout <-chan time.Time // none without a deadline
	if d, ok := t.Deadline(); ok {
		timeout = time.After(time.Until(d) - time.Minute)
	}
	start := time.Now()
	for !cond() {
		select {
		case <-ended:
			t.Fatalf("the command ended before %s", what)
		case <-timeout:
			t.Fatalf("no %s in %s (the test's deadline is a minute away)", what, time.Since(start).Round(time.Second))
		case <-tick.C:
		}
	}
}

// waitPromotion waits until the newest promotion to env satisfies cond (see waitFor).
func (l *labplane) waitPromotion(t *testing.T, env string, ended <-chan struct{}, what string, cond func(platform.Promotion) bool) platform.Promotion {
	t.Helper()
	var p platform.Promotion
	waitFor(t, what, ended, func() bool {
		var ok bool
		p, ok = l.promotion(t, env)
		return ok && cond(p)
	})
	return p
}

// changedOn reports whether a run's log (Ansible's events, a JSON object a line) has a task
// that changed host.
func changedOn(t *testing.T, logPath, host string) bool {
	t.Helper()
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(log, []byte("\n")) {
		var e struct {
			Event string `json:"_event"`
			Hosts map[string]struct {
				Changed bool `json:"changed"`
			} `json:"hosts"`
		}
		if json.Unmarshal(line, &e) == nil && e.Event == "v2_runner_on_ok" && e.Hosts[host].Changed {
			return true
		}
	}
	return false
}

// runsOf are env's recorded runs, oldest first.
func (l *labplane) runsOf(t *testing.T, env string) []runs.Run {
	t.Helper()
	rs, err := l.st.ListRuns(t.Context(), runs.Filter{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(rs)
	return rs
}

// waitSoaked waits until the release env's hosts run has run there for soak (by the records).
func (l *labplane) waitSoaked(t *testing.T, env string, hosts []string, soak time.Duration) {
	t.Helper()
	_, since, ok := release.Deployed(release.HostStates(l.runsOf(t, env)), hosts)
	if !ok {
		t.Fatalf("%s's hosts %v do not run one release", env, hosts)
	}
	select {
	case <-time.After(time.Until(since.Add(soak))):
	case <-t.Context().Done():
	}
}

func projectRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// assertReleases checks what every lms and cms host of p answers on /heartbeat (from the
// machine, with internal/health): 200 and release.
func assertReleases(t *testing.T, p *testhoststest.Platform, release string) {
	t.Helper()
	for _, hb := range p.Heartbeats(t.Context()) {
		switch {
		case hb.Err != nil:
			t.Errorf("%s: %s %s /heartbeat: %v", p.Env, hb.Host, hb.Service, hb.Err)
		case hb.Status.Release != release:
			t.Errorf("%s: %s %s /heartbeat reports %q, want %q", p.Env, hb.Host, hb.Service, hb.Status.Release, release)
		}
	}
}

// Promotion end to end, through the command line an operator (or CI) uses, exit codes and
// messages included; rollout's and release's own tests hold the rules one by one.
//
// Promotion with the real thing: two environments on test hosts (staging: lms1, cms1,
// guacd1; production: lms1, lms2, cms1, guacd1, each on its own network), deployed and
// promoted through the command line with real Ansible over SSH. Each step builds on the last:
//
//   - r1 on production, r2 on staging; the gate refuses r2 while it is too fresh;
//   - r2 promoted to production in 3 batches (lms1+lms2, cms1, guacd1: the target's
//     rollout.serial, 100%), after the backup: every host reports r2; a routine deploy of
//     production, whose spec still says r1, is refused as a downgrade;
//   - r3 (broken on lms2 only: its /heartbeat answers 503 there) on staging, where it is healthy;
//     its promotion is started, a second promotion at once is refused naming it, and it is
//     interrupted (the context cancelled, as Ctrl-C does) while Ansible deploys batch 2 of 4
//     (--serial 1: lms1, lms2, cms1, guacd1), batch 1 done: it is recorded interrupted and a new
//     promotion is refused;
//   - --resume carries it on from batch 2 (a second promotion is refused naming it again): lms2
//     fails, lms1 and lms2 are rolled back, and every host reports r2 again (exit 1);
//   - the gate refuses an unhealthy source (staging's lms1 stopped).
//
// Not parallel: the platforms set environment variables.
func TestPromoteOverSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys to test hosts: not with -short")
	}
	// the test's own deadline only (go test -timeout): on a busy new machine its deploys take
	// minutes each, and a shorter one cut a rollback off half-way
	ctx := t.Context()
	inv := t.TempDir()
	broken := standins.ArtifactOptions{UnhealthyOn: []string{"lms2"}}
	staging := testhoststest.NewPlatformWith(t, testhoststest.PlatformOptions{Env: "staging", Inventories: inv, Releases: []string{"r2"}})
	staging.AddArtifact(t, "r3", broken)
	production := testhoststest.NewPlatformWith(t, testhoststest.PlatformOptions{Env: "production", Inventories: inv,
		Hosts: map[string][]string{"lms": {"lms1", "lms2"}, "cms": {"cms1"}, "guacd": {"guacd1"}}, Releases: []string{"r1", "r2"}})
	production.AddArtifact(t, "r3", broken)
	lp := newLabplane(t, inv)
	lp.secrets = []string{staging.Secret, production.Secret}
	promote := []string{"promote", "--from", "staging", "--to", "production", "--yes"}

	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow() // the next steps build on this one
		}
	}

	step("r1 on production, r2 on staging, side by side", func(t *testing.T) {
		waitProd := lp.start(ctx, "deploy", "production", "--yes")
		defer waitProd() // a failure here must not leave it logging after the test
		if r := lp.run(ctx, "deploy", "staging", "--yes"); r.code != cli.ExitOK {
			t.Fatalf("deploy r2 to staging: %s", r)
		}
		if r := waitProd(); r.code != cli.ExitOK {
			t.Fatalf("deploy r1 to production: %s", r)
		}
		staging.AssertServing(ctx, t, "r2")
		production.AssertServing(ctx, t, "r1")
	})

	step("the gate refuses a release too fresh", func(t *testing.T) {
		r := lp.run(ctx, append(promote, "--soak", "1h", "--output", "json")...)
		res := decodePromote(t, r)
		if r.code != cli.ExitBadInput || res.Gate.Pass || res.Gate.Release != "r2" || len(res.Gate.Reasons) != 1 ||
			!strings.Contains(res.Gate.Reasons[0], "less than the soak time 1h0m0s") || res.Promotion != nil {
			t.Errorf("promote of a release deployed seconds ago with --soak 1h: %s", r)
		}
		if _, ok := lp.promotion(t, "production"); ok {
			t.Error("a refused promotion was recorded")
		}
		if n := len(lp.runsOf(t, "production")); n != 1 {
			t.Errorf("production has %d runs after a refused promotion, want 1", n)
		}
	})

	stagingHosts := []string{"lms1", "cms1", "guacd1"}
	step("r2 promoted in 3 batches: every host reports it", func(t *testing.T) {
		lp.waitSoaked(t, "staging", stagingHosts, time.Second)
		// serial: production's rollout.serial (100%): a batch per service; stderr a terminal
		r := lp.runAt(ctx, true, append(promote, "--soak", "1s", "--output", "json")...)
		res := decodePromote(t, r)
		if r.code != cli.ExitOK || res.Promotion == nil {
			t.Fatalf("promote r2: %s", r)
		}
		// the progress: a line per host over the backup's run and its batch's, complete at
		// the end (the last frame drawn)
		for _, host := range []string{"lms1", "lms2", "cms1", "guacd1"} {
			lines := regexp.MustCompile(host+` +tasks +(\d+)/(\d+)`).FindAllStringSubmatch(r.err, -1)
			if len(lines) == 0 {
				t.Errorf("no progress line for %s at a terminal:\n%s", host, r.err)
				continue
			}
			last := lines[len(lines)-1]
			if done, _ := strconv.Atoi(last[1]); last[1] != last[2] || done < 15 {
				t.Errorf("%s's progress at the end: %s of %s tasks (want all of the backup's and its batch's)", host, last[1], last[2])
			}
		}
		p := *res.Promotion
		var limits []string
		for _, b := range p.Batches {
			limits = append(limits, b.Limit())
		}
		if p.Status != platform.Promoted || p.Release != "r2" || p.Previous != "r1" || p.Serial != "100%" || p.Done != 3 ||
			p.FailedBatch != -1 || !slices.Equal(limits, []string{"lms1,lms2", "cms1", "guacd1"}) {
			t.Errorf("promotion %+v (batches %v)", p, limits)
		}
		assertReleases(t, production, "r2")
		production.AssertServing(ctx, t, "r2")
		// the backup (--tags backup, with the release production ran), then a run per batch
		rs := lp.runsOf(t, "production")[1:]
		var got []string
		for _, run := range rs {
			got = append(got, string(run.Kind)+":"+run.Release+":"+run.Options.Limit+":"+string(run.Status))
		}
		want := []string{"backup:r1:lms1,lms2,cms1,guacd1:succeeded", "promote:r2:lms1,lms2:succeeded",
			"promote:r2:cms1:succeeded", "promote:r2:guacd1:succeeded"}
		if !slices.Equal(got, want) {
			t.Errorf("production's runs:\n got %v\nwant %v", got, want)
		}
		if len(p.Runs) != 4 || p.Runs[0] != rs[0].ID {
			t.Errorf("the promotion's runs %v", p.Runs)
		}
		backups, _ := filepath.Glob(filepath.Join(production.Set.UpperDir("lms2"), "edx/var/backups/edxapp-lms-r1-*.sqlite3"))
		if len(backups) != 1 {
			t.Errorf("lms2's backups of r1's database: %v", backups)
		}
	})

	step("a routine deploy of production after the promotion does not take r1 back", func(t *testing.T) {
		// production's spec still says r1: the registry knows its hosts got r2 after it
		r := lp.run(ctx, "deploy", "production", "--yes")
		if r.code != cli.ExitBadInput || !strings.Contains(r.err, "production runs r2 on lms1, a release production got after r1") ||
			!strings.Contains(r.err, "--allow-downgrade") {
			t.Errorf("deploy production (spec r1) after r2 was promoted: %s", r)
		}
		if n := len(lp.runsOf(t, "production")); n != 5 {
			t.Errorf("production has %d runs after a refused deploy, want 5", n)
		}
	})

	var interrupted platform.Promotion
	step("two at once, then Ctrl-C during batch 2: recorded, resumable, nothing else starts", func(t *testing.T) {
		if r := lp.run(ctx, "deploy", "staging", "--release", "r3", "--yes"); r.code != cli.ExitOK {
			t.Fatalf("deploy r3 to staging (broken on lms2 only: healthy there): %s", r)
		}
		staging.AssertServing(ctx, t, "r3")
		lp.waitSoaked(t, "staging", stagingHosts, time.Second)

		pctx, interrupt := context.WithCancel(ctx)
		ended := make(chan struct{})
		wait := lp.start(pctx, append(promote, "--soak", "1s", "--serial", "1", "--backup", "none")...)
		defer func() { interrupt(); wait() }()
		go func() { wait(); close(ended) }()
		first := lp.waitPromotion(t, "production", ended, "the promotion of r3 recorded",
			func(p platform.Promotion) bool { return p.Release == "r3" })

		r := lp.run(ctx, append(promote, "--soak", "1s")...)
		if r.code != cli.ExitBadInput || !strings.Contains(r.err, "environment production is busy: promote "+first.ID+" by ") {
			t.Errorf("a second promotion while %s runs: %s", first.ID, r)
		}
		if r := lp.run(ctx, "deploy", "production", "--yes"); r.code != cli.ExitBadInput ||
			!strings.Contains(r.err, "environment production is busy: promote "+first.ID) {
			t.Errorf("a deploy while %s runs: %s", first.ID, r)
		}

		// Ctrl-C in the middle: batch 1 (lms1) done, and batch 2's Ansible run has changed
		// something on lms2
		lp.waitPromotion(t, "production", ended, "batch 1 done", func(p platform.Promotion) bool { return p.Done == 1 })
		waitFor(t, "a change on lms2 in batch 2", ended, func() bool {
			for _, run := range lp.runsOf(t, "production") {
				if run.Release == "r3" && run.Options.Limit == "lms2" && run.Status == runs.Running {
					return changedOn(t, run.LogPath, "lms2")
				}
			}
			return false
		})
		interrupt()
		r = wait()
		if r.code != cli.ExitFailed || !strings.Contains(r.err, "promotion interrupted at rolling (batches done: 1 of 4)") ||
			!strings.Contains(r.err, "--resume") {
			t.Errorf("the interrupted promotion: %s", r)
		}
		p, _ := lp.promotion(t, "production")
		if p.ID != first.ID || p.Status != platform.Interrupted || p.Phase != platform.PhaseRolling || p.Done != 1 ||
			!p.FinishedAt.IsZero() || !slices.Equal(p.ChangedHosts(), []string{"lms1", "lms2"}) {
			t.Errorf("recorded %+v", p)
		}
		interrupted = p
		if len(p.Runs) != 2 {
			t.Fatalf("the interrupted promotion's runs %v: want batch 1's and batch 2's", p.Runs)
		}
		if run, err := lp.st.GetRun(ctx, p.Runs[0]); err != nil || run.Status != runs.Succeeded || run.Options.Limit != "lms1" {
			t.Errorf("batch 1's run %+v %v", run, err)
		}
		if run, err := lp.st.GetRun(ctx, p.Runs[1]); err != nil || run.Status != runs.Cancelled || run.Options.Limit != "lms2" {
			t.Errorf("batch 2's run %+v %v: want cancelled", run, err)
		} else {
			t.Logf("batch 2's run, cancelled after %.1fs: recap %+v", run.FinishedAt.Sub(run.StartedAt).Seconds(), run.Recap)
		}
		for _, hb := range production.Heartbeats(ctx) {
			t.Logf("after the interruption, %s %s runs %q (%v)", hb.Host, hb.Service, hb.Status.Release, hb.Err)
		}

		// the environment is free again, but a new promotion is refused: resume it first
		r = lp.run(ctx, append(promote, "--soak", "1s")...)
		if r.code != cli.ExitBadInput || !strings.Contains(r.err, "promotion "+p.ID+" of r3 to production was interrupted at rolling "+
			"(batches done: 1 of 4; hosts it may have changed: lms1,lms2): carry it on with --resume") {
			t.Errorf("a new promotion after an interrupted one: %s", r)
		}
	})

	step("resumed: batch 2 fails on lms2, lms1 and lms2 are rolled back to r2", func(t *testing.T) {
		pctx, interrupt := context.WithCancel(ctx)
		ended := make(chan struct{})
		wait := lp.start(pctx, append(promote, "--soak", "1s", "--resume", "--output", "json")...)
		defer func() { interrupt(); wait() }()
		go func() { wait(); close(ended) }()
		lp.waitPromotion(t, "production", ended, "the resumed promotion running",
			func(p platform.Promotion) bool { return p.Status == platform.Promoting })
		r := lp.run(ctx, append(promote, "--soak", "1s", "--resume")...)
		if r.code != cli.ExitBadInput || !strings.Contains(r.err, "environment production is busy: promote "+interrupted.ID+" by ") {
			t.Errorf("a second promotion while %s is resumed: %s", interrupted.ID, r)
		}

		r = wait()
		res := decodePromote(t, r)
		if r.code != cli.ExitFailed || !strings.Contains(r.err, "promotion failed and was rolled back") || res.Promotion == nil {
			t.Fatalf("the resumed promotion of r3: %s", r)
		}
		p := *res.Promotion
		if p.ID != interrupted.ID || p.Status != platform.RolledBack || p.Done != 1 || p.FailedBatch != 1 ||
			!strings.Contains(p.Error, "batch 2 of 4 (lms2) failed on lms2") ||
			!strings.Contains(p.Error, "lms2 failed at task") || !strings.Contains(p.Error, `Check the service's heartbeat"`) {
			t.Errorf("promotion %+v", p)
		}
		for _, c := range p.Health {
			if !c.Healthy("r2") || !slices.Contains([]string{"lms1", "lms2"}, c.Host) {
				t.Errorf("after the rollback: %+v", c)
			}
		}
		assertReleases(t, production, "r2")
		production.AssertServing(ctx, t, "r2")

		// the runs since the interruption: batch 2 again (failed), then the rollback; batch 1
		// was not deployed again
		var kinds []string
		for _, id := range p.Runs[len(interrupted.Runs):] {
			run, err := lp.st.GetRun(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, string(run.Kind)+":"+run.Release+":"+run.Options.Limit+":"+string(run.Status))
		}
		if want := []string{"promote:r3:lms2:failed", "rollback:r2:lms1,lms2:succeeded"}; !slices.Equal(kinds, want) {
			t.Errorf("runs of the resumed promotion %v, want %v", kinds, want)
		}
		states := release.HostStates(lp.runsOf(t, "production"))
		for _, h := range []string{"lms1", "lms2", "cms1", "guacd1"} {
			if st := states[h]; st.Release != "r2" || st.Failed {
				t.Errorf("recorded state of %s: %+v", h, st)
			}
		}
	})

	step("the gate refuses an unhealthy source", func(t *testing.T) {
		if err := staging.Set.Stop(ctx, "lms1"); err != nil {
			t.Fatal(err)
		}
		r := lp.run(ctx, append(promote, "--soak", "1s", "--output", "json")...)
		res := decodePromote(t, r)
		if r.code != cli.ExitBadInput || res.Gate.Pass || len(res.Gate.Reasons) != 1 ||
			!strings.HasPrefix(res.Gate.Reasons[0], "unhealthy: lms on lms1: ") || res.Promotion != nil {
			t.Errorf("promote from staging with lms1 down: %s", r)
		}
		if p, _ := lp.promotion(t, "production"); p.ID != interrupted.ID {
			t.Errorf("a refused promotion was recorded: %+v", p)
		}
		assertReleases(t, production, "r2")
	})
}
