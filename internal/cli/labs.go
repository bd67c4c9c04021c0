package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
)

func labsCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:  "labs",
		Usage: "launch, list, show and act on single labs",
		Subcommands: []*cli.Command{
			{
				Name:      "launch",
				Usage:     "launch a lab for a learner and course, and wait until its stack is complete",
				UsageText: "labplane labs launch --learner L --course C [--template T] [--cloud N]",
				Description: "The lab goes to the first cloud in the configuration's order that is not drained and has room\n" +
					"(capacity counts suspended labs); if the launch fails there, what it left is deleted and the next\n" +
					"cloud is tried. A learner who already has a live lab for the course gets it back (exit 2).",
				Flags: []cli.Flag{
					// required, checked in Action: urfave/cli's own check fails with exit 1
					&cli.StringFlag{Name: "learner", Usage: "the learner's id in the LMS (required)"},
					&cli.StringFlag{Name: "course", Usage: "the course id (required)"},
					&cli.StringFlag{Name: "template", Usage: "a template name from the configuration (default: default_template)"},
					&cli.StringFlag{Name: "cloud", Usage: "launch on this cloud only (no failover)"},
					outputFlag,
				},
				Action: func(c *cli.Context) error {
					out, err := output(c)
					if err != nil {
						return err
					}
					for _, name := range []string{"learner", "course"} {
						if c.String(name) == "" {
							return usageError("--%s is required (see labplane labs launch --help)", name)
						}
					}
					e, err := openEnv(c, stdio, true)
					if err != nil {
						return err
					}
					defer e.Close()
					lab, err := e.manager().Launch(c.Context, lifecycle.LaunchRequest{Learner: c.String("learner"),
						Course: c.String("course"), Template: c.String("template"), Cloud: c.String("cloud"), Actor: actor()})
					if lab.ID == "" {
						return err
					}
					if perr := printLab(c.Context, stdio.Out, out, e, lab); perr != nil {
						return perr
					}
					return err
				},
			},
			{
				Name:  "list",
				Usage: "list labs (live ones unless --all or --status)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "cloud", Usage: "only labs on this cloud"},
					&cli.StringFlag{Name: "course", Usage: "only labs of this course"},
					&cli.StringFlag{Name: "learner", Usage: "only labs of this learner"},
					&cli.StringSliceFlag{Name: "status", Usage: "only labs in these statuses: " + statusList()},
					&cli.BoolFlag{Name: "all", Usage: "include deleted labs"},
					outputFlag,
				},
				Action: func(c *cli.Context) error {
					out, err := output(c)
					if err != nil {
						return err
					}
					f := labs.Filter{Cloud: c.String("cloud"), Course: c.String("course"), Learner: c.String("learner")}
					for _, s := range c.StringSlice("status") {
						if !labs.Status(s).Valid() {
							return usageError("--status %q: use one of %s", s, statusList())
						}
						f.Statuses = append(f.Statuses, labs.Status(s))
					}
					if len(f.Statuses) == 0 && !c.Bool("all") {
						f.Statuses = labs.LiveStatuses()
					}
					e, err := openEnv(c, stdio, false)
					if err != nil {
						return err
					}
					defer e.Close()
					list, err := e.store.ListLabs(c.Context, f)
					if err != nil {
						return err
					}
					if out == "json" {
						return writeJSON(stdio.Out, nonNil(list))
					}
					now := e.now()
					rows := make([][]string, len(list))
					for i, l := range list {
						rows[i] = []string{l.ID, learnerOrPool(l), l.Course, l.Cloud, string(l.Status), orDash(l.StackStatus),
							ago(now, l.LastActivity()), ago(now, l.CreatedAt)}
					}
					return table(stdio.Out, "ID\tLEARNER\tCOURSE\tCLOUD\tSTATUS\tSTACK\tLAST ACTIVE\tCREATED", rows)
				},
			},
			{
				Name:      "show",
				Usage:     "show a lab, its stack's outputs and its audit trail",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{outputFlag},
				Action: labAction(stdio, false, func(c *cli.Context, e *env, id, out string) error {
					lab, err := e.store.GetLab(c.Context, id)
					if err != nil {
						return err
					}
					return printLab(c.Context, stdio.Out, out, e, lab)
				}),
			},
			{
				Name:      "heartbeat",
				Usage:     "record that the learner is active in the lab (the LMS does this through the API)",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{outputFlag},
				Action: labAction(stdio, false, func(c *cli.Context, e *env, id, out string) error {
					lab, err := e.manager().Heartbeat(c.Context, id)
					if err != nil {
						return err
					}
					if out == "json" {
						return writeJSON(stdio.Out, lab)
					}
					_, err = fmt.Fprintf(stdio.Out, "lab %s: heartbeat at %s (%s)\n", lab.ID, lab.LastHeartbeat.Format("15:04:05"), lab.Status)
					return err
				}),
			},
			{
				Name:      "extend",
				Usage:     "add time to the time budget of the lab's learner in its course (policy usage_limit)",
				ArgsUsage: "ID",
				Description: "A course with a usage_limit gives each learner that much time in its labs; once it is used, the\n" +
					"learner's lab is suspended and a launch or a resume is refused. extend adds time for the lab's\n" +
					"learner in the lab's course, recorded in the lab's audit trail.\n\n" +
					"   labplane labs extend 3f2a9c1d0b7e --by 2h",
				Flags: []cli.Flag{
					&cli.DurationFlag{Name: "by", Usage: "the time to add (required), such as 2h or 90m"},
					outputFlag,
				},
				Action: labAction(stdio, false, func(c *cli.Context, e *env, id, out string) error {
					if !c.IsSet("by") {
						return usageError("labs extend needs --by, the time to add (such as --by 2h)")
					}
					lab, budget, err := e.manager().Extend(c.Context, id, c.Duration("by"), actor())
					if err != nil {
						return err
					}
					if out == "json" {
						return writeJSON(stdio.Out, map[string]any{"lab": lab.ID, "learner": lab.Learner, "course": lab.Course, "budget": budget.View()})
					}
					_, err = fmt.Fprintf(stdio.Out, "learner %s in %s: %s used of %s, %s left\n", lab.Learner, lab.Course,
						budget.Used.Round(time.Second), budget.Limit, budget.Left().Round(time.Second))
					return err
				}),
			},
			opCommand(stdio, lifecycle.OpSuspend, "suspend the lab's stack in place (Heat stack suspend)"),
			opCommand(stdio, lifecycle.OpResume, "resume the lab's suspended stack"),
			opCommand(stdio, lifecycle.OpDelete, "delete the lab's stack and mark the lab deleted"),
		},
	}
}

func opCommand(stdio IO, op lifecycle.Op, usage string) *cli.Command {
	flags := []cli.Flag{
		&cli.BoolFlag{Name: "dry-run", Usage: "show what would be done and change nothing"},
		outputFlag,
	}
	if op != lifecycle.OpResume {
		flags = append(flags, &cli.BoolFlag{Name: "force", Usage: fmt.Sprintf("%s even if the learner was active within idle_suspend_after", op)})
	}
	if op == lifecycle.OpDelete {
		flags = append(flags, &cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation (needed when stdin is not a terminal)"})
	}
	return &cli.Command{
		Name:      string(op),
		Usage:     usage,
		ArgsUsage: "ID",
		Flags:     flags,
		Action: labAction(stdio, true, func(c *cli.Context, e *env, id, out string) error {
			if c.Bool("dry-run") {
				lab, err := e.store.GetLab(c.Context, id)
				if err != nil {
					return err
				}
				if out == "json" {
					return writeJSON(stdio.Out, map[string]any{"dry_run": true, "action": op, "lab": lab})
				}
				_, err = fmt.Fprintf(stdio.Out, "dry run: would %s lab %s (%s, stack %s on %s); nothing changed\n",
					op, lab.ID, lab.Status, orDash(lab.StackStatus), lab.Cloud)
				return err
			}
			if op == lifecycle.OpDelete {
				if err := confirm(stdio, c.Bool("yes"), fmt.Sprintf("Delete lab %s and its stack?", id)); err != nil {
					return err
				}
			}
			lab, err := e.manager().Do(c.Context, op, id, actor(), c.Bool("force"))
			if err != nil && (lab.ID == "" || errors.Is(err, lifecycle.ErrInUse) || errors.Is(err, lifecycle.ErrInvalid)) {
				return err
			}
			if perr := printLab(c.Context, stdio.Out, out, e, lab); perr != nil {
				return perr
			}
			return err
		}),
	}
}

// confirm asks at a terminal; elsewhere it needs --yes.
func confirm(stdio IO, yes bool, question string) error {
	if yes {
		return nil
	}
	if !stdio.Terminal {
		return usageError("refusing without --yes: stdin is not a terminal to confirm at")
	}
	fmt.Fprintf(stdio.Err, "%s [y/N] ", question)
	answer, err := bufio.NewReader(stdio.In).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return usageError("not confirmed: nothing was changed")
	}
	return nil
}

// labAction is the action of a command on one lab (labplane labs CMD ID): it reads the ID
// and --output, opens the registry (and, with clouds and without --dry-run, the clouds) and
// calls do.
func labAction(stdio IO, clouds bool, do func(c *cli.Context, e *env, id, out string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		id, out, err := labArg(c)
		if err != nil {
			return err
		}
		e, err := openEnv(c, stdio, clouds && !c.Bool("dry-run"))
		if err != nil {
			return err
		}
		defer e.Close()
		return do(c, e, id, out)
	}
}

func labArg(c *cli.Context) (id, out string, err error) {
	return oneArg(c, "one lab ID (see labplane labs list)")
}

// oneArg reads a command's one argument and --output, with the command's flags before or after
// the argument (labs show ID --output json; see interspersedArgs). A lone argument is taken as
// urfave/cli left it: it has parsed the flags before it.
func oneArg(c *cli.Context, what string) (arg, out string, err error) {
	args := c.Args().Slice()
	if len(args) > 1 {
		if args, err = interspersedArgs(c); err != nil {
			return "", "", err
		}
	}
	if out, err = output(c); err != nil {
		return "", "", err
	}
	if len(args) != 1 {
		return "", "", usageError("%s needs %s", c.Command.FullName(), what)
	}
	return args[0], out, nil
}

// interspersedArgs parses the command's flags wherever they are among its arguments (urfave/cli
// v2 stops parsing them at the first argument), sets those found under all their names, and
// returns the arguments that are not flags.
func interspersedArgs(c *cli.Context) ([]string, error) {
	set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(set); err != nil {
			return nil, err
		}
	}
	var args []string
	for rest := c.Args().Slice(); len(rest) > 0; {
		if err := set.Parse(rest); err != nil {
			return nil, badInput{err}
		}
		if rest = set.Args(); len(rest) > 0 {
			args, rest = append(args, rest[0]), rest[1:]
		}
	}
	var err error
	set.Visit(func(fl *flag.Flag) {
		for _, f := range c.Command.Flags {
			if slices.Contains(f.Names(), fl.Name) {
				for _, name := range f.Names() {
					err = errors.Join(err, c.Set(name, fl.Value.String()))
				}
			}
		}
	})
	return args, err
}

type labView struct {
	labs.Lab
	// the learner's time budget in the course, when it has a usage_limit
	Budget *policy.BudgetView `json:"budget,omitempty"`
	Events []labs.Event       `json:"events"`
}

func printLab(ctx context.Context, w io.Writer, out string, e *env, lab labs.Lab) error {
	events, err := e.store.Events(ctx, lab.ID, 20)
	if err != nil {
		return err
	}
	budget, err := e.manager().Budget(ctx, lab.Learner, lab.Course)
	if err != nil {
		return err
	}
	outputs := lab.Outputs.Redacted()
	if out == "json" {
		return writeJSON(w, labView{Lab: lab, Budget: budget.View(), Events: nonNil(events)})
	}
	now := e.now()
	fmt.Fprintf(w, "lab %s: %s\n", lab.ID, lab.Status)
	fmt.Fprintf(w, "  learner %s, course %s, template %s\n", learnerOrPool(lab), lab.Course, lab.Template)
	fmt.Fprintf(w, "  cloud %s, stack %s (%s), status %s\n", lab.Cloud, lab.StackName, orDash(lab.StackID), orDash(lab.StackStatus))
	fmt.Fprintf(w, "  created %s, last heartbeat %s, last resumed %s\n", ago(now, lab.CreatedAt), ago(now, lab.LastHeartbeat), ago(now, lab.LastResumedAt))
	if budget.Limited() {
		fmt.Fprintf(w, "  time budget in the course: %s used of %s, %s left%s\n", budget.Used.Round(time.Second), budget.Limit,
			budget.Left().Round(time.Second), map[bool]string{true: " (exhausted: launch and resume refused)"}[budget.Exhausted()])
	}
	if lab.Attempts > 0 || lab.LastError != "" {
		fmt.Fprintf(w, "  failed attempts %d, next attempt %s, last error: %s\n", lab.Attempts, lab.NextAttemptAt.Format("2006-01-02 15:04:05"), lab.LastError)
	}
	keys := make([]string, 0, len(outputs))
	for k := range outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  output %s = %s\n", k, outputs[k])
	}
	rows := make([][]string, len(events))
	for i, ev := range events {
		detail := ev.Detail
		if ev.Error != "" {
			detail = strings.TrimSpace(detail + " error: " + ev.Error)
		}
		rows[i] = []string{ev.At.Local().Format("2006-01-02 15:04:05"), ev.Actor, ev.Action,
			fmt.Sprintf("%s->%s", orDash(string(ev.From)), orDash(string(ev.To))), orDash(ev.RequestID), detail}
	}
	fmt.Fprintln(w)
	return table(w, "  AT\tACTOR\tACTION\tSTATUS\tREQUEST\tDETAIL", indent(rows))
}

// learnerOrPool is the lab's learner, or "(pool)" for a lab of its course's warm pool.
func learnerOrPool(l labs.Lab) string {
	if l.Pooled() {
		return "(pool)"
	}
	return l.Learner
}

func indent(rows [][]string) [][]string {
	for _, r := range rows {
		r[0] = "  " + r[0]
	}
	return rows
}

func statusList() string {
	s := make([]string, len(labs.Statuses))
	for i, st := range labs.Statuses {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
