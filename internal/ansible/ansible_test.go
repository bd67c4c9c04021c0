package ansible_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/runs"
)

// These tests run the real ansible-playbook on a local-connection inventory; the runs over
// real SSH to real test hosts are in internal/deploy and internal/cli.

// TestMain installs Ansible (unless -short: then the tests that run it skip themselves).
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		if err := apt.Ensure(context.Background(), os.Stderr, ansible.Packages...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func requireAnsible(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs ansible-playbook: not with -short")
	}
	if _, err := ansible.LookPath(""); err != nil {
		t.Fatal(err)
	}
}

func TestCommand(t *testing.T) {
	p := ansible.Playbook{
		Playbooks: []string{"playbooks/site.yml"}, Inventory: "inventories/staging/hosts.yml",
		Check: true, Diff: true, Limit: "lms-1", Tags: "config",
		ExtraVars:      map[string]any{"openedx_serial": "50%"},
		ExtraVarsFiles: []string{"/env/vault.yml"}, VaultPasswordFile: "/env/pass",
	}
	got, err := p.Command()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(got, " ")
	for _, want := range []string{"ansible-playbook", "--check", "--diff", "--limit=lms-1", "--tags=config",
		"--inventory=inventories/staging/hosts.yml", "--extra-vars=@/env/vault.yml", "--vault-password-file=/env/pass",
		`"openedx_serial":"50%"`, "playbooks/site.yml"} {
		if !strings.Contains(line, want) {
			t.Errorf("command %q lacks %q", line, want)
		}
	}
	env := p.Environment()
	if env["ANSIBLE_STDOUT_CALLBACK"] != ansible.Callback {
		t.Errorf("callback = %q", env["ANSIBLE_STDOUT_CALLBACK"])
	}
}

func local(extra map[string]any) ansible.Playbook {
	return ansible.Playbook{Playbooks: []string{"testdata/local.yml"}, Inventory: "testdata/local.ini", ExtraVars: extra}
}

// A value passed as Unsafe reaches the playbook as it is: Ansible does not template it (a
// release named "{{ lookup('pipe','id') }}" would run a command on the control machine). A plain
// value is templated, which the unsafe one must not be.
func TestUnsafeExtraVarsAreNotTemplated(t *testing.T) {
	requireAnsible(t)
	for _, c := range []struct {
		value any
		want  string
	}{{"{{ 6 * 7 }}", "42"}, {ansible.Unsafe("{{ 6 * 7 }}"), "{{ 6 * 7 }}"}, {ansible.Unsafe("r2"), "r2"}} {
		dest := filepath.Join(t.TempDir(), "value")
		p := ansible.Playbook{Playbooks: []string{"testdata/write.yml"}, Inventory: "testdata/local.ini",
			ExtraVars: map[string]any{"value": c.value, "dest": dest}}
		res, err := ansible.Run(t.Context(), p, func(ansible.Event) {}, io.Discard)
		if err != nil || res.Err() != nil {
			t.Fatalf("%v: %v, %v; stderr %s", c.value, err, res.Err(), res.Stderr)
		}
		if got, err := os.ReadFile(dest); err != nil || string(got) != c.want {
			t.Errorf("%v reached the playbook as %q (%v), want %q", c.value, got, err, c.want)
		}
	}
}

func TestRunStreamsEventsAndRecap(t *testing.T) {
	requireAnsible(t)
	var mu sync.Mutex
	var events []ansible.Event
	var log bytes.Buffer
	res, err := ansible.Run(t.Context(), local(nil), func(e ansible.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 2 {
		t.Errorf("exit code %d, want 2 (a host failed); stderr: %s", res.ExitCode, res.Stderr)
	}
	if hosts := res.Hosts(); !slices.Equal(hosts, []string{"a", "b", "hidden"}) {
		t.Fatalf("recap hosts %v", hosts)
	}
	if r := res.Recap["a"]; r.Changed != 1 || r.Failed != 0 || r.Ignored != 1 {
		t.Errorf("a's recap %+v: want changed 1, failed 0, ignored 1", r)
	}
	if r := res.Recap["b"]; r.Failed != 1 {
		t.Errorf("b's recap %+v: want failed 1", r)
	}
	// the ignored failure is no failure; b's failure names its task and message; the no_log
	// task's output is not shown
	want := []runs.Failure{
		{Host: "b", Task: "Fail on purpose", Msg: "boom on b"},
		{Host: "hidden", Task: "Hide a secret", Msg: "(output hidden: the task has no_log)"},
	}
	if !slices.Equal(res.Failures, want) {
		t.Errorf("failures %+v\nwant %+v", res.Failures, want)
	}
	if err := res.Err(); !errors.Is(err, ansible.ErrHostsFailed) || !strings.Contains(err.Error(), `b failed at task "Fail on purpose": boom on b`) {
		t.Errorf("Err() = %v", err)
	}
	var tasks []string
	changed := 0
	for _, e := range events {
		switch e.Kind {
		case ansible.TaskStart:
			tasks = append(tasks, e.Task)
		case ansible.Changed:
			changed++
		}
	}
	if !slices.Equal(tasks, []string{"Change something", "Fail and be ignored", "Hide a secret", "Fail on purpose", "Wait a while"}) {
		t.Errorf("task starts %v", tasks)
	}
	if changed != 3 {
		t.Errorf("%d changed events, want 3 (one per host)", changed)
	}
	if n := strings.Count(log.String(), `"_event":"v2_`); n < 10 {
		t.Errorf("the log holds %d raw events:\n%s", n, log.String())
	}
}

func TestCancelInterruptsAnsible(t *testing.T) {
	requireAnsible(t)
	ctx, cancel := context.WithCancel(t.Context())
	started := make(chan struct{})
	var once sync.Once
	done := make(chan struct{})
	var res ansible.Result
	var err error
	go func() {
		defer close(done)
		p := local(map[string]any{"wait_seconds": 127.25})
		p.Grace = 3 * time.Second
		res, err = ansible.Run(ctx, p, func(e ansible.Event) {
			if e.Kind == ansible.TaskStart && e.Task == "Wait a while" {
				once.Do(func() { close(started) })
			}
		}, nil)
	}()
	select {
	case <-started:
	case <-done:
		t.Fatalf("the run ended before its long task: %+v, %v", res, err)
	case <-time.After(60 * time.Second):
		t.Fatal("the long task never started")
	}
	t0 := time.Now()
	cancel()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if !res.Cancelled || !errors.Is(res.Err(), ansible.ErrCancelled) {
		t.Errorf("result %+v: want cancelled", res)
	}
	if took := time.Since(t0); took > 6*time.Second {
		t.Errorf("Ansible took %v to stop after SIGINT, with a grace of 3 s before it is killed", took)
	}
	// nothing left running: no sleep 127.25 from this run
	out, _ := exec.Command("pgrep", "-f", "sleep 127.25").Output()
	if len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("processes left behind: %s", out)
	}
}

// CheckCallback reads ansible-doc's answer, not its exit status (0 for an unknown plugin):
// stand-in ansible-playbook and ansible-doc scripts answer as Ansible with and without the
// callback does; then the machine's own Ansible, when it has one.
func TestCheckCallback(t *testing.T) {
	tests := []struct {
		name string
		doc  string // the stand-in ansible-doc; "" = none beside ansible-playbook
		want error  // nil: no error; errAny: some error
	}{
		{"with the callback", `echo '{"ansible.posix.jsonl": {"doc": {"collection": "ansible.posix"}}}'`, nil},
		{"ansible-core alone", `echo "[WARNING]: ansible.posix.jsonl was not found" >&2; echo '{}'`, ansible.ErrNoCallback},
		{"ansible-doc fails", `echo "ERROR! broken" >&2; exit 5`, errAny},
		{"no ansible-doc", "", errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name, body string) {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			write("ansible-playbook", "exit 0")
			if tc.doc != "" {
				write("ansible-doc", tc.doc)
			}
			err := ansible.CheckCallback(t.Context(), filepath.Join(dir, "ansible-playbook"))
			t.Logf("%v", err)
			switch {
			case tc.want == nil && err != nil:
				t.Errorf("want no error, got %v", err)
			case tc.want == errAny && err == nil:
				t.Error("want an error")
			case tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
				t.Errorf("want %v, got %v", tc.want, err)
			}
		})
	}
	t.Run("this machine", func(t *testing.T) {
		if _, err := ansible.LookPath(""); err != nil {
			t.Skip("no Ansible on this machine")
		}
		if err := ansible.CheckCallback(t.Context(), ""); err != nil {
			t.Errorf("the machine's Ansible (installed as ansible.Packages): %v", err)
		}
	})
}

var errAny = errors.New("any error")

// A labplane killed while Ansible runs takes Ansible with it: nothing goes on deploying with
// the environment's lock already free. The test runs itself again as the labplane that is
// killed (SIGKILL: no chance to clean up), once while Ansible starts and once while a task's
// command runs; then nothing of that run may be left.
func TestAnsibleDiesWithLabplane(t *testing.T) {
	if wait := os.Getenv("LABPLANE_TEST_ORPHAN_WAIT"); wait != "" {
		fmt.Println("starting")
		p := local(map[string]any{"wait_seconds": wait})
		p.Grace = 3 * time.Second
		_, _ = ansible.Run(context.Background(), p, func(e ansible.Event) {
			if e.Kind == ansible.TaskStart && e.Task == "Wait a while" {
				fmt.Println("waiting")
			}
		}, nil)
		return
	}
	requireAnsible(t)
	for i, killAt := range []string{"starting", "waiting"} {
		t.Run("killed while "+killAt, func(t *testing.T) {
			// a wait no other run uses, to find this run's processes by
			wait := fmt.Sprintf("%d.%d%d", 300+i, os.Getpid(), i)
			cmd := exec.Command(os.Args[0], "-test.run=^TestAnsibleDiesWithLabplane$")
			cmd.Env = append(os.Environ(), "LABPLANE_TEST_ORPHAN_WAIT="+wait)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()         //nolint:errcheck // killed
			defer cmd.Process.Kill() //nolint:errcheck // gone already is fine
			said := make(chan string, 2)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					said <- sc.Text()
				}
			}()
			left := func() string {
				out, _ := exec.Command("pgrep", "-f", "wait_seconds\":\""+wait+"|sleep "+wait).Output()
				return string(bytes.TrimSpace(out))
			}
			timeout := time.After(90 * time.Second)
			for ready := false; !ready; {
				select {
				case s := <-said:
					ready = s == killAt
				case <-timeout:
					t.Fatalf("the run never said %q", killAt)
				}
			}
			if killAt == "waiting" { // and the task's command runs
				for deadline := time.Now().Add(30 * time.Second); !strings.Contains(left(), "\n") && time.Now().Before(deadline); {
					time.Sleep(50 * time.Millisecond)
				}
			}
			t.Logf("killed with these running: %q", left())
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			deadline := time.Now().Add(15 * time.Second)
			for left() != "" && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if l := left(); l != "" {
				t.Errorf("processes left running 15 s after labplane was killed: %s", l)
				exec.Command("pkill", "-KILL", "-f", "wait_seconds\":\""+wait+"|sleep "+wait).Run() //nolint:errcheck
			}
		})
	}
}

// The plan lists each play's hosts and tasks as --list-tasks does, with the run's --limit and
// --tags; a run of it, followed by a Tracker, completes every host's planned tasks exactly:
// the results of an include's tasks, a handler's and the items of a loop are not counted, a
// task named twice is counted twice, a skipped task once, a meta task (no result) at the
// host's recap; a host that failed stays short of its total.
func TestPlanFollowsTheRun(t *testing.T) {
	requireAnsible(t)
	p := ansible.Playbook{Playbooks: []string{"testdata/plan.yml"}, Inventory: "testdata/local.ini",
		Env: map[string]string{"ANSIBLE_ROLES_PATH": "testdata/roles"}}
	plan, err := ansible.List(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	want := ansible.Plan{Plays: []ansible.PlannedPlay{
		{Name: "Two hosts", Hosts: []string{"a", "b"}, Tasks: []string{"web : Notify", "web : Include", "Flush", "Loop", "Same name", "Same name", "Tagged"}},
		{Name: "One host", Hosts: []string{"a"}, Tasks: []string{"Skipped", "Fail", "Never"}},
	}}
	if !reflect.DeepEqual(plan, want) {
		t.Fatalf("plan %+v\nwant %+v", plan, want)
	}
	if got := [3]int{plan.Tasks("a"), plan.Tasks("b"), plan.Tasks("hidden")}; got != [3]int{10, 7, 0} || !slices.Equal(plan.Hosts(), []string{"a", "b"}) {
		t.Errorf("tasks of a, b, hidden: %v; hosts %v", got, plan.Hosts())
	}

	tracker := ansible.NewTracker(plan)
	done, results := map[string]int{}, map[string]int{}
	res, err := ansible.Run(t.Context(), p, func(e ansible.Event) {
		if e.Host != "" && e.Kind != ansible.Recap {
			results[e.Host]++
		}
		if host, n := tracker.Done(e); n > 0 {
			done[host] += n
		}
	}, io.Discard)
	if err != nil || len(res.Failures) != 1 || res.Failures[0].Host != "a" {
		t.Fatalf("run: %v, failures %+v (want a's only)", err, res.Failures)
	}
	// a: 6 of play 1's 7 reported (Flush has no result) and Skipped and Fail of play 2's 3;
	// b: its 7, Flush at its recap
	if done["a"] != 8 || done["b"] != 7 || len(done) != 2 {
		t.Errorf("planned tasks done %v, want a 8 (it failed), b 7", done)
	}
	if results["b"] <= 7 { // the include's two tasks, the loop's items and the handler besides
		t.Errorf("b had %d results: the playbook does not test unplanned ones", results["b"])
	}

	limited := p
	limited.Limit, limited.Tags = "b", "only"
	if plan, err = ansible.List(t.Context(), limited); err != nil {
		t.Fatal(err)
	}
	if plan.Tasks("a") != 0 || plan.Tasks("b") != 1 || len(plan.Plays) != 2 || len(plan.Plays[1].Hosts) != 0 {
		t.Errorf("plan with --limit b --tags only: %+v", plan)
	}

	broken := p
	broken.Playbooks = []string{"testdata/no-such.yml"}
	if _, err := ansible.List(t.Context(), broken); err == nil || !strings.Contains(err.Error(), "no-such.yml") {
		t.Errorf("listing a missing playbook: %v", err)
	}
}
