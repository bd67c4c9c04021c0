package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/progress"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/store"
)

func reapCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:      "reap",
		Usage:     "bring every lab stack on every cloud where the policy says (one pass)",
		UsageText: "labplane reap --once [--dry-run] [--yes] [--wait DURATION] [--output text|json]",
		Description: "One pass: read the registry and every cloud's labplane-tagged stacks, decide, act, record.\n" +
			"Idle labs are suspended, labs past delete_after deleted, failed and stuck stacks handled (with\n" +
			"backoff, up to max_attempts, then left to an operator), zombies (the registry says deleted, the cloud\n" +
			"still has it) deleted, orphans (tagged, no registry row) deleted after orphan_grace. A lab with a\n" +
			"recent heartbeat is never suspended or deleted; a stack without labplane's tag is never touched.\n" +
			"Each stack is re-read from its cloud right before it is acted on.\n\n" +
			"--dry-run prints the plan and changes nothing. A plan that deletes stacks asks for confirmation at\n" +
			"a terminal; elsewhere (cron, CI) it needs --yes. Exit 1 when a cloud could not be reached or an\n" +
			"action failed; the other clouds and labs are still handled.\n\n" +
			"A pass holds the reaper's lock, the one `labplane serve`'s jobs take (on every replica), so that two\n" +
			"reapers never act on the same lab: it waits up to --wait for it, then exits 1. If the lock is lost\n" +
			"during the pass (PostgreSQL: its connection failed), the pass stops. --dry-run takes no lock.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "once", Usage: "run one pass and exit (required; labplane serve runs passes on a schedule)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and change nothing"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask before deleting stacks (needed when stdin is not a terminal)"},
			&cli.DurationFlag{Name: "wait", Value: 10 * time.Minute, Usage: "how long to wait for the reaper's lock while another reaper holds it"},
			outputFlag,
		},
		Action: func(c *cli.Context) error {
			out, err := output(c)
			if err != nil {
				return err
			}
			if !c.Bool("once") {
				return usageError("reap runs a single pass: use labplane reap --once")
			}
			e, err := openEnv(c, stdio, true)
			if err != nil {
				return err
			}
			defer e.Close()
			ctx := c.Context
			if !c.Bool("dry-run") {
				var release func()
				if ctx, release, err = holdReaperLocks(ctx, e.store, e.cfg.CloudNames(), c.Duration("wait")); err != nil {
					return err
				}
				defer release()
			}
			r := e.reaper("reaper")
			plan, err := r.Plan(ctx)
			if err != nil {
				return err
			}
			if c.Bool("dry-run") {
				if out == "json" {
					err = writeJSON(stdio.Out, struct {
						DryRun bool `json:"dry_run"`
						reaper.Plan
					}{true, plan})
				} else {
					err = printPlan(stdio.Out, plan, true)
				}
				if err != nil {
					return err
				}
				return cloudErrors(plan)
			}
			if n := destructive(plan); n > 0 {
				if out == "text" {
					if err := printPlan(stdio.Out, plan, false); err != nil {
						return err
					}
				}
				if err := confirm(stdio, c.Bool("yes"), fmt.Sprintf("The plan deletes %d stacks. Go ahead?", n)); err != nil {
					return err
				}
			}
			var board *progress.Board
			if stdio.ErrTerminal && len(plan.Actions) > 0 {
				// at a terminal: a line per cloud, the log above it
				board = progressOf(ctx, stdio.Err, plan)
				r.OnOutcome = func(o reaper.Outcome) { board.Done(o.Action.Cloud(), o.Error != "") }
				e.logs.to(board)
			}
			res, err := r.Execute(ctx, plan)
			if board != nil {
				e.logs.to(stdio.Err)
				board.Wait()
			}
			if err != nil {
				return err
			}
			if out == "json" {
				err = writeJSON(stdio.Out, res)
			} else {
				err = printResult(stdio.Out, res)
			}
			if err != nil {
				return err
			}
			if res.Failed() {
				return fmt.Errorf("reap: %d of %d actions failed, %d clouds unavailable", failures(res), len(res.Outcomes), len(res.Plan.CloudErrors))
			}
			return nil
		},
	}
}

// progressOf draws, at a terminal, a line per cloud with its actions done of those planned.
func progressOf(ctx context.Context, w io.Writer, plan reaper.Plan) *progress.Board {
	board := progress.New(ctx, w, "actions")
	perCloud := map[string]int{}
	var clouds []string
	for _, a := range plan.Actions {
		if perCloud[a.Cloud()] == 0 {
			clouds = append(clouds, a.Cloud())
		}
		perCloud[a.Cloud()]++
	}
	for _, c := range clouds {
		board.Add(c, perCloud[c])
	}
	return board
}

// holdReaperLocks waits up to wait for the reaper's lock of every cloud (reaper.LockKey, in
// the configuration's order: two reap --once never wait for each other), the locks serve's
// jobs hold on each cloud, and returns a context, under ctx, that is cancelled if one is
// lost; release lets them go.
func holdReaperLocks(ctx context.Context, st *store.Store, clouds []string, wait time.Duration) (context.Context, func(), error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	run, stop := context.WithCancelCause(ctx)
	var releases []func()
	release := func() {
		stop(nil)
		for _, r := range slices.Backward(releases) {
			r()
		}
	}
	for _, cloud := range clouds {
		key := reaper.LockKey(cloud)
		held, unlock, err := st.Hold(wctx, key)
		if err != nil {
			release()
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return nil, nil, fmt.Errorf("reap: another reaper (labplane serve's scheduler or another reap) holds the lock %q: gave up after --wait %s", key, wait)
			}
			return nil, nil, fmt.Errorf("reap: %w", err)
		}
		// a lost lock stops the pass: another reaper may take it and act on the same labs
		stopAfter := context.AfterFunc(held, func() { stop(context.Cause(held)) })
		releases = append(releases, func() {
			stopAfter()
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = unlock(uctx)
		})
	}
	return run, release, nil
}

func destructive(p reaper.Plan) int {
	n := 0
	for _, a := range p.Actions {
		if a.Kind.Destructive() {
			n++
		}
	}
	return n
}

func failures(r reaper.Result) int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Error != "" {
			n++
		}
	}
	return n
}

func cloudErrors(p reaper.Plan) error {
	if len(p.CloudErrors) == 0 {
		return nil
	}
	return fmt.Errorf("%d clouds could not be observed", len(p.CloudErrors))
}

func actionRow(a policy.Action) []string {
	lab := a.Lab.ID
	if lab == "" {
		lab = "(orphan)"
	}
	stack := a.Stack.Status
	if stack == "" {
		stack = "(none)"
	}
	return []string{string(a.Kind), lab, orDash(a.Cloud()), stack, a.Reason}
}

func printPlan(w io.Writer, p reaper.Plan, dryRun bool) error {
	head := "plan"
	if dryRun {
		head = "dry run: nothing will be changed; plan"
	}
	fmt.Fprintf(w, "%s at %s: %d labs and %d stacks observed, %d actions, %d held\n",
		head, p.At.Local().Format(time.DateTime), p.Labs, p.Stacks, len(p.Actions), len(p.Held))
	printCloudErrors(w, p.CloudErrors)
	if len(p.Actions) > 0 {
		rows := make([][]string, len(p.Actions))
		for i, a := range p.Actions {
			rows[i] = actionRow(a)
		}
		if err := table(w, "ACTION\tLAB\tCLOUD\tSTACK\tWHY", rows); err != nil {
			return err
		}
	}
	return printHeld(w, p.Held)
}

func printHeld(w io.Writer, held []policy.Action) error {
	if len(held) == 0 {
		return nil
	}
	fmt.Fprintln(w, "held (nothing done):")
	rows := make([][]string, len(held))
	for i, a := range held {
		rows[i] = actionRow(a)
		rows[i][0] = "  " + rows[i][0]
	}
	return table(w, "  \tLAB\tCLOUD\tSTACK\tWHY", rows)
}

func printCloudErrors(w io.Writer, errs map[string]string) {
	names := make([]string, 0, len(errs))
	for n := range errs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "cloud %s unavailable (its labs wait for the next pass): %s\n", n, errs[n])
	}
}

func printResult(w io.Writer, r reaper.Result) error {
	done, skipped := 0, 0
	rows := make([][]string, 0, len(r.Outcomes))
	for _, o := range r.Outcomes {
		result := "done"
		switch {
		case o.Error != "":
			result = "FAILED: " + o.Error
		case !o.Done:
			result = "skipped: a fresh read no longer called for it"
			skipped++
		default:
			done++
		}
		row := actionRow(o.Action)
		rows = append(rows, append(row[:4], result, o.Duration.Round(10*time.Millisecond).String()))
	}
	fmt.Fprintf(w, "reap at %s: %d labs and %d stacks observed; %d actions done, %d failed, %d skipped, %d held; %s\n",
		r.Plan.At.Local().Format(time.DateTime), r.Plan.Labs, r.Plan.Stacks, done, failures(r), skipped, len(r.Plan.Held),
		r.Elapsed.Round(10*time.Millisecond))
	printCloudErrors(w, r.Plan.CloudErrors)
	if len(rows) > 0 {
		if err := table(w, "ACTION\tLAB\tCLOUD\tSTACK\tRESULT\tTOOK", rows); err != nil {
			return err
		}
	}
	return printHeld(w, r.Plan.Held)
}
