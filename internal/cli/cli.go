// Package cli is labplane's command line: the urfave/cli application, the wiring of config,
// store, clouds and lifecycle, output in text or JSON, and the map from errors to exit codes
// (0 done, 1 the job failed, 2 bad usage or bad input).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/deploy"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/rollout"
	"github.com/labplane/labplane/internal/runs"
	"github.com/labplane/labplane/internal/specfile"
	"github.com/labplane/labplane/internal/store"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitFailed   = 1
	ExitBadInput = 2
)

// badInput marks an error as the user's to fix (exit 2).
type badInput struct{ err error }

func (b badInput) Error() string { return b.err.Error() }
func (b badInput) Unwrap() error { return b.err }

func usageError(format string, args ...any) error {
	return badInput{fmt.Errorf(format, args...)}
}

// ExitCode maps an error to labplane's exit code.
func ExitCode(err error) int {
	var cfgErr *specfile.Error
	var bad badInput
	var badDeploy *deploy.BadInputError
	var locked *platform.LockedError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &cfgErr), errors.As(err, &bad), errors.As(err, &badDeploy), errors.Is(err, runs.ErrNotFound),
		errors.Is(err, labs.ErrNotFound), errors.Is(err, labs.ErrExists),
		errors.As(err, &locked), errors.Is(err, rollout.ErrRefused), errors.Is(err, store.ErrNoPromotion),
		errors.Is(err, lifecycle.ErrInUse), errors.Is(err, lifecycle.ErrUnknownCloud), errors.Is(err, lifecycle.ErrInvalid), errors.Is(err, lifecycle.ErrBudgetExhausted),
		errors.Is(err, rollout.ErrInvalid), errors.Is(err, store.ErrOpenDirectory):
		return ExitBadInput
	}
	return ExitFailed
}

// IO is where a run reads and writes.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	// Terminal reports whether In is an interactive terminal (confirmations are asked there);
	// ErrTerminal, whether Err is one (progress is drawn there, with the log).
	Terminal, ErrTerminal bool
}

// Run runs the command line and returns the exit code.
func Run(ctx context.Context, args []string, stdio IO) int {
	app := NewApp(stdio)
	err := app.RunContext(ctx, args)
	if err != nil {
		fmt.Fprintln(stdio.Err, "labplane:", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return ExitCode(err)
}

// NewApp builds the application.
func NewApp(stdio IO) *cli.App {
	// urfave/cli v2 only calls CommandNotFound and then exits 0: remember the unknown command
	// and return it from After, which runs last, so that it exits 2 like any bad usage.
	var unknown error
	app := &cli.App{
		Name:  "labplane",
		Usage: "the control plane of an Open edX + OpenStack lab platform",
		Description: "labplane launches learners' lab stacks on OpenStack Heat, suspends them when idle, resumes them\n" +
			"when the learner returns, and deletes old, orphaned and stuck ones, on several clouds at once.\n" +
			"Exit codes: 0 done, 1 the job failed (a cloud down, an action failed), 2 bad usage or bad input.",
		Reader:          stdio.In,
		Writer:          stdio.Out,
		ErrWriter:       stdio.Err,
		HideHelpCommand: true,
		Version:         versionDetail(),
		// `labplane --generate-bash-completion` lists the words that may come next: the bash
		// completion the Debian package installs asks it
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: "labplane.yaml", EnvVars: []string{"LABPLANE_CONFIG"},
				Usage: "the configuration file (store, clouds, templates, policy, hooks)"},
			&cli.StringFlag{Name: "project", Value: ".", EnvVars: []string{"LABPLANE_PROJECT"},
				Usage: "the project directory: inventories/, playbooks/, roles/ and provision/ are in it"},
			&cli.StringFlag{Name: "inventories", EnvVars: []string{"LABPLANE_INVENTORIES"},
				Usage: "the environments' directory, inventories/ENV/environment.yml (default: PROJECT/inventories)"},
			&cli.StringFlag{Name: "state-dir", EnvVars: []string{"LABPLANE_STATE_DIR"},
				Usage: "where labplane keeps Terraform state and run logs (default: PROJECT/.labplane); written 0700"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"LABPLANE_LOG_LEVEL"},
				Usage: "debug, info, warn or error; logs go to stderr"},
		},
		ExitErrHandler: func(*cli.Context, error) {}, // Run prints and maps errors
		OnUsageError:   onUsageError,
		CommandNotFound: func(c *cli.Context, name string) {
			unknown = usageError("no command %q; see %s --help", name, c.Command.HelpName)
		},
		After: func(*cli.Context) error { return unknown },
		Commands: []*cli.Command{
			configCommand(stdio),
			labsCommand(stdio),
			reapCommand(stdio),
			costCommand(stdio),
			simCommand(stdio),
			serveCommand(stdio),
			tokenCommand(stdio),
			inventoryCommand(stdio),
			deployCommand(stdio),
			runsCommand(stdio),
			provisionCommand(stdio),
			releaseCommand(stdio),
			promoteCommand(stdio),
			doctorCommand(stdio),
			devCommand(stdio),
		},
	}
	setOnUsageError(app.Commands)
	return app
}

// onUsageError makes a command line urfave/cli cannot parse (an unknown flag, a flag without
// its value) bad usage: exit 2.
func onUsageError(_ *cli.Context, err error, _ bool) error { return badInput{err} }

// setOnUsageError gives every command and subcommand onUsageError: urfave/cli v2 does not
// inherit the App's, and returns a plain error (exit 1) otherwise.
func setOnUsageError(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = onUsageError
		}
		setOnUsageError(c.Subcommands)
	}
}

// outputFlag is on every listing and every command that acts.
var outputFlag = &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"}

func output(c *cli.Context) (string, error) {
	switch o := c.String("output"); o {
	case "text", "json":
		return o, nil
	default:
		return "", usageError("--output %q: use text or json", o)
	}
}

// logOutput is where a command's log goes: Err, or, while a progress board is drawn on Err,
// above the board.
type logOutput struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// to sends the log to w from now on.
func (l *logOutput) to(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w = w
}

func logger(c *cli.Context, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageError("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
}

// project locates the project's directories and labplane's state directory.
type project struct{ dir, inventories, stateDir string }

func projectOf(c *cli.Context) project {
	p := project{dir: c.String("project"), inventories: c.String("inventories"), stateDir: c.String("state-dir")}
	if p.inventories == "" {
		p.inventories = filepath.Join(p.dir, "inventories")
	}
	if p.stateDir == "" {
		p.stateDir = filepath.Join(p.dir, ".labplane")
	}
	return p
}

// environment loads inventories/<name>/environment.yml.
func (p project) environment(name string) (*envspec.Environment, error) {
	return envspec.Load(p.inventories, name)
}

// actor names the person or program acting, for the audit trail.
func actor() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli:" + os.Getenv("USER")
}
