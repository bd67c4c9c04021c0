package cli

import (
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/inventory"
	"github.com/labplane/labplane/internal/rollout"
	"github.com/labplane/labplane/internal/runs"
	"github.com/labplane/labplane/internal/store"
)

func inventoryCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:  "inventory",
		Usage: "the Ansible inventory of an environment",
		Subcommands: []*cli.Command{{
			Name:      "render",
			Usage:     "write inventories/ENV/hosts.yml from inventories/ENV/environment.yml",
			UsageText: "labplane inventory render ENV [--stdout]",
			Description: "Renders the environment's inventory: one group per service (lms, cms, guacd) under an openedx\n" +
				"parent group, the spec's settings as group variables, secrets only as lookups that Ansible\n" +
				"resolves when it runs. The hosts are the spec's, or the ones `labplane provision ENV apply`\n" +
				"created. The file is replaced atomically; `labplane deploy` renders it too.",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "stdout", Usage: "print the inventory instead of writing it"}, outputFlag},
			Action: func(c *cli.Context) error {
				name, out, err := oneArg(c, "ENV")
				if err != nil {
					return err
				}
				env, hosts, err := platformOf(c).Environment(c.Context, name)
				if err != nil {
					return err
				}
				if c.Bool("stdout") {
					out, err := inventory.Render(env, hosts)
					if err != nil {
						return err
					}
					_, err = stdio.Out.Write(out)
					return err
				}
				path, err := inventory.Write(env, hosts)
				if err != nil {
					return err
				}
				if out == "json" {
					return writeJSON(stdio.Out, map[string]string{"environment": env.Name, "inventory": path})
				}
				fmt.Fprintln(stdio.Out, path)
				return nil
			},
		}},
	}
}

// platformOf is the project's platform, without its registry (rendering an inventory needs
// none).
func platformOf(c *cli.Context) *rollout.Platform {
	p := projectOf(c)
	return &rollout.Platform{Project: p.dir, Inventories: p.inventories, StateDir: p.stateDir, Actor: actor()}
}

// openPlatform is the project's platform with the registry of the configuration open; close
// closes it.
func openPlatform(c *cli.Context, stdio IO) (pl *rollout.Platform, logs *logOutput, close func(), err error) {
	reg, err := openRegistry(c, stdio)
	if err != nil {
		return nil, nil, nil, err
	}
	pl = platformOf(c)
	pl.Registry, pl.Log = reg.store, reg.log
	return pl, reg.logs, reg.Close, nil
}

// progressTo prints Ansible's progress: on stdout, or on stderr when stdout carries JSON.
func progressTo(stdio IO, out string) *progressPrinter {
	if out == "json" {
		return &progressPrinter{w: stdio.Err}
	}
	return &progressPrinter{w: stdio.Out}
}

func deployCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:      "deploy",
		Usage:     "roll the platform (lms, cms, guacd) out to an environment's hosts with Ansible",
		UsageText: "labplane deploy ENV [--check] [--diff] [--limit HOSTS] [--tags TAGS] [--release R] [--allow-downgrade] [--yes] [--output text|json]",
		Description: "Renders the environment's inventory and runs playbooks/site.yml over SSH: a line per task and host\n" +
			"while it runs (at a terminal: a line per host, updated in place, with its planned tasks done of all),\n" +
			"then each host's recap. The run is recorded in the registry (who, when, release,\n" +
			"recap per host, duration, the full log's path): `labplane runs list|show`. At a terminal it asks\n" +
			"first; elsewhere (CI) it needs --yes (not with --check, which changes nothing). Ctrl-C stops\n" +
			"Ansible cleanly and records the run as cancelled. A release the environment ran before the one its\n" +
			"hosts run now (after a promotion, the spec may still name the older one) is refused without\n" +
			"--allow-downgrade.\n" +
			"Exit 0 deployed; 1 a host failed or was unreachable (named, with the task and Ansible's\n" +
			"message), or the run was interrupted; 2 bad input (the spec, a missing secret variable).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "check", Usage: "Ansible's check mode: report what would change, change nothing"},
			&cli.BoolFlag{Name: "diff", Usage: "show the changes to files"},
			&cli.StringFlag{Name: "limit", Usage: "only these hosts or groups (Ansible's --limit pattern)"},
			&cli.StringFlag{Name: "tags", Usage: "only tasks with these tags (comma-separated)"},
			&cli.StringFlag{Name: "release", Usage: "deploy this release instead of the spec's (its artifact from the spec's pattern)"},
			&cli.BoolFlag{Name: "allow-downgrade", Usage: "deploy a release the environment ran before the one its hosts run now (refused otherwise)"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation (needed when stdin is not a terminal)"},
			outputFlag,
		},
		Action: func(c *cli.Context) error {
			name, out, err := oneArg(c, "ENV")
			if err != nil {
				return err
			}
			pl, logs, closeRegistry, err := openPlatform(c, stdio)
			if err != nil {
				return err
			}
			defer closeRegistry()
			progress := newPlaybookProgress(c.Context, stdio, out, logs)
			run, err := pl.Deploy(c.Context, rollout.DeployRequest{Env: name, Release: c.String("release"), AllowDowngrade: c.Bool("allow-downgrade"),
				Options: runs.Options{Check: c.Bool("check"), Diff: c.Bool("diff"), Limit: c.String("limit"), Tags: c.String("tags")},
				Confirm: func(release string, hosts int) error {
					return confirm(stdio, c.Bool("yes"), fmt.Sprintf("Deploy release %s to %s (%d hosts)?", release, name, hosts))
				},
				Progress: progress.event, Planned: progress.planned()})
			progress.stop()
			if run.ID == "" { // nothing ran
				return err
			}
			if out == "json" {
				if werr := writeJSON(stdio.Out, run); werr != nil {
					return werr
				}
			} else if werr := printRecap(stdio.Out, run); werr != nil {
				return werr
			}
			return err
		},
	}
}

// progressPrinter prints a line per task and per host result as Ansible reports them.
type progressPrinter struct {
	mu sync.Mutex
	w  io.Writer
}

// to prints from now on to w.
func (p *progressPrinter) to(w io.Writer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.w = w
}

func (p *progressPrinter) event(e ansible.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := e.At.Local().Format("15:04:05")
	switch e.Kind {
	case ansible.PlayStart:
		fmt.Fprintf(p.w, "%s PLAY %s\n", at, e.Play)
	case ansible.TaskStart:
		fmt.Fprintf(p.w, "%s   TASK %s\n", at, e.Task)
	case ansible.Recap: // printed as a table at the end
	case ansible.Failed, ansible.Unreachable:
		fmt.Fprintf(p.w, "%s     %-11s %s: %s\n", at, strings.ToUpper(string(e.Kind)), e.Host, e.Msg)
	default:
		fmt.Fprintf(p.w, "%s     %-11s %s\n", at, e.Kind, e.Host)
	}
}

// printRecap prints a run's per-host recap and how it ended.
func printRecap(w io.Writer, r runs.Run) error {
	hosts := make([]string, 0, len(r.Recap))
	for h := range r.Recap {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	rows := make([][]string, len(hosts))
	for i, h := range hosts {
		rc := r.Recap[h]
		rows[i] = []string{h, fmt.Sprint(rc.OK), fmt.Sprint(rc.Changed), fmt.Sprint(rc.Failed), fmt.Sprint(rc.Unreachable), fmt.Sprint(rc.Skipped)}
	}
	fmt.Fprintln(w)
	if err := table(w, "HOST\tOK\tCHANGED\tFAILED\tUNREACHABLE\tSKIPPED", rows); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s of %s to %s: %s in %s (run %s)\n", r.Kind, r.Release, r.Environment,
		r.Status, r.Duration(r.FinishedAt).Round(time.Second), r.ID)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  %s\n", f)
	}
	fmt.Fprintf(w, "full log: %s\n", r.LogPath)
	return nil
}

func runsCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:  "runs",
		Usage: "the history of deploys (and rollbacks) recorded in the registry",
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "list runs, newest first",
				UsageText: "labplane runs list [--env ENV] [--limit N] [--output text|json]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "env", Usage: "only this environment's runs"},
					&cli.IntFlag{Name: "limit", Value: 20, Usage: "the newest N runs (0: all)"},
					outputFlag,
				},
				Action: registryAction(stdio, "", func(c *cli.Context, reg *registry, _, out string) error {
					rs, err := reg.store.ListRuns(c.Context, runs.Filter{Environment: c.String("env"), Limit: c.Int("limit")})
					if err != nil {
						return err
					}
					if out == "json" {
						if rs == nil {
							rs = []runs.Run{}
						}
						return writeJSON(stdio.Out, rs)
					}
					now := time.Now()
					rows := make([][]string, len(rs))
					for i, r := range rs {
						hosts := fmt.Sprint(len(r.Recap))
						if n := len(r.Failures); n > 0 {
							hosts += fmt.Sprintf(" (%d failed)", n)
						}
						rows[i] = []string{r.ID, string(r.Kind), r.Environment, r.Release, string(r.Status),
							r.StartedAt.Local().Format("2006-01-02 15:04:05"), r.Duration(now).Round(time.Second).String(), hosts, r.Actor}
					}
					return table(stdio.Out, "ID\tKIND\tENV\tRELEASE\tSTATUS\tSTARTED\tDURATION\tHOSTS\tBY", rows)
				}),
			},
			{
				Name:      "show",
				Usage:     "one run: its recap per host, its failures and its log's path",
				UsageText: "labplane runs show ID [--output text|json]   (a unique prefix of the id will do)",
				Flags:     []cli.Flag{outputFlag},
				Action: registryAction(stdio, "ID", func(c *cli.Context, reg *registry, id, out string) error {
					r, err := reg.store.GetRun(c.Context, id)
					if err != nil {
						return err
					}
					if out == "json" {
						return writeJSON(stdio.Out, r)
					}
					fmt.Fprintf(stdio.Out, "run %s: %s of %s to %s by %s, started %s\n", r.ID, r.Kind, r.Release, r.Environment, r.Actor,
						r.StartedAt.Local().Format(time.RFC3339))
					if o := r.Options; o != (runs.Options{}) {
						fmt.Fprintf(stdio.Out, "options: check=%v diff=%v limit=%q tags=%q\n", o.Check, o.Diff, o.Limit, o.Tags)
					}
					return printRecap(stdio.Out, r)
				}),
			},
		},
	}
}

// registryAction is the action of a command that reads the registry: it reads the command's
// one argument (when what names it) and --output, opens the registry and calls do.
func registryAction(stdio IO, what string, do func(c *cli.Context, reg *registry, arg, out string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		var arg, out string
		var err error
		if what == "" {
			out, err = output(c)
		} else {
			arg, out, err = oneArg(c, what)
		}
		if err != nil {
			return err
		}
		reg, err := openRegistry(c, stdio)
		if err != nil {
			return err
		}
		defer reg.Close()
		return do(c, reg, arg, out)
	}
}

// registry is the store and the logger, for the commands that need nothing else.
type registry struct {
	store *store.Store
	log   *slog.Logger
	logs  *logOutput // where log writes: a progress board may take it for a while
}

// openRegistry opens the registry named by the configuration; only its store (and site)
// must be valid, so a labplane.yaml for deploys alone needs no clouds.
func openRegistry(c *cli.Context, stdio IO) (*registry, error) {
	logs := &logOutput{w: stdio.Err}
	log, err := logger(c, logs)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadRegistry(c.String("config"))
	if err != nil {
		return nil, err
	}
	st, err := store.Open(c.Context, cfg.Store.Driver, cfg.DSN())
	if err != nil {
		return nil, fmt.Errorf("open the %s registry: %w", cfg.Store.Driver, err)
	}
	return &registry{store: st, log: log, logs: logs}, nil
}

func (r *registry) Close() { _ = r.store.Close() }
