package testhosts_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/platform"
)

// EnvironmentSpec lays the platform's services out on the set's hosts: one per service by
// default, or as Spec.Hosts says; the spec loads as an environment. No hosts are made.
func TestEnvironmentSpec(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	set := &testhosts.Set{Dir: dir, KeyFile: filepath.Join(dir, "id_ed25519"), KnownHostsFile: filepath.Join(dir, "known_hosts"), Hosts: []testhosts.Host{
		{Name: "lms1", Address: "10.251.9.11"}, {Name: "cms1", Address: "10.251.9.12"}, {Name: "guacd1", Address: "10.251.9.13"},
		{Name: "lms2", Address: "10.251.9.14"}}}
	for _, f := range []string{set.KeyFile, set.KnownHostsFile} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		hosts map[string][]string
		want  map[string][]string // service: addresses
		err   string
	}{
		{name: "default layout", want: map[string][]string{"lms": {"10.251.9.11"}, "cms": {"10.251.9.12"}, "guacd": {"10.251.9.13"}}},
		{name: "two lms hosts", hosts: map[string][]string{"lms": {"lms1", "lms2"}, "cms": {"cms1"}, "guacd": {"guacd1"}},
			want: map[string][]string{"lms": {"10.251.9.11", "10.251.9.14"}, "cms": {"10.251.9.12"}, "guacd": {"10.251.9.13"}}},
		{name: "lms and cms on one host", hosts: map[string][]string{"lms": {"lms1"}, "cms": {"lms1"}, "guacd": {"guacd1"}},
			want: map[string][]string{"lms": {"10.251.9.11"}, "cms": {"10.251.9.11"}, "guacd": {"10.251.9.13"}}},
		{name: "a host the set lacks", hosts: map[string][]string{"lms": {"lms9"}, "cms": {"cms1"}, "guacd": {"guacd1"}},
			err: "the set has no host lms9 for lms"},
		{name: "a service without hosts", hosts: map[string][]string{"lms": {"lms1"}, "cms": {"cms1"}},
			err: "no host for guacd"},
		{name: "an unknown service", hosts: map[string][]string{"lms": {"lms1"}, "cms": {"cms1"}, "guacd": {"guacd1"}, "mongo": {"lms2"}},
			err: `no service "mongo"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := set.EnvironmentSpec(testhosts.Spec{Release: "r1", Artifact: "http://10.251.9.254:80/edx-platform-{release}.tar.gz",
				ArtifactChecksum: "sha256:http://10.251.9.254:80/edx-platform-{release}.tar.gz.sha256",
				AptRepository:    "deb http://10.251.9.254:80/repo ./", AptKey: set.KeyFile, GuacdVersion: "1.5.5-1", SecretEnv: "TEST_SECRET", Hosts: tc.hosts,
				Extra: "rollout: {serial: \"50%\"}"})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			env, err := envspec.Parse(filepath.Join(t.TempDir(), "test", envspec.File), spec)
			if err != nil {
				t.Fatalf("%v\n%s", err, spec)
			}
			for _, svc := range platform.Services {
				var got []string
				for _, h := range env.Hosts[svc] {
					got = append(got, h.Address)
				}
				if strings.Join(got, " ") != strings.Join(tc.want[svc], " ") {
					t.Errorf("%s hosts %v, want %v\n%s", svc, got, tc.want[svc], spec)
				}
			}
			if env.Release != "r1" || env.Rollout.Serial != "50%" || env.Secrets.SecretKey.Env != "TEST_SECRET" || env.SSH.PrivateKeyFile != set.KeyFile ||
				env.SSH.ControlPathDir != set.ControlPathDir() ||
				env.ChecksumFor("r2") != "sha256:http://10.251.9.254:80/edx-platform-r2.tar.gz.sha256" {
				t.Errorf("environment %+v", env)
			}
		})
	}
}
