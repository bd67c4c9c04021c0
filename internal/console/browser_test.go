package console_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/cli"
	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/dev/localcloud/localcloudtest"
	"github.com/labplane/labplane/internal/dev/npmtest"
	"github.com/labplane/labplane/internal/dev/servetest"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/runs"
	"github.com/labplane/labplane/internal/store"
)

// lease holds the local cloud local-a for TestConsoleInBrowser (nil with -short).
var lease *localcloud.Lease

func TestMain(m *testing.M) { os.Exit(localcloudtest.Main(m, &lease, nil, "local-a")) }

// The browser test's tools from npm, pinned, installed into the user's cache the first time
// (as internal/api's TestDescriptionLints installs Redocly's linter). playwright-core drives
// Debian's chromium: its own browser download cannot be had here.
var browserTools = []string{"playwright-core@1.65.2", "axe-core@4.14.1"}

// installBrowserTools installs chromium (Debian's, through the project's installer) and the
// npm packages, and returns where their node_modules are.
func installBrowserTools(t *testing.T) string {
	t.Helper()
	if err := apt.Ensure(t.Context(), os.Stderr, "chromium"); err != nil {
		t.Fatalf("install chromium: %v", err)
	}
	return npmtest.Install(t, filepath.Join("axe-core", "axe.min.js"), browserTools...)
}

// labplane runs the command line in-process.
func labplane(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := cli.Run(context.Background(), append([]string{"labplane"}, args...), cli.IO{In: strings.NewReader(""), Out: &out, Err: &errOut}); code != 0 {
		t.Fatalf("labplane %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	return out.String()
}

// TestConsoleInBrowser starts `labplane serve` on the real local Heat, launches two labs
// through the API, makes one need an operator (its suspend failed max_attempts times, as the
// reaper would record it), records a deploy run and a promotion, and runs
// testdata/console.mjs in Debian's chromium against the console. The screenshots are kept in
// the test's artifact directory (go test -artifacts keeps it).
func TestConsoleInBrowser(t *testing.T) {
	if lease == nil {
		t.Skip("needs the local cloud, chromium and npm (not with -short)")
	}
	modules := installBrowserTools(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", lease.CloudsYAML())
	tmpl, err := filepath.Abs(filepath.Join("..", "..", "examples", "templates", "lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	suffix := time.Now().UnixNano() % 1e6
	addr := servetest.FreeAddr(t)
	config := filepath.Join(dir, "labplane.yaml")
	db := filepath.Join(dir, "labplane.db")
	// only suspend-idle runs often, and it finds nothing idle for an hour: the lab flagged
	// below stays as the test made it until the operator fixes it
	if err := os.WriteFile(config, fmt.Appendf(nil, `site: console-%d
store: {dsn: %s}
clouds: [{name: local-a, cloud: local-a}]
templates: {lab: %s}
policy: {idle_suspend_after: 1h}
scheduler: {suspend_every: 2s, reap_every: 1h, reconcile_every: 1h, launch_timeouts_every: 1h}
serve: {listen: %s, shutdown_grace: 30s}
`, suffix, db, tmpl, addr), 0o600); err != nil {
		t.Fatal(err)
	}
	ops := strings.TrimSpace(labplane(t, "--config", config, "token", "create", "--name", "ops", "--scope", "operator"))
	viewer := strings.TrimSpace(labplane(t, "--config", config, "token", "create", "--name", "viewer", "--scope", "read"))

	srv := servetest.Start(t, config, addr)
	call := func(method, path, body string) (int, map[string]any) { return srv.Call(ops, method, path, body) }
	waitFor, logs, base := srv.WaitFor, srv.Logs, srv.Base
	waitFor("serve", 20*time.Second, func() bool { code, _ := call("GET", "/healthz", ""); return code == 200 })
	courseA, courseB := fmt.Sprintf("console-a-%d", suffix), fmt.Sprintf("console-b-%d", suffix)
	var ids []string
	for _, l := range [][2]string{{"ann", courseA}, {"bob", courseB}} {
		code, lab := call("POST", "/v1/labs", fmt.Sprintf(`{"learner":%q,"course":%q}`, l[0], l[1]))
		if code != http.StatusAccepted {
			t.Fatalf("launch: %d %v", code, lab)
		}
		id := lab["id"].(string)
		ids = append(ids, id)
		t.Cleanup(func() { labplane(t, "--config", config, "labs", "delete", id, "--yes", "--force") })
	}
	for _, id := range ids {
		waitFor("lab "+id+" to be active", 3*time.Minute, func() bool { _, lab := call("GET", "/v1/labs/"+id, ""); return lab["status"] == "active" })
	}
	st, err := store.Open(t.Context(), store.SQLite, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	flagged := flagSuspendFailed(t, st, ids[1])
	recordDeploys(t, st)

	shots := t.ArtifactDir()
	cmd := exec.CommandContext(t.Context(), "node", filepath.Join("testdata", "console.mjs"))
	cmd.Env = append(os.Environ(), "CONSOLE_URL="+base, "OPS_TOKEN="+ops, "READ_TOKEN="+viewer, "LAB_A="+ids[0], "LAB_B="+ids[1],
		"COURSE_A="+courseA, "SHOTS="+shots, "CHROMIUM="+chromium, "NODE_MODULES="+modules)
	out, err := cmd.CombinedOutput()
	t.Logf("console.mjs (screenshots in %s):\n%s", shots, out)
	if err != nil {
		t.Fatalf("the browser test failed: %v; serve's log:\n%s", err, logs.String())
	}

	// what the browser saw is what the registry holds: the retried suspend, as the token's
	got, err := st.GetLab(t.Context(), flagged.ID)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := st.Events(t.Context(), flagged.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var retried bool
	for _, ev := range evs {
		retried = retried || (ev.Actor == "api:ops" && ev.Action == "suspend" && ev.Error == "" && ev.RequestID != "")
	}
	if got.Status != labs.Suspended || got.StackStatus != "SUSPEND_COMPLETE" || got.Attempts != 0 || !retried {
		t.Errorf("after the retry: %s, stack %s, %d attempts, recorded as the operator's: %v", got.Status, got.StackStatus, got.Attempts, retried)
	}
	srv.Stop()
	for name, token := range map[string]string{"ops": ops, "viewer": viewer} {
		if strings.Contains(logs.String(), token) {
			t.Errorf("the %s token appears in serve's log", name)
		}
	}
	if !strings.Contains(logs.String(), `msg="console: action requested" action=suspend lab=`+flagged.ID+" actor=api:ops") {
		t.Errorf("serve's log does not record the console's action:\n%s", logs.String())
	}
}

// flagSuspendFailed records that the lab's suspend failed max_attempts times: the lab needs
// an operator, as the reaper leaves it (Heat's stack itself is sound: the retry succeeds).
func flagSuspendFailed(t *testing.T, st *store.Store, id string) labs.Lab {
	t.Helper()
	lab, err := st.GetLab(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	from := lab.Status
	lab.Status, lab.StackStatus, lab.Attempts = labs.NeedsOperator, "SUSPEND_FAILED", 3
	lab.LastError = "suspend lab " + id + ": SUSPEND_FAILED: Resource SUSPEND failed (recorded by the test)"
	lab, err = st.UpdateLab(t.Context(), lab, labs.Event{At: time.Now(), Actor: "test", Action: "flag", From: from, To: lab.Status,
		Detail: "would suspend but 3 attempts failed (max_attempts 3): needs an operator"})
	if err != nil {
		t.Fatal(err)
	}
	return lab
}

// recordDeploys records a deploy run with its recap per host and a promotion, as
// `labplane deploy` and `labplane promote` record theirs.
func recordDeploys(t *testing.T, st *store.Store) {
	t.Helper()
	start := time.Now().Add(-time.Hour)
	run := runs.Run{ID: "0194c0ffee0000aa", Kind: runs.Deploy, Environment: "staging", Release: "olive.1", Actor: "ci@runner",
		StartedAt: start, Status: runs.Running, LogPath: "/var/lib/labplane/runs/0194c0ffee0000aa.jsonl"}
	if err := st.CreateRun(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	run.Status, run.FinishedAt = runs.Succeeded, start.Add(6*time.Minute)
	run.Recap = map[string]runs.HostRecap{"lms-1": {OK: 41, Changed: 3}, "cms-1": {OK: 38, Changed: 2}, "guacd-1": {OK: 17}}
	if err := st.FinishRun(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	if err := st.SavePromotion(t.Context(), platform.Promotion{ID: "0194c0ffee-promo", From: "staging", To: "production",
		Release: "olive.1", Previous: "nutmeg.2", Actor: "ci@runner", StartedAt: start.Add(10 * time.Minute),
		FinishedAt: start.Add(20 * time.Minute), Status: platform.Promoted, Phase: platform.PhaseDone, FailedBatch: -1,
		Batches: []platform.Batch{{Hosts: []string{"lms-1"}}, {Hosts: []string{"cms-1"}}}, Done: 2, Runs: []string{run.ID}}); err != nil {
		t.Fatal(err)
	}
}
