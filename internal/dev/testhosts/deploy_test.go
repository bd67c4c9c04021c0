package testhosts_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/dev/testhosts/standins"
	"github.com/labplane/labplane/internal/dev/testhosts/testhoststest"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/health"
	"github.com/labplane/labplane/internal/inventory"
)

// The project's playbooks and roles, deployed with plain ansible-playbook over SSH to three
// test hosts (one lms, one cms, one guacd), from an inventory rendered by internal/inventory.
// Not parallel: the platform sets environment variables (the secret key's among them).
func TestDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys to test hosts: not with -short")
	}
	// bounded by go test's -timeout only: seven deploys take 4 minutes alone and over 12
	// beside the other packages' deploys on a 2-core machine
	ctx := t.Context()
	p := testhoststest.NewPlatform(t, nil, "r1", "r2", "r3")
	d := &deployer{p: p, root: projectRoot(t)}

	if !t.Run("first deploy", func(t *testing.T) {
		out, recap := d.playbook(ctx, t, "r1", "-v")
		for _, h := range []string{"lms1", "cms1", "guacd1"} {
			if recap[h].Changed == 0 {
				t.Errorf("%s: changed=0 on the first deploy", h)
			}
		}
		p.AssertServing(ctx, t, "r1")
		d.assertNoSecret(t, out)
		// edx-platform's heartbeat, asked for by the site name; the static files collected
		lms, _ := p.Set.Host("lms1")
		base := "http://" + net.JoinHostPort(lms.Address, strconv.Itoa(envspec.DefaultLMSPort))
		st, err := health.Service(ctx, base, "lms.test")
		if err != nil || st.Release != "r1" || !st.Checks["sql"].Status || !st.Checks["modulestore"].Status {
			t.Errorf("lms1: %+v %v", st, err)
		}
		if resp, err := http.Get(base + "/static/openedx/standin.css"); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("lms1 /static/openedx/standin.css: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		// guacd listens on the host's private address only
		g, _ := p.Set.Host("guacd1")
		conf, err := os.ReadFile(filepath.Join(p.Set.UpperDir("guacd1"), "etc/guacamole/guacd.conf"))
		if err != nil || !strings.Contains(string(conf), "bind_host = "+g.Address+"\n") {
			t.Errorf("guacd.conf: %v\n%s", err, conf)
		}
	}) {
		t.FailNow()
	}

	t.Run("second deploy changes nothing", func(t *testing.T) {
		_, recap := d.playbook(ctx, t, "r1")
		assertUnchanged(t, recap)
	})

	t.Run("check mode changes nothing", func(t *testing.T) {
		// a new release in check mode: reported, not made
		out, recap := d.playbook(ctx, t, "r2", "--check", "--diff")
		if recap["lms1"].Changed == 0 || recap["cms1"].Changed == 0 || recap["guacd1"].Changed != 0 {
			t.Errorf("check mode with a new release: %+v", recap)
		}
		d.assertNoSecret(t, out)
		testhoststest.AssertReleases(t, p.Set, "lms1", "r1")
		testhoststest.AssertReleases(t, p.Set, "cms1", "r1")
		p.AssertServing(ctx, t, "r1")
	})

	if !t.Run("new release from a path on the controller", func(t *testing.T) {
		path, err := standins.Artifact(t.TempDir(), "r2")
		if err != nil {
			t.Fatal(err)
		}
		d.playbook(ctx, t, "r2", "-e", "openedx_artifact="+path)
		p.AssertServing(ctx, t, "r2")
	}) {
		t.FailNow()
	}

	t.Run("rollback downloads nothing", func(t *testing.T) {
		// r1's artifact cannot be had: a download would fail the run. Keeping one release, r2
		// stays (the newest) and so does r1 (deployed).
		_, recap := d.playbook(ctx, t, "r1", "-e", "openedx_artifact="+p.Base+"/gone.tar.gz", "-e", "openedx_keep_releases=1")
		if recap["lms1"].Changed == 0 || recap["cms1"].Changed == 0 || recap["guacd1"].Changed != 0 {
			t.Errorf("rollback: %+v", recap)
		}
		p.AssertServing(ctx, t, "r1")
		for _, h := range []string{"lms1", "cms1"} {
			link, err := os.Readlink(filepath.Join(p.Set.UpperDir(h), "edx/app/edxapp/edx-platform"))
			if err != nil || link != "/edx/app/edxapp/releases/r1" {
				t.Errorf("%s: current -> %q (%v)", h, link, err)
			}
			testhoststest.AssertReleases(t, p.Set, h, "r1 r2")
		}
	})

	t.Run("old releases are pruned", func(t *testing.T) {
		// keeping two: r3 and r2 stay, r1 (unpacked first, no longer deployed) goes
		d.playbook(ctx, t, "r3", "--limit", "lms", "-e", "openedx_keep_releases=2")
		testhoststest.AssertReleases(t, p.Set, "lms1", "r2 r3")
	})

	t.Run("backup only when asked", func(t *testing.T) {
		backups := filepath.Join(p.Set.UpperDir("lms1"), "edx/var/backups")
		if _, err := os.Stat(backups); err == nil {
			t.Fatalf("a deploy made backups: %s", backups)
		}
		_, recap := d.playbook(ctx, t, "r3", "--tags", "backup", "--limit", "lms")
		if recap["lms1"].Changed == 0 {
			t.Errorf("backup: %+v", recap)
		}
		files, _ := filepath.Glob(filepath.Join(backups, "edxapp-lms-r3-*.sqlite3"))
		if len(files) != 1 {
			t.Fatalf("backups: %v", files)
		}
		out, err := exec.CommandContext(ctx, "sqlite3", files[0], ".tables").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "heartbeat_deployment") {
			t.Errorf("backup %s: %v: %s", files[0], err, out)
		}
	})

	t.Run("a stopped host fails the run", func(t *testing.T) {
		if err := p.Set.Stop(ctx, "cms1"); err != nil {
			t.Fatal(err)
		}
		out, recap, err := d.run(ctx, t, "r3")
		if err == nil {
			t.Fatalf("the run succeeded with cms1 stopped:\n%s", out)
		}
		if recap["cms1"].Unreachable == 0 || !regexp.MustCompile(`(?m)^fatal: \[cms1\]: UNREACHABLE!`).MatchString(out) {
			t.Errorf("cms1 is not reported unreachable (recap %+v):\n%s", recap, out)
		}
		if recap["lms1"].Failed != 0 || recap["lms1"].Unreachable != 0 {
			t.Errorf("lms1: %+v", recap["lms1"])
		}
		if _, ran := recap["guacd1"]; ran {
			t.Errorf("the rollout went on to guacd after cms1 failed (max_fail_percentage 0)")
		}
	})
}

// TestLint runs ansible-lint with the production profile on the playbooks and roles.
func TestLint(t *testing.T) {
	ctx := setup(t, 3*time.Minute)
	cmd := exec.CommandContext(ctx, "ansible-lint", "--nocolor", "--profile", "production", "playbooks/", "roles/")
	cmd.Dir = projectRoot(t)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ansible-lint: %v\n%s", err, out)
	}
}

// deployer runs the project's playbooks/site.yml against the platform's hosts.
type deployer struct {
	p    *testhoststest.Platform
	root string // the project
}

// run writes the environment's spec for release, renders its inventory and runs
// ansible-playbook from the project's directory, as an operator would. It returns the output
// and the PLAY RECAP.
func (d *deployer) run(ctx context.Context, t *testing.T, release string, args ...string) (string, map[string]recapLine, error) {
	t.Helper()
	d.p.WriteSpec(t, release, "")
	env := d.p.Environment(t)
	inv, err := inventory.Write(env, env.Hosts)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ansible-playbook", append([]string{"-i", inv, "playbooks/site.yml"}, args...)...)
	cmd.Dir = d.root
	// the secret's variable and the SSH control directory are set by the platform
	cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0", "ANSIBLE_PIPELINING=True",
		"ANSIBLE_RETRY_FILES_ENABLED=False")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("ansible-playbook %s (release %s): %.1fs", strings.Join(args, " "), release, time.Since(start).Seconds())
	return out.String(), parseRecap(out.String()), err
}

// playbook is run, which must succeed on every host.
func (d *deployer) playbook(ctx context.Context, t *testing.T, release string, args ...string) (string, map[string]recapLine) {
	t.Helper()
	out, recap, err := d.run(ctx, t, release, args...)
	if err != nil {
		t.Fatalf("ansible-playbook: %v\n%s", err, out)
	}
	if len(recap) == 0 {
		t.Fatalf("no PLAY RECAP:\n%s", out)
	}
	for h, r := range recap {
		if r.Failed != 0 || r.Unreachable != 0 {
			t.Fatalf("%s: %+v\n%s", h, r, out)
		}
	}
	return out, recap
}

func (d *deployer) assertNoSecret(t *testing.T, out string) {
	t.Helper()
	if d.p.Secret == "" || strings.Contains(out, d.p.Secret) {
		t.Errorf("the secret key is in ansible-playbook's output")
	}
}

func assertUnchanged(t *testing.T, recap map[string]recapLine) {
	t.Helper()
	for _, h := range []string{"lms1", "cms1", "guacd1"} {
		if r, ok := recap[h]; !ok || r.Changed != 0 {
			t.Errorf("%s: %+v, want changed=0", h, r)
		}
	}
}

type recapLine struct{ Ok, Changed, Unreachable, Failed, Skipped int }

var recapPattern = regexp.MustCompile(`(?m)^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)`)

func parseRecap(out string) map[string]recapLine {
	recap := map[string]recapLine{}
	i := strings.LastIndex(out, "PLAY RECAP")
	if i < 0 {
		return recap
	}
	for _, m := range recapPattern.FindAllStringSubmatch(out[i:], -1) {
		n := make([]int, 5)
		for j := range n {
			n[j], _ = strconv.Atoi(m[j+2])
		}
		recap[m[1]] = recapLine{Ok: n[0], Changed: n[1], Unreachable: n[2], Failed: n[3], Skipped: n[4]}
	}
	return recap
}

// projectRoot is the directory of go.mod, above the test's directory.
func projectRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
