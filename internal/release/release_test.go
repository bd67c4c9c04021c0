package release_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/envspec"
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

// A run that did not succeed: each host runs what was read back after it, whatever its recap
// says (Ansible stops every host of the play when one fails); a host not read back is
// uncertain.
func TestHostStatesReadBack(t *testing.T) {
	hosts := []string{"lms1", "lms2", "guacd1"}
	failed := run("2", "r2", 10, runs.Failed, hosts, "lms2")
	failed.Recap["lms1"] = runs.HostRecap{OK: 12, Release: "r1"} // stopped before the switch
	failed.Recap["lms2"] = runs.HostRecap{OK: 14, Failed: 1, Release: "r2"}
	got := release.HostStates([]runs.Run{run("1", "r1", 0, runs.Succeeded, hosts), failed})
	want := map[string]release.HostState{
		"lms1":   {Host: "lms1", Release: "r1", Since: at(1), Run: "2"},
		"lms2":   {Host: "lms2", Release: "r2", Since: at(11), Run: "2", Failed: true},
		"guacd1": {Host: "guacd1", Release: "r2", Since: at(11), Run: "2", Failed: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("HostStates = %+v\nwant %+v", got, want)
	}
}

func TestDowngrade(t *testing.T) {
	both := []string{"lms1", "lms2"}
	promoted := []runs.Run{run("a", "r1", 0, runs.Succeeded, both), run("b", "r2", 10, runs.Succeeded, both)}
	rolledBack := append(slices.Clone(promoted), run("c", "r3", 20, runs.Failed, []string{"lms1"}, "lms1"),
		run("d", "r2", 30, runs.Succeeded, []string{"lms1"}))
	backup := run("e", "r1", 40, runs.Succeeded, both)
	backup.Options.Tags = "backup"
	tests := []struct {
		name    string
		rs      []runs.Run
		rel     string
		host    string
		running string
	}{
		{name: "the release it ran before the promoted one", rs: promoted, rel: "r1", host: "lms1", running: "r2"},
		{name: "the release it runs", rs: promoted, rel: "r2"},
		{name: "a release never run there", rs: promoted, rel: "r0"},
		{name: "after a rollback, the rolled-back release again", rs: rolledBack, rel: "r3"},
		{name: "after a rollback, the one before", rs: rolledBack, rel: "r1", host: "lms1", running: "r2"},
		{name: "a backup run of the old release deploys nothing", rs: append(slices.Clone(promoted), backup), rel: "r1", host: "lms1", running: "r2"},
		{name: "nothing run yet", rel: "r1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, running, ok := release.Downgrade(tt.rs, both, tt.rel)
			if host != tt.host || running != tt.running || ok != (tt.host != "") {
				t.Errorf("Downgrade to %s = %q, %q, %v; want %q, %q", tt.rel, host, running, ok, tt.host, tt.running)
			}
		})
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
	env := &envspec.Environment{Settings: envspec.Settings{LMSPort: 80, CMSPort: 18010, GuacdPort: 4822}}
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
			bs, err := release.Plan(release.Targets(tt.hosts, env.Endpoints()), tt.serial)
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
	bs, _ := release.Plan(release.Targets(shared, env.Endpoints()), "1")
	if len(bs[0].Targets) != 2 || bs[0].Targets[1].Service != "cms" || bs[0].Targets[1].Port != 18010 {
		t.Errorf("a shared host's batch checks both services: %+v", bs[0].Targets)
	}
	private := map[string][]platform.Host{"lms": {{Name: "a", Address: "192.0.2.1", PrivateAddress: "10.0.0.1"}},
		"cms": {{Name: "a", Address: "192.0.2.1", PrivateAddress: "10.0.0.1"}}, "guacd": {{Name: "g", Address: "192.0.2.9", PrivateAddress: "10.0.0.9"}}}
	for _, target := range release.Targets(private, env.Endpoints()) {
		if want := map[string]string{"lms": "192.0.2.1", "cms": "192.0.2.1", "guacd": "10.0.0.9"}[target.Service]; target.Address != want {
			t.Errorf("%s on %s checked at %s, want %s (guacd listens on the private address only)", target.Service, target.Host, target.Address, want)
		}
	}
	for _, c := range []struct {
		target platform.Target
		want   string
	}{
		{platform.Target{Address: "192.0.2.1", Port: 80}, "http://192.0.2.1:80"},
		{platform.Target{Address: "2001:db8::1", Port: 443, HTTPS: true}, "https://[2001:db8::1]:443"},
	} {
		if got := c.target.URL(); got != c.want {
			t.Errorf("URL of %+v = %s, want %s", c.target, got, c.want)
		}
	}
	for _, bad := range []string{"0", "-1", "101%", "x", ""} {
		if _, err := release.Plan(release.Targets(hosts, env.Endpoints()), bad); err == nil {
			t.Errorf("Plan(%q): no error", bad)
		}
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
