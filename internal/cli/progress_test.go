package cli_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/dev/heattest"
)

// At a terminal (a tmux pane), reap --once draws a line per cloud with its actions done of
// those planned, updated in place while they run (the log goes above it), and complete at the
// end, once, above the result. (Elsewhere nothing is drawn: the board needs stderr to be a
// terminal, which no other test's is.)
func TestReapProgressAtATerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds labplane and runs it in tmux: not with -short")
	}
	const n = 12
	heat := newFaultHeat(t)
	useCloudsYAML(t, map[string]*heattest.Server{"a": heat})
	s := newSite(t, "site: progress\nstore: {dsn: labplane.db}\nclouds:\n  - {name: a, cloud: a, max_in_flight: 2}\n"+
		"templates: {lab: lab.yaml}\npolicy: {idle_suspend_after: 1s}\n")
	if err := os.WriteFile(filepath.Join(s.dir, "lab.yaml"), []byte(faultTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if r := s.run("labs", "launch", "--learner", fmt.Sprintf("l%02d", i), "--course", "os101"); r.code != 0 {
			t.Fatalf("launch: %s", r)
		}
	}
	waitUntil(t, "the labs to be idle, every one due", 30*time.Second, func() bool {
		r := s.run("reap", "--once", "--dry-run")
		return r.code == 0 && strings.Count(r.out, "suspend") >= n
	})
	heat.ReqDelay = 150 * time.Millisecond // each suspend takes a few requests: the pass, seconds

	pane := inTmux(t, fmt.Sprintf("%s --config %s reap --once --yes", buildLabplane(t), s.config)).pane
	var during string
	waitUntil(t, "the progress line, part done", 60*time.Second, func() bool {
		during = pane()
		m := regexp.MustCompile(`a +actions +(\d+)/` + fmt.Sprint(n)).FindStringSubmatch(during)
		return m != nil && m[1] != "0" && m[1] != fmt.Sprint(n)
	})
	var final string
	waitUntil(t, "the pass to end", 120*time.Second, func() bool { final = pane(); return strings.Contains(final, "EXIT=") })
	t.Logf("during the pass:\n%s\nat its end:\n%s", strings.TrimSpace(during), strings.TrimSpace(final))
	done := regexp.MustCompile(fmt.Sprintf(`(?m)^a +actions +%d/%d +\[=+\] +`+elapsedColumn, n, n))
	if !done.MatchString(final) ||
		!strings.Contains(final, "EXIT=0") || !strings.Contains(final, "suspend") {
		t.Errorf("the pane: want a line for cloud a with its actions done of %d, complete at the end, exit 0", n)
	}
	if len(done.FindAllString(final, -1)) != 1 {
		t.Errorf("the progress line is drawn more than once (not updated in place):\n%s", final)
	}
}

// buildLabplane builds labplane's binary for the test.
func buildLabplane(t *testing.T) string {
	t.Helper()
	binary := filepath.Join(t.TempDir(), "labplane")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", binary, "../../cmd/labplane")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return binary
}

// elapsedColumn matches a progress line's elapsed time as the board draws it: Go's duration
// style, so "9s", "1m32s" or "1h0m5s".
const elapsedColumn = `(?:\d+h)?(?:\d+m)?\d+s`

// terminal is a tmux pane a test runs a command in.
type terminal struct {
	t    *testing.T
	tmux func(args ...string) *exec.Cmd
}

// inTmux runs command (sh) at a terminal: in a tmux pane of 120 columns and 50 rows, in a
// tmux server of the test's own, which has the test's environment. The pane shows "EXIT=N"
// when the command ends. The server is stopped when the test ends, and the pane logged if
// it failed.
func inTmux(t *testing.T, command string) *terminal {
	t.Helper()
	if err := apt.Ensure(t.Context(), os.Stderr, "tmux"); err != nil {
		t.Fatal(err)
	}
	socket := fmt.Sprintf("labplane-test-%d-%s", os.Getpid(), strings.NewReplacer("/", "-").Replace(t.Name()))
	term := &terminal{t: t, tmux: func(args ...string) *exec.Cmd {
		return exec.Command("tmux", append([]string{"-L", socket}, args...)...)
	}}
	if out, err := term.tmux("new-session", "-d", "-x", "120", "-y", "50", command+"; echo EXIT=$?; sleep 600").CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the pane:\n%s", term.pane())
		}
		_ = term.tmux("kill-server").Run()
	})
	return term
}

// pane is what the pane shows now (its rows, not its history).
func (term *terminal) pane() string {
	out, _ := term.tmux("capture-pane", "-p").Output()
	return string(out)
}

// send types keys at the terminal (tmux send-keys: "y", "Enter").
func (term *terminal) send(keys ...string) {
	term.t.Helper()
	if out, err := term.tmux(append([]string{"send-keys"}, keys...)...).CombinedOutput(); err != nil {
		term.t.Fatalf("tmux send-keys: %v\n%s", err, out)
	}
}

// waitUntil polls ok until it holds, or fails the test after limit.
func waitUntil(t *testing.T, what string, limit time.Duration, ok func() bool) {
	t.Helper()
	if !pollUntil(t.Context(), limit, ok) {
		t.Fatalf("waited %s for %s", limit, what)
	}
}

// pollUntil calls ok every 100 ms until it holds (true) or limit has passed (false).
func pollUntil(ctx context.Context, limit time.Duration, ok func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return true
}
