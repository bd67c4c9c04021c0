package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/release"
	"github.com/labplane/labplane/internal/rollout"
	"github.com/labplane/labplane/internal/runs"
)

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

// fakePlatform is the target as the fakes see it: the release each host runs. A deploy of a
// release in broken fails on the hosts in brokenOn (it is deployed there, and unhealthy).
type fakePlatform struct {
	hosts    map[string]string
	broken   string
	brokenOn []string
	deploys  []rollout.Step
	saved    []platform.Promotion
	// cancelAt cancels the context when the nth deploy starts (1-based; 0: never).
	cancelAt int
	cancel   context.CancelFunc
	// saveFails, if set, says whether the registry refuses a record of p (a blip, or down).
	saveFails func(p platform.Promotion) bool
}

func (f *fakePlatform) Deploy(ctx context.Context, s rollout.Step) (runs.Run, error) {
	f.deploys = append(f.deploys, s)
	r := runs.Run{ID: fmt.Sprintf("run-%d", len(f.deploys)), Kind: s.Kind, Release: s.Release, Status: runs.Succeeded}
	if len(f.deploys) == f.cancelAt {
		f.cancel()
		r.Status = runs.Cancelled
		return r, errors.New("cancelled")
	}
	if s.Tags != "" {
		return r, nil
	}
	for _, h := range s.Hosts {
		f.hosts[h] = s.Release
		if s.Release == f.broken && slices.Contains(f.brokenOn, h) {
			r.Status = runs.Failed
			r.Failures = append(r.Failures, runs.Failure{Host: h, Task: "Check the service's heartbeat", Msg: "503"})
		}
	}
	if r.Status == runs.Failed {
		return r, errors.New("deploy failed")
	}
	return r, nil
}

func (f *fakePlatform) Check(_ context.Context, t platform.Target) platform.Check {
	c := platform.Check{Target: t}
	rel := f.hosts[t.Host]
	switch {
	case rel == f.broken && slices.Contains(f.brokenOn, t.Host):
		c.Error = "503 Service Unavailable"
	case t.Service != "guacd":
		c.Release = rel
	}
	return c
}

func (f *fakePlatform) SavePromotion(_ context.Context, p platform.Promotion) error {
	if f.saveFails != nil && f.saveFails(p) {
		return errors.New("connection reset by peer")
	}
	f.saved = append(f.saved, p)
	return nil
}

func (f *fakePlatform) Backup(_ context.Context, p platform.Promotion) (string, error) {
	f.deploys = append(f.deploys, rollout.Step{Kind: runs.Backup, Release: p.Previous, Tags: "backup"})
	return "backup-run", nil
}

func newPromotion(serial string) (*platform.Promotion, *fakePlatform) {
	env := &envspec.Environment{Settings: envspec.Settings{LMSPort: 80, CMSPort: 18010, GuacdPort: 4822}}
	hosts := map[string][]platform.Host{"lms": {{Name: "lms1"}, {Name: "lms2"}}, "cms": {{Name: "cms1"}}, "guacd": {{Name: "guacd1"}}}
	bs, err := release.Plan(release.Targets(hosts, env.Endpoints()), serial)
	if err != nil {
		panic(err)
	}
	f := &fakePlatform{hosts: map[string]string{"lms1": "r1", "lms2": "r1", "cms1": "r1", "guacd1": "r1"}}
	return &platform.Promotion{ID: "p1", From: "staging", To: "production", Release: "r2", Previous: "r1",
		StartedAt: t0, Serial: serial, Batches: bs, FailedBatch: -1}, f
}

func promoter(f *fakePlatform) *rollout.Promoter {
	return &rollout.Promoter{Deployer: f, Checker: f, Recorder: f, Backup: f, Clock: clock.NewVirtual(t0),
		HealthTimeout: time.Minute, HealthInterval: 5 * time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func kinds(steps []rollout.Step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, fmt.Sprintf("%s %s %s", s.Kind, s.Release, strings.Join(s.Hosts, ",")))
	}
	return out
}

func TestPromote(t *testing.T) {
	tests := []struct {
		name       string
		serial     string
		maxFail    int
		brokenOn   []string
		wantErr    error
		wantStatus platform.PromotionStatus
		wantSteps  []string
		wantHosts  map[string]string
	}{
		{name: "promoted", serial: "1", wantStatus: platform.Promoted,
			wantSteps: []string{"backup r1 ", "promote r2 lms1", "promote r2 lms2", "promote r2 cms1", "promote r2 guacd1"},
			wantHosts: map[string]string{"lms1": "r2", "lms2": "r2", "cms1": "r2", "guacd1": "r2"}},
		{name: "the second batch fails and both are rolled back", serial: "1", brokenOn: []string{"lms2"},
			wantErr: rollout.ErrRolledBack, wantStatus: platform.RolledBack,
			wantSteps: []string{"backup r1 ", "promote r2 lms1", "promote r2 lms2", "rollback r1 lms1,lms2"},
			wantHosts: map[string]string{"lms1": "r1", "lms2": "r1", "cms1": "r1", "guacd1": "r1"}},
		{name: "a failure within max_fail_percentage goes on", serial: "100%", maxFail: 50, brokenOn: []string{"lms2"},
			wantStatus: platform.Promoted,
			wantSteps:  []string{"backup r1 ", "promote r2 lms1,lms2", "promote r2 cms1", "promote r2 guacd1"},
			wantHosts:  map[string]string{"lms1": "r2", "lms2": "r2", "cms1": "r2", "guacd1": "r2"}},
		{name: "beyond max_fail_percentage it rolls back", serial: "100%", maxFail: 49, brokenOn: []string{"lms2"},
			wantErr: rollout.ErrRolledBack, wantStatus: platform.RolledBack,
			wantSteps: []string{"backup r1 ", "promote r2 lms1,lms2", "rollback r1 lms1,lms2"},
			wantHosts: map[string]string{"lms1": "r1", "lms2": "r1", "cms1": "r1", "guacd1": "r1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, f := newPromotion(tt.serial)
			p.MaxFailPercentage = tt.maxFail
			f.broken, f.brokenOn = "r2", tt.brokenOn
			err := promoter(f).Run(t.Context(), p)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Run: %v, want %v", err, tt.wantErr)
			}
			if p.Status != tt.wantStatus || f.saved[len(f.saved)-1].Status != tt.wantStatus {
				t.Errorf("status %s (recorded %s), want %s", p.Status, f.saved[len(f.saved)-1].Status, tt.wantStatus)
			}
			if got := kinds(f.deploys); !slices.Equal(got, tt.wantSteps) {
				t.Errorf("steps %q\nwant %q", got, tt.wantSteps)
			}
			if !reflect.DeepEqual(f.hosts, tt.wantHosts) {
				t.Errorf("hosts run %v, want %v", f.hosts, tt.wantHosts)
			}
		})
	}
}

// runOn runs the promotion on the virtual clock vc, moving it on whenever the promoter waits.
func runOn(t *testing.T, vc *clock.Virtual, pr *rollout.Promoter, p *platform.Promotion) error {
	t.Helper()
	var err error
	vc.Go(func() { err = pr.Run(t.Context(), p) })
	for {
		vc.Wait()
		next, ok := vc.Next()
		if !ok {
			return err
		}
		vc.AdvanceTo(next)
	}
}

// A batch that never becomes healthy is given HealthTimeout, checked every HealthInterval.
func TestPromoteHealthTimeout(t *testing.T) {
	p, f := newPromotion("1")
	f.broken, f.brokenOn = "r2", []string{"lms1"}
	pr := promoter(f)
	pr.Deployer = healthyDeploys{f} // the deploy succeeds; only the health check fails
	vc := clock.NewVirtual(t0)
	pr.Clock = vc
	err := runOn(t, vc, pr, p)
	if !errors.Is(err, rollout.ErrRolledBack) || !strings.Contains(p.Error, "lms on lms1: 503") {
		t.Fatalf("Run: %v (%s)", err, p.Error)
	}
	if waited := vc.Now().Sub(t0); waited < time.Minute || waited > time.Minute+5*time.Second {
		t.Errorf("waited %s for the batch to be healthy, want the health timeout (1m)", waited)
	}
}

type healthyDeploys struct{ f *fakePlatform }

func (h healthyDeploys) Deploy(ctx context.Context, s rollout.Step) (runs.Run, error) {
	r, _ := h.f.Deploy(ctx, s)
	r.Status, r.Failures = runs.Succeeded, nil
	return r, nil
}

// Ctrl-C in the middle records where the promotion stopped; Run on the record carries it on.
func TestPromoteInterruptedAndResumed(t *testing.T) {
	p, f := newPromotion("1")
	ctx, cancel := context.WithCancel(t.Context())
	f.cancel, f.cancelAt = cancel, 3 // backup, lms1, then lms2 is interrupted
	err := promoter(f).Run(ctx, p)
	if !errors.Is(err, rollout.ErrInterrupted) || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("Run: %v, want ErrInterrupted", err)
	}
	rec := f.saved[len(f.saved)-1]
	if rec.Status != platform.Interrupted || rec.Done != 1 || rec.Phase != platform.PhaseRolling ||
		!slices.Equal(rec.ChangedHosts(), []string{"lms1", "lms2"}) {
		t.Fatalf("recorded %+v", rec)
	}
	f.cancelAt, f.deploys = 0, nil
	if err := promoter(f).Run(t.Context(), &rec); err != nil {
		t.Fatalf("resumed: %v", err)
	}
	if got, want := kinds(f.deploys), []string{"promote r2 lms2", "promote r2 cms1", "promote r2 guacd1"}; !slices.Equal(got, want) {
		t.Errorf("resumed steps %q, want %q (no second backup)", got, want)
	}
	if rec.Status != platform.Promoted || rec.Done != 4 {
		t.Errorf("resumed to %+v", rec)
	}
}

// A registry that fails on the record made before an action: a blip is tried again and the
// promotion goes on; a registry down when a batch fails does not keep the broken hosts from
// being rolled back.
func TestPromoteRegistryFailures(t *testing.T) {
	run := func(t *testing.T, f *fakePlatform, p *platform.Promotion) error {
		pr := promoter(f)
		vc := clock.NewVirtual(t0)
		pr.Clock = vc
		return runOn(t, vc, pr, p)
	}
	t.Run("a blip before a batch is tried again", func(t *testing.T) {
		p, f := newPromotion("1")
		fails := 2
		f.saveFails = func(p platform.Promotion) bool {
			if p.Done == 1 && fails > 0 {
				fails--
				return true
			}
			return false
		}
		if err := run(t, f, p); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if p.Status != platform.Promoted || fails != 0 || len(f.deploys) != 5 {
			t.Errorf("status %s, refusals left %d, steps %q", p.Status, fails, kinds(f.deploys))
		}
	})
	t.Run("down when a batch fails: rolled back all the same", func(t *testing.T) {
		p, f := newPromotion("1")
		f.broken, f.brokenOn = "r2", []string{"lms2"}
		f.saveFails = func(p platform.Promotion) bool { return p.Phase == platform.PhaseRollback }
		err := run(t, f, p)
		if err == nil || !strings.Contains(err.Error(), "connection reset by peer") {
			t.Errorf("Run: %v, want the registry's error", err)
		}
		want := []string{"backup r1 ", "promote r2 lms1", "promote r2 lms2", "rollback r1 lms1,lms2"}
		if got := kinds(f.deploys); !slices.Equal(got, want) {
			t.Errorf("steps %q\nwant %q", got, want)
		}
		if f.hosts["lms1"] != "r1" || f.hosts["lms2"] != "r1" {
			t.Errorf("hosts run %v after the rollback", f.hosts)
		}
	})
	t.Run("down for good before a batch: the batch is not deployed", func(t *testing.T) {
		p, f := newPromotion("1")
		f.saveFails = func(p platform.Promotion) bool { return p.Done == 2 }
		err := run(t, f, p)
		if err == nil || !strings.Contains(err.Error(), "tried for 30s") {
			t.Errorf("Run: %v", err)
		}
		if got := kinds(f.deploys); len(got) != 3 {
			t.Errorf("steps %q: want the backup and two batches, nothing after the record failed", got)
		}
	})
}
