package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/release"
	"github.com/labplane/labplane/internal/runs"
)

func releaseCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:  "release",
		Usage: "the releases deployed on each environment, from the recorded runs",
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "each release on each environment: the hosts that run it now, when it was deployed",
				UsageText: "labplane release list [--env ENV] [--output text|json]",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "env", Usage: "only this environment"}, outputFlag},
				Action: registryAction(stdio, "", func(c *cli.Context, reg *registry, _, out string) error {
					rs, err := reg.store.ListRuns(c.Context, runs.Filter{Environment: c.String("env")})
					if err != nil {
						return err
					}
					sums := release.Summarize(rs)
					if out == "json" {
						if sums == nil {
							sums = []release.Summary{}
						}
						return writeJSON(stdio.Out, sums)
					}
					return summaryTable(stdio, sums)
				}),
			},
			{
				Name:      "show",
				Usage:     "one release: where it runs, its runs and its promotions",
				UsageText: "labplane release show RELEASE [--output text|json]",
				Flags:     []cli.Flag{outputFlag},
				Action: registryAction(stdio, "RELEASE", func(c *cli.Context, reg *registry, name, out string) error {
					all, err := reg.store.ListRuns(c.Context, runs.Filter{})
					if err != nil {
						return err
					}
					promotions, err := reg.store.ListPromotions(c.Context, "")
					if err != nil {
						return err
					}
					shown := releaseShown{Release: name, Environments: []release.Summary{}, Runs: []runs.Run{}, Promotions: []platform.Promotion{}}
					for _, s := range release.Summarize(all) {
						if s.Release == name {
							shown.Environments = append(shown.Environments, s)
						}
					}
					for _, r := range all {
						if r.Release == name {
							shown.Runs = append(shown.Runs, r)
						}
					}
					for _, p := range promotions {
						if p.Release == name || p.Previous == name {
							shown.Promotions = append(shown.Promotions, p)
						}
					}
					if len(shown.Runs) == 0 && len(shown.Promotions) == 0 {
						return fmt.Errorf("release %q: never deployed: %w", name, runs.ErrNotFound)
					}
					if out == "json" {
						return writeJSON(stdio.Out, shown)
					}
					if err := summaryTable(stdio, shown.Environments); err != nil {
						return err
					}
					fmt.Fprintln(stdio.Out)
					rows := make([][]string, len(shown.Runs))
					for i, r := range shown.Runs {
						rows[i] = []string{r.ID, string(r.Kind), r.Environment, string(r.Status), orDash(r.Options.Limit),
							r.StartedAt.Local().Format("2006-01-02 15:04:05"), r.Actor}
					}
					if err := table(stdio.Out, "RUN\tKIND\tENV\tSTATUS\tLIMIT\tSTARTED\tBY", rows); err != nil {
						return err
					}
					if len(shown.Promotions) > 0 {
						fmt.Fprintln(stdio.Out)
						return promotionTable(stdio, shown.Promotions)
					}
					return nil
				}),
			},
		},
	}
}

// releaseShown is `release show`'s answer.
type releaseShown struct {
	Release      string               `json:"release"`
	Environments []release.Summary    `json:"environments"`
	Runs         []runs.Run           `json:"runs"`
	Promotions   []platform.Promotion `json:"promotions"`
}

func summaryTable(stdio IO, sums []release.Summary) error {
	now := time.Now()
	rows := make([][]string, len(sums))
	for i, s := range sums {
		rows[i] = []string{s.Release, s.Environment, orDash(strings.Join(s.Hosts, ",")), ago(now, s.FirstDeployed),
			ago(now, s.LastDeployed), string(s.LastStatus), fmt.Sprint(s.Runs)}
	}
	return table(stdio.Out, "RELEASE\tENV\tRUNNING ON\tFIRST DEPLOYED\tLAST DEPLOYED\tLAST STATUS\tRUNS", rows)
}

func promotionTable(stdio IO, ps []platform.Promotion) error {
	rows := make([][]string, len(ps))
	for i, p := range ps {
		rows[i] = []string{p.ID, p.Release, p.From + " -> " + p.To, string(p.Status), fmt.Sprintf("%d/%d", p.Done, len(p.Batches)),
			orDash(p.Previous), p.StartedAt.Local().Format("2006-01-02 15:04:05"), p.Actor}
	}
	return table(stdio.Out, "PROMOTION\tRELEASE\tFROM -> TO\tSTATUS\tBATCHES\tPREVIOUS\tSTARTED\tBY", rows)
}
