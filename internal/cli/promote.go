package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/deploy"
	"github.com/labplane/labplane/internal/health"
	"github.com/labplane/labplane/internal/inventory"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/release"
	"github.com/labplane/labplane/internal/runs"
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

// promoteResult is promote's JSON answer.
type promoteResult struct {
	Verdict   release.Verdict     `json:"gate"`
	Batches   []platform.Batch    `json:"batches"`
	Promotion *platform.Promotion `json:"promotion,omitempty"`
	Error     string              `json:"error,omitempty"`
}

func promote(c *cli.Context, stdio IO) error {
	out, err := output(c)
	if err != nil {
		return err
	}
	if c.NArg() > 0 {
		return usageError("promote takes no arguments (use --from and --to)")
	}
	from, to := c.String("from"), c.String("to")
	if from == to {
		return usageError("--from and --to are both %s", from)
	}
	if b := c.String("backup"); b != "tags" && b != "none" {
		return usageError("--backup %q: use tags or none", b)
	}
	srcEnv, srcHosts, err := environmentHosts(c, from)
	if err != nil {
		return err
	}
	env, hosts, err := environmentHosts(c, to)
	if err != nil {
		return err
	}
	serial := c.String("serial")
	if serial == "" {
		serial = env.Rollout.Serial
	}
	targets := release.Targets(hosts, env.Ports())
	batches, err := release.Plan(targets, serial)
	if err != nil {
		return usageError("--serial: %w", err)
	}
	if p := c.Int("max-fail-percentage"); p < 0 || p > 100 {
		return usageError("--max-fail-percentage %d: use 0 to 100", p)
	}
	reg, err := openRegistry(c, stdio)
	if err != nil {
		return err
	}
	defer reg.Close()

	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	if !c.Bool("dry-run") {
		holder := id.String()
		if c.Bool("resume") {
			// the lock names the promotion carried on, not a new id nobody knows (which one
			// that is is decided again below, under the lock)
			if ps, err := reg.store.ListPromotions(c.Context, to); err == nil && len(ps) > 0 {
				holder = ps[0].ID
			}
		}
		unlock, err := lockEnvironment(c.Context, reg, to, "promote", holder)
		if err != nil {
			return err
		}
		defer unlock()
	}

	// what the target runs, and a promotion of it left unfinished
	targetRuns, err := reg.store.ListRuns(c.Context, runs.Filter{Environment: to})
	if err != nil {
		return err
	}
	unfinished, err := unfinishedPromotion(c.Context, reg, to, targetRuns)
	if err != nil {
		return err
	}

	srcRuns, err := reg.store.ListRuns(c.Context, runs.Filter{Environment: from})
	if err != nil {
		return err
	}
	checker := healthChecker{}
	var checks []platform.Check
	srcTargets := release.Targets(srcHosts, srcEnv.Ports())
	for _, t := range srcTargets {
		checks = append(checks, checker.Check(c.Context, t))
	}
	verdict := release.Gate(release.GateInput{Source: from, Hosts: release.HostNames(srcTargets), Release: c.String("release"),
		Runs: srcRuns, Health: checks, Now: time.Now(), Soak: c.Duration("soak")})

	var p platform.Promotion
	switch {
	case c.Bool("resume") && unfinished == nil:
		return usageError("--resume: no interrupted promotion to %s", to)
	case c.Bool("resume") && (unfinished.From != from || unfinished.Release != verdict.Release):
		return usageError("--resume: the interrupted promotion to %s is %s's %s (promotion %s), not %s's %s",
			to, unfinished.From, unfinished.Release, unfinished.ID, from, verdict.Release)
	case c.Bool("resume"):
		p = *unfinished
		batches = p.Batches
	case unfinished != nil:
		return usageError("promotion %s of %s to %s was %s at %s (batches done: %d of %d; hosts it may have changed: %s): "+
			"carry it on with --resume, or deploy %s whole first", unfinished.ID, unfinished.Release, to, unfinished.Status,
			unfinished.Phase, unfinished.Done, len(unfinished.Batches), orDash(strings.Join(unfinished.ChangedHosts(), ",")), to)
	default:
		previous, _, uniform := release.Deployed(release.HostStates(targetRuns), release.HostNames(targets))
		if !uniform && len(targetRuns) > 0 {
			return usageError("%s's hosts do not all run one release (%s): deploy it whole first",
				to, describeStates(release.HostStates(targetRuns), release.HostNames(targets)))
		}
		p = platform.Promotion{ID: id.String(), From: from, To: to, Release: verdict.Release, Previous: previous, Actor: actor(),
			StartedAt: time.Now(), Serial: serial, MaxFailPercentage: c.Int("max-fail-percentage"), Batches: batches, FailedBatch: -1}
	}
	result := promoteResult{Verdict: verdict, Batches: batches}
	if c.Bool("dry-run") || !verdict.Pass {
		if out == "json" {
			if err := writeJSON(stdio.Out, result); err != nil {
				return err
			}
		} else {
			printVerdict(stdio, verdict, batches)
		}
		if !verdict.Pass {
			return fmt.Errorf("%w: %s to %s: %s", release.ErrRefused, verdict.Release, to, strings.Join(verdict.Reasons, "; "))
		}
		return nil
	}
	if verdict.Release == p.Previous && !c.Bool("resume") {
		return usageError("%s runs %s already", to, verdict.Release)
	}
	if err := confirm(stdio, c.Bool("yes"), fmt.Sprintf("Promote %s from %s to %s (%d batches)?", verdict.Release, from, to, len(batches))); err != nil {
		return err
	}
	if out == "text" {
		printVerdict(stdio, verdict, batches)
	}

	inv, err := inventory.Write(env, hosts)
	if err != nil {
		return err
	}
	logDir, err := projectOf(c).state("runs")
	if err != nil {
		return err
	}
	progress := &progressPrinter{w: stdio.Out}
	if out == "json" {
		progress.w = stdio.Err
	}
	dep := &promoteDeployer{d: deploy.Deployer{Registry: reg.store, Project: projectOf(c).dir, LogDir: logDir, Now: time.Now, Log: reg.log},
		env: env, inventory: inv, actor: actor(), progress: progress.event}
	pr := release.Promoter{Deployer: dep, Checker: checker, Recorder: reg.store, Clock: clock.Wall{},
		HealthTimeout: c.Duration("health-timeout"), HealthInterval: 2 * time.Second, Log: reg.log}
	switch {
	case c.String("backup-hook") != "":
		pr.Backup = hookBackup{command: c.String("backup-hook")}
	case c.String("backup") == "tags":
		pr.Backup = dep
	}
	runErr := pr.Run(c.Context, &p)
	result.Promotion = &p
	if runErr != nil {
		result.Error = runErr.Error()
	}
	if out == "json" {
		if err := writeJSON(stdio.Out, result); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdio.Out, "\npromotion %s of %s from %s to %s: %s (batches done: %d of %d; runs: %s)\n", p.ID, p.Release, p.From, p.To,
			p.Status, p.Done, len(p.Batches), strings.Join(p.Runs, ", "))
		for _, ch := range p.Health {
			fmt.Fprintf(stdio.Out, "  %-6s %-10s %s\n", ch.Service, ch.Host, orDash(ch.Release+ch.Error))
		}
	}
	return runErr
}

// unfinishedPromotion is the newest promotion to env if it was interrupted (or its process
// died: it is still running, but nobody holds the environment) and no whole deploy of env
// was made since.
func unfinishedPromotion(ctx context.Context, reg *registry, env string, envRuns []runs.Run) (*platform.Promotion, error) {
	ps, err := reg.store.ListPromotions(ctx, env)
	if err != nil || len(ps) == 0 {
		return nil, err
	}
	p := ps[0]
	if p.Status != platform.Interrupted && p.Status != platform.Promoting {
		return nil, nil
	}
	for _, r := range envRuns {
		if r.StartedAt.After(p.StartedAt) && r.Options == (runs.Options{}) && r.Status == runs.Succeeded {
			return nil, nil // deployed whole since: the promotion is moot
		}
	}
	return &p, nil
}

func describeStates(states map[string]release.HostState, hosts []string) string {
	parts := make([]string, len(hosts))
	for i, h := range hosts {
		st := states[h]
		parts[i] = h + "=" + orDash(st.Release)
		if st.Failed {
			parts[i] += " (failed)"
		}
	}
	return strings.Join(parts, ", ")
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

// promoteDeployer deploys a promotion's steps with the deployer, one batch at a time: the
// batch is the --limit, and the plays take it whole (serial 100%).
type promoteDeployer struct {
	d         deploy.Deployer
	env       *config.Environment
	inventory string
	actor     string
	progress  func(ansible.Event)
}

func (p *promoteDeployer) Deploy(ctx context.Context, s release.Step) (runs.Run, error) {
	env := *p.env
	env.Rollout.Serial = "100%"
	return p.d.Deploy(ctx, deploy.Request{Env: &env, Inventory: p.inventory, Release: s.Release, Kind: s.Kind,
		Options: runs.Options{Limit: strings.Join(s.Hosts, ","), Tags: s.Tags}, Actor: p.actor, Progress: p.progress})
}

// Backup runs the roles' backup tasks (--tags backup: the lms role's database dump) on every
// host of the target, with the release it runs.
func (p *promoteDeployer) Backup(ctx context.Context, pr platform.Promotion) (string, error) {
	rel := pr.Previous
	if rel == "" {
		rel = pr.Release
	}
	var hosts []string
	for _, b := range pr.Batches {
		hosts = append(hosts, b.Hosts...)
	}
	run, err := p.Deploy(ctx, release.Step{Release: rel, Kind: runs.Backup, Hosts: hosts, Tags: "backup"})
	return run.ID, err
}

// hookBackup runs the operator's backup command.
type hookBackup struct{ command string }

func (h hookBackup) Backup(ctx context.Context, p platform.Promotion) (string, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", h.command)
	cmd.Env = append(os.Environ(), "LABPLANE_PROMOTION="+p.ID, "LABPLANE_FROM="+p.From, "LABPLANE_TO="+p.To,
		"LABPLANE_RELEASE="+p.Release, "LABPLANE_PREVIOUS="+p.Previous)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "hook", fmt.Errorf("backup hook: %w", err)
	}
	return "hook", nil
}

// healthChecker checks services the way their clients use them (internal/health).
type healthChecker struct{}

func (healthChecker) Check(ctx context.Context, t platform.Target) platform.Check {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addr := net.JoinHostPort(t.Address, strconv.Itoa(t.Port))
	c := platform.Check{Target: t}
	var err error
	if t.Service == "guacd" {
		_, err = health.Handshake(ctx, addr, "vnc")
	} else {
		var st *health.HeartbeatStatus
		st, err = health.Heartbeat(ctx, "http://"+addr+"/heartbeat")
		if st != nil {
			c.Release = st.Release
		}
	}
	if err != nil {
		c.Error = err.Error()
	}
	return c
}
