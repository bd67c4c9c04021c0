package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/deploy"
	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/dev/testhosts/standins"
	"github.com/labplane/labplane/internal/dev/testhosts/testhoststest"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/health"
	"github.com/labplane/labplane/internal/inventory"
	"github.com/labplane/labplane/internal/runs"
	"github.com/labplane/labplane/internal/store"
)

var hosts *testhosts.Set

func TestMain(m *testing.M) { os.Exit(testhoststest.Main(m, &hosts, testhoststest.PlatformHosts)) }

// projectRoot is the repository's root (playbooks/ and roles/ are there).
func projectRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

type fixture struct {
	p   *testhoststest.Platform
	st  *store.Store
	d   deploy.Deployer
	inv string
}

func newFixture(t testing.TB, releases ...string) *fixture {
	if hosts == nil {
		t.Skip("needs test hosts: not with -short")
	}
	return fixtureOn(t, testhoststest.NewPlatform(t, hosts, releases...))
}

// fixtureOn is the fixture of platform p: a Deployer recording into a fresh registry.
func fixtureOn(t testing.TB, p *testhoststest.Platform) *fixture {
	f := &fixture{p: p}
	var err error
	f.st, err = store.Open(t.Context(), store.SQLite, filepath.Join(t.TempDir(), "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	f.d = deploy.Deployer{Registry: f.st, Project: projectRoot(t), LogDir: filepath.Join(t.TempDir(), "runs"),
		Now: time.Now, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	return f
}

// deploy renders the inventory and deploys, collecting the progress events.
func (f *fixture) deploy(ctx context.Context, t *testing.T, release string, opts runs.Options) (runs.Run, []ansible.Event, error) {
	t.Helper()
	env := f.p.Environment(t)
	inv, err := inventory.Write(env, env.Hosts)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []ansible.Event
	t0 := time.Now()
	run, err := f.d.Deploy(ctx, deploy.Request{Env: env, Inventory: inv, Release: release, Options: opts, Actor: "test",
		Progress: func(e ansible.Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
		}})
	t.Logf("deploy %s %+v: %s in %.1fs", release, opts, run.Status, time.Since(t0).Seconds())
	return run, events, err
}

func (f *fixture) assertRecorded(t *testing.T, want runs.Run) {
	t.Helper()
	got, err := f.st.GetRun(t.Context(), want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != want.Status || got.Release != want.Release || len(got.Recap) != len(want.Recap) || got.FinishedAt.IsZero() {
		t.Errorf("recorded run %+v\nreturned %+v", got, want)
	}
	raw, _ := json.Marshal(got)
	if strings.Contains(string(raw), f.p.Secret) {
		t.Errorf("the run record holds the secret key")
	}
	log, err := os.ReadFile(got.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(got.LogPath); st.Mode().Perm() != 0o600 {
		t.Errorf("log %s mode %v, want 0600", got.LogPath, st.Mode().Perm())
	}
	if strings.Contains(string(log), f.p.Secret) {
		t.Errorf("the run log holds the secret key")
	}
	if !strings.Contains(string(log), `"v2_playbook_on_stats"`) && want.Status != runs.Cancelled {
		t.Errorf("the run log lacks the recap event")
	}
}

// One test, in order, on the package's set of hosts: a deploy, a second one that changes
// nothing, a check of another release that changes nothing, a backup, an interrupted deploy,
// and a deploy with a host down (last: a stopped host stays down).
func TestDeployOverSSH(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "r1", "r2")
	ctx := t.Context()

	run, events, err := f.deploy(ctx, t, "", runs.Options{})
	if err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	if run.Status != runs.Succeeded || run.Release != "r1" || run.Environment != testhoststest.Env || run.Actor != "test" {
		t.Errorf("run %+v", run)
	}
	for _, h := range []string{"lms1", "cms1", "guacd1"} {
		if r, ok := run.Recap[h]; !ok || r.OK == 0 || r.Failed+r.Unreachable > 0 {
			t.Errorf("%s recap %+v", h, r)
		}
	}
	perHost := map[string]int{}
	for _, e := range events {
		if e.Host != "" {
			perHost[e.Host]++
		}
	}
	if len(perHost) != 3 {
		t.Errorf("progress events per host %v, want all three hosts", perHost)
	}
	f.assertRecorded(t, run)
	f.p.AssertServing(ctx, t, "r1")
	// edx-platform's heartbeat, asked for by the site name; the static files collected
	lms, _ := f.p.Set.Host("lms1")
	base := "http://" + net.JoinHostPort(lms.Address, strconv.Itoa(envspec.DefaultLMSPort))
	if st, err := health.Service(ctx, base, "lms.test", ""); err != nil || st.Release != "r1" || !st.Checks["sql"].Status || !st.Checks["modulestore"].Status {
		t.Errorf("lms1: %+v %v", st, err)
	}
	if resp, err := http.Get(base + "/static/openedx/standin.css"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("lms1 /static/openedx/standin.css: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// guacd listens on the host's private address only
	g, _ := f.p.Set.Host("guacd1")
	conf, err := os.ReadFile(filepath.Join(f.p.Set.UpperDir("guacd1"), "etc/guacamole/guacd.conf"))
	if err != nil || !strings.Contains(string(conf), "bind_host = "+g.Address+"\n") {
		t.Errorf("guacd.conf: %v\n%s", err, conf)
	}
	// and answers the LMS hosts (and this machine: the spec's guacd_allowed_sources) only
	handshake := fmt.Sprintf(`python3 -c 'import socket; s = socket.create_connection(("%s", %d), 5); s.sendall(b"6.select,3.vnc;"); print(s.recv(64).decode())'`,
		g.Address, envspec.DefaultGuacdPort)
	if out, err := f.p.Set.SSH(ctx, "lms1", handshake); err != nil || !strings.HasPrefix(out, "4.args,") {
		t.Errorf("guacd from lms1: %v: %s", err, out)
	}
	if out, err := f.p.Set.SSH(ctx, "cms1", handshake); err == nil || !strings.Contains(out, "ConnectionRefusedError") {
		t.Errorf("guacd from cms1: %v: %s; want the connection refused", err, out)
	}
	// apt trusts guacd's repository with its own key only
	list, err := os.ReadFile(filepath.Join(f.p.Set.UpperDir("guacd1"), "etc/apt/sources.list.d/guacd.list"))
	if err != nil || !strings.Contains(string(list), "deb [signed-by=/usr/share/keyrings/labplane-guacd.asc] "+f.p.Base+"/repo ./\n") {
		t.Errorf("guacd.list: %v\n%s", err, list)
	}

	t.Run("again: nothing changes", func(t *testing.T) {
		run, _, err := f.deploy(ctx, t, "", runs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for h, r := range run.Recap {
			if r.Changed != 0 {
				t.Errorf("%s changed=%d on the second deploy", h, r.Changed)
			}
		}
	})

	t.Run("check mode changes nothing", func(t *testing.T) {
		// a new release in check mode: reported, not made
		run, _, err := f.deploy(ctx, t, "r2", runs.Options{Check: true, Diff: true})
		if err != nil {
			t.Fatal(err)
		}
		if !run.Options.Check || run.Release != "r2" {
			t.Errorf("run %+v", run)
		}
		if run.Recap["lms1"].Changed == 0 || run.Recap["cms1"].Changed == 0 || run.Recap["guacd1"].Changed != 0 {
			t.Errorf("check mode with a new release: %+v", run.Recap)
		}
		f.assertRecorded(t, run) // the diffs hold no secret either
		testhoststest.AssertReleases(t, f.p.Set, "lms1", "r1")
		testhoststest.AssertReleases(t, f.p.Set, "cms1", "r1")
		f.p.AssertServing(ctx, t, "r1")
	})

	t.Run("backup only when asked", func(t *testing.T) {
		backups := filepath.Join(f.p.Set.UpperDir("lms1"), "edx/var/backups")
		if _, err := os.Stat(backups); err == nil {
			t.Fatalf("a deploy made backups: %s", backups)
		}
		run, _, err := f.deploy(ctx, t, "", runs.Options{Tags: "backup", Limit: "lms"})
		if err != nil || run.Recap["lms1"].Changed == 0 {
			t.Fatalf("backup: %+v, %v", run.Recap, err)
		}
		files, _ := filepath.Glob(filepath.Join(backups, "edxapp-lms-r1-*.sqlite3"))
		if len(files) != 1 {
			t.Fatalf("backups: %v", files)
		}
		out, err := exec.CommandContext(ctx, "sqlite3", files[0], ".tables").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "heartbeat_deployment") {
			t.Errorf("backup %s: %v: %s", files[0], err, out)
		}
	})

	t.Run("guacd's version is the spec's", func(t *testing.T) {
		pinned := "guacd_version: \"" + standins.GuacdVersion + "\"\n"
		editSpec(t, f.p, pinned, "guacd_version: \"9.9-1\"\n")
		defer editSpec(t, f.p, "guacd_version: \"9.9-1\"\n", pinned)
		run, _, err := f.deploy(ctx, t, "", runs.Options{Limit: "guacd"})
		if !errors.Is(err, deploy.ErrFailed) || len(run.Failures) != 1 || run.Failures[0].Host != "guacd1" ||
			run.Failures[0].Task != "guacd : Install guacd" || !strings.Contains(run.Failures[0].Msg, "9.9-1") {
			t.Errorf("deploy of a guacd version the repository lacks: %v, failures %+v", err, run.Failures)
		}
	})

	t.Run("a missing secret: nothing runs, nothing is recorded", func(t *testing.T) {
		os.Unsetenv(f.p.SecretEnv) // the platform's own variable: no other test reads it
		defer os.Setenv(f.p.SecretEnv, f.p.Secret)
		before, _ := f.st.ListRuns(ctx, runs.Filter{})
		_, _, err := f.deploy(ctx, t, "", runs.Options{})
		var bad *deploy.BadInputError
		if !errors.As(err, &bad) || !strings.Contains(err.Error(), "secrets.secret_key: environment variable "+f.p.SecretEnv+" is not set") {
			t.Errorf("err = %v", err)
		}
		if after, _ := f.st.ListRuns(ctx, runs.Filter{}); len(after) != len(before) {
			t.Errorf("a run was recorded")
		}
	})

	t.Run("interrupted: cancelled and recorded", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var once sync.Once
		f.d.Run = func(ctx context.Context, p ansible.Playbook, on func(ansible.Event), log io.Writer) (ansible.Result, error) {
			return ansible.Run(ctx, p, func(e ansible.Event) {
				on(e)
				if e.Kind == ansible.TaskStart {
					once.Do(cancel) // Ctrl-C as the first task starts
				}
			}, log)
		}
		defer func() { f.d.Run = nil }()
		t0 := time.Now()
		run, _, err := f.deploy(cctx, t, "r2", runs.Options{})
		if !errors.Is(err, deploy.ErrFailed) || run.Status != runs.Cancelled {
			t.Fatalf("run %+v, err %v: want cancelled", run, err)
		}
		if took := time.Since(t0); took > 30*time.Second {
			t.Errorf("the interrupted deploy took %v", took)
		}
		f.assertRecorded(t, run)
		f.p.AssertServing(ctx, t, "r1")
	})

	t.Run("a host down fails the run, naming it", func(t *testing.T) {
		if err := hosts.Stop(ctx, "cms1"); err != nil {
			t.Fatal(err)
		}
		run, _, err := f.deploy(ctx, t, "", runs.Options{})
		if !errors.Is(err, deploy.ErrFailed) || run.Status != runs.Failed {
			t.Fatalf("run %+v, err %v: want failed", run, err)
		}
		if len(run.Failures) != 1 || run.Failures[0].Host != "cms1" || !run.Failures[0].Unreachable || run.Failures[0].Task == "" {
			t.Errorf("failures %+v, want cms1 unreachable at a named task", run.Failures)
		}
		if !strings.Contains(err.Error(), "cms1 unreachable at task") {
			t.Errorf("error %q does not name the host", err)
		}
		if r := run.Recap["lms1"]; r.Failed+r.Unreachable != 0 {
			t.Errorf("lms1 recap %+v: the hosts before it are deployed", r)
		}
		if _, ran := run.Recap["guacd1"]; ran {
			t.Errorf("the rollout went on to guacd after cms1 failed (max_fail_percentage 0)")
		}
		// the run failed: what each host runs was read back (cms1 cannot be reached)
		if lms1, cms1 := run.Recap["lms1"].Release, run.Recap["cms1"].Release; lms1 != "r1" || cms1 != "" {
			t.Errorf("read back: lms1 runs %q, cms1 %q; want r1 and nothing", lms1, cms1)
		}
		f.assertRecorded(t, run)
	})
}
