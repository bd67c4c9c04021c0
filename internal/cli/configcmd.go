package cli

import (
	"bytes"
	"fmt"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/policy"
)

func configCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "check the configuration file, or show it as labplane uses it",
		Subcommands: []*cli.Command{{
			Name:  "validate",
			Usage: "load labplane.yaml, apply the defaults and report every problem (exit 2), or the effective settings",
			Description: "Each problem names the file and the field. Secrets (the store DSN) are never printed.\n" +
				"Durations are Go duration strings (90s, 2m, 336h); delete_after: 0 is rejected as ambiguous (leave it\n" +
				"out to never delete by age).",
			Flags: []cli.Flag{outputFlag},
			Action: withConfig(func(out string, cfg *config.Config) error {
				if out == "json" {
					return writeJSON(stdio.Out, struct {
						*config.Config
						Policy policy.Set `json:"policy"`
					}{cfg, cfg.Rules()})
				}
				return printConfig(stdio, cfg)
			}),
		}, {
			Name:  "show",
			Usage: "print the configuration as labplane uses it: every default filled in, each course's policy whole, secrets hidden",
			Description: "The output is labplane.yaml's own keys, so a section of it can be copied into the file. A PostgreSQL\n" +
				"DSN is shown as (hidden) (it may hold a password, written or from ${VAR}); a SQLite one is its file.\n" +
				"--output json gives the same document as JSON. A configuration with problems is refused as by validate (exit 2).",
			Flags: []cli.Flag{outputFlag},
			Action: withConfig(func(out string, cfg *config.Config) error {
				var buf bytes.Buffer
				enc := yaml.NewEncoder(&buf)
				enc.SetIndent(2)
				if err := enc.Encode(cfg.Effective()); err != nil {
					return err
				}
				doc := buf.Bytes()
				if out == "text" {
					_, err := stdio.Out.Write(doc)
					return err
				}
				var v map[string]any
				if err := yaml.Unmarshal(doc, &v); err != nil {
					return err
				}
				return writeJSON(stdio.Out, v)
			}),
		}},
	}
}

// withConfig is an action on the configuration file, loaded and checked, with --output's value.
func withConfig(act func(out string, cfg *config.Config) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		out, err := output(c)
		if err != nil {
			return err
		}
		cfg, err := config.Load(c.String("config"))
		if err != nil {
			return err
		}
		return act(out, cfg)
	}
}

func printConfig(stdio IO, cfg *config.Config) error {
	w := stdio.Out
	fmt.Fprintf(w, "%s is valid\n", cfg.Path)
	fmt.Fprintf(w, "store: %s\n", cfg.Store.Driver)
	rows := make([][]string, len(cfg.Clouds))
	for i, cl := range cfg.Clouds {
		capacity := "no limit"
		if cl.Capacity > 0 {
			capacity = fmt.Sprint(cl.Capacity)
		}
		rows[i] = []string{cl.Name, cl.Cloud, fmt.Sprint(cl.MaxInFlight), capacity, fmt.Sprint(cl.Drain)}
	}
	if err := table(w, "CLOUD\tCLOUDS.YAML ENTRY\tMAX IN FLIGHT\tCAPACITY\tDRAIN", rows); err != nil {
		return err
	}
	for _, name := range cfg.TemplateNames() {
		mark := ""
		if name == cfg.DefaultTemplate {
			mark = " (default)"
		}
		p, _ := cfg.TemplatePath(name)
		fmt.Fprintf(w, "template %s%s: %s\n", name, mark, p)
	}
	set := cfg.Rules()
	printRules(stdio, "policy", set.Default)
	for course, r := range set.Courses {
		printRules(stdio, "policy for course "+course, r)
	}
	return nil
}

func printRules(stdio IO, title string, r policy.Rules) {
	del := "never"
	if r.DeleteAfter > 0 {
		del = r.DeleteAfter.String()
	}
	fmt.Fprintf(stdio.Out, "%s: idle_suspend_after %s, delete_after %s, launch_timeout %s, stuck_after %s, orphan_grace %s, max_attempts %d, retry_backoff %s\n",
		title, r.IdleSuspendAfter, del, r.LaunchTimeout, r.StuckAfter, r.OrphanGrace, r.MaxAttempts, r.RetryBackoff)
}
