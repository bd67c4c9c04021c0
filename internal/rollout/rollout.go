// Package rollout holds the use cases of the platform's deploy side: deploy an environment,
// promote a release from one environment to the next (or resume a promotion), with the
// adapters they hand to release's rolling loop (the deployer, the backups, the health
// checker). The command line gathers the request and prints the outcome; the rules are in
// release (the gate, the batches, the rollback) and the types in platform.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/deploy"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/inventory"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/provision"
	"github.com/labplane/labplane/internal/release"
	"github.com/labplane/labplane/internal/runs"
)

// ErrInvalid: the request is wrong (the spec, a flag, the state of the target); nothing was
// changed. errors.Is tells such an error; it reads as its own message alone.
var ErrInvalid = errors.New("invalid request")

// invalidError is a problem with the request: it is ErrInvalid, and says only what is wrong.
type invalidError struct{ err error }

func (e invalidError) Error() string        { return e.err.Error() }
func (e invalidError) Unwrap() error        { return e.err }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

// invalid makes an ErrInvalid error of a message (%w wraps as fmt.Errorf does).
func invalid(format string, args ...any) error { return invalidError{fmt.Errorf(format, args...)} }

// Registry is what the use cases keep in the registry: runs, promotions, the environments'
// locks (the store).
type Registry interface {
	deploy.Registry
	ListRuns(ctx context.Context, f runs.Filter) ([]runs.Run, error)
	ListPromotions(ctx context.Context, target string) ([]platform.Promotion, error)
	SavePromotion(ctx context.Context, p platform.Promotion) error
	LockEnvironment(ctx context.Context, l platform.Lock) (held context.Context, unlock func(context.Context) error, err error)
	// Now is the registry's clock.
	Now(ctx context.Context) (time.Time, error)
}

// Platform is one project's platform: its environments (Inventories/ENV/environment.yml), its
// playbooks and roles (Project), labplane's state (StateDir: Terraform's, the runs' logs), and
// the registry.
type Platform struct {
	Project, Inventories, StateDir string
	Registry                       Registry
	// Actor is who acts, for the records ("cli:ann").
	Actor string
	Log   *slog.Logger
	// Checker checks a service on a host (nil: Health, the way clients use them).
	Checker Checker
}

// Environment loads an environment's spec and its hosts: the spec's own, or those Terraform
// made (read from its state: no terraform run, no network).
func (pl *Platform) Environment(ctx context.Context, name string) (*envspec.Environment, map[string][]platform.Host, error) {
	env, err := envspec.Load(pl.Inventories, name)
	if err != nil {
		return nil, nil, err
	}
	if env.Provision == nil {
		return env, env.Hosts, nil
	}
	ws, err := pl.Workspace(env, provision.Options{})
	if err != nil {
		return nil, nil, ProvisionError(env, err)
	}
	hosts, err := ws.Hosts(ctx)
	if err != nil {
		return nil, nil, ProvisionError(env, err)
	}
	return env, hosts, nil
}

// Workspace opens env's Terraform workspace, under the state directory.
func (pl *Platform) Workspace(env *envspec.Environment, o provision.Options) (*provision.Workspace, error) {
	dir, err := pl.state("provision", env.Name)
	if err != nil {
		return nil, err
	}
	return provision.Open(env, dir, o)
}

// ProvisionError makes the user's problems of a provision ErrInvalid, with what to do next.
func ProvisionError(env *envspec.Environment, err error) error {
	switch {
	case errors.Is(err, provision.ErrNoPlan), errors.Is(err, provision.ErrStalePlan):
		return invalid("%w\nrun: labplane provision %s plan", err, env.Name)
	case errors.Is(err, provision.ErrNotProvisioned):
		return invalid("%w\nrun: labplane provision %s plan, then apply", err, env.Name)
	case errors.Is(err, provision.ErrBadInput):
		return invalidError{err}
	}
	return err
}

// state returns a directory under the state directory, created 0700.
func (pl *Platform) state(parts ...string) (string, error) {
	dir := filepath.Join(append([]string{pl.StateDir}, parts...)...)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	return dir, nil
}

// lock takes the environment's lock (one deploy or promotion at a time); holder names the
// promotion, if any. The work goes on under locked, a ctx that is cancelled if the lock is
// lost (the registry's connection dropped: another labplane may take the environment), its
// cause saying so; unlock ends it and releases the lock.
func (pl *Platform) lock(ctx context.Context, clk clock.Clock, env, kind, holder string) (locked context.Context, unlock func(), err error) {
	host, _ := os.Hostname()
	held, u, err := pl.Registry.LockEnvironment(ctx, platform.Lock{Environment: env, Kind: kind, Holder: holder, Actor: pl.Actor,
		PID: os.Getpid(), Host: host, Since: clk.Now()})
	if err != nil {
		return nil, nil, err
	}
	locked, lose := context.WithCancelCause(ctx)
	stop := context.AfterFunc(held, func() {
		lose(fmt.Errorf("%w: the lock of %s was lost (%w); stopped, as another labplane may take %s now",
			ErrLockLost, env, context.Cause(held), env))
	})
	unlock = func() {
		stop()
		lose(nil)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := u(ctx); err != nil {
			pl.Log.Warn("unlock environment", "environment", env, "err", err)
		}
	}
	if err := pl.closeAbandonedRuns(locked, clk, env); err != nil {
		unlock()
		return nil, nil, err
	}
	return locked, unlock, nil
}

// registryClock is the registry's clock (see store.Now), read once and followed with the
// machine's: what every labplane records, on any machine, orders and soaks alike.
func (pl *Platform) registryClock(ctx context.Context) (clock.Clock, error) {
	before := time.Now()
	now, err := pl.Registry.Now(ctx)
	if err != nil {
		return nil, err
	}
	return clock.Shifted{By: now.Sub(before.Add(time.Since(before) / 2))}, nil
}

// ErrLockLost: the environment's lock was lost while a deploy or promotion ran under it.
var ErrLockLost = errors.New("environment lock lost")

// lockLost adds to err why the work stopped, when it stopped because the lock was lost.
func lockLost(locked context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(locked), ErrLockLost) {
		return fmt.Errorf("%w (%w)", err, context.Cause(locked))
	}
	return err
}

// closeAbandonedRuns records as failed the runs of env still "running" when its lock is free:
// their labplane ended without recording the end (killed, the machine lost), and Ansible died
// with it. A check run takes no lock and changes nothing: it is left as it is.
func (pl *Platform) closeAbandonedRuns(ctx context.Context, clk clock.Clock, env string) error {
	running, err := pl.Registry.ListRuns(ctx, runs.Filter{Environment: env, Status: runs.Running})
	if err != nil {
		return fmt.Errorf("the runs of %s left running: %w", env, err)
	}
	for _, r := range running {
		if r.Options.Check {
			continue
		}
		r.Status, r.FinishedAt = runs.Failed, clk.Now()
		r.Error = "abandoned: the labplane that ran it ended before the run did (its hosts may be part-way); found when " + env + "'s lock was next taken"
		if err := pl.Registry.FinishRun(ctx, r); err != nil && !errors.Is(err, runs.ErrFinished) {
			return fmt.Errorf("close run %s, left running: %w", r.ID, err)
		}
		pl.Log.Warn("closed a run left running by a labplane that ended", "run", r.ID, "environment", env, "started", r.StartedAt)
	}
	return nil
}

// deployer renders env's inventory for hosts and returns the deployer of its runs.
func (pl *Platform) deployer(env *envspec.Environment, hosts map[string][]platform.Host, clk clock.Clock) (deploy.Deployer, string, error) {
	inv, err := inventory.Write(env, hosts)
	if err != nil {
		return deploy.Deployer{}, "", err
	}
	logDir, err := pl.state("runs")
	if err != nil {
		return deploy.Deployer{}, "", err
	}
	return deploy.Deployer{Registry: pl.Registry, Project: pl.Project, LogDir: logDir, Now: clk.Now, Log: pl.Log}, inv, nil
}

// refuseDowngrade refuses to deploy rel where a host runs a release the environment got after
// rel (by a promotion, or a deploy with --release).
func (pl *Platform) refuseDowngrade(ctx context.Context, env *envspec.Environment, hosts map[string][]platform.Host, rel string) error {
	rs, err := pl.Registry.ListRuns(ctx, runs.Filter{Environment: env.Name})
	if err != nil {
		return err
	}
	host, running, ok := release.Downgrade(rs, release.HostNames(release.Targets(hosts, env.Endpoints())), rel)
	if !ok {
		return nil
	}
	return invalid("%s runs %s on %s, a release %s got after %s: deploying %s would take it back "+
		"(set release: %s in %s after a promotion; pass --allow-downgrade to go back on purpose)",
		env.Name, running, host, env.Name, rel, rel, running, env.File)
}

// DeployRequest is one deploy of an environment.
type DeployRequest struct {
	Env string
	// Release overrides the spec's; empty: the spec's.
	Release string
	Options runs.Options
	// AllowDowngrade deploys a release the environment ran before the one its hosts run
	// (refused otherwise: after a promotion, the spec may still name the release before it).
	AllowDowngrade bool
	// Confirm is asked before anything changes (not for a check run), with the release and
	// the number of hosts; an error stops the deploy.
	Confirm func(release string, hosts int) error
	// Progress sees every event while Ansible runs (may be nil); Planned, if set, the run's
	// plan before it starts (deploy.Request).
	Progress func(ansible.Event)
	Planned  func(ansible.Plan)
}

// Deploy deploys an environment under its lock (none for a check run, which changes
// nothing) and returns the recorded run (its ID empty when nothing ran).
func (pl *Platform) Deploy(ctx context.Context, req DeployRequest) (runs.Run, error) {
	env, hosts, err := pl.Environment(ctx, req.Env)
	if err != nil {
		return runs.Run{}, err
	}
	clk, err := pl.registryClock(ctx)
	if err != nil {
		return runs.Run{}, err
	}
	rel := req.Release
	if rel == "" {
		rel = env.Release
	} else if err := envspec.CheckRelease(rel); err != nil {
		return runs.Run{}, invalid("--release: %w", err)
	}
	if !req.Options.Check && req.Confirm != nil {
		n := 0
		for _, hs := range hosts {
			n += len(hs)
		}
		if err := req.Confirm(rel, n); err != nil {
			return runs.Run{}, err
		}
	}
	if !req.Options.Check {
		// before the inventory is rewritten: a deploy or promotion under way reads it
		locked, unlock, err := pl.lock(ctx, clk, env.Name, "deploy", "")
		if err != nil {
			return runs.Run{}, err
		}
		defer unlock()
		ctx = locked
		if !req.AllowDowngrade {
			if err := pl.refuseDowngrade(ctx, env, hosts, rel); err != nil {
				return runs.Run{}, err
			}
		}
	}
	d, inv, err := pl.deployer(env, hosts, clk)
	if err != nil {
		return runs.Run{}, err
	}
	run, err := d.Deploy(ctx, deploy.Request{Env: env, Inventory: inv, Release: req.Release, Kind: runs.Deploy,
		Options: req.Options, Actor: pl.Actor, Progress: req.Progress, Planned: req.Planned})
	return run, lockLost(ctx, err)
}
