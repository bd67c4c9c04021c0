// Package ansible runs ansible-playbook through github.com/apenella/go-ansible/v2: it builds
// the command, streams Ansible's events (the ansible.posix.jsonl stdout callback) to the
// caller while the play runs, keeps the raw events in a log, parses the recap per host, and
// interrupts Ansible cleanly (SIGINT, then a grace period) when the context is cancelled.
package ansible

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apenella/go-ansible/v2/pkg/execute"
	goexec "github.com/apenella/go-ansible/v2/pkg/execute/exec"
	"github.com/apenella/go-ansible/v2/pkg/execute/result"
	"github.com/apenella/go-ansible/v2/pkg/playbook"

	"github.com/labplane/labplane/internal/outputtail"
	"github.com/labplane/labplane/internal/runs"
)

// Playbook is one ansible-playbook run.
type Playbook struct {
	// Binary is the ansible-playbook to run; empty means the one on PATH.
	Binary    string
	Playbooks []string
	Inventory string
	Check     bool
	Diff      bool
	Limit     string
	Tags      string
	// ExtraVars are passed with --extra-vars (never secrets: they show in the process list).
	// A value from a flag or a record goes in as Unsafe(value).
	ExtraVars map[string]any
	// ExtraVarsFiles are passed as --extra-vars @FILE (an ansible-vault file, for instance).
	ExtraVarsFiles    []string
	VaultPasswordFile string
	// Dir is the directory Ansible runs in.
	Dir string
	// Env is added to labplane's own environment for Ansible (ANSIBLE_* settings; the
	// variables the inventory's secret lookups read are already in labplane's environment).
	Env map[string]string
	// Grace is how long Ansible gets to stop after SIGINT before it is killed (default 10 s).
	Grace time.Duration
}

// Callback is the stdout callback labplane reads: one JSON object per event.
const Callback = "ansible.posix.jsonl"

func (p Playbook) command() *playbook.AnsiblePlaybookCmd {
	opts := &playbook.AnsiblePlaybookOptions{
		Inventory:         p.Inventory,
		Check:             p.Check,
		Diff:              p.Diff,
		Limit:             p.Limit,
		Tags:              p.Tags,
		ExtraVars:         p.ExtraVars,
		VaultPasswordFile: p.VaultPasswordFile,
	}
	for _, f := range p.ExtraVarsFiles {
		opts.ExtraVarsFile = append(opts.ExtraVarsFile, "@"+f)
	}
	cmd := []playbook.AnsiblePlaybookOptionsFunc{playbook.WithPlaybooks(p.Playbooks...), playbook.WithPlaybookOptions(opts)}
	if p.Binary != "" {
		cmd = append(cmd, playbook.WithBinary(p.Binary))
	}
	return playbook.NewAnsiblePlaybookCmd(cmd...)
}

// Command is the command line Run runs, for tests and for showing.
func (p Playbook) Command() ([]string, error) { return p.command().Command() }

// Environment is what Run adds to the child's environment: p.Env and the stdout callback.
func (p Playbook) Environment() map[string]string {
	env := map[string]string{
		"ANSIBLE_STDOUT_CALLBACK":        Callback,
		"ANSIBLE_NOCOLOR":                "1",
		"ANSIBLE_RETRY_FILES_ENABLED":    "false",
		"ANSIBLE_CALLBACK_RESULT_INDENT": "0",
	}
	for k, v := range p.Env {
		env[k] = v
	}
	return env
}

// childEnv is ansible-playbook's environment: labplane's own, and Environment.
func (p Playbook) childEnv() []string {
	return append(os.Environ(), execute.EnvVars(p.Environment()).Environ()...)
}

// Event is one thing Ansible reported while it ran.
type Event struct {
	Kind Kind
	At   time.Time
	Play string
	Task string
	Host string
	// Msg is Ansible's message for a failed or unreachable host. (The callback does not say
	// whether a failure is ignored by the play: the recap does.)
	Msg string
	// Result is the host's result as Ansible reported it (ok and changed events: what a task
	// registered, such as a stat).
	Result json.RawMessage
	// Recap is the host's recap (recap events, at the end of the run).
	Recap *runs.HostRecap
}

// Kind is what an event reports.
type Kind string

// Event kinds.
const (
	PlayStart   Kind = "play"
	TaskStart   Kind = "task"
	OK          Kind = "ok"
	Changed     Kind = "changed"
	Failed      Kind = "failed"
	Unreachable Kind = "unreachable"
	Skipped     Kind = "skipped"
	// Recap: a host's recap, once the run is over (its hosts in order).
	Recap Kind = "recap"
)

// Result is how a run ended.
type Result struct {
	Recap    map[string]runs.HostRecap `json:"recap"`
	Failures []runs.Failure            `json:"failures,omitempty"`
	// ExitCode is ansible-playbook's (0 ok, 2 a host failed, 4 unreachable, 99 interrupted...).
	ExitCode  int  `json:"exit_code"`
	Cancelled bool `json:"cancelled,omitempty"`
	// Stderr is the end of what Ansible wrote to stderr (warnings, errors before any play).
	Stderr string `json:"-"`
}

// Hosts lists the recap's hosts, sorted.
func (r Result) Hosts() []string {
	hosts := make([]string, 0, len(r.Recap))
	for h := range r.Recap {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	return hosts
}

// Err explains a run that did not succeed, or returns nil.
func (r Result) Err() error {
	switch {
	case r.Cancelled:
		return ErrCancelled
	case len(r.Failures) > 0:
		msgs := make([]string, len(r.Failures))
		for i, f := range r.Failures {
			msgs[i] = f.String()
		}
		return fmt.Errorf("%w: %s", ErrHostsFailed, strings.Join(msgs, "; "))
	case r.ExitCode != 0:
		msg := strings.TrimSpace(r.Stderr)
		if msg == "" {
			msg = "no message"
		}
		return fmt.Errorf("ansible-playbook exited %d: %s", r.ExitCode, msg)
	}
	return nil
}

// Errors a run can end with.
var (
	ErrCancelled   = errors.New("interrupted: ansible-playbook was stopped")
	ErrHostsFailed = errors.New("hosts failed")
)

// Run runs the playbook. on is called with each event as it happens (from one goroutine);
// log receives every raw event as one JSON line, and Ansible's stderr. The error is for a
// run that could not be started or read; how the play went is in the Result (see Err).
func Run(ctx context.Context, p Playbook, on func(Event), log io.Writer) (Result, error) {
	if p.Grace == 0 {
		p.Grace = 10 * time.Second
	}
	st := newStream(on, log)
	// the directory and environment are set by interruptible: go-ansible sets them only on
	// an *exec.Cmd, and interruptible's command is guarded
	proc := &interruptible{grace: p.Grace, exited: make(chan struct{}), dir: p.Dir, env: p.childEnv()}
	exe := execute.NewDefaultExecute(
		execute.WithCmd(p.command()),
		execute.WithExecutable(proc),
		execute.WithWrite(stdoutSink{}),
		execute.WithWriteError(stderrSink{}),
	)
	exe.WithOutput(st)
	err := exe.Execute(ctx)
	close(proc.exited)
	st.finish()
	// go-ansible's error does not unwrap to the exit status: read it from the process
	if proc.cmd == nil || proc.cmd.ProcessState == nil {
		if err == nil {
			err = errors.New("it did not run")
		}
		return st.res, fmt.Errorf("run ansible-playbook: %w", err)
	}
	st.res.ExitCode = proc.cmd.ProcessState.ExitCode()
	// 99: interrupted, by labplane's SIGINT or by one sent to it directly; -1: killed
	st.res.Cancelled = ctx.Err() != nil || st.res.ExitCode == 99
	return st.res, nil
}

// interruptible starts ansible-playbook in its own process group and, when the context is
// cancelled, sends the group SIGINT (Ansible's Ctrl-C: it stops and cleans up). A worker
// that has just started a task may still run it to the end; so if the group has not exited
// after the grace period, it is killed (the whole group: go-ansible reads Ansible's output
// to the end before it waits for the process, so a task left running would hold it).
type interruptible struct {
	grace  time.Duration
	dir    string
	env    []string      // the child's whole environment
	cmd    *osexec.Cmd   // the one started, to read its exit status
	exited chan struct{} // closed by Run when the command is done
}

func (i *interruptible) Command(name string, arg ...string) goexec.Cmder {
	return osexec.Command(name, arg...)
}

func (i *interruptible) CommandContext(ctx context.Context, name string, arg ...string) goexec.Cmder {
	cmd := osexec.CommandContext(ctx, name, arg...)
	i.cmd = cmd
	// stdin stays /dev/null: Ansible must not wait for an answer from labplane's terminal
	cmd.Dir, cmd.Env = i.dir, i.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		group := -cmd.Process.Pid
		go func() {
			select {
			case <-time.After(i.grace):
				syscall.Kill(group, syscall.SIGKILL) //nolint:errcheck // gone already is fine
			case <-i.exited:
			}
		}()
		return syscall.Kill(group, syscall.SIGINT)
	}
	return &guarded{Cmd: cmd, grace: i.grace}
}

// guarded is ansible-playbook with a watchdog: if labplane dies (SIGKILL, a crash) while
// Ansible runs, nothing may go on deploying, orphaned, while the environment's lock is
// already free. The watchdog, a shell, waits on a pipe from labplane: when labplane ends the
// run it says "done"; when labplane dies the pipe closes, and the watchdog sends Ansible's
// process group Ctrl-C, then SIGKILL after the grace. (The kernel's parent-death signal is
// not enough: it reaches ansible-playbook only, and Ansible's workers and their commands go
// on after SIGTERM, and after a SIGINT that comes while Ansible starts: both seen with 2.14.)
type guarded struct {
	*osexec.Cmd
	grace    time.Duration
	watchdog *osexec.Cmd
	done     io.WriteCloser
}

// watchdogScript: $1 is the process group, $2 the grace in tenths of a second.
const watchdogScript = `read -r line; [ "$line" = done ] && exit 0
kill -INT -"$1" 2>/dev/null
i=0; while kill -0 -"$1" 2>/dev/null && [ "$i" -lt "$2" ]; do sleep 0.1; i=$((i+1)); done
kill -KILL -"$1" 2>/dev/null; exit 0`

func (g *guarded) Start() error {
	if err := g.Cmd.Start(); err != nil {
		return err
	}
	w := osexec.Command("/bin/sh", "-c", watchdogScript, "watchdog", strconv.Itoa(g.Cmd.Process.Pid), strconv.Itoa(int(g.grace/(100*time.Millisecond))))
	w.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done, err := w.StdinPipe()
	if err == nil {
		err = w.Start()
	}
	if err != nil { // no run without its guard
		syscall.Kill(-g.Cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // gone already is fine
		g.Cmd.Wait()                                      //nolint:errcheck // killed
		return fmt.Errorf("start ansible-playbook's watchdog: %w", err)
	}
	g.watchdog, g.done = w, done
	return nil
}

func (g *guarded) Wait() error {
	err := g.Cmd.Wait()
	if g.watchdog != nil {
		fmt.Fprintln(g.done, "done") //nolint:errcheck // a watchdog gone has nothing to do
		g.done.Close()
		g.watchdog.Wait() //nolint:errcheck // its status says nothing about the run
	}
	return err
}

// stdoutSink and stderrSink tell stream.Print which of Ansible's outputs it reads.
type stdoutSink struct{}
type stderrSink struct{}

func (stdoutSink) Write(b []byte) (int, error) { return len(b), nil }
func (stderrSink) Write(b []byte) (int, error) { return len(b), nil }

// stream decodes Ansible's output: go-ansible calls Print once for stdout and once for
// stderr, concurrently.
type stream struct {
	on  func(Event)
	log io.Writer

	mu     sync.Mutex        // log and stderr
	stderr outputtail.Buffer // its last stderrTail bytes
	res    Result            // written by the stdout reader only, read after both finish
	play   string
	// last is each host's last failure: the one that stopped it, if the recap counts one.
	last map[string]runs.Failure
}

// finish completes the result once Ansible has exited: the failures are the hosts the
// recap counts as failed or unreachable (ignored and rescued failures are not), each with
// the failure that stopped it; without a recap (an interrupted run), every host that failed.
func (s *stream) finish() {
	s.res.Stderr = s.stderr.String()
	hosts := make([]string, 0, len(s.last))
	for h := range s.last {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		r, recapped := s.res.Recap[h]
		if !recapped || r.Failed > 0 || r.Unreachable > 0 {
			s.res.Failures = append(s.res.Failures, s.last[h])
		}
	}
}

var _ result.ResultsOutputer = (*stream)(nil)

// newStream is the decoder of one run's output: events to on, raw events to log.
func newStream(on func(Event), log io.Writer) *stream {
	return &stream{on: on, log: log, stderr: outputtail.Buffer{Max: stderrTail}, res: Result{Recap: map[string]runs.HostRecap{}}}
}

func (s *stream) Print(ctx context.Context, r io.Reader, w io.Writer, _ ...result.OptionsFunc) error {
	if _, isStderr := w.(stderrSink); isStderr {
		return s.copyStderr(r)
	}
	dec := json.NewDecoder(r)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			// not JSON: something wrote to stdout around the callback; keep it as text (a JSON
			// string: the log is one JSON value a line)
			rest, _ := io.ReadAll(io.MultiReader(dec.Buffered(), r))
			line, _ := json.Marshal("stdout: " + string(rest))
			s.writeLog(append(line, '\n'))
			return nil
		}
		if bytes.ContainsAny(raw, "\r\n") { // the callback writes one line; other JSON may not
			var line bytes.Buffer
			if json.Compact(&line, raw) == nil {
				raw = line.Bytes()
			}
		}
		s.writeLog(append(raw, '\n'))
		s.handle(raw)
	}
}

func (s *stream) copyStderr(r io.Reader) error {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.mu.Lock()
			s.stderr.Write(buf[:n])
			s.mu.Unlock()
			line, _ := json.Marshal(map[string]string{"_event": "stderr", "text": string(buf[:n])})
			s.writeLog(append(line, '\n'))
		}
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func (s *stream) writeLog(b []byte) {
	if s.log == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.Write(b) //nolint:errcheck // a log that cannot be written does not stop the deploy
}

// jsonlEvent is what the ansible.posix.jsonl callback writes.
type jsonlEvent struct {
	Event     string                     `json:"_event"`
	Timestamp time.Time                  `json:"_timestamp"`
	Play      *struct{ Name string }     `json:"play"`
	Task      *struct{ Name string }     `json:"task"`
	Hosts     map[string]json.RawMessage `json:"hosts"`
	Stats     map[string]json.RawMessage `json:"stats"`
}

type hostResult struct {
	Changed  bool            `json:"changed"`
	Msg      json.RawMessage `json:"msg"`
	Stderr   string          `json:"stderr"`
	Censored string          `json:"censored"` // no_log: Ansible hid the output
	Results  []hostResult    `json:"results"`
}

// message is the most useful text of a failed host's result.
func (h hostResult) message() string {
	if h.Censored != "" {
		return "(output hidden: the task has no_log)"
	}
	var msg string
	if len(h.Msg) > 0 && json.Unmarshal(h.Msg, &msg) != nil {
		msg = string(h.Msg)
	}
	if msg == "" || msg == "non-zero return code" || msg == "All items completed" || msg == "One or more items failed" {
		if h.Stderr != "" {
			msg = strings.TrimSpace(strings.TrimPrefix(msg+": "+h.Stderr, ": "))
		}
		for _, item := range h.Results {
			if m := item.message(); m != "" && m != msg {
				msg = strings.TrimPrefix(msg+": "+m, ": ")
				break
			}
		}
	}
	return strings.TrimSpace(msg)
}

var runnerKinds = map[string]Kind{
	"v2_runner_on_ok":          OK,
	"v2_runner_on_failed":      Failed,
	"v2_runner_on_unreachable": Unreachable,
	"v2_runner_on_skipped":     Skipped,
}

func (s *stream) handle(raw json.RawMessage) {
	var ev jsonlEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		return
	}
	switch ev.Event {
	case "v2_playbook_on_play_start":
		if ev.Play != nil {
			s.play = ev.Play.Name
		}
		s.emit(Event{Kind: PlayStart, At: ev.Timestamp, Play: s.play})
		return
	case "v2_playbook_on_task_start", "v2_playbook_on_handler_task_start":
		if ev.Task != nil {
			s.emit(Event{Kind: TaskStart, At: ev.Timestamp, Play: s.play, Task: ev.Task.Name})
		}
		return
	case "v2_playbook_on_stats":
		s.recap(ev.Stats, ev.Timestamp)
		return
	}
	kind, ok := runnerKinds[ev.Event]
	if !ok {
		return
	}
	task := ""
	if ev.Task != nil {
		task = ev.Task.Name
	}
	hosts := make([]string, 0, len(ev.Hosts))
	for h := range ev.Hosts {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		var r hostResult
		_ = json.Unmarshal(ev.Hosts[h], &r) // a result of another shape: no message, no change
		e := Event{Kind: kind, At: ev.Timestamp, Play: s.play, Task: task, Host: h}
		if kind == OK {
			e.Result = ev.Hosts[h]
		}
		switch {
		case kind == OK && r.Changed:
			e.Kind = Changed
		case kind == Failed || kind == Unreachable:
			e.Msg = r.message()
			if s.last == nil {
				s.last = map[string]runs.Failure{}
			}
			s.last[h] = runs.Failure{Host: h, Task: task, Msg: e.Msg, Unreachable: kind == Unreachable}
		}
		s.emit(e)
	}
}

func (s *stream) emit(e Event) {
	if s.on != nil {
		s.on(e)
	}
}

func (s *stream) recap(stats map[string]json.RawMessage, at time.Time) {
	hosts := make([]string, 0, len(stats))
	for h := range stats {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		var st struct {
			OK, Changed, Failures, Unreachable, Skipped, Rescued, Ignored int
		}
		if json.Unmarshal(stats[h], &st) == nil {
			rc := runs.HostRecap{OK: st.OK, Changed: st.Changed, Failed: st.Failures, Unreachable: st.Unreachable,
				Skipped: st.Skipped, Rescued: st.Rescued, Ignored: st.Ignored}
			s.res.Recap[h] = rc
			s.emit(Event{Kind: Recap, At: at, Play: s.play, Host: h, Recap: &rc})
		}
	}
}

// stderrTail is how much of Ansible's stderr a Result keeps.
const stderrTail = 8 << 10

// Packages are the Debian packages a machine that runs playbooks needs: the ansible package, not
// only ansible-core (ansible.posix brings the Callback), and the ssh client.
var Packages = []string{"ansible", "openssh-client"}

// LookPath finds ansible-playbook, with a message that says what to install.
func LookPath(binary string) (string, error) {
	if binary == "" {
		binary = "ansible-playbook"
	}
	p, err := osexec.LookPath(binary)
	if err != nil {
		return "", fmt.Errorf("%s not found: install Ansible (labplane doctor --install, or apt-get install ansible: the ansible package, not only ansible-core, brings the %s callback): %w", binary, Callback, err)
	}
	return p, nil
}

// ErrNoCallback means the Ansible found has no Callback: ansible-core without the ansible
// package's collections.
var ErrNoCallback = errors.New("the " + Callback + " callback is not installed")

// CheckCallback checks that the Ansible of ansible-playbook (empty: the one on PATH) has the
// Callback labplane reads, by asking the ansible-doc beside it. (ansible-doc exits 0 for a
// plugin it does not know: its JSON answer is what tells.)
func CheckCallback(ctx context.Context, binary string) error {
	playbook, err := LookPath(binary)
	if err != nil {
		return err
	}
	doc := filepath.Join(filepath.Dir(playbook), "ansible-doc")
	cmd := osexec.CommandContext(ctx, doc, "-t", "callback", "--json", Callback)
	cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1")
	cmd.WaitDelay = 5 * time.Second
	stderr := &outputtail.Buffer{Max: 1024}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("%s -t callback %s: %w: %s", doc, Callback, err, msg)
		}
		return fmt.Errorf("%s -t callback %s: %w", doc, Callback, err)
	}
	var docs map[string]json.RawMessage
	if err := json.Unmarshal(out, &docs); err != nil {
		return fmt.Errorf("%s -t callback --json %s: %w", doc, Callback, err)
	}
	if _, ok := docs[Callback]; !ok {
		return fmt.Errorf("%w for %s: install the ansible package (apt-get install ansible), not only ansible-core", ErrNoCallback, playbook)
	}
	return nil
}

// Unsafe wraps a string that Ansible must take as it is, never as a template (Ansible's JSON
// marker for its unsafe text): a release name or anything else that came from a flag or a
// record, checked already, and harmless even if a check missed "{{ lookup('pipe', ...) }}".
func Unsafe(s string) any { return map[string]string{"__ansible_unsafe": s} }
