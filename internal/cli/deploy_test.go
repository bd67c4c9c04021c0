package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cli"
	"github.com/labplane/labplane/internal/dev/testhosts/standins"
	"github.com/labplane/labplane/internal/dev/testhosts/testhoststest"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/health"
	"github.com/labplane/labplane/internal/runs"
)

const registryOnly = "store:\n  dsn: labplane.db\n"

// deployCLI runs labplane with the site's configuration, the project's playbooks and the
// platform's inventories.
func (s *site) deployCLI(p *testhoststest.Platform, args ...string) result {
	s.t.Helper()
	var out, errOut bytes.Buffer
	ctx := s.t.Context() // the test's deadline only: a deploy on a busy new machine takes minutes
	all := append([]string{"labplane", "--config", s.config, "--project", moduleRoot(s.t), "--inventories", p.Inventories,
		"--state-dir", s.dir + "/state"}, args...)
	code := cli.Run(ctx, all, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return result{code: code, out: out.String(), err: errOut.String()}
}

// labplane deploy, runs list and runs show, over real SSH to test hosts, with a labplane.yaml
// that has only a registry. The command deploys guacd's play only (--limit guacd, the platform's
// smallest): what is checked here is the command, its progress, recap, record and exit codes;
// the whole platform deployed and checked is internal/deploy's TestDeployOverSSH, and through
// this command line cmd/labplane's TestPromoteOverSSH.
func TestDeployCommand(t *testing.T) {
	p := testhoststest.NewPlatform(t, nil, "r1")
	s := newSite(t, registryOnly)

	if r := s.deployCLI(p, "deploy", testhoststest.Env); r.code != cli.ExitBadInput || !strings.Contains(r.err, "refusing without --yes") {
		t.Errorf("deploy without --yes, not at a terminal: %s", r)
	}
	if r := s.deployCLI(p, "deploy", "nowhere", "--yes"); r.code != cli.ExitBadInput || !strings.Contains(r.err, `no environment "nowhere" (have: test)`) {
		t.Errorf("deploy of an unknown environment: %s", r)
	}
	for _, rel := range []string{"{{ lookup('pipe','id') }}", "../x"} {
		if r := s.deployCLI(p, "deploy", testhoststest.Env, "--release", rel, "--yes"); r.code != cli.ExitBadInput ||
			!strings.Contains(r.err, "--release: ") || !strings.Contains(r.err, "is not a release name") {
			t.Errorf("deploy --release %q: %s", rel, r)
		}
	}

	r := s.deployCLI(p, "deploy", testhoststest.Env, "--limit", "guacd", "--yes")
	if r.code != cli.ExitOK {
		t.Fatalf("deploy: %s", r)
	}
	for _, want := range []string{"PLAY ", "TASK ", "changed", "guacd1", "HOST", "CHANGED", "UNREACHABLE",
		"deploy of r1 to test: succeeded", "full log: "} {
		if !strings.Contains(r.out, want) {
			t.Errorf("deploy output lacks %q:\n%s", want, r.out)
		}
	}
	if strings.Contains(r.out+r.err, p.Secret) {
		t.Error("the output shows the secret key")
	}
	g, _ := p.Set.Host("guacd1") // deployed: it answers the handshake on its address
	if _, err := health.Handshake(t.Context(), net.JoinHostPort(g.Address, strconv.Itoa(envspec.DefaultGuacdPort)), "vnc"); err != nil {
		t.Errorf("guacd1 after the deploy: %v", err)
	}

	// at a terminal: the question, answered there; then a line per host with its planned tasks
	// done of all, updated in place and complete at the end; the play above it, the recap below
	term := inTmux(t, fmt.Sprintf("%s --config %s --project %s --inventories %s --state-dir %s/state deploy %s --limit guacd",
		buildLabplane(t), s.config, moduleRoot(t), p.Inventories, s.dir, testhoststest.Env))
	pane := term.pane
	question := regexp.MustCompile(`Deploy release r1 to test \(\d+ hosts\)\? \[y/N\]`)
	waitUntil(t, "the question", time.Minute, func() bool { return question.MatchString(pane()) })
	term.send("y", "Enter")
	line := regexp.MustCompile(`(?m)^guacd1 +tasks +(\d+)/(\d+) +\[[=>\- ]*\] +` + elapsedColumn)
	var during string
	waitUntil(t, "guacd1's line, part done", 5*time.Minute, func() bool {
		during = pane()
		m := line.FindStringSubmatch(during)
		return m != nil && m[1] != "0" && m[1] != m[2] || strings.Contains(during, "EXIT=")
	})
	var final string
	waitUntil(t, "the deploy at a terminal to end", 5*time.Minute, func() bool { final = pane(); return strings.Contains(final, "EXIT=") })
	t.Logf("during the deploy:\n%s\nat its end:\n%s", strings.TrimSpace(during), strings.TrimSpace(final))
	if m := line.FindStringSubmatch(during); m == nil || m[1] == "0" || m[1] == m[2] {
		t.Errorf("no line for guacd1 part done while it deployed")
	}
	m := line.FindAllStringSubmatch(final, -1)
	if len(m) != 1 || m[0][1] != m[0][2] || !strings.Contains(m[0][0], "[===") {
		t.Errorf("at the end: want guacd1's line once, every task done, got %q", m)
	} else if total, _ := strconv.Atoi(m[0][2]); total < 15 {
		t.Errorf("guacd1 had %d tasks planned: guacd's play has more", total)
	}
	if !strings.Contains(final, "PLAY Deploy guacd") || !strings.Contains(final, "deploy of r1 to test: succeeded") ||
		!strings.Contains(final, "EXIT=0") || strings.Contains(final, "TASK ") {
		t.Errorf("at a terminal: want the play above the line, the recap, exit 0 and no line per task")
	}

	// the JSON record of a check run, with the progress on stderr
	r = s.deployCLI(p, "deploy", testhoststest.Env, "--check", "--limit", "guacd1", "--output", "json")
	var run runs.Run
	if err := json.Unmarshal([]byte(r.out), &run); r.code != cli.ExitOK || err != nil {
		t.Fatalf("deploy --check --output json: %v\n%s", err, r)
	}
	if !run.Options.Check || run.Options.Limit != "guacd1" || len(run.Recap) != 1 || run.Recap["guacd1"].Changed != 0 {
		t.Errorf("check run %+v", run)
	}
	if !strings.Contains(r.err, "TASK ") {
		t.Errorf("no progress on stderr:\n%s", r.err)
	}

	r = s.deployCLI(p, "runs", "list", "--output", "json")
	var list []runs.Run
	if err := json.Unmarshal([]byte(r.out), &list); r.code != cli.ExitOK || err != nil || len(list) != 3 { // and the one at a terminal
		t.Fatalf("runs list: %v\n%s", err, r)
	}
	if list[0].ID != run.ID || list[1].Status != runs.Succeeded || list[1].Options.Check {
		t.Errorf("runs list (newest first): %+v", list)
	}
	r = s.deployCLI(p, "runs", "list", "--env", testhoststest.Env)
	if r.code != cli.ExitOK || !strings.Contains(r.out, "STATUS") || strings.Count(r.out, "succeeded") != 3 {
		t.Errorf("runs list: %s", r)
	}
	r = s.deployCLI(p, "runs", "show", list[1].ID[:13])
	if r.code != cli.ExitOK || !strings.Contains(r.out, "by cli:") || !strings.Contains(r.out, "guacd1") {
		t.Errorf("runs show PREFIX: %s", r)
	}
	if r := s.deployCLI(p, "runs", "show", "no-such-run"); r.code != cli.ExitBadInput {
		t.Errorf("runs show of an unknown run: %s", r)
	}

	// a host down: exit 1, naming the host, the task and Ansible's message (only its play run)
	if err := p.Set.Stop(t.Context(), "guacd1"); err != nil {
		t.Fatal(err)
	}
	r = s.deployCLI(p, "deploy", testhoststest.Env, "--limit", "guacd", "--yes")
	if r.code != cli.ExitFailed || !strings.Contains(r.err, "guacd1 unreachable at task") || !strings.Contains(r.out, "deploy of r1 to test: failed") {
		t.Errorf("deploy with guacd1 down: %s", r)
	}
}

// labplane dev hosts up writes an environment that loads, for hosts that answer SSH; down
// removes them.
func TestTestHostsCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("makes test hosts: not with -short")
	}
	s := newSite(t, registryOnly)
	inv := filepath.Join(s.dir, "inventories")
	if r := runCLI("", false, "--inventories", inv, "dev", "hosts", "up", "--dir", t.TempDir()); r.code != cli.ExitBadInput ||
		!strings.Contains(r.err, "do not see the machine's /tmp") {
		t.Errorf("testhosts up under /tmp: %s", r)
	}
	dir, err := os.MkdirTemp("/var/tmp", "labplane-testhosts-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := runCLI("", false, "--inventories", inv, "dev", "hosts", "up", "--dir", dir, "--env", "demo", "--release", "a.1", "--release", "a.2", "-o", "json")
	if r.code != cli.ExitOK {
		t.Fatalf("testhosts up: %s", r)
	}
	t.Cleanup(func() { runCLI("", false, "dev", "hosts", "down", "--dir", dir) })
	env, err := envspec.Load(inv, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if env.Release != "a.1" || len(env.Hosts["guacd"]) != 1 || !strings.HasPrefix(env.Settings.GuacdAptRepository, "deb file:"+dir) ||
		env.Settings.GuacdVersion != standins.GuacdVersion || !strings.HasPrefix(env.Settings.GuacdAptKey, dir) {
		t.Errorf("environment %+v", env)
	}
	for _, r := range []string{"a.1", "a.2"} {
		if _, err := os.Stat(env.ArtifactFor(r)); err != nil {
			t.Errorf("artifact of %s: %v", r, err)
		}
	}
	addr := env.Hosts["lms"][0].Address
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "22"), 5*time.Second); err != nil {
		t.Errorf("lms1's sshd: %v", err)
	} else {
		conn.Close()
	}
	if r := runCLI("", false, "dev", "hosts", "down", "--dir", dir); r.code != cli.ExitOK {
		t.Fatalf("testhosts down: %s", r)
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "22"), 2*time.Second); err == nil {
		conn.Close()
		t.Error("lms1 still answers after down")
	}
}
