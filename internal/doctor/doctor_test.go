package doctor_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/doctor"
	"github.com/labplane/labplane/internal/specfile"
	"github.com/labplane/labplane/internal/terraformbin"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const labsConfig = `store:
  dsn: labplane.db
clouds:
  - name: alpha
    cloud: alpha-entry
  - name: beta
    cloud: beta-entry
templates:
  lab: lab.yaml
`

// registryConfig serves deploys only: no clouds, no templates.
const registryConfig = "store:\n  dsn: labplane.db\n"

const environment = `release: olive.1
artifact: https://artifacts.example.com/edx-platform-{release}.tar.gz
artifact_checksum: sha256:https://artifacts.example.com/edx-platform-{release}.tar.gz.sha256
%s
settings:
  lms_site_name: lms.example.com
  cms_site_name: studio.example.com
  guacd_apt_repository: "deb https://apt.example.com/guacd bookworm main"
  guacd_apt_key: guacd.asc
  guacd_version: 1.5.5-1
secrets:
  secret_key: {env: SECRET_KEY}
`

const (
	withHosts     = "hosts:\n  lms: [{name: lms-1, address: 10.0.0.11}]\n  cms: [{name: cms-1, address: 10.0.0.12}]\n  guacd: [{name: guacd-1, address: 10.0.0.13}]"
	withProvision = "provision: {module: ., cloud: tf-entry}"
)

// site is a project directory: labplane.yaml (when config is not empty), a lab template,
// playbooks/site.yml and the environments given (name: hosts or provision section).
type site struct {
	dir, config, inventories string
}

func newSite(t *testing.T, config string, envs map[string]string) site {
	t.Helper()
	dir := t.TempDir()
	s := site{dir: dir, config: filepath.Join(dir, "labplane.yaml"), inventories: filepath.Join(dir, "inventories")}
	write := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if config != "" {
		write(s.config, config)
	}
	write(filepath.Join(dir, "lab.yaml"), "heat_template_version: 2018-08-31\n")
	write(filepath.Join(dir, "playbooks", "site.yml"), "---\n")
	for name, section := range envs {
		write(filepath.Join(s.inventories, name, "environment.yml"), fmt.Sprintf(environment, section))
		write(filepath.Join(s.inventories, name, "guacd.asc"), "-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
	}
	return s
}

func (s site) load(t *testing.T, named ...doctor.Job) doctor.Setup {
	t.Helper()
	setup, err := doctor.Load(s.config, s.dir, s.inventories, named)
	if err != nil {
		t.Fatal(err)
	}
	return setup
}

// fakes are probes that answer from fields; everything is in place unless a field says not.
type fakes struct {
	mu         sync.Mutex
	calls      map[string]int   // probe calls, by probe (and cloud)
	missing    []string         // Debian packages not installed
	notOnPath  []string         // executables not on PATH
	callback   error            // the jsonl callback's check
	clouds     map[string]error // by clouds.yaml entry
	entries    map[string]error // provision's clouds.yaml entries
	registry   error            // opening the registry
	toolchain  error            // terraformbin.Find's error
	notRoot    bool             // not running as root
	namespaces error            // network namespaces
	noGuard    bool             // the guard route is absent
	files      map[string]error // Stat's answers, by base name
}

func (f *fakes) count(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[name]++
}

func (f *fakes) probes() doctor.Probes {
	return doctor.Probes{
		Missing: func(_ context.Context, pkgs ...string) ([]string, error) {
			f.count("missing")
			var out []string
			for _, p := range pkgs {
				if slices.Contains(f.missing, p) {
					out = append(out, p)
				}
			}
			return out, nil
		},
		LookPath: func(file string) (string, error) {
			if slices.Contains(f.notOnPath, file) {
				return "", exec.ErrNotFound
			}
			return "/usr/bin/" + file, nil
		},
		Callback: func(context.Context, string) error { f.count("callback"); return f.callback },
		Cloud: func(_ context.Context, c config.Cloud) error {
			f.count("cloud " + c.Name)
			return f.clouds[c.Cloud]
		},
		CloudEntry: func(entry string) error { return f.entries[entry] },
		Registry:   func(context.Context, *config.Config) error { f.count("registry"); return f.registry },
		Terraform: func(context.Context) (terraformbin.Toolchain, error) {
			tc := terraformbin.Toolchain{Mirror: "/cache/mirror", CLIConfig: "/cache/terraform.rc"}
			if !errors.Is(f.toolchain, terraformbin.ErrNoTerraform) {
				tc.Terraform, tc.Version = "/usr/bin/terraform", "1.11.4"
			}
			return tc, f.toolchain
		},
		Root:       func() bool { return !f.notRoot },
		Namespaces: func(context.Context) error { return f.namespaces },
		GuardRoute: func(context.Context) (bool, error) { return !f.noGuard, nil },
		Stat:       func(path string) error { return f.files[filepath.Base(path)] },
	}
}

func TestParseJobs(t *testing.T) {
	tests := []struct {
		args []string
		want []doctor.Job
		err  string
	}{
		{nil, nil, ""},
		{[]string{"testhosts", "labs", "deploy", "labs"}, []doctor.Job{doctor.Labs, doctor.Deploy, doctor.TestHosts}, ""},
		{[]string{"deploy", "lab"}, nil, `no job "lab": the jobs are labs, serve, deploy, promote, provision, localcloud, testhosts`},
	}
	for _, tc := range tests {
		got, err := doctor.ParseJobs(tc.args)
		if tc.err != "" {
			if !errors.Is(err, doctor.ErrUnknownJob) || err.Error() != tc.err {
				t.Errorf("%v: err = %v, want %s", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%v: got %v %v, want %v", tc.args, got, err, tc.want)
		}
	}
}

// Which jobs a setup configures, and why.
func TestConfigured(t *testing.T) {
	one := map[string]string{"staging": withHosts}
	two := map[string]string{"staging": withHosts, "production": withHosts}
	tests := []struct {
		name   string
		config string
		envs   map[string]string
		named  []doctor.Job
		want   []doctor.Job // the configured jobs
		reason map[doctor.Job]string
	}{
		{name: "nothing", want: nil,
			reason: map[doctor.Job]string{doctor.Labs: "no ", doctor.Deploy: "no ", doctor.LocalCloud: "a developer tool"}},
		{name: "labs configuration", config: labsConfig, want: []doctor.Job{doctor.Labs, doctor.Serve},
			reason: map[doctor.Job]string{doctor.Labs: "has 2 clouds"}},
		{name: "deploys only", config: registryConfig, envs: one, want: []doctor.Job{doctor.Deploy},
			reason: map[doctor.Job]string{doctor.Labs: "no clouds or templates", doctor.Promote: "has 1 environment"}},
		{name: "two environments", envs: two, want: []doctor.Job{doctor.Deploy, doctor.Promote}},
		{name: "provisioned", envs: map[string]string{"cloudy": withProvision}, want: []doctor.Job{doctor.Deploy, doctor.Provision},
			reason: map[doctor.Job]string{doctor.Provision: "provision: in cloudy"}},
		{name: "named", config: labsConfig, named: []doctor.Job{doctor.LocalCloud, doctor.Promote},
			want:   []doctor.Job{doctor.Promote, doctor.LocalCloud},
			reason: map[doctor.Job]string{doctor.LocalCloud: "named on the command line"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, tc.config, tc.envs).load(t, tc.named...)
			var got []doctor.Job
			for _, j := range doctor.Jobs() {
				configured, reason := s.Configured(j)
				if configured {
					got = append(got, j)
				}
				if want, ok := tc.reason[j]; ok && !strings.Contains(reason, want) {
					t.Errorf("%s: reason %q, want %q in it", j, reason, want)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("configured %v, want %v", got, tc.want)
			}
		})
	}
}

// A configuration that is there but wrong is config's error, naming the file and the field;
// one that serves deploys only is wrong for labs only when labs are named.
func TestLoadBadConfiguration(t *testing.T) {
	tests := []struct {
		name, config string
		named        []doctor.Job
		field        string // "" = loads
	}{
		{"bad store", "store:\n  driver: mysql\n", nil, "store.driver"},
		{"missing template", strings.Replace(labsConfig, "lab.yaml", "gone.yaml", 1), nil, "templates.lab"},
		{"unknown field", labsConfig + "colour: blue\n", nil, `unknown field "colour"`},
		{"deploys only", registryConfig, nil, ""},
		{"deploys only, labs named", registryConfig, []doctor.Job{doctor.Labs}, "clouds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, tc.config, nil)
			_, err := doctor.Load(s.config, s.dir, s.inventories, tc.named)
			var cfgErr *specfile.Error
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("want no error, got %v", err)
			case tc.field != "" && (!errors.As(err, &cfgErr) || !strings.Contains(err.Error(), s.config) || !strings.Contains(err.Error(), tc.field)):
				t.Errorf("want a config error naming %s and %s, got %v", s.config, tc.field, err)
			}
		})
	}
}

// The decision: what a configured or named job lacks fails the report; what a job that is not
// configured lacks, and a check that is not required, do not.
func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		envs    map[string]string
		named   []doctor.Job
		fakes   *fakes
		ok      bool
		lacking []doctor.Job
		// check names the check (JOB/NAME) whose state and fix are asserted
		check   string
		checkOK bool
		fix     string // in the check's fix
	}{
		{name: "nothing configured, nothing installed", fakes: &fakes{missing: slices.Concat(localcloud.Packages, testhosts.Packages()),
			notOnPath: []string{"ansible-playbook", "ssh"}, notRoot: true, toolchain: errors.Join(terraformbin.ErrNoTerraform, terraformbin.ErrNoProvider)},
			ok: true, check: "localcloud/Debian packages", fix: "labplane doctor --install localcloud"},
		{name: "a cloud entry missing", config: labsConfig,
			fakes:   &fakes{clouds: map[string]error{"beta-entry": &cloud.Error{Cloud: "beta", Op: "open", Kind: cloud.ErrInvalid, Message: `clouds.yaml entry "beta-entry": cloud beta-entry does not exist in clouds.yaml`}}},
			lacking: []doctor.Job{doctor.Labs, doctor.Serve}, check: "labs/cloud beta", fix: `add an entry "beta-entry" to clouds.yaml`},
		{name: "a cloud refusing the credentials", config: labsConfig,
			fakes:   &fakes{clouds: map[string]error{"alpha-entry": &cloud.Error{Cloud: "alpha", Op: "open", Kind: cloud.ErrAuth, HTTPStatus: 401}}},
			lacking: []doctor.Job{doctor.Labs, doctor.Serve}, check: "serve/cloud alpha", fix: "Keystone refused the credentials"},
		{name: "a cloud down", config: labsConfig,
			fakes:   &fakes{clouds: map[string]error{"alpha-entry": &cloud.Error{Cloud: "alpha", Op: "open", Kind: cloud.ErrTransient}}},
			lacking: []doctor.Job{doctor.Labs, doctor.Serve}, check: "labs/cloud alpha", fix: "answer from this machine"},
		{name: "the template gone", config: labsConfig, fakes: &fakes{files: map[string]error{"lab.yaml": errors.New("no lab.yaml")}},
			lacking: []doctor.Job{doctor.Labs}, check: "labs/template lab", fix: "put the Heat template at"},
		{name: "deploy without the callback", envs: map[string]string{"staging": withHosts}, config: registryConfig,
			fakes: &fakes{callback: ansible.ErrNoCallback}, lacking: []doctor.Job{doctor.Deploy},
			check: "deploy/callback ansible.posix.jsonl", fix: "labplane doctor --install deploy (as root), or apt-get install ansible"},
		{name: "deploy without ssh", envs: map[string]string{"staging": withHosts}, config: registryConfig,
			fakes: &fakes{notOnPath: []string{"ssh"}}, lacking: []doctor.Job{doctor.Deploy}, check: "deploy/ssh client", fix: "apt-get install openssh-client"},
		{name: "deploy with Ansible from pip", envs: map[string]string{"staging": withHosts}, config: registryConfig,
			fakes: &fakes{missing: []string{"ansible"}}, ok: true, check: "deploy/Debian packages", fix: "labplane doctor --install deploy"},
		{name: "deploy without labplane.yaml", envs: map[string]string{"staging": withHosts},
			fakes: &fakes{}, lacking: []doctor.Job{doctor.Deploy}, check: "deploy/registry", fix: "write "},
		{name: "deploy outside the project", envs: map[string]string{"staging": withHosts}, config: registryConfig,
			fakes: &fakes{files: map[string]error{"site.yml": errors.New("no playbooks/site.yml")}}, lacking: []doctor.Job{doctor.Deploy},
			check: "deploy/playbooks", fix: "--project DIR"},
		{name: "promote named with one environment", envs: map[string]string{"staging": withHosts}, config: registryConfig,
			named: []doctor.Job{doctor.Promote}, fakes: &fakes{}, lacking: []doctor.Job{doctor.Promote},
			check: "promote/environments", fix: "a source and a target"},
		{name: "provision without the provider", envs: map[string]string{"cloudy": withProvision}, config: registryConfig,
			fakes:   &fakes{toolchain: fmt.Errorf("terraform toolchain: %w", errors.Join(fmt.Errorf("%w: no /cache/mirror/x", terraformbin.ErrNoProvider)))},
			lacking: []doctor.Job{doctor.Provision}, check: "provision/OpenStack provider", fix: "labplane provision cloudy plan"},
		{name: "provision without terraform", envs: map[string]string{"cloudy": withProvision}, config: registryConfig,
			fakes:   &fakes{toolchain: fmt.Errorf("terraform toolchain: %w", errors.Join(fmt.Errorf("%w: no terraform on PATH", terraformbin.ErrNoTerraform)))},
			lacking: []doctor.Job{doctor.Provision}, check: "provision/terraform", fix: "or put terraform >= 1.5.0 on PATH"},
		{name: "provision's cloud entry missing", envs: map[string]string{"cloudy": withProvision}, config: registryConfig,
			fakes:   &fakes{entries: map[string]error{"tf-entry": errors.New(`clouds.yaml entry "tf-entry": cloud tf-entry does not exist in clouds.yaml`)}},
			lacking: []doctor.Job{doctor.Provision}, check: "provision/cloud tf-entry (cloudy)", fix: "correct provision.cloud in"},
		{name: "local cloud named, a package missing", named: []doctor.Job{doctor.LocalCloud}, fakes: &fakes{missing: []string{"heat-engine"}},
			lacking: []doctor.Job{doctor.LocalCloud}, check: "localcloud/Debian packages", fix: "or labplane dev cloud up"},
		{name: "local cloud named, Nova's packages missing (local-servers alone needs them)", named: []doctor.Job{doctor.LocalCloud},
			fakes: &fakes{missing: []string{"nova-api"}}, ok: true, check: "localcloud/Debian packages for local-servers",
			fix: "labplane dev cloud up --name local-servers"},
		{name: "test hosts named, not root", named: []doctor.Job{doctor.TestHosts}, fakes: &fakes{notRoot: true},
			lacking: []doctor.Job{doctor.TestHosts}, check: "testhosts/root", fix: "as root"},
		{name: "test hosts named, no guard route yet", named: []doctor.Job{doctor.TestHosts}, fakes: &fakes{noGuard: true},
			ok: true, check: "testhosts/guard route", fix: "labplane dev hosts up adds it"},
		{name: "test hosts named, everything there", named: []doctor.Job{doctor.TestHosts}, fakes: &fakes{},
			ok: true, check: "testhosts/network namespaces", checkOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, tc.config, tc.envs).load(t, tc.named...)
			r := doctor.Run(t.Context(), s, tc.fakes.probes())
			var text bytes.Buffer
			if err := doctor.WriteText(&text, r); err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", text.String())
			if r.OK != tc.ok || !slices.Equal(r.Lacking(), tc.lacking) {
				t.Errorf("ok %v lacking %v, want ok %v lacking %v", r.OK, r.Lacking(), tc.ok, tc.lacking)
			}
			if len(tc.named) > 0 && len(r.Jobs) != len(tc.named) {
				t.Errorf("named %v, got %d jobs", tc.named, len(r.Jobs))
			}
			job, name, _ := strings.Cut(tc.check, "/")
			c, found := findCheck(r, doctor.Job(job), name)
			switch {
			case !found:
				t.Fatalf("no check %s", tc.check)
			case c.OK != tc.checkOK:
				t.Errorf("%s: ok %v, want %v", tc.check, c.OK, tc.checkOK)
			case !strings.Contains(c.Fix, tc.fix):
				t.Errorf("%s: fix %q, want %q in it", tc.check, c.Fix, tc.fix)
			case c.OK && c.Fix != "":
				t.Errorf("%s is ok and has a fix: %q", tc.check, c.Fix)
			}
		})
	}
}

// What several jobs share is asked once per run: the registry, each cloud, the callback.
func TestRunAsksOnce(t *testing.T) {
	s := newSite(t, labsConfig, map[string]string{"staging": withHosts, "production": withHosts}).load(t)
	f := &fakes{}
	r := doctor.Run(t.Context(), s, f.probes())
	if !r.OK {
		t.Errorf("everything is in place, yet: %+v", r)
	}
	for _, probe := range []string{"registry", "cloud alpha", "cloud beta", "callback"} {
		if f.calls[probe] != 1 {
			t.Errorf("%s asked %d times, want once", probe, f.calls[probe])
		}
	}
	for _, j := range []doctor.Job{doctor.Labs, doctor.Serve, doctor.Deploy, doctor.Promote} {
		if _, ok := findCheck(r, j, "registry"); !ok {
			t.Errorf("%s has no registry check", j)
		}
	}
}

// Neither a DSN nor its password shows, even when the registry's error would carry them.
func TestRegistrySecret(t *testing.T) {
	const pw = "Doctor-S3cret-pw"
	dsn := "postgres://labplane:" + pw + "@db.example.com:5432/labplane"
	s := newSite(t, labsConfig, nil)
	s.setConfig(t, strings.Replace(labsConfig, "store:\n  dsn: labplane.db", "store:\n  driver: postgres\n  dsn: "+dsn, 1))
	f := &fakes{registry: fmt.Errorf("ping postgres: failed to connect to %s: password %s refused", dsn, pw)}
	r := doctor.Run(t.Context(), s.load(t), f.probes())
	var text bytes.Buffer
	if err := doctor.WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text.String(), pw) {
		t.Errorf("the password shows:\n%s", text.String())
	}
	c, _ := findCheck(r, doctor.Serve, "registry")
	if c.OK || !strings.Contains(c.Detail, "refused") || !strings.Contains(c.Fix, "store.dsn") {
		t.Errorf("registry check: %+v", c)
	}
}

func (s site) setConfig(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(s.config, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func findCheck(r doctor.Report, j doctor.Job, name string) (doctor.Check, bool) {
	for _, jr := range r.Jobs {
		if jr.Job != j {
			continue
		}
		for _, c := range jr.Checks {
			if c.Name == name {
				return c, true
			}
		}
	}
	return doctor.Check{}, false
}

func TestSummarize(t *testing.T) {
	fail := doctor.Check{Name: "x", Required: true}
	note := doctor.Check{Name: "y"}
	pass := doctor.Check{Name: "z", OK: true, Required: true}
	tests := []struct {
		name    string
		jobs    []doctor.JobReport
		ok      bool
		jobsOK  []bool
		lacking []doctor.Job
	}{
		{"no jobs", nil, true, nil, nil},
		{"all pass", []doctor.JobReport{{Job: doctor.Labs, Configured: true, Checks: []doctor.Check{pass}}}, true, []bool{true}, nil},
		{"a note only", []doctor.JobReport{{Job: doctor.TestHosts, Configured: true, Checks: []doctor.Check{pass, note}}}, true, []bool{true}, nil},
		{"fails, not configured", []doctor.JobReport{{Job: doctor.Deploy, Checks: []doctor.Check{fail}}}, true, []bool{false}, nil},
		{"fails, configured", []doctor.JobReport{{Job: doctor.Deploy, Configured: true, Checks: []doctor.Check{pass, fail}},
			{Job: doctor.Labs, Configured: true, Checks: []doctor.Check{pass}}}, false, []bool{false, true}, []doctor.Job{doctor.Deploy}},
		{"no checks", []doctor.JobReport{{Job: doctor.Serve, Configured: true}}, true, []bool{true}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := doctor.Summarize(tc.jobs)
			var jobsOK []bool
			for _, j := range r.Jobs {
				jobsOK = append(jobsOK, j.OK)
				if j.Checks == nil {
					t.Errorf("%s: nil checks (JSON null)", j.Job)
				}
			}
			if r.OK != tc.ok || !slices.Equal(jobsOK, tc.jobsOK) || !slices.Equal(r.Lacking(), tc.lacking) || r.Jobs == nil {
				t.Errorf("got ok %v jobs %v lacking %v, want %v %v %v", r.OK, jobsOK, r.Lacking(), tc.ok, tc.jobsOK, tc.lacking)
			}
		})
	}
}

// The text report, against testdata/report.txt (go test -run TestWriteText -update rewrites it).
func TestWriteText(t *testing.T) {
	r := doctor.Summarize([]doctor.JobReport{
		{Job: doctor.Labs, Configured: true, Reason: "labplane.yaml has 2 clouds", Checks: []doctor.Check{
			{Name: "configuration", OK: true, Required: true, Detail: "labplane.yaml: 2 clouds, 1 template"},
			{Name: "cloud alpha", OK: true, Required: true, Detail: `clouds.yaml entry "alpha": Keystone authenticated, Heat answers`},
			{Name: "cloud beta", Required: true, Detail: `cloud beta: open: invalid: clouds.yaml entry "beta"`, Fix: `add an entry "beta" to clouds.yaml`},
		}},
		{Job: doctor.Provision, Reason: "no environment has a provision: section", Checks: []doctor.Check{
			{Name: "terraform", Required: true, Detail: "no terraform on PATH\nand no labplane build", Fix: "labplane provision ENV plan"},
		}},
		{Job: doctor.TestHosts, Reason: "a developer tool", Checks: []doctor.Check{
			{Name: "guard route", Detail: "no route unreachable 10.251.0.0/16 yet", Fix: "nothing: labplane dev hosts up adds it"},
		}},
	})
	var got bytes.Buffer
	if err := doctor.WriteText(&got, r); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.txt")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run TestWriteText -update writes it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("got:\n%s\nwant:\n%s", got.String(), want)
	}
}

func TestPackages(t *testing.T) {
	tests := []struct {
		jobs []doctor.Job
		want []string
	}{
		{nil, slices.Concat(ansible.Packages, localcloud.Packages, testhosts.Packages()[len(ansible.Packages):])},
		{[]doctor.Job{doctor.Deploy, doctor.Promote}, ansible.Packages},
		{[]doctor.Job{doctor.LocalCloud}, localcloud.Packages},
		{[]doctor.Job{doctor.Labs, doctor.Serve, doctor.Provision}, nil},
	}
	for _, tc := range tests {
		if got := doctor.Packages(tc.jobs); !slices.Equal(got, tc.want) {
			t.Errorf("%v: got %v, want %v", tc.jobs, got, tc.want)
		}
	}
}

// A SQLite registry in a directory others may enter is reported (its files are 0600 anyway):
// not required, with the command that closes it; in a 0700 directory nothing is said.
func TestRegistryDirectoryOpenToOthers(t *testing.T) {
	s := newSite(t, labsConfig, nil)
	f := &fakes{}
	if err := os.Chmod(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c, ok := findCheck(doctor.Run(t.Context(), s.load(t), f.probes()), doctor.Serve, "registry directory")
	if !ok || c.OK || c.Required || !strings.Contains(c.Detail, s.dir+" is open to others (mode 0755)") ||
		c.Fix != "chmod 700 "+s.dir+", or keep the registry in a directory of its own, 0700" {
		t.Errorf("registry in a 0755 directory: %+v, %v", c, ok)
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if c, ok := findCheck(doctor.Run(t.Context(), s.load(t), f.probes()), doctor.Serve, "registry directory"); ok {
		t.Errorf("registry in a 0700 directory: %+v", c)
	}
}
