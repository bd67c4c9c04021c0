package testhoststest

import (
	"context"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/dev/testhosts/standins"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/health"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/release"
)

// Platform is an environment (by default "test") on a set of test hosts (by default lms1,
// cms1, guacd1: one per service), with the stand-ins of its releases and of guacd's apt
// repository served on the set's network.
type Platform struct {
	Set *testhosts.Set
	// Env is the environment's name.
	Env string
	// Hosts are the names of the set's hosts each service runs on.
	Hosts map[string][]string
	// Inventories is the inventories directory holding ENV/environment.yml.
	Inventories string
	// Base is the URL the stand-ins are served at (artifacts at the top, the apt repository
	// under /repo).
	Base string
	// SecretEnv names the environment variable the spec's secret_key is read from (a name of
	// this platform's own); Secret is its value (set in the test's process by NewPlatform).
	SecretEnv, Secret string

	www string // the directory served at Base
}

// Env is the platform's environment name.
const Env = "test"

// PlatformHosts are the hosts NewPlatform makes, one per service.
var PlatformHosts = testhosts.Options{Names: testhosts.PlatformNames}

// NewPlatform brings up the hosts (or uses set, if not nil), builds the stand-in artifacts of
// releases and the guacd repository, serves them, and writes the environment's spec for
// releases[0]. Tests with platforms of their own may be parallel.
func NewPlatform(t testing.TB, set *testhosts.Set, releases ...string) *Platform {
	t.Helper()
	return NewPlatformWith(t, PlatformOptions{Set: set, Releases: releases})
}

// PlatformOptions say what platform NewPlatformWith makes.
type PlatformOptions struct {
	// Set holds the platform's hosts; nil brings up a set (taken down when the test ends)
	// with the hosts Hosts names.
	Set *testhosts.Set
	// Env is the environment's name; default Env.
	Env string
	// Hosts are the names of the hosts each service (lms, cms, guacd) runs on; nil is
	// testhosts.PlatformLayout (lms1, cms1, guacd1).
	Hosts map[string][]string
	// Inventories is the directory the spec is written under (ENV/environment.yml); default a
	// new temporary directory. Platforms of several environments may share one.
	Inventories string
	// Releases are the releases whose stand-in artifacts are built (more can be added with
	// AddArtifact); the spec is for the first.
	Releases []string
	// Extra is appended to the spec (a rollout: section, for instance).
	Extra string
}

// NewPlatformWith is NewPlatform with options: another environment name, host layout or
// inventories directory. The secret key's variable is LABPLANE_<ENV>_SECRET_KEY_<8 hex
// digits>, a name of the platform's own, set in the process until the test ends: platforms
// of several environments may be used in one test, and tests with platforms of their own may
// run in parallel. Ansible's SSH masters are kept in the set's directory (the spec's
// ssh.control_path_dir), so the set's Down closes them.
func NewPlatformWith(t testing.TB, o PlatformOptions) *Platform {
	t.Helper()
	if len(o.Releases) == 0 {
		t.Fatal("testhoststest: a platform needs a release")
	}
	if o.Env == "" {
		o.Env = Env
	}
	if o.Hosts == nil {
		o.Hosts = testhosts.PlatformLayout()
	}
	if o.Inventories == "" {
		o.Inventories = t.TempDir()
	}
	set := o.Set
	if set == nil {
		set = New(t, testhosts.Options{Names: layoutNames(o.Hosts)})
	}
	p := &Platform{Set: set, Env: o.Env, Hosts: o.Hosts, Inventories: o.Inventories, www: t.TempDir()}
	for _, r := range o.Releases {
		p.AddArtifact(t, r, standins.ArtifactOptions{})
	}
	if err := standins.GuacdRepository(t.Context(), filepath.Join(p.www, "repo")); err != nil {
		t.Fatal(err)
	}
	base, err := set.Serve(p.www)
	if err != nil {
		t.Fatal(err)
	}
	p.Base = base
	p.Secret = "secret-" + rand.Text()
	p.SecretEnv = SetUniqueEnv(t, "LABPLANE_"+strings.ToUpper(strings.NewReplacer("-", "_").Replace(o.Env))+"_SECRET_KEY", p.Secret)
	p.WriteSpec(t, o.Releases[0], o.Extra)
	return p
}

// layoutNames are the distinct hosts of a layout, service by service.
func layoutNames(layout map[string][]string) []string {
	var names []string
	seen := map[string]bool{}
	for _, svc := range platform.Services {
		for _, n := range layout[svc] {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	return names
}

// AddArtifact builds the stand-in artifact of release, changed by o (a release broken on
// some hosts), with its checksum file, where the platform serves its artifacts.
func (p *Platform) AddArtifact(t testing.TB, release string, o standins.ArtifactOptions) {
	t.Helper()
	if _, err := standins.ArtifactWith(p.www, release, o); err != nil {
		t.Fatal(err)
	}
}

// ArtifactURL is where a release's stand-in artifact is served.
func (p *Platform) ArtifactURL(release string) string {
	return p.Base + "/" + standins.ArtifactName(release)
}

// WriteSpec writes inventories/ENV/environment.yml for release; extra is appended to it
// (such as a rollout: section).
func (p *Platform) WriteSpec(t testing.TB, release, extra string) {
	t.Helper()
	spec, err := p.Set.EnvironmentSpec(testhosts.Spec{Release: release, Artifact: p.Base + "/" + standins.ArtifactName("{release}"),
		ArtifactChecksum: standins.ArtifactChecksum(p.Base),
		AptRepository:    "deb " + p.Base + "/repo ./", AptKey: filepath.Join(p.www, "repo", standins.GuacdKeyFile),
		GuacdVersion: standins.GuacdVersion, SecretEnv: p.SecretEnv, Hosts: p.Hosts, Extra: extra})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(p.Inventories, p.Env)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, envspec.File), spec, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Environment loads the platform's spec.
func (p *Platform) Environment(t testing.TB) *envspec.Environment {
	t.Helper()
	env, err := envspec.Load(p.Inventories, p.Env)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Heartbeat is what one service on one host answered (from the machine): edx-platform's
// /heartbeat and the release (health.Service).
type Heartbeat struct {
	Host, Service string
	Status        health.ServiceStatus
	Err           error
}

// Heartbeats asks every lms and cms host of the platform for its /heartbeat and release, as
// its clients ask (by site name), service by service, host by host.
func (p *Platform) Heartbeats(ctx context.Context) []Heartbeat {
	targets, err := p.targets()
	if err != nil {
		return []Heartbeat{{Err: err}}
	}
	var out []Heartbeat
	for _, t := range targets {
		if t.Service == "guacd" {
			continue
		}
		hb := Heartbeat{Host: t.Host, Service: t.Service}
		hb.Status, hb.Err = health.Service(ctx, t.URL(), t.SiteName, t.CAFile)
		out = append(out, hb)
	}
	return out
}

// targets are the platform's services as its spec says clients reach them (release.Targets).
func (p *Platform) targets() ([]platform.Target, error) {
	env, err := envspec.Load(p.Inventories, p.Env)
	if err != nil {
		return nil, err
	}
	return release.Targets(env.Hosts, env.Endpoints()), nil
}

// AssertServing checks that every lms and cms host passes its heartbeat and runs release, and
// every guacd host answers the handshake (at its private address), from the machine.
func (p *Platform) AssertServing(ctx context.Context, t *testing.T, release string) {
	t.Helper()
	for _, hb := range p.Heartbeats(ctx) {
		if hb.Err != nil {
			t.Errorf("%s %s: %v", hb.Host, hb.Service, hb.Err)
			continue
		}
		if hb.Status.Release != release {
			t.Errorf("%s %s runs %q, want %q", hb.Host, hb.Service, hb.Status.Release, release)
		}
	}
	targets, err := p.targets()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range targets {
		if g.Service != "guacd" {
			continue
		}
		if _, err := health.Handshake(ctx, net.JoinHostPort(g.Address, strconv.Itoa(g.Port)), "vnc"); err != nil {
			t.Errorf("%s guacd handshake: %v", g.Host, err)
		}
	}
}

// AssertReleases checks the release directories on a host of s (space-separated, sorted).
func AssertReleases(t testing.TB, s *testhosts.Set, host, want string) {
	t.Helper()
	got, _ := filepath.Glob(filepath.Join(s.UpperDir(host), "edx/app/edxapp/releases/*"))
	for i := range got {
		got[i] = filepath.Base(got[i])
	}
	if strings.Join(got, " ") != want {
		t.Errorf("releases on %s: %v, want %s", host, got, want)
	}
}

// SetUniqueEnv sets an environment variable named prefix_<8 random characters> to value in the
// process until the test ends, and returns its name. Unlike t.Setenv, it may be called from
// parallel tests: no other test uses the name.
func SetUniqueEnv(t testing.TB, prefix, value string) string {
	t.Helper()
	name := prefix + "_" + rand.Text()[:8]
	if err := os.Setenv(name, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Unsetenv(name) })
	return name
}
