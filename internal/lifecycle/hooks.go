package lifecycle

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// Hooks are operator commands run around actions (sh -c), as hastexo-xblock has: before a
// suspend, after a resume, before a delete. They get the lab in LABPLANE_* environment
// variables. A failing hook is logged and recorded in the audit trail; the action goes on.
type Hooks struct {
	BeforeSuspend, AfterResume, BeforeDelete string
	// Timeout bounds each hook; it must be set when a hook is (config supplies a default).
	Timeout time.Duration
	// Run runs a hook's command with the environment given; nil: /bin/sh -c, the output
	// combined.
	Run func(ctx context.Context, command string, env []string) (output []byte, err error)
}

// runShell runs a hook's command with /bin/sh.
func runShell(ctx context.Context, command string, env []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = env
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}

// hookOutputLimit bounds how much of a failing hook's output is recorded.
const hookOutputLimit = 2048

func (m *Manager) runHook(ctx context.Context, name, command string, lab labs.Lab, actor string) {
	if command == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, m.Hooks.Timeout)
	defer cancel()
	env := append(os.Environ(),
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
	run := m.Hooks.Run
	if run == nil {
		run = runShell
	}
	out, err := run(ctx, command, env)
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
