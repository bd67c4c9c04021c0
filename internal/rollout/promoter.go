package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/runs"
)

// Errors of a promotion. A run that failed wraps one of them.
var (
	// ErrRefused: the gate refused the release; nothing was changed.
	ErrRefused = errors.New("the promotion gate refused")
	// ErrRolledBack: a batch failed and the hosts changed were rolled back.
	ErrRolledBack = errors.New("promotion failed and was rolled back")
	// ErrRollbackFailed: a batch failed and so did the rollback: hosts need attention.
	ErrRollbackFailed = errors.New("promotion failed and its rollback failed")
	// ErrInterrupted: the promotion was stopped (Ctrl-C) and can be resumed.
	ErrInterrupted = errors.New("promotion interrupted")
)

// Step is one deploy a promotion asks for.
type Step struct {
	Release string
	Kind    runs.Kind
	Hosts   []string
	// Tags runs only the tasks with these tags (the backup).
	Tags string
}

// Deployer deploys a release to some hosts of the target and returns the recorded run (its
// ID empty when nothing ran); the error says the run failed.
type Deployer interface {
	Deploy(ctx context.Context, s Step) (runs.Run, error)
}

// Checker checks one service on one host once.
type Checker interface {
	Check(ctx context.Context, t platform.Target) platform.Check
}

// Recorder keeps the promotion's record (created or replaced whole).
type Recorder interface {
	SavePromotion(ctx context.Context, p platform.Promotion) error
}

// Backuper makes the backup before the first batch and says what it did (a run's id, a
// hook's name).
type Backuper interface {
	Backup(ctx context.Context, p platform.Promotion) (string, error)
}

// Promoter rolls a promotion out, batch by batch.
type Promoter struct {
	Deployer Deployer
	Checker  Checker
	Recorder Recorder
	// Backup runs before the first batch; nil makes none.
	Backup Backuper
	Clock  clock.Clock
	// HealthTimeout is how long a batch has to become healthy; HealthInterval is the time
	// between two checks of it.
	HealthTimeout, HealthInterval time.Duration
	Log                           *slog.Logger
}

// Run carries p on from where its record says (a new promotion, or one interrupted) to its
// end, recording it after each step. It returns nil when the release was promoted, and an
// error wrapping ErrRolledBack, ErrRollbackFailed or ErrInterrupted otherwise (or the
// recorder's error).
func (pr *Promoter) Run(ctx context.Context, p *platform.Promotion) error {
	p.Status = platform.Promoting
	if p.Phase == "" {
		p.Phase = platform.PhaseBackup
	}
	if err := pr.save(ctx, p); err != nil {
		return err
	}
	if p.Phase == platform.PhaseBackup {
		if pr.Backup != nil {
			what, err := pr.Backup.Backup(ctx, *p)
			if what != "" {
				p.Runs = append(p.Runs, what)
			}
			if err != nil {
				if ctx.Err() != nil {
					return pr.interrupted(ctx, p)
				}
				p.Status, p.Error, p.FinishedAt = platform.PromotionFailed, "backup: "+err.Error(), pr.Clock.Now()
				if serr := pr.save(ctx, p); serr != nil {
					return serr
				}
				return fmt.Errorf("promote %s to %s: backup failed, nothing was deployed: %w", p.Release, p.To, err)
			}
		}
		p.Phase = platform.PhaseRolling
		if err := pr.save(ctx, p); err != nil {
			return err
		}
	}
	for p.Phase == platform.PhaseRolling && p.Done < len(p.Batches) {
		i := p.Done
		b := p.Batches[i]
		pr.Log.Info("promotion batch started", "promotion", p.ID, "batch", i+1, "of", len(p.Batches), "hosts", b.Limit())
		run, deployErr := pr.Deployer.Deploy(ctx, Step{Release: p.Release, Kind: runs.Promote, Hosts: b.Hosts})
		if run.ID != "" {
			p.Runs = append(p.Runs, run.ID)
		}
		if ctx.Err() != nil {
			return pr.interrupted(ctx, p)
		}
		failed := failedHosts(b, run, deployErr)
		wait := pr.HealthTimeout
		if deployErr != nil {
			wait = 0 // the batch failed already: one look at its health, for the record
		}
		p.Health = pr.waitHealthy(ctx, b.Targets, p.Release, wait)
		if ctx.Err() != nil {
			return pr.interrupted(ctx, p)
		}
		var problems []string
		if deployErr != nil {
			problems = append(problems, deployErr.Error())
		}
		for _, c := range p.Health {
			if prob := c.Problem(p.Release); prob != "" {
				problems = append(problems, prob)
				if !slices.Contains(failed, c.Host) {
					failed = append(failed, c.Host)
				}
			}
		}
		if len(failed) > 0 && len(failed)*100 > p.MaxFailPercentage*len(b.Hosts) {
			p.FailedBatch, p.Phase = i, platform.PhaseRollback
			p.Error = fmt.Sprintf("batch %d of %d (%s) failed on %s: %s", i+1, len(p.Batches), b.Limit(),
				strings.Join(failed, ", "), strings.Join(problems, "; "))
			pr.Log.Warn("promotion batch failed", "promotion", p.ID, "batch", i+1, "failed", strings.Join(failed, ","))
			if err := pr.save(ctx, p); err != nil {
				// the hosts are broken: roll them back even when the registry cannot say so
				pr.Log.Error("rolling back without a record of the failed batch", "promotion", p.ID, "err", err)
				return errors.Join(err, pr.rollback(ctx, p))
			}
			break
		}
		if len(failed) > 0 {
			pr.Log.Warn("promotion batch failed within max_fail_percentage", "promotion", p.ID, "batch", i+1,
				"failed", strings.Join(failed, ","), "max_fail_percentage", p.MaxFailPercentage)
		}
		p.Done = i + 1
		if err := pr.save(ctx, p); err != nil {
			return err
		}
	}
	if p.Phase == platform.PhaseRollback {
		return pr.rollback(ctx, p)
	}
	p.Phase, p.Status, p.FinishedAt = platform.PhaseDone, platform.Promoted, pr.Clock.Now()
	return pr.save(ctx, p)
}

// rollback deploys the previous release to the hosts changed, and checks they serve it.
func (pr *Promoter) rollback(ctx context.Context, p *platform.Promotion) error {
	cause := p.Error
	fail := func(msg string) error {
		p.Status, p.FinishedAt = platform.PromotionFailed, pr.Clock.Now()
		p.Error = cause + "; rollback: " + msg
		if err := pr.save(ctx, p); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s", ErrRollbackFailed, p.Error)
	}
	if p.Previous == "" {
		return fail(p.To + " ran no release before: nothing to roll back to")
	}
	hosts := p.ChangedHosts()
	pr.Log.Info("rollback started", "promotion", p.ID, "release", p.Previous, "hosts", strings.Join(hosts, ","))
	run, err := pr.Deployer.Deploy(ctx, Step{Release: p.Previous, Kind: runs.Rollback, Hosts: hosts})
	if run.ID != "" {
		p.Runs = append(p.Runs, run.ID)
	}
	if ctx.Err() != nil {
		return pr.interrupted(ctx, p)
	}
	if err != nil {
		return fail(err.Error())
	}
	var targets []platform.Target
	for _, b := range p.Batches {
		for _, t := range b.Targets {
			if slices.Contains(hosts, t.Host) {
				targets = append(targets, t)
			}
		}
	}
	p.Health = pr.waitHealthy(ctx, targets, p.Previous, pr.HealthTimeout)
	if ctx.Err() != nil {
		return pr.interrupted(ctx, p)
	}
	var problems []string
	for _, c := range p.Health {
		if prob := c.Problem(p.Previous); prob != "" {
			problems = append(problems, prob)
		}
	}
	if len(problems) > 0 {
		return fail(strings.Join(problems, "; "))
	}
	p.Phase, p.Status, p.FinishedAt = platform.PhaseDone, platform.RolledBack, pr.Clock.Now()
	if err := pr.save(ctx, p); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s; %s runs %s again on %s", ErrRolledBack, cause, p.To, p.Previous, strings.Join(hosts, ", "))
}

// waitHealthy checks targets until every one is healthy for release, or timeout passes.
func (pr *Promoter) waitHealthy(ctx context.Context, targets []platform.Target, release string, timeout time.Duration) []platform.Check {
	deadline := pr.Clock.Now().Add(timeout)
	for {
		checks := make([]platform.Check, len(targets))
		healthy := true
		for i, t := range targets {
			checks[i] = pr.Checker.Check(ctx, t)
			healthy = healthy && checks[i].Healthy(release)
		}
		if healthy || !pr.Clock.Now().Before(deadline) {
			return checks
		}
		if err := pr.Clock.Sleep(ctx, pr.HealthInterval); err != nil {
			return checks
		}
	}
}

// interrupted records that the promotion stopped where it was, to be resumed.
func (pr *Promoter) interrupted(ctx context.Context, p *platform.Promotion) error {
	p.Status = platform.Interrupted
	if err := pr.save(ctx, p); err != nil {
		return err
	}
	return fmt.Errorf("%w at %s (batches done: %d of %d): resume it with labplane promote --from %s --to %s --release %s --resume",
		ErrInterrupted, p.Phase, p.Done, len(p.Batches), p.From, p.To, p.Release)
}

// save records p, even when ctx was cancelled (the record must say where it stopped). A
// registry that fails (a blip: a connection dropped, a database restarting) is tried again
// for up to saveBudget; after that the promotion does not go on to its next step.
func (pr *Promoter) save(ctx context.Context, p *platform.Promotion) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveBudget)
	defer cancel()
	deadline := pr.Clock.Now().Add(saveBudget)
	wait := 250 * time.Millisecond
	for {
		err := pr.Recorder.SavePromotion(rctx, *p)
		if err == nil {
			return nil
		}
		if pr.Clock.Now().Add(wait).After(deadline) || pr.Clock.Sleep(rctx, wait) != nil {
			return fmt.Errorf("record promotion %s (tried for %s): %w", p.ID, saveBudget, err)
		}
		pr.Log.Warn("record promotion: tried again", "promotion", p.ID, "after", wait, "err", err)
		wait = min(2*wait, 4*time.Second)
	}
}

// saveBudget is how long a promotion's record is tried before the promotion stops.
const saveBudget = 30 * time.Second

// failedHosts are the hosts of b the deploy failed on: those its run names, or all of the
// batch's when the run failed without naming any.
func failedHosts(b platform.Batch, run runs.Run, err error) []string {
	if err == nil {
		return nil
	}
	var hosts []string
	for _, f := range run.Failures {
		if slices.Contains(b.Hosts, f.Host) && !slices.Contains(hosts, f.Host) {
			hosts = append(hosts, f.Host)
		}
	}
	if len(hosts) == 0 {
		return slices.Clone(b.Hosts)
	}
	return hosts
}
