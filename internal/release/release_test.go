package release_test

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
	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/release"
	"github.com/labplane/labplane/internal/runs"
)

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

// run is a finished run of rel on hosts (each ok, or failed when its name is in failed).
func run(id, rel string, start int, st runs.Status, hosts []string, failed ...string) runs.Run {
	r := runs.Run{ID: id, Kind: runs.Deploy, Environment: "staging", Release: rel, StartedAt: at(start),
		FinishedAt: at(start + 1), Status: st, Recap: map[string]runs.HostRecap{}}
	for _, h := range hosts {
		rc := runs.HostRecap{OK: 10}
		if slices.Contains(failed, h) {
			rc.Failed = 1
			r.Failures = append(r.Failures, runs.Failure{Host: h, Task: "Check the service's heartbeat", Msg: "503"})
		}
		r.Recap[h] = rc
	}
	return r
}

var srcHosts = []string{"lms1", "cms1", "guacd1"}

func healthy(rel string) []platform.Check {
	return []platform.Check{
		{Target: platform.Target{Host: "lms1", Service: "lms"}, Release: rel},
		{Target: platform.Target{Host: "cms1", Service: "cms"}, Release: rel},
		{Target: platform.Target{Host: "guacd1", Service: "guacd"}},
	}
}

func TestHostStates(t *testing.T) {
	rs := []runs.Run{
		run("3", "r2", 20, runs.Succeeded, []string{"lms1"}), // a redeploy keeps Since
		run("1", "r2", 0, runs.Succeeded, srcHosts),
		run("2", "r3", 10, runs.Failed, []string{"cms1"}, "cms1"),
		{ID: "c", Release: "r9", StartedAt: at(30), Status: runs.Succeeded, Options: runs.Options{Check: true},
			Recap: map[string]runs.HostRecap{"lms1": {}}}, // check runs change nothing
		{ID: "b", Release: "r9", StartedAt: at(31), Status: runs.Succeeded, Options: runs.Options{Tags: "backup"},
			Recap: map[string]runs.HostRecap{"lms1": {}}}, // nor do tag-only runs
	}
	got := release.HostStates(rs)
	want := map[string]release.HostState{
		"lms1":   {Host: "lms1", Release: "r2", Since: at(1), Run: "3"},
		"cms1":   {Host: "cms1", Release: "r3", Since: at(11), Run: "2", Failed: true},
		"guacd1": {Host: "guacd1", Release: "r2", Since: at(1), Run: "1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("HostStates = %+v\nwant %+v", got, want)
	}
	if _, _, ok := release.Deployed(got, srcHosts); ok {
		t.Error("Deployed: ok with a failed host")
	}
	if rel, since, ok := release.Deployed(got, []string{"lms1", "guacd1"}); !ok || rel != "r2" || !since.Equal(at(1)) {
		t.Errorf("Deployed = %s %v %v", rel, since, ok)
	}
}

func TestGate(t *testing.T) {
	good := []runs.Run{run("1", "r1", 0, runs.Succeeded, srcHosts), run("2", "r2", 10, runs.Succeeded, srcHosts)}
	tests := []struct {
		name    string
		release string
		runs    []runs.Run
		health  []platform.Check
		now     time.Time
		reasons []string // each a part of one reason; none: passes
	}{
		{name: "passes", runs: good, health: healthy("r2"), now: at(71)},
		{name: "the release asked is the one deployed", release: "r2", runs: good, health: healthy("r2"), now: at(71)},
		{name: "too fresh", runs: good, health: healthy("r2"), now: at(30), reasons: []string{"has run on staging for 19m0s, less than the soak time 1h0m0s"}},
		{name: "another release asked", release: "r3", runs: good, health: healthy("r2"), now: at(71),
			reasons: []string{"staging runs r2, not r3", "run 2, release r2", "lms on lms1 reports release \"r2\", not r3"}},
		{name: "unhealthy", runs: good, now: at(71), health: []platform.Check{
			{Target: platform.Target{Host: "lms1", Service: "lms"}, Error: "503 Service Unavailable"},
			{Target: platform.Target{Host: "guacd1", Service: "guacd"}, Error: "connection refused"}},
			reasons: []string{"unhealthy: lms on lms1: 503", "unhealthy: guacd on guacd1: connection refused"}},
		{name: "no health checks", runs: good, now: at(71), reasons: []string{"no health check"}},
		{name: "last deploy failed", runs: append(slices.Clone(good), run("3", "r3", 20, runs.Failed, []string{"lms1"}, "lms1")),
			health: healthy("r2"), now: at(100), reasons: []string{"no release is deployed on every host", "lms1=r3 (failed)", "the last deploy of staging (run 3, release r3) failed"}},
		{name: "half deployed", runs: append(slices.Clone(good), run("3", "r3", 20, runs.Succeeded, []string{"lms1"})),
			health: healthy("r2"), now: at(100), reasons: []string{"no release is deployed on every host of staging: cms1=r2, guacd1=r2, lms1=r3"}},
		{name: "never deployed", health: healthy("r2"), now: at(100), reasons: []string{"no deploy of staging is recorded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := release.Gate(release.GateInput{Source: "staging", Hosts: srcHosts, Release: tt.release, Runs: tt.runs,
				Health: tt.health, Now: tt.now, Soak: time.Hour})
			if v.Pass != (len(tt.reasons) == 0) {
				t.Errorf("Pass = %v, reasons %q", v.Pass, v.Reasons)
			}
			all := strings.Join(v.Reasons, "\n")
			for _, want := range tt.reasons {
				if !strings.Contains(all, want) {
					t.Errorf("reasons lack %q:\n%s", want, all)
				}
			}
			if v.Pass && (v.Release != "r2" || !v.Since.Equal(at(11))) {
				t.Errorf("verdict %+v", v)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	env := &config.Environment{Settings: config.Settings{LMSPort: 80, CMSPort: 18010, GuacdPort: 4822}}
	hs := func(names ...string) []platform.Host {
		var out []platform.Host
		for _, n := range names {
			out = append(out, platform.Host{Name: n, Address: "10.0.0." + n[len(n)-1:]})
		}
		return out
	}
	hosts := map[string][]platform.Host{"lms": hs("lms1", "lms2", "lms3", "lms4"), "cms": hs("cms1", "cms2"), "guacd": hs("guacd1")}
	shared := map[string][]platform.Host{"lms": hs("app1", "app2"), "cms": hs("app1", "app2"), "guacd": hs("guacd1")}
	tests := []struct {
		name, serial string
		hosts        map[string][]platform.Host
		want         []string
	}{
		{"one at a time", "1", hosts, []string{"lms1", "lms2", "lms3", "lms4", "cms1", "cms2", "guacd1"}},
		{"two", "2", hosts, []string{"lms1,lms2", "lms3,lms4", "cms1,cms2", "guacd1"}},
		{"half", "50%", hosts, []string{"lms1,lms2", "lms3,lms4", "cms1", "cms2", "guacd1"}},
		{"a third rounds up", "30%", hosts, []string{"lms1,lms2", "lms3,lms4", "cms1", "cms2", "guacd1"}},
		{"all", "100%", hosts, []string{"lms1,lms2,lms3,lms4", "cms1,cms2", "guacd1"}},
		{"more than there are", "10", hosts, []string{"lms1,lms2,lms3,lms4", "cms1,cms2", "guacd1"}},
		{"shared hosts go once", "1", shared, []string{"app1", "app2", "guacd1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs, err := release.Plan(release.Targets(tt.hosts, env.Ports()), tt.serial)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, b := range bs {
				got = append(got, b.Limit())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Plan(%s) = %q, want %q", tt.serial, got, tt.want)
			}
		})
	}
	bs, _ := release.Plan(release.Targets(shared, env.Ports()), "1")
	if len(bs[0].Targets) != 2 || bs[0].Targets[1].Service != "cms" || bs[0].Targets[1].Port != 18010 {
		t.Errorf("a shared host's batch checks both services: %+v", bs[0].Targets)
	}
	for _, bad := range []string{"0", "-1", "101%", "x", ""} {
		if _, err := release.Plan(release.Targets(hosts, env.Ports()), bad); err == nil {
			t.Errorf("Plan(%q): no error", bad)
		}
	}
}

// fakePlatform is the target as the fakes see it: the release each host runs. A deploy of a
// release in broken fails on the hosts in brokenOn (it is deployed there, and unhealthy).
type fakePlatform struct {
	hosts    map[string]string
	broken   string
	brokenOn []string
	deploys  []release.Step
	saved    []platform.Promotion
	// cancelAt cancels the context when the nth deploy starts (1-based; 0: never).
	cancelAt int
	cancel   context.CancelFunc
}

func (f *fakePlatform) Deploy(ctx context.Context, s release.Step) (runs.Run, error) {
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
	f.saved = append(f.saved, p)
	return nil
}

func (f *fakePlatform) Backup(_ context.Context, p platform.Promotion) (string, error) {
	f.deploys = append(f.deploys, release.Step{Kind: runs.Backup, Release: p.Previous, Tags: "backup"})
	return "backup-run", nil
}

func newPromotion(serial string) (*platform.Promotion, *fakePlatform) {
	env := &config.Environment{Settings: config.Settings{LMSPort: 80, CMSPort: 18010, GuacdPort: 4822}}
	hosts := map[string][]platform.Host{"lms": {{Name: "lms1"}, {Name: "lms2"}}, "cms": {{Name: "cms1"}}, "guacd": {{Name: "guacd1"}}}
	bs, err := release.Plan(release.Targets(hosts, env.Ports()), serial)
	if err != nil {
		panic(err)
	}
	f := &fakePlatform{hosts: map[string]string{"lms1": "r1", "lms2": "r1", "cms1": "r1", "guacd1": "r1"}}
	return &platform.Promotion{ID: "p1", From: "staging", To: "production", Release: "r2", Previous: "r1",
		StartedAt: t0, Serial: serial, Batches: bs, FailedBatch: -1}, f
}

func promoter(f *fakePlatform) *release.Promoter {
	return &release.Promoter{Deployer: f, Checker: f, Recorder: f, Backup: f, Clock: clock.NewVirtual(t0),
		HealthTimeout: time.Minute, HealthInterval: 5 * time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func kinds(steps []release.Step) []string {
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
			wantErr: release.ErrRolledBack, wantStatus: platform.RolledBack,
			wantSteps: []string{"backup r1 ", "promote r2 lms1", "promote r2 lms2", "rollback r1 lms1,lms2"},
			wantHosts: map[string]string{"lms1": "r1", "lms2": "r1", "cms1": "r1", "guacd1": "r1"}},
		{name: "a failure within max_fail_percentage goes on", serial: "100%", maxFail: 50, brokenOn: []string{"lms2"},
			wantStatus: platform.Promoted,
			wantSteps:  []string{"backup r1 ", "promote r2 lms1,lms2", "promote r2 cms1", "promote r2 guacd1"},
			wantHosts:  map[string]string{"lms1": "r2", "lms2": "r2", "cms1": "r2", "guacd1": "r2"}},
		{name: "beyond max_fail_percentage it rolls back", serial: "100%", maxFail: 49, brokenOn: []string{"lms2"},
			wantErr: release.ErrRolledBack, wantStatus: platform.RolledBack,
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

// A batch that never becomes healthy is given HealthTimeout, checked every HealthInterval.
func TestPromoteHealthTimeout(t *testing.T) {
	p, f := newPromotion("1")
	f.broken, f.brokenOn = "r2", []string{"lms1"}
	pr := promoter(f)
	pr.Deployer = healthyDeploys{f} // the deploy succeeds; only the health check fails
	vc := clock.NewVirtual(t0)
	pr.Clock = vc
	var err error
	vc.Go(func() { err = pr.Run(t.Context(), p) })
	for {
		vc.Wait()
		next, ok := vc.Next()
		if !ok {
			break
		}
		vc.AdvanceTo(next)
	}
	if !errors.Is(err, release.ErrRolledBack) || !strings.Contains(p.Error, "lms on lms1: 503") {
		t.Fatalf("Run: %v (%s)", err, p.Error)
	}
	if waited := vc.Now().Sub(t0); waited < time.Minute || waited > time.Minute+5*time.Second {
		t.Errorf("waited %s for the batch to be healthy, want the health timeout (1m)", waited)
	}
}

type healthyDeploys struct{ f *fakePlatform }

func (h healthyDeploys) Deploy(ctx context.Context, s release.Step) (runs.Run, error) {
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
	if !errors.Is(err, release.ErrInterrupted) || !strings.Contains(err.Error(), "--resume") {
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

func TestSummarize(t *testing.T) {
	rs := []runs.Run{run("1", "r1", 0, runs.Succeeded, srcHosts), run("2", "r2", 10, runs.Succeeded, []string{"lms1"})}
	prod := run("3", "r1", 5, runs.Succeeded, []string{"lms9"})
	prod.Environment = "production"
	got := release.Summarize(append(rs, prod))
	if len(got) != 3 || got[0].Release != "r2" || !slices.Equal(got[0].Hosts, []string{"lms1"}) ||
		got[1].Environment != "production" || !slices.Equal(got[2].Hosts, []string{"cms1", "guacd1"}) {
		t.Errorf("Summarize = %+v", got)
	}
}
