package lifecycle_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
)

// envHook is a hook command that writes its LABPLANE_* environment to dir/<hook>.env.
func envHook(dir string) string {
	return `env | grep '^LABPLANE_' > '` + dir + `'/"$LABPLANE_HOOK".env`
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		out[k] = v
	}
	return out
}

func hookFailures(r *rig, id string) []labs.Event {
	var out []labs.Event
	for _, ev := range r.events(id) {
		if ev.Action == "hook-failed" {
			out = append(out, ev)
		}
	}
	return out
}

func TestHooksGetTheLab(t *testing.T) {
	r := newRig(t, "a")
	dir := t.TempDir()
	hook := envHook(dir)
	r.mgr.Hooks = lifecycle.Hooks{BeforeSuspend: hook, AfterResume: hook, BeforeDelete: hook, Timeout: 10 * time.Second}
	lab := r.lab(r.launch("ann", "os101").ID)
	r.clock.Add(10 * time.Minute)

	common := map[string]string{
		"LABPLANE_LAB_ID":     lab.ID,
		"LABPLANE_LEARNER":    "ann",
		"LABPLANE_COURSE":     "os101",
		"LABPLANE_TEMPLATE":   "lab",
		"LABPLANE_CLOUD":      "a",
		"LABPLANE_STACK_NAME": lab.StackName,
		"LABPLANE_STACK_ID":   lab.StackID,
	}
	steps := []struct {
		op     lifecycle.Op
		hook   string
		status labs.Status // the lab's status the hook sees: the action's, claimed, before it
	}{
		{lifecycle.OpSuspend, "before_suspend", labs.Suspending},
		{lifecycle.OpResume, "after_resume", labs.Active},
		{lifecycle.OpDelete, "before_delete", labs.Deleting},
	}
	for _, s := range steps {
		if _, err := r.do(s.op, lab.ID, true); err != nil {
			t.Fatalf("%s: %v", s.op, err)
		}
		env := readEnv(t, filepath.Join(dir, s.hook+".env"))
		want := map[string]string{"LABPLANE_HOOK": s.hook, "LABPLANE_STATUS": string(s.status)}
		for k, v := range common {
			want[k] = v
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", s.hook, k, env[k], v)
			}
		}
	}
	if f := hookFailures(r, lab.ID); len(f) != 0 {
		t.Errorf("hook failures recorded: %+v", f)
	}
}

func TestAfterResumeSeesTheResumedLab(t *testing.T) {
	r := newRig(t, "a")
	dir := t.TempDir()
	r.mgr.Hooks = lifecycle.Hooks{AfterResume: envHook(dir), Timeout: 10 * time.Second}
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute)
	if _, err := r.do(lifecycle.OpSuspend, lab.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "after_resume.env")); err == nil {
		t.Fatal("after_resume ran on a suspend")
	}
	if _, err := r.do(lifecycle.OpResume, lab.ID, false); err != nil {
		t.Fatal(err)
	}
	if env := readEnv(t, filepath.Join(dir, "after_resume.env")); env["LABPLANE_STATUS"] != string(labs.Active) {
		t.Errorf("after_resume saw status %q", env["LABPLANE_STATUS"])
	}
}

func TestAfterResumeDoesNotRunWhenTheResumeFails(t *testing.T) {
	r := newRig(t, "a")
	dir := t.TempDir()
	r.mgr.Hooks = lifecycle.Hooks{AfterResume: envHook(dir), Timeout: 10 * time.Second}
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute)
	if _, err := r.do(lifecycle.OpSuspend, lab.ID, false); err != nil {
		t.Fatal(err)
	}
	r.clouds["a"].FailNext("resume", lab.StackName, 1)
	if _, err := r.do(lifecycle.OpResume, lab.ID, false); err == nil {
		t.Fatal("want the resume to fail")
	}
	if _, err := os.Stat(filepath.Join(dir, "after_resume.env")); err == nil {
		t.Fatal("after_resume ran after a failed resume")
	}
}

func TestFailingHooksAreRecordedAndTheActionGoesOn(t *testing.T) {
	const failing = `echo out-line; echo err-line >&2; exit 3`
	tests := []struct {
		hook       string
		set        func(*lifecycle.Hooks, string)
		op         lifecycle.Op
		wantStatus labs.Status
		stackLeft  bool
	}{
		{"before_suspend", func(h *lifecycle.Hooks, c string) { h.BeforeSuspend = c }, lifecycle.OpSuspend, labs.Suspended, true},
		{"after_resume", func(h *lifecycle.Hooks, c string) { h.AfterResume = c }, lifecycle.OpResume, labs.Active, true},
		{"before_delete", func(h *lifecycle.Hooks, c string) { h.BeforeDelete = c }, lifecycle.OpDelete, labs.Deleted, false},
	}
	for _, tt := range tests {
		t.Run(tt.hook, func(t *testing.T) {
			r := newRig(t, "a")
			tt.set(&r.mgr.Hooks, failing)
			lab := r.launch("ann", "os101")
			r.clock.Add(10 * time.Minute)
			if tt.op == lifecycle.OpResume {
				if _, err := r.do(lifecycle.OpSuspend, lab.ID, false); err != nil {
					t.Fatal(err)
				}
			}
			got, err := r.do(tt.op, lab.ID, false)
			if err != nil {
				t.Fatalf("a failing hook must not fail the action: %v", err)
			}
			if got.Status != tt.wantStatus || r.lab(lab.ID).Status != tt.wantStatus {
				t.Fatalf("status %s, want %s", got.Status, tt.wantStatus)
			}
			if left := len(r.clouds["a"].Stacks()) == 1; left != tt.stackLeft {
				t.Errorf("stack left on the cloud: %v, want %v", left, tt.stackLeft)
			}
			f := hookFailures(r, lab.ID)
			if len(f) != 1 {
				t.Fatalf("want one hook-failed event, got %+v", f)
			}
			if f[0].Error != tt.hook+": exit status 3" || !strings.Contains(f[0].Detail, "out-line") ||
				!strings.Contains(f[0].Detail, "err-line") || f[0].Actor != "op" || f[0].Cloud != "a" {
				t.Errorf("hook-failed event %+v", f[0])
			}
		})
	}
}

func TestHookTimeout(t *testing.T) {
	r := newRig(t, "a")
	r.mgr.Hooks = lifecycle.Hooks{BeforeSuspend: `echo started; exec sleep 30`, Timeout: 200 * time.Millisecond}
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute)
	start := time.Now()
	got, err := r.do(lifecycle.OpSuspend, lab.ID, false)
	if err != nil || got.Status != labs.Suspended {
		t.Fatalf("the suspend must go on after the hook's timeout: %v %s", err, got.Status)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the hook was not stopped at its timeout: took %s", took)
	}
	f := hookFailures(r, lab.ID)
	if len(f) != 1 || !strings.Contains(f[0].Error, "before_suspend") || !strings.Contains(f[0].Error, "deadline exceeded") ||
		!strings.Contains(f[0].Detail, "started") {
		t.Fatalf("want a hook-failed event for the timeout with the output, got %+v", f)
	}
}

func TestHookOutputTailIsBounded(t *testing.T) {
	r := newRig(t, "a")
	r.mgr.Hooks.BeforeSuspend = `head -c 10000 /dev/zero | tr '\0' x; echo; echo THE-END; exit 1`
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute)
	if _, err := r.do(lifecycle.OpSuspend, lab.ID, false); err != nil {
		t.Fatal(err)
	}
	f := hookFailures(r, lab.ID)
	if len(f) != 1 {
		t.Fatalf("hook failures: %+v", f)
	}
	if d := f[0].Detail; len(d) > 2048 || !strings.HasSuffix(d, "THE-END") {
		t.Errorf("detail: %d bytes, ends %q; want the last 2048 bytes at most", len(d), d[max(0, len(d)-20):])
	}
}

func TestRefusedActionRunsNoHook(t *testing.T) {
	r := newRig(t, "a")
	dir := t.TempDir()
	r.mgr.Hooks = lifecycle.Hooks{BeforeSuspend: envHook(dir), BeforeDelete: envHook(dir), Timeout: 10 * time.Second}
	lab := r.launch("ann", "os101")
	r.heartbeat(lab.ID)
	// in use: refused before any hook
	if _, err := r.do(lifecycle.OpSuspend, lab.ID, false); err == nil {
		t.Fatal("want ErrInUse")
	}
	// a lab whose launch has no stack yet cannot be suspended: no hook either
	pending := labs.Lab{ID: "pending1", Learner: "bob", Course: "os101", Template: "lab", Cloud: "a",
		StackName: "lab-pending1", Status: labs.Launching}
	if _, err := r.store.CreateLab(t.Context(), pending, labs.Event{At: r.clock.Now(), Actor: "test", Action: "launch"}); err != nil {
		t.Fatal(err)
	}
	r.clock.Add(10 * time.Minute)
	if _, err := r.do(lifecycle.OpSuspend, pending.ID, false); err == nil {
		t.Fatal("a suspend of a lab without a stack must be refused")
	}
	if _, err := os.Stat(filepath.Join(dir, "before_suspend.env")); err == nil {
		t.Error("before_suspend ran for a suspend that was refused")
	}
}

// A hook gets the lab and what a shell needs, not labplane's secrets: of labplane's
// environment only PATH, HOME, the locale, TZ and what Env names.
func TestHooksGetACleanEnvironment(t *testing.T) {
	t.Setenv("OS_PASSWORD", "cloud-s3cret")
	t.Setenv("LABPLANE_STORE_DSN", "postgres://labplane:db-s3cret@db/labplane")
	t.Setenv("GUACAMOLE_URL", "https://guac.example")
	r := newRig(t, "a")
	dir := t.TempDir()
	r.mgr.Hooks = lifecycle.Hooks{BeforeSuspend: `env > '` + dir + `'/env`, Timeout: 10 * time.Second, Env: []string{"GUACAMOLE_URL"}}
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute)
	if _, err := r.do(lifecycle.OpSuspend, lab.ID, false); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
	env := string(raw)
	for _, leak := range []string{"cloud-s3cret", "db-s3cret", "OS_PASSWORD", "LABPLANE_STORE_DSN"} {
		if strings.Contains(env, leak) {
			t.Errorf("the hook's environment holds %s:\n%s", leak, env)
		}
	}
	for _, want := range []string{"PATH=" + os.Getenv("PATH"), "GUACAMOLE_URL=https://guac.example", "LABPLANE_LAB_ID=" + lab.ID} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("the hook's environment lacks %s:\n%s", want, env)
		}
	}
}

// A hook that starts background children is stopped whole at its timeout: its process group
// is killed, so no child outlives it.
func TestHookTimeoutKillsItsChildren(t *testing.T) {
	r := newRig(t, "a")
	dir := t.TempDir()
	r.mgr.Hooks = lifecycle.Hooks{BeforeSuspend: `sleep 60 & echo $! > '` + dir + `'/child; wait`, Timeout: 300 * time.Millisecond}
	lab := r.launch("ann", "os101")
	r.clock.Add(10 * time.Minute)
	if _, err := r.do(lifecycle.OpSuspend, lab.ID, false); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "child"))
	if err != nil {
		t.Fatalf("the hook did not start its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil { // alive, or a zombie not reaped yet (its state says which)
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the hook's background child %d still runs 5 s after the hook's timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Hooks run at most MaxParallel at once in a process: a class of 20 suspended at once starts
// 20 hooks, 4 at a time.
func TestHooksRunAtMostMaxParallelAtOnce(t *testing.T) {
	r := newRig(t, "a")
	var mu sync.Mutex
	running, most := 0, 0
	r.mgr.Hooks = lifecycle.Hooks{BeforeSuspend: "x", Timeout: 10 * time.Second, MaxParallel: 4,
		Run: func(ctx context.Context, _ string, _ []string) ([]byte, error) {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
			return nil, nil
		}}
	var ids []string
	for i := range 20 {
		ids = append(ids, r.launch(fmt.Sprintf("l%d", i), "os101").ID)
	}
	r.clock.Add(10 * time.Minute)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if _, err := r.do(lifecycle.OpSuspend, id, false); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if most != 4 {
		t.Errorf("at most %d hooks ran at once, want 4 (MaxParallel)", most)
	}
}
