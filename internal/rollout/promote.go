package rollout

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

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/deploy"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/health"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/release"
	"github.com/labplane/labplane/internal/runs"
)

// PromoteRequest is a promotion of a release from one environment to the next.
type PromoteRequest struct {
	From, To string
	// Release is the release to promote; empty: the one From runs (another is refused).
	Release string
	// Serial is the hosts of a service per batch (empty: the target's rollout.serial).
	Serial            string
	MaxFailPercentage int
	// Soak is how long the release must have run on From.
	Soak, HealthTimeout time.Duration
	// Backup before the first batch: "tags" (the roles' --tags backup) or "none"; BackupHook,
	// if set, is a command (sh -c) run instead.
	Backup, BackupHook string
	// DryRun decides and changes nothing; Resume carries on the target's interrupted promotion.
	DryRun, Resume bool
	// Confirm is asked once the gate passed, before anything changes; an error stops it.
	Confirm func(PromoteResult) error
	// Progress sees every event while Ansible runs (may be nil); Planned, if set, each run's
	// plan before it starts (deploy.Request).
	Progress func(ansible.Event)
	Planned  func(ansible.Plan)
}

// PromoteResult is the gate's verdict, the batches, and the promotion as it ended (nil when
// none ran).
type PromoteResult struct {
	Verdict   release.Verdict     `json:"gate"`
	Batches   []platform.Batch    `json:"batches"`
	Promotion *platform.Promotion `json:"promotion,omitempty"`
	Error     string              `json:"error,omitempty"`
}

// Promote judges the release with the gate and promotes it to the target batch by batch
// (release.Promoter), under the target's lock: a new promotion, or the target's interrupted
// one with Resume. A refused gate is ErrRefused; a dry run stops after the verdict.
func (pl *Platform) Promote(ctx context.Context, req PromoteRequest) (PromoteResult, error) {
	if req.From == req.To {
		return PromoteResult{}, invalid("--from and --to are both %s", req.From)
	}
	if req.Backup != "tags" && req.Backup != "none" {
		return PromoteResult{}, invalid("--backup %q: use tags or none", req.Backup)
	}
	if p := req.MaxFailPercentage; p < 0 || p > 100 {
		return PromoteResult{}, invalid("--max-fail-percentage %d: use 0 to 100", p)
	}
	srcEnv, srcHosts, err := pl.Environment(ctx, req.From)
	if err != nil {
		return PromoteResult{}, err
	}
	env, hosts, err := pl.Environment(ctx, req.To)
	if err != nil {
		return PromoteResult{}, err
	}
	clk, err := pl.registryClock(ctx)
	if err != nil {
		return PromoteResult{}, err
	}
	// before the gate: a promotion that cannot deploy must not start (nor be rolled back)
	if err := deploy.CheckSecrets(env); err != nil {
		return PromoteResult{}, err
	}
	serial := req.Serial
	if serial == "" {
		serial = env.Rollout.Serial
	}
	targets := release.Targets(hosts, env.Endpoints())
	batches, err := release.Plan(targets, serial)
	if err != nil {
		return PromoteResult{}, invalid("--serial: %w", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return PromoteResult{}, err
	}
	if !req.DryRun {
		holder := id.String()
		if req.Resume {
			// the lock names the promotion carried on, not a new id nobody knows (which one
			// that is is decided again below, under the lock)
			if ps, err := pl.Registry.ListPromotions(ctx, req.To); err == nil && len(ps) > 0 {
				holder = ps[0].ID
			}
		}
		locked, unlock, err := pl.lock(ctx, clk, req.To, "promote", holder)
		if err != nil {
			return PromoteResult{}, err
		}
		defer unlock()
		ctx = locked
	}

	// what the target runs, and a promotion of it left unfinished
	targetRuns, err := pl.Registry.ListRuns(ctx, runs.Filter{Environment: req.To})
	if err != nil {
		return PromoteResult{}, err
	}
	unfinished, err := pl.unfinishedPromotion(ctx, req.To, targetRuns)
	if err != nil {
		return PromoteResult{}, err
	}
	srcRuns, err := pl.Registry.ListRuns(ctx, runs.Filter{Environment: req.From})
	if err != nil {
		return PromoteResult{}, err
	}
	checker := pl.checker()
	var checks []platform.Check
	srcTargets := release.Targets(srcHosts, srcEnv.Endpoints())
	for _, t := range srcTargets {
		checks = append(checks, checker.Check(ctx, t))
	}
	verdict := release.Gate(release.GateInput{Source: req.From, Hosts: release.HostNames(srcTargets), Release: req.Release,
		Runs: srcRuns, Health: checks, Now: clk.Now(), Soak: req.Soak})

	var p platform.Promotion
	switch {
	case req.Resume && unfinished == nil:
		return PromoteResult{}, invalid("--resume: no interrupted promotion to %s", req.To)
	case req.Resume && unfinished.From == req.From && unfinished.Phase == platform.PhaseRollback:
		// going back to what the target ran before: whatever the source runs now, no gate
		p = *unfinished
		batches = p.Batches
		verdict = release.Verdict{Source: req.From, Release: p.Release, Pass: true, Soak: verdict.Soak, Hosts: verdict.Hosts, Health: verdict.Health}
	case req.Resume && (unfinished.From != req.From || unfinished.Release != verdict.Release):
		return PromoteResult{}, invalid("--resume: the interrupted promotion to %s is %s's %s (promotion %s), not %s's %s",
			req.To, unfinished.From, unfinished.Release, unfinished.ID, req.From, verdict.Release)
	case req.Resume:
		p = *unfinished
		batches = p.Batches
	case unfinished != nil:
		return PromoteResult{}, invalid("promotion %s of %s to %s was %s at %s (batches done: %d of %d; hosts it may have changed: %s): "+
			"carry it on with --resume, or deploy %s whole first", unfinished.ID, unfinished.Release, req.To, unfinished.Status,
			unfinished.Phase, unfinished.Done, len(unfinished.Batches), orDash(strings.Join(unfinished.ChangedHosts(), ",")), req.To)
	default:
		previous, _, uniform := release.Deployed(release.HostStates(targetRuns), release.HostNames(targets))
		if !uniform && len(targetRuns) > 0 {
			return PromoteResult{}, invalid("%s's hosts do not all run one release (%s): deploy it whole first",
				req.To, describeStates(release.HostStates(targetRuns), release.HostNames(targets)))
		}
		p = platform.Promotion{ID: id.String(), From: req.From, To: req.To, Release: verdict.Release, Previous: previous, Actor: pl.Actor,
			StartedAt: clk.Now(), Serial: serial, MaxFailPercentage: req.MaxFailPercentage, Batches: batches, FailedBatch: -1}
	}
	result := PromoteResult{Verdict: verdict, Batches: batches}
	if !verdict.Pass {
		return result, fmt.Errorf("%w: %s to %s: %s", ErrRefused, verdict.Release, req.To, strings.Join(verdict.Reasons, "; "))
	}
	if req.DryRun {
		return result, nil
	}
	if verdict.Release == p.Previous && !req.Resume {
		return result, invalid("%s runs %s already", req.To, verdict.Release)
	}
	if req.Confirm != nil {
		if err := req.Confirm(result); err != nil {
			return result, err
		}
	}

	d, inv, err := pl.deployer(env, hosts, clk)
	if err != nil {
		return result, err
	}
	dep := &promoteDeployer{d: d, env: env, inventory: inv, actor: pl.Actor, progress: req.Progress, planned: req.Planned}
	pr := Promoter{Deployer: dep, Checker: checker, Recorder: pl.Registry, Clock: clk,
		HealthTimeout: req.HealthTimeout, HealthInterval: 2 * time.Second, Log: pl.Log}
	switch {
	case req.BackupHook != "":
		pr.Backup = hookBackup{command: req.BackupHook}
	case req.Backup == "tags":
		pr.Backup = dep
	}
	err = lockLost(ctx, pr.Run(ctx, &p))
	result.Promotion = &p
	if err != nil {
		result.Error = err.Error()
	}
	return result, err
}

func (pl *Platform) checker() Checker {
	if pl.Checker != nil {
		return pl.Checker
	}
	return Health{}
}

// unfinishedPromotion is the newest promotion to env if it was interrupted (or its process
// died: it is still running, but nobody holds the environment) and no whole deploy of env
// was made since.
func (pl *Platform) unfinishedPromotion(ctx context.Context, env string, envRuns []runs.Run) (*platform.Promotion, error) {
	ps, err := pl.Registry.ListPromotions(ctx, env)
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// promoteDeployer deploys a promotion's steps with the deployer, one batch at a time: the
// batch is the --limit, and the plays take it whole (serial 100%).
type promoteDeployer struct {
	d         deploy.Deployer
	env       *envspec.Environment
	inventory string
	actor     string
	progress  func(ansible.Event)
	planned   func(ansible.Plan)
}

func (p *promoteDeployer) Deploy(ctx context.Context, s Step) (runs.Run, error) {
	env := *p.env
	env.Rollout.Serial = "100%"
	return p.d.Deploy(ctx, deploy.Request{Env: &env, Inventory: p.inventory, Release: s.Release, Kind: s.Kind,
		Options: runs.Options{Limit: strings.Join(s.Hosts, ","), Tags: s.Tags}, Actor: p.actor, Progress: p.progress, Planned: p.planned})
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
	run, err := p.Deploy(ctx, Step{Release: rel, Kind: runs.Backup, Hosts: hosts, Tags: "backup"})
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

// Health checks services the way their clients use them (internal/health): lms and cms by
// their /heartbeat, guacd by the Guacamole handshake.
type Health struct{}

// Check checks one service on one host once, within 10 s.
func (Health) Check(ctx context.Context, t platform.Target) platform.Check {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := platform.Check{Target: t}
	var err error
	if t.Service == "guacd" {
		_, err = health.Handshake(ctx, net.JoinHostPort(t.Address, strconv.Itoa(t.Port)), "vnc")
	} else {
		var st health.ServiceStatus
		st, err = health.Service(ctx, t.URL(), t.SiteName, t.CAFile)
		c.Release = st.Release
	}
	if err != nil {
		c.Error = err.Error()
	}
	return c
}
