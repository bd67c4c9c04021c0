package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/release"
	"github.com/labplane/labplane/internal/rollout"
)

func promoteCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:      "promote",
		Usage:     "promote a release from one environment to the next: gated, rolling, rolled back on failure",
		UsageText: "labplane promote --from ENV --to ENV [--release R] [--serial N|P%] [--soak D] [--dry-run] [--resume] [--yes] [--output text|json]",
		Description: "The gate: the release is what every host of --from runs, the last deploy there succeeded, every\n" +
			"lms/cms /heartbeat reports it and every guacd answers the handshake now, and it has run there for\n" +
			"--soak. Then a backup (the lms role's database dump, --tags backup; or --backup-hook), and the\n" +
			"target's hosts in batches (lms, cms, guacd; --serial of each service's hosts at a time, default the\n" +
			"target's rollout.serial), each checked until healthy or --health-timeout. A batch whose failed hosts\n" +
			"exceed --max-fail-percentage rolls every host changed so far back to the target's previous release\n" +
			"(kept on the hosts) and checks them. One deploy or promotion per environment at a time. Ctrl-C\n" +
			"records where it stopped: --resume carries on. --dry-run prints the gate's verdict and the batches.\n" +
			"Ansible's progress as deploy shows it (at a terminal, a line per host over all the runs).\n" +
			"Exit 0 promoted (or --dry-run passed); 1 a batch failed and was rolled back (or the rollback\n" +
			"failed, or it was interrupted); 2 bad input, the gate refused, or the target is busy.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "the source environment", Required: true},
			&cli.StringFlag{Name: "to", Usage: "the target environment", Required: true},
			&cli.StringFlag{Name: "release", Usage: "the release to promote (default: the one the source runs; another is refused)"},
			&cli.StringFlag{Name: "serial", Usage: "hosts of a service per batch: a count or a percentage (default: the target's rollout.serial)"},
			&cli.IntFlag{Name: "max-fail-percentage", Usage: "a batch fails when more than this percentage of its hosts fail"},
			&cli.DurationFlag{Name: "soak", Value: time.Hour, Usage: "how long the release must have run on the source"},
			&cli.DurationFlag{Name: "health-timeout", Value: 2 * time.Minute, Usage: "how long a batch has to become healthy"},
			&cli.StringFlag{Name: "backup", Value: "tags", Usage: "the backup before the first batch: tags (the roles' --tags backup) or none"},
			&cli.StringFlag{Name: "backup-hook", Usage: "a command (sh -c) to run as the backup instead; LABPLANE_PROMOTION, _FROM, _TO, _RELEASE, _PREVIOUS are set"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the gate's verdict and the batches; change nothing"},
			&cli.BoolFlag{Name: "resume", Usage: "carry on the target's interrupted promotion"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation (needed when stdin is not a terminal)"},
			outputFlag,
		},
		Action: func(c *cli.Context) error { return promote(c, stdio) },
	}
}

func promote(c *cli.Context, stdio IO) error {
	out, err := output(c)
	if err != nil {
		return err
	}
	if c.NArg() > 0 {
		return usageError("promote takes no arguments (use --from and --to)")
	}
	pl, logs, closeRegistry, err := openPlatform(c, stdio)
	if err != nil {
		return err
	}
	defer closeRegistry()
	progress := newPlaybookProgress(c.Context, stdio, out, logs)
	req := rollout.PromoteRequest{From: c.String("from"), To: c.String("to"), Release: c.String("release"),
		Serial: c.String("serial"), MaxFailPercentage: c.Int("max-fail-percentage"), Soak: c.Duration("soak"),
		HealthTimeout: c.Duration("health-timeout"), Backup: c.String("backup"), BackupHook: c.String("backup-hook"),
		DryRun: c.Bool("dry-run"), Resume: c.Bool("resume"), Progress: progress.event, Planned: progress.planned(),
		Confirm: func(r rollout.PromoteResult) error {
			v := r.Verdict
			if err := confirm(stdio, c.Bool("yes"), fmt.Sprintf("Promote %s from %s to %s (%d batches)?", v.Release, v.Source, c.String("to"), len(r.Batches))); err != nil {
				return err
			}
			if out == "text" {
				printVerdict(stdio, v, r.Batches)
			}
			return nil
		}}
	result, err := pl.Promote(c.Context, req)
	progress.stop()
	if result.Promotion == nil {
		// the gate's verdict is printed when it is the answer: a dry run, or a refusal
		if errors.Is(err, rollout.ErrRefused) || (req.DryRun && err == nil) {
			if out == "json" {
				if werr := writeJSON(stdio.Out, result); werr != nil {
					return werr
				}
			} else {
				printVerdict(stdio, result.Verdict, result.Batches)
			}
		}
		return err
	}
	p := result.Promotion
	if out == "json" {
		if werr := writeJSON(stdio.Out, result); werr != nil {
			return werr
		}
	} else {
		fmt.Fprintf(stdio.Out, "\npromotion %s of %s from %s to %s: %s (batches done: %d of %d; runs: %s)\n", p.ID, p.Release, p.From, p.To,
			p.Status, p.Done, len(p.Batches), strings.Join(p.Runs, ", "))
		for _, ch := range p.Health {
			fmt.Fprintf(stdio.Out, "  %-6s %-10s %s\n", ch.Service, ch.Host, orDash(ch.Release+ch.Error))
		}
	}
	return err
}

func printVerdict(stdio IO, v release.Verdict, batches []platform.Batch) {
	verdict := "passes"
	if !v.Pass {
		verdict = "REFUSES"
	}
	fmt.Fprintf(stdio.Out, "gate: %s %s from %s (soak %s", verdict, orDash(v.Release), v.Source, v.Soak)
	if !v.Since.IsZero() {
		fmt.Fprintf(stdio.Out, "; running there since %s", v.Since.Local().Format(time.RFC3339))
	}
	fmt.Fprintln(stdio.Out, ")")
	for _, r := range v.Reasons {
		fmt.Fprintf(stdio.Out, "  - %s\n", r)
	}
	for i, b := range batches {
		fmt.Fprintf(stdio.Out, "batch %d: %s\n", i+1, b.Limit())
	}
}
