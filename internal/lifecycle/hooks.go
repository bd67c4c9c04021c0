package lifecycle

import (
	"cmp"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// Hooks are operator commands run around actions (sh -c), as hastexo-xblock has: before a
// suspend, after a resume, before a delete. They get the lab in LABPLANE_* environment
// variables and, of labplane's own environment, only what a shell needs (PATH, HOME, the
// locale, TZ) and the variables Env names: never the clouds' passwords or the registry's
// DSN. A failing hook is logged and recorded in the audit trail; the action goes on.
type Hooks struct {
	BeforeSuspend, AfterResume, BeforeDelete string
	// Timeout bounds each hook, and every process it starts; it must be set when a hook is
	// (config supplies a default).
	Timeout time.Duration
	// Env names more of labplane's environment variables the hooks get.
	Env []string
	// MaxParallel bounds the hooks running at once in the process (a class leaving would start
	// a shell per lab); the others wait for one to end. 0: DefaultMaxParallelHooks.
	MaxParallel int
	// Run runs a hook's command with the environment given; nil: /bin/sh -c, the output
	// combined.
	Run func(ctx context.Context, command string, env []string) (output []byte, err error)

	once    sync.Once
	running chan struct{}
}

// DefaultMaxParallelHooks is Hooks.MaxParallel's default: config.DefaultHooksMaxParallel, for
// Hooks made without a configuration.
const DefaultMaxParallelHooks = 8

// shellEnv are the variables of labplane's environment every hook gets.
var shellEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ"}

// runShell runs a hook's command with /bin/sh in a process group of its own: at the timeout
// the whole group is killed, the background children of a compound command included.
func runShell(ctx context.Context, command string, env []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}

// env is a hook's environment: what a shell needs, Env, and the lab.
func (h *Hooks) env(name string, lab labs.Lab) []string {
	var env []string
	for _, k := range slices.Concat(shellEnv, h.Env) {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env,
		"LABPLANE_HOOK="+name,
		"LABPLANE_LAB_ID="+lab.ID,
		"LABPLANE_LEARNER="+lab.Learner,
		"LABPLANE_COURSE="+lab.Course,
		"LABPLANE_TEMPLATE="+lab.Template,
		"LABPLANE_CLOUD="+lab.Cloud,
		"LABPLANE_STACK_NAME="+lab.StackName,
		"LABPLANE_STACK_ID="+lab.StackID,
		"LABPLANE_STATUS="+string(lab.Status),
	)
}

// slot waits for one of the MaxParallel places for a running hook; release gives it back.
func (h *Hooks) slot(ctx context.Context) (release func(), err error) {
	h.once.Do(func() { h.running = make(chan struct{}, cmp.Or(h.MaxParallel, DefaultMaxParallelHooks)) })
	select {
	case h.running <- struct{}{}:
		return func() { <-h.running }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// hookOutputLimit bounds how much of a failing hook's output is recorded.
const hookOutputLimit = 2048

func (m *Manager) runHook(ctx context.Context, name, command string, lab labs.Lab, actor string) {
	if command == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, m.Hooks.Timeout)
	defer cancel()
	run := m.Hooks.Run
	if run == nil {
		run = runShell
	}
	var out []byte
	release, err := m.Hooks.slot(ctx)
	if err == nil {
		out, err = run(ctx, command, m.Hooks.env(name, lab))
		release()
	}
	if err == nil {
		m.Log.Debug("hook ran", "hook", name, "lab", lab.ID)
		return
	}
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	detail := strings.TrimSpace(string(out))
	if len(detail) > hookOutputLimit {
		detail = detail[len(detail)-hookOutputLimit:]
	}
	m.Log.Warn("hook failed", "hook", name, "lab", lab.ID, "err", err)
	if rerr := m.Registry.AddEvent(context.WithoutCancel(ctx), labs.Event{LabID: lab.ID, At: m.Now(), Actor: actor,
		Action: "hook-failed", From: lab.Status, To: lab.Status, Cloud: lab.Cloud, StackID: lab.StackID,
		Error: name + ": " + err.Error(), Detail: detail}); rerr != nil {
		m.Log.Error("record hook failure", "lab", lab.ID, "err", rerr)
	}
}
