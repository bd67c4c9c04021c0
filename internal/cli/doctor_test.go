package cli_test

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/dev/testhosts"
)

// doctorReport is `labplane doctor --output json`.
type doctorReport struct {
	OK   bool `json:"ok"`
	Jobs []struct {
		Job        string `json:"job"`
		Configured bool   `json:"configured"`
		Reason     string `json:"reason"`
		OK         bool   `json:"ok"`
		Checks     []struct {
			Name     string `json:"name"`
			OK       bool   `json:"ok"`
			Required bool   `json:"required"`
			Detail   string `json:"detail"`
			Fix      string `json:"fix"`
		} `json:"checks"`
	} `json:"jobs"`
}

// parseDoctor decodes doctor's JSON, and checks that its shape is the stable one: these keys,
// no others, and no null lists.
func parseDoctor(t *testing.T, out string) doctorReport {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	keys := func(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
	if got := keys(raw); !slices.Equal(got, []string{"jobs", "ok"}) {
		t.Errorf("report keys %v", got)
	}
	jobs, _ := raw["jobs"].([]any)
	for _, j := range jobs {
		jm := j.(map[string]any)
		if got := keys(jm); !slices.Equal(got, []string{"checks", "configured", "job", "ok", "reason"}) {
			t.Errorf("job keys %v", got)
		}
		checks, ok := jm["checks"].([]any)
		if !ok {
			t.Errorf("%v: checks is not a list", jm["job"])
		}
		for _, c := range checks {
			if got := keys(c.(map[string]any)); !slices.Equal(got, []string{"detail", "fix", "name", "ok", "required"}) {
				t.Errorf("check keys %v", got)
			}
		}
	}
	var r doctorReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r doctorReport) job(t *testing.T, name string) (configured, ok bool) {
	t.Helper()
	for _, j := range r.Jobs {
		if j.Job == name {
			return j.Configured, j.OK
		}
	}
	t.Fatalf("no job %s in the report", name)
	return false, false
}

// check returns a job's check: ok, detail, fix.
func (r doctorReport) check(t *testing.T, job, name string) (bool, string, string) {
	t.Helper()
	for _, j := range r.Jobs {
		for _, c := range j.Checks {
			if j.Job == job && c.Name == name {
				return c.OK, c.Detail, c.Fix
			}
		}
	}
	t.Fatalf("no check %s/%s in the report", job, name)
	return false, "", ""
}

// doctorArgs run doctor in the repository (its playbooks) with no environments.
func doctorArgs(t *testing.T, args ...string) []string {
	return append([]string{"--project", moduleRoot(t), "--inventories", t.TempDir(), "doctor"}, args...)
}

// The configuration's cloud entry exists nowhere (TestMain's clouds.yaml is empty): labs and
// serve are configured and lack it; doctor names the cloud and the fix, and exits 1.
func TestDoctorCloudEntryMissing(t *testing.T) {
	s := newSite(t, goodConfig)
	res := s.run(doctorArgs(t)...)
	t.Logf("%s", res)
	if res.code != 1 {
		t.Fatalf("want exit 1, got %s", res)
	}
	for _, want := range []string{"labs: configured", "serve: configured", "MISSING  cloud alpha",
		`fix: add an entry "nowhere" to clouds.yaml`, "clouds[0].cloud in " + s.config, "labplane dev cloud up",
		"MISSING something a configured job needs: labs, serve"} {
		if !strings.Contains(res.out, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if !strings.Contains(res.err, "labs, serve") {
		t.Errorf("stderr does not name the jobs: %s", res.err)
	}
	// the same in JSON
	res = s.run(doctorArgs(t, "--output", "json", "labs")...)
	r := parseDoctor(t, res.out)
	ok, detail, fix := r.check(t, "labs", "cloud alpha")
	if res.code != 1 || r.OK || ok || !strings.Contains(detail, `"nowhere"`) || !strings.Contains(fix, "clouds.yaml") {
		t.Errorf("exit %d ok %v; cloud alpha: %v %q %q", res.code, r.OK, ok, detail, fix)
	}
	if len(r.Jobs) != 1 {
		t.Errorf("doctor labs reported %d jobs", len(r.Jobs))
	}
}

// The developer tools' Debian packages are reported as dpkg sees them, the guard route as ip
// sees it; named, they are required.
func TestDoctorDeveloperTools(t *testing.T) {
	routes, err := exec.Command("ip", "route", "show", "type", "unreachable").Output()
	if err != nil {
		t.Skipf("no ip command: %v", err)
	}
	guard := slices.Contains(strings.Fields(string(routes)), testhosts.GuardNetwork)
	tests := []struct {
		job      string
		packages []string
	}{
		{"localcloud", localcloud.Packages},
		{"testhosts", testhosts.Packages()},
	}
	for _, tc := range tests {
		t.Run(tc.job, func(t *testing.T) {
			miss, err := apt.Missing(context.Background(), tc.packages...)
			if err != nil {
				t.Skipf("not a Debian machine: %v", err)
			}
			res := runCLI("", false, doctorArgs(t, tc.job, "--output", "json")...)
			r := parseDoctor(t, res.out)
			ok, detail, fix := r.check(t, tc.job, "Debian packages")
			if ok != (len(miss) == 0) {
				t.Errorf("dpkg: missing %v; doctor: ok %v, %s", miss, ok, detail)
			}
			for _, p := range miss {
				if !strings.Contains(detail, p) {
					t.Errorf("%s is missing, the detail does not say so: %s", p, detail)
				}
			}
			if len(miss) > 0 && !strings.Contains(fix, "labplane doctor --install "+tc.job) {
				t.Errorf("fix: %q", fix)
			}
			if root, _, _ := r.check(t, tc.job, "root"); root != (os.Geteuid() == 0) {
				t.Errorf("root check says %v", root)
			}
			configured, jobOK := r.job(t, tc.job)
			if !configured || r.OK != jobOK || (res.code == 0) != r.OK {
				t.Errorf("named %s: configured %v, job ok %v, report ok %v, exit %d", tc.job, configured, jobOK, r.OK, res.code)
			}
			if len(miss) > 0 && res.code != 1 {
				t.Errorf("packages missing, exit %d", res.code)
			}
			if tc.job == "testhosts" {
				if got, _, _ := r.check(t, tc.job, "guard route"); got != guard {
					t.Errorf("guard route: ip says %v, doctor %v", guard, got)
				}
			}
		})
	}
}

// --install installs nothing that is there, and refuses to install without root.
func TestDoctorInstall(t *testing.T) {
	miss, err := apt.Missing(context.Background(), localcloud.Packages...)
	if err != nil {
		t.Skipf("not a Debian machine: %v", err)
	}
	if len(miss) > 0 && os.Geteuid() == 0 {
		t.Skipf("%v missing: this test does not install them (labplane doctor --install localcloud does)", miss)
	}
	res := runCLI("", false, doctorArgs(t, "--install", "localcloud")...)
	t.Logf("%s", res)
	switch {
	case len(miss) > 0 && (res.code != 1 || !strings.Contains(res.err, "needs root") || !strings.Contains(res.err, miss[0])):
		t.Errorf("not root, %v missing: want exit 1 saying root is needed", miss)
	case len(miss) == 0 && strings.Contains(res.err, "apt: installing"):
		t.Error("installed what was there")
	case len(miss) == 0 && os.Geteuid() == 0 && res.code != 0:
		t.Errorf("everything there, as root: want exit 0")
	}
}

func TestDoctorBadUsage(t *testing.T) {
	s := newSite(t, goodConfig)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown job", []string{"doctor", "labs", "lab"}, []string{`no job "lab"`, "labs, serve, deploy, promote, provision, localcloud, testhosts"}},
		{"unknown output", []string{"doctor", "--output", "yaml"}, []string{`--output "yaml"`}},
		{"unknown flag", []string{"doctor", "--fix"}, []string{"fix"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := s.run(tc.args...)
			if res.code != 2 {
				t.Fatalf("want exit 2, got %s", res)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.err, w) {
					t.Errorf("stderr lacks %q: %s", w, res.err)
				}
			}
		})
	}
}

// A configuration that is there but wrong: exit 2 naming the file and the field, nothing checked.
func TestDoctorBadConfig(t *testing.T) {
	s := newSite(t, strings.Replace(goodConfig, "lab: lab.yaml", "lab: missing.yaml", 1))
	res := s.run(doctorArgs(t)...)
	if res.code != 2 || !strings.Contains(res.err, s.config) || !strings.Contains(res.err, "templates.lab") || res.out != "" {
		t.Errorf("want exit 2 naming %s and templates.lab, nothing on stdout: %s", s.config, res)
	}
}

// A registry DSN with a password: the JSON report parses and holds neither; no log line does.
func TestDoctorJSONHoldsNoSecret(t *testing.T) {
	const secret = "D0ctor-Pa55word-xyzzy"
	dsn := "postgres://labplane:" + secret + "@127.0.0.1:1/labplane?sslmode=disable&connect_timeout=5"
	s := newSite(t, strings.Replace(goodConfig, "store:\n  dsn: labplane.db", "store:\n  driver: postgres\n  dsn: "+dsn, 1))
	res := s.run(append([]string{"--log-level", "debug"}, doctorArgs(t, "--output", "json")...)...)
	t.Logf("%s", res)
	for _, leak := range []string{secret, dsn} {
		if strings.Contains(res.out, leak) || strings.Contains(res.err, leak) {
			t.Errorf("the output holds %q", leak)
		}
	}
	r := parseDoctor(t, res.out)
	ok, detail, fix := r.check(t, "serve", "registry")
	if res.code != 1 || r.OK || ok || !strings.Contains(detail, "postgres") || !strings.Contains(fix, "store.dsn") {
		t.Errorf("exit %d; registry: %v %q %q", res.code, ok, detail, fix)
	}
}

// No labplane.yaml and no environment: labs, serve, deploy, promote and provision are not
// configured, the developer tools are not required: exit 0, and nothing is written.
func TestDoctorNothingConfigured(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "labplane.yaml")
	res := runCLI("", false, append([]string{"--config", config}, doctorArgs(t, "--output", "json")...)...)
	r := parseDoctor(t, res.out)
	if res.code != 0 || !r.OK {
		t.Errorf("want exit 0 and ok, got %s", res)
	}
	for _, j := range r.Jobs {
		if j.Configured {
			t.Errorf("%s is configured (%s)", j.Job, j.Reason)
		}
	}
	if len(r.Jobs) != 7 {
		t.Errorf("%d jobs reported, want 7", len(r.Jobs))
	}
	if ok, detail, _ := r.check(t, "labs", "configuration"); ok || !strings.Contains(detail, config) {
		t.Errorf("labs configuration: %v %q", ok, detail)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("doctor wrote %v", entries)
	}
	// in text, the summary says so
	res = runCLI("", false, append([]string{"--config", config}, doctorArgs(t)...)...)
	if res.code != 0 || !strings.Contains(res.out, "labs: not configured (no "+config+")") ||
		!strings.Contains(res.out, "ok: no job is configured here") {
		t.Errorf("text: %s", res)
	}
}
