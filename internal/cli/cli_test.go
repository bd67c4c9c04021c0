package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/cli"
	"github.com/labplane/labplane/internal/dev/localcloud/localcloudtest"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/store"
)

func TestMain(m *testing.M) {
	// Commands that open clouds look their entry up in clouds.yaml: point them at an empty
	// one, so that the tests never reach a cloud of the machine they run on.
	dir, err := os.MkdirTemp("", "labplane-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(clouds, []byte("clouds: {}\n"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("OS_CLIENT_CONFIG_FILE", clouds)
	os.Unsetenv("LABPLANE_CONFIG")
	os.Unsetenv("LABPLANE_LOG_LEVEL")
	code := localcloudtest.Main(m, &lease, nil, "local-a") // for heat_test.go
	os.RemoveAll(dir)
	os.Exit(code)
}

// goodConfig is a valid configuration; its cloud entry exists nowhere, which is fine for
// commands that do not open clouds.
const goodConfig = `store:
  dsn: labplane.db
clouds:
  - name: alpha
    cloud: nowhere
templates:
  lab: lab.yaml
`

// site is a directory with a configuration and a copy of the example lab template.
type site struct {
	t      *testing.T
	dir    string
	config string
	db     string
}

func newSite(t *testing.T, config string) *site {
	t.Helper()
	dir := t.TempDir()
	tmpl, err := os.ReadFile(exampleTemplate(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lab.yaml"), tmpl, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &site{t: t, dir: dir, config: filepath.Join(dir, "labplane.yaml"), db: filepath.Join(dir, "labplane.db")}
	if err := os.WriteFile(s.config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// moduleRoot is the repository's top (go test runs in the package's directory).
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// exampleTemplate is the example lab template's absolute path.
func exampleTemplate(t *testing.T) string {
	t.Helper()
	return filepath.Join(moduleRoot(t), "examples", "templates", "lab.yaml")
}

type result struct {
	code     int
	out, err string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
}

// run runs labplane with the site's configuration, stdin not a terminal.
func (s *site) run(args ...string) result {
	s.t.Helper()
	return s.runIO("", false, args...)
}

func (s *site) runIO(in string, terminal bool, args ...string) result {
	s.t.Helper()
	return runCLI(in, terminal, append([]string{"--config", s.config}, args...)...)
}

// runCLI runs labplane in-process. It sets no deadline of its own: a command that builds the
// Terraform toolchain or installs packages on a busy machine takes what it takes, within go
// test's -timeout.
func runCLI(in string, terminal bool, args ...string) result {
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), append([]string{"labplane"}, args...), cli.IO{In: strings.NewReader(in), Out: &out, Err: &errOut, Terminal: terminal})
	return result{code: code, out: out.String(), err: errOut.String()}
}

// open opens the site's registry (creating it as the CLI would).
func (s *site) open() *store.Store {
	s.t.Helper()
	st, err := store.Open(context.Background(), "sqlite", s.db)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { st.Close() })
	return st
}

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// addLab inserts a lab with a launch event (and a launched one when it is not launching).
func addLab(t *testing.T, st *store.Store, l labs.Lab) labs.Lab {
	t.Helper()
	ctx := context.Background()
	if l.Template == "" {
		l.Template = "lab"
	}
	if l.Cloud == "" {
		l.Cloud = "alpha"
	}
	l.StackName = "lab-" + l.ID
	want := l
	l.Status, l.Outputs = labs.Launching, nil
	created, err := st.CreateLab(ctx, l, labs.Event{At: t0, Actor: "test", Action: "launch", To: labs.Launching})
	if err != nil {
		t.Fatal(err)
	}
	if want.Status == labs.Launching {
		return created
	}
	created.Status, created.Outputs, created.StackID, created.StackStatus = want.Status, want.Outputs, "stack-"+l.ID, want.StackStatus
	if want.Status == labs.Deleted {
		created.DeletedAt = t0.Add(time.Hour)
	}
	updated, err := st.UpdateLab(ctx, created, labs.Event{At: t0.Add(time.Minute), Actor: "test", Action: "launched",
		From: labs.Launching, To: want.Status, RequestID: "req-" + l.ID})
	if err != nil {
		t.Fatal(err)
	}
	return updated
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestBadConfigExits2AndWritesNothing(t *testing.T) {
	t.Setenv("LABPLANE_TEST_UNSET", "") // set, so that unsetting it below is undone after the test
	os.Unsetenv("LABPLANE_TEST_UNSET")
	tests := []struct {
		name, config string
		// field is what stderr must name beside the file
		field string
	}{
		{"unknown store driver", strings.Replace(goodConfig, "store:\n", "store:\n  driver: mysql\n", 1), "store.driver"},
		{"store dsn from an unset variable", strings.Replace(goodConfig, "dsn: labplane.db", "dsn: ${LABPLANE_TEST_UNSET}.db", 1), "store.dsn"},
		{"no clouds", "store:\n  dsn: labplane.db\ntemplates:\n  lab: lab.yaml\n", "clouds"},
		{"bad cloud name", strings.Replace(goodConfig, "name: alpha", "name: Alpha_1", 1), "clouds[0].name"},
		{"cloud entry missing", strings.Replace(goodConfig, "    cloud: nowhere\n", "", 1), "clouds[0].cloud"},
		{"negative capacity", goodConfig + "", "clouds[0].capacity"},
		{"missing template file", strings.Replace(goodConfig, "lab: lab.yaml", "lab: missing.yaml", 1), "templates.lab"},
		{"default template not a template", goodConfig + "default_template: other\n", "default_template"},
		{"not a duration", goodConfig + "policy:\n  idle_suspend_after: 5\n", "policy.idle_suspend_after"},
		{"delete_after 0", goodConfig + "policy:\n  delete_after: 0\n", "policy.delete_after"},
		{"course override", goodConfig + "policy:\n  courses:\n    os101:\n      max_attempts: 0\n", "policy.courses.os101.max_attempts"},
		{"hook timeout", goodConfig + "hooks:\n  timeout: soon\n", "hooks.timeout"},
		{"unknown field", goodConfig + "polcy:\n  idle_suspend_after: 2m\n", `unknown field "polcy"`},
		{"not YAML", "store: [\n", ""},
	}
	tests[5].config = strings.Replace(goodConfig, "cloud: nowhere", "cloud: nowhere\n    capacity: -1", 1)
	commands := [][]string{
		{"config", "validate"},
		{"labs", "list"},
		{"labs", "show", "abc"},
		{"labs", "heartbeat", "abc"},
		{"labs", "launch", "--learner", "ann", "--course", "os101"},
		{"labs", "suspend", "abc"},
		{"labs", "delete", "--yes", "abc"},
		{"reap", "--once", "--dry-run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSite(t, tt.config)
			for _, args := range commands {
				res := s.run(args...)
				if res.code != 2 {
					t.Fatalf("%v: want exit 2, got %s", args, res)
				}
				if !strings.Contains(res.err, s.config) || !strings.Contains(res.err, tt.field) {
					t.Errorf("%v: stderr must name %s and %q:\n%s", args, s.config, tt.field, res.err)
				}
			}
			entries, err := os.ReadDir(s.dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Name() != "labplane.yaml" && e.Name() != "lab.yaml" {
					t.Errorf("a bad configuration wrote %s", e.Name())
				}
			}
		})
	}
}

func TestMissingConfigFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	for _, args := range [][]string{{"config", "validate"}, {"labs", "list"}} {
		res := runCLI("", false, append([]string{"--config", missing}, args...)...)
		if res.code != 2 || !strings.Contains(res.err, missing) || !strings.Contains(res.err, "no such file") {
			t.Errorf("%v: %s", args, res)
		}
	}
	if exists(filepath.Join(filepath.Dir(missing), "labplane.db")) {
		t.Error("a database was created")
	}
	// LABPLANE_CONFIG is read when --config is not given
	t.Setenv("LABPLANE_CONFIG", missing)
	if res := runCLI("", false, "labs", "list"); res.code != 2 || !strings.Contains(res.err, missing) {
		t.Errorf("LABPLANE_CONFIG: %s", res)
	}
}

func TestBadUsageExits2(t *testing.T) {
	s := newSite(t, goodConfig)
	addLab(t, s.open(), labs.Lab{ID: "lab1", Learner: "ann", Course: "os101", Status: labs.Active})
	tests := []struct {
		name string
		args []string
		// stderr must contain this
		want string
	}{
		{"show an unknown lab", []string{"labs", "show", "nosuch"}, "not found"},
		{"heartbeat an unknown lab", []string{"labs", "heartbeat", "nosuch"}, "not found"},
		{"suspend an unknown lab", []string{"labs", "suspend", "nosuch"}, "not found"},
		{"resume an unknown lab", []string{"labs", "resume", "nosuch"}, "not found"},
		{"delete an unknown lab", []string{"labs", "delete", "--yes", "nosuch"}, "not found"},
		{"dry run on an unknown lab", []string{"labs", "suspend", "--dry-run", "nosuch"}, "not found"},
		{"show without an id", []string{"labs", "show"}, "needs one lab ID"},
		{"show with two ids", []string{"labs", "show", "lab1", "lab2"}, "needs one lab ID"},
		{"list a bogus status", []string{"labs", "list", "--status", "bogus"}, `--status "bogus"`},
		{"list as yaml", []string{"labs", "list", "--output", "yaml"}, `--output "yaml"`},
		{"show as yaml", []string{"labs", "show", "lab1", "-o", "yaml"}, `--output "yaml"`},
		{"validate as yaml", []string{"config", "validate", "--output", "yaml"}, `--output "yaml"`},
		{"reap as yaml", []string{"reap", "--once", "--output", "yaml"}, `--output "yaml"`},
		{"reap without --once", []string{"reap"}, "--once"},
		{"reap --dry-run without --once", []string{"reap", "--dry-run"}, "--once"},
		{"bad log level", []string{"--log-level", "loud", "labs", "list"}, "--log-level"},
		{"unknown command", []string{"bogus"}, `"bogus"`},
		{"unknown labs command", []string{"labs", "bogus"}, `"bogus"`},
		{"unknown config command", []string{"config", "bogus"}, `"bogus"`},
		{"unknown flag", []string{"labs", "list", "--bogus"}, "bogus"},
		{"unknown global flag", []string{"--bogus", "labs", "list"}, "bogus"},
		{"launch without --learner", []string{"labs", "launch", "--course", "os101"}, "learner"},
		{"launch without --course", []string{"labs", "launch", "--learner", "ann"}, "course"},
		{"launch with a bad learner", []string{"labs", "launch", "--learner", "a b", "--course", "os101"}, "learner"},
		{"launch an unknown template", []string{"labs", "launch", "--learner", "bob", "--course", "os101", "--template", "nope"}, `"nope"`},
		{"launch for a learner who has a lab", []string{"labs", "launch", "--learner", "ann", "--course", "os101"}, "lab1"},
		{"launch on an unknown cloud", []string{"labs", "launch", "--learner", "bob", "--course", "os101", "--cloud", "beta"}, `"beta"`},
		{"localcloud unknown name", []string{"dev", "cloud", "env", "--name", "local-z"}, "--name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.run(tt.args...)
			if res.code != 2 || !strings.Contains(res.err, tt.want) {
				t.Fatalf("want exit 2 and %q on stderr, got %s", tt.want, res)
			}
		})
	}
	// nothing above added a lab or changed lab1
	st := s.open()
	all, err := st.ListLabs(context.Background(), labs.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].ID != "lab1" || all[0].Status != labs.Active || all[0].Version != 2 {
		t.Fatalf("the registry changed: %+v", all)
	}
}

func TestDeleteNeedsConfirmation(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		terminal bool
		args     []string
		want     int
		wantErr  string
	}{
		{"not a terminal, no --yes", "y\n", false, nil, 2, "--yes"},
		{"terminal, answer n", "n\n", true, nil, 2, "not confirmed"},
		{"terminal, no answer", "", true, nil, 2, "not confirmed"},
		{"terminal, answer anything else", "sure\n", true, nil, 2, "not confirmed"},
		{"dry run needs no confirmation", "", false, []string{"--dry-run"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSite(t, goodConfig)
			st := s.open()
			before := addLab(t, st, labs.Lab{ID: "lab1", Learner: "ann", Course: "os101", Status: labs.Active})
			res := s.runIO(tt.in, tt.terminal, append(append([]string{"labs", "delete"}, tt.args...), "lab1")...)
			if res.code != tt.want || !strings.Contains(res.err, tt.wantErr) {
				t.Fatalf("want exit %d and %q, got %s", tt.want, tt.wantErr, res)
			}
			if tt.terminal && !strings.Contains(res.err, "Delete lab lab1") {
				t.Errorf("the question was not asked: %s", res.err)
			}
			after, err := st.GetLab(context.Background(), "lab1")
			if err != nil {
				t.Fatal(err)
			}
			if after.Status != labs.Active || after.Version != before.Version {
				t.Errorf("the lab was touched: %s version %d (was %d)", after.Status, after.Version, before.Version)
			}
			evs, err := st.Events(context.Background(), "lab1", 0)
			if err != nil || len(evs) != 2 {
				t.Errorf("events changed: %v %+v", err, evs)
			}
		})
	}
	t.Run("terminal, answer y goes ahead", func(t *testing.T) {
		// the cloud is unavailable, so the delete is tried and fails: exit 1, not a refusal
		s := newSite(t, goodConfig)
		addLab(t, s.open(), labs.Lab{ID: "lab1", Learner: "ann", Course: "os101", Status: labs.Active})
		res := s.runIO("y\n", true, "labs", "delete", "lab1")
		if res.code != 1 || strings.Contains(res.err, "not confirmed") || !strings.Contains(res.err, "nowhere") {
			t.Fatalf("want the delete tried on the unavailable cloud (exit 1), got %s", res)
		}
	})
}

func TestLaunchUnknownTemplateWritesNoLab(t *testing.T) {
	s := newSite(t, goodConfig)
	res := s.run("labs", "launch", "--learner", "ann", "--course", "os101", "--template", "nope")
	if res.code != 2 || !strings.Contains(res.err, "templates") || !strings.Contains(res.err, `"nope"`) {
		t.Fatalf("%s", res)
	}
	all, err := s.open().ListLabs(context.Background(), labs.Filter{})
	if err != nil || len(all) != 0 {
		t.Fatalf("labs written: %v %+v", err, all)
	}
}

func TestListJSON(t *testing.T) {
	s := newSite(t, goodConfig)
	res := s.run("labs", "list", "--output", "json")
	if res.code != 0 || strings.TrimSpace(res.out) != "[]" {
		t.Fatalf("empty registry: %s", res)
	}
	st := s.open()
	addLab(t, st, labs.Lab{ID: "lab1", Learner: "ann", Course: "os101", Status: labs.Active, StackStatus: "CREATE_COMPLETE"})
	addLab(t, st, labs.Lab{ID: "lab2", Learner: "bob", Course: "os101", Status: labs.Suspended, StackStatus: "SUSPEND_COMPLETE"})
	addLab(t, st, labs.Lab{ID: "lab3", Learner: "cat", Course: "os102", Status: labs.Deleted})

	ids := func(args ...string) []string {
		t.Helper()
		res := s.run(append([]string{"labs", "list", "-o", "json"}, args...)...)
		if res.code != 0 {
			t.Fatalf("%v: %s", args, res)
		}
		var list []labs.Lab
		if err := json.Unmarshal([]byte(res.out), &list); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, res.out)
		}
		out := make([]string, len(list))
		for i, l := range list {
			out[i] = l.ID
		}
		return out
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "lab1 lab2"},
		{[]string{"--all"}, "lab1 lab2 lab3"},
		{[]string{"--status", "suspended"}, "lab2"},
		{[]string{"--status", "suspended", "--status", "deleted"}, "lab2 lab3"},
		{[]string{"--learner", "ann"}, "lab1"},
		{[]string{"--course", "os102", "--all"}, "lab3"},
		{[]string{"--cloud", "beta"}, ""},
	} {
		if got := strings.Join(ids(tt.args...), " "); got != tt.want {
			t.Errorf("list %v: %q, want %q", tt.args, got, tt.want)
		}
	}
	// the text listing shows the same labs
	res = s.run("labs", "list")
	if res.code != 0 || !strings.Contains(res.out, "lab1") || !strings.Contains(res.out, "SUSPEND_COMPLETE") || strings.Contains(res.out, "lab3") {
		t.Errorf("text list: %s", res)
	}
}

const (
	secretPassword = "pw-S3cret-0utput"
	secretToken    = "tok-S3cret-0utput"
)

func TestShowJSONAndSecretOutputs(t *testing.T) {
	s := newSite(t, goodConfig)
	addLab(t, s.open(), labs.Lab{ID: "lab1", Learner: "ann", Course: "os101", Status: labs.Active,
		StackStatus: "CREATE_COMPLETE", Outputs: labs.Outputs{
			"guacamole_host":     "lab1-gw.labs.example",
			"guacamole_password": secretPassword,
			"api_token":          secretToken,
		}})

	res := s.run("labs", "show", "lab1", "--output", "json")
	if res.code != 0 {
		t.Fatal(res)
	}
	var view struct {
		labs.Lab
		Outputs map[string]string `json:"outputs"`
		Events  []labs.Event      `json:"events"`
	}
	if err := json.Unmarshal([]byte(res.out), &view); err != nil {
		t.Fatalf("%v\n%s", err, res.out)
	}
	if view.ID != "lab1" || view.Status != labs.Active || len(view.Events) != 2 ||
		view.Events[0].Action != "launch" || view.Events[1].Action != "launched" || view.Events[1].RequestID != "req-lab1" {
		t.Fatalf("show json: %+v", view)
	}
	want := map[string]string{"guacamole_host": "lab1-gw.labs.example", "guacamole_password": "(hidden)", "api_token": "(hidden)"}
	for k, v := range want {
		if view.Outputs[k] != v {
			t.Errorf("outputs[%s] = %q, want %q", k, view.Outputs[k], v)
		}
	}

	res = s.run("labs", "show", "lab1")
	if res.code != 0 || !strings.Contains(res.out, "output guacamole_password = (hidden)") ||
		!strings.Contains(res.out, "output guacamole_host = lab1-gw.labs.example") || !strings.Contains(res.out, "launched") {
		t.Errorf("show text: %s", res)
	}

	// no command prints the secret values
	for _, args := range [][]string{
		{"labs", "show", "lab1"},
		{"labs", "show", "lab1", "-o", "json"},
		{"labs", "list", "-o", "json"},
		{"labs", "list"},
		{"labs", "heartbeat", "lab1", "-o", "json"},
		{"labs", "delete", "--dry-run", "lab1", "-o", "json"},
		{"labs", "suspend", "--dry-run", "lab1"},
	} {
		res := s.run(args...)
		if res.code != 0 {
			t.Errorf("%v: %s", args, res)
		}
		for _, secret := range []string{secretPassword, secretToken} {
			if strings.Contains(res.out+res.err, secret) {
				t.Errorf("%v printed a secret output", args)
			}
		}
	}
}

func TestHeartbeat(t *testing.T) {
	s := newSite(t, goodConfig)
	st := s.open()
	addLab(t, st, labs.Lab{ID: "lab1", Learner: "ann", Course: "os101", Status: labs.Active})
	addLab(t, st, labs.Lab{ID: "gone", Learner: "bob", Course: "os101", Status: labs.Deleted})
	start := time.Now().Add(-time.Second)
	res := s.run("labs", "heartbeat", "lab1", "-o", "json")
	if res.code != 0 {
		t.Fatal(res)
	}
	var lab labs.Lab
	if err := json.Unmarshal([]byte(res.out), &lab); err != nil || lab.ID != "lab1" || lab.LastHeartbeat.Before(start) {
		t.Fatalf("heartbeat json: %v %+v", err, lab)
	}
	if got, err := st.GetLab(context.Background(), "lab1"); err != nil || got.LastHeartbeat.Before(start) {
		t.Fatalf("heartbeat not recorded: %v %s", err, got.LastHeartbeat)
	}
	if res := s.run("labs", "heartbeat", "gone"); res.code != 2 || !strings.Contains(res.err, "deleted") {
		t.Errorf("heartbeat of a deleted lab: %s", res)
	}
}

func TestConfigValidate(t *testing.T) {
	config := strings.Replace(goodConfig, "cloud: nowhere", "cloud: nowhere\n    capacity: 20\n  - name: beta\n    cloud: elsewhere\n    drain: true", 1) +
		"policy:\n  idle_suspend_after: 5m\n  courses:\n    os101:\n      delete_after: 336h\n"
	s := newSite(t, config)

	res := s.run("config", "validate")
	if res.code != 0 {
		t.Fatal(res)
	}
	for _, want := range []string{
		s.config + " is valid", "store: sqlite", "alpha", "beta", "nowhere", "template lab (default): " + filepath.Join(s.dir, "lab.yaml"),
		"policy: idle_suspend_after 5m0s, delete_after never", "policy for course os101: idle_suspend_after 5m0s, delete_after 336h0m0s",
	} {
		if !strings.Contains(res.out, want) {
			t.Errorf("validate text lacks %q:\n%s", want, res.out)
		}
	}

	res = s.run("config", "validate", "--output", "json")
	if res.code != 0 {
		t.Fatal(res)
	}
	var got struct {
		Path   string `json:"path"`
		Store  map[string]any
		Clouds []struct {
			Name        string `json:"name"`
			MaxInFlight int    `json:"max_in_flight"`
			Capacity    int    `json:"capacity"`
			Drain       bool   `json:"drain"`
		} `json:"clouds"`
		DefaultTemplate string `json:"default_template"`
		Policy          struct {
			Default struct {
				IdleSuspendAfter time.Duration `json:"idle_suspend_after"`
				MaxAttempts      int           `json:"max_attempts"`
			} `json:"default"`
			Courses map[string]struct {
				DeleteAfter time.Duration `json:"delete_after"`
			} `json:"courses"`
		} `json:"policy"`
	}
	if err := json.Unmarshal([]byte(res.out), &got); err != nil {
		t.Fatalf("%v\n%s", err, res.out)
	}
	if got.Path != s.config || len(got.Clouds) != 2 || got.Clouds[0].Name != "alpha" || got.Clouds[0].Capacity != 20 ||
		got.Clouds[0].MaxInFlight != 4 || !got.Clouds[1].Drain || got.DefaultTemplate != "lab" ||
		got.Policy.Default.IdleSuspendAfter != 5*time.Minute || got.Policy.Default.MaxAttempts != 3 ||
		got.Policy.Courses["os101"].DeleteAfter != 336*time.Hour {
		t.Errorf("validate json: %+v", got)
	}
	if got.Store["driver"] != "sqlite" || strings.Contains(res.out, "dsn") || strings.Contains(res.out, "labplane.db") {
		t.Errorf("validate json shows the store DSN:\n%s", res.out)
	}
	if exists(s.db) {
		t.Error("config validate created the database")
	}
}

func TestStorePasswordIsNeverPrinted(t *testing.T) {
	const password = "Pa55-w0rd-Never-Printed"
	t.Setenv("LABPLANE_TEST_DB_PASSWORD", password)
	pg := strings.Replace(goodConfig, "  dsn: labplane.db", "  driver: postgres\n  dsn: postgres://labplane:${LABPLANE_TEST_DB_PASSWORD}@127.0.0.1:1/labplane?connect_timeout=5", 1)
	bad := pg + "policy:\n  retry_backoff: -1m\n"
	tests := []struct {
		name, config string
		args         []string
		want         int
	}{
		{"validate text", pg, []string{"config", "validate"}, 0},
		{"validate json", pg, []string{"config", "validate", "-o", "json"}, 0},
		{"validate a bad config", bad, []string{"config", "validate"}, 2},
		{"validate a bad config, json", bad, []string{"config", "validate", "-o", "json"}, 2},
		{"list with a bad config", bad, []string{"labs", "list"}, 2},
		// the database cannot be reached: the error must not carry the DSN
		{"list, database down", pg, []string{"labs", "list"}, 1},
		{"list, database down, debug log", pg, []string{"--log-level", "debug", "labs", "list", "-o", "json"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSite(t, tt.config)
			res := s.run(tt.args...)
			if res.code != tt.want {
				t.Fatalf("want exit %d, got %s", tt.want, res)
			}
			if strings.Contains(res.out+res.err, password) {
				t.Fatalf("the password was printed:\n%s", res)
			}
			if strings.Contains(res.out, "postgres://") {
				t.Errorf("the DSN was printed:\n%s", res.out)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"--config", "--log-level", "labs", "reap", "config", "dev"}},
		{[]string{"reap", "--help"}, []string{"--once", "--dry-run", "--yes", "--output"}},
		{[]string{"labs", "launch", "--help"}, []string{"--learner", "--course", "--template", "--cloud", "--output"}},
		{[]string{"labs", "--help"}, []string{"launch", "list", "show", "heartbeat", "suspend", "resume", "delete"}},
		{[]string{"labs", "delete", "--help"}, []string{"--yes", "--force", "--dry-run"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := runCLI("", false, tt.args...)
			if res.code != 0 {
				t.Fatalf("want exit 0, got %s", res)
			}
			for _, w := range tt.want {
				if !strings.Contains(res.out, w) {
					t.Errorf("help lacks %q:\n%s", w, res.out)
				}
			}
		})
	}
}

// urfave/cli takes a flag usage's first `quoted` word for the value's placeholder in --help
// ("--once labplane serve" came of one): every backtick pair in a flag's usage must be a
// placeholder (FILE, FILE.svg), not quoted prose.
func TestFlagPlaceholders(t *testing.T) {
	placeholder := regexp.MustCompile("^[A-Z][A-Za-z0-9_.]*$")
	var walk func(path string, cmds []*ucli.Command)
	check := func(path string, flags []ucli.Flag) {
		for _, f := range flags {
			u, ok := f.(interface{ GetUsage() string })
			if !ok {
				continue
			}
			parts := strings.Split(u.GetUsage(), "`")
			for i := 1; i < len(parts); i += 2 {
				if !placeholder.MatchString(parts[i]) {
					t.Errorf("%s --%s: usage quotes %q, which --help would show as the value's name", path, f.Names()[0], parts[i])
				}
			}
		}
	}
	walk = func(path string, cmds []*ucli.Command) {
		for _, c := range cmds {
			check(path+" "+c.Name, c.Flags)
			walk(path+" "+c.Name, c.Subcommands)
		}
	}
	app := cli.NewApp(cli.IO{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard})
	check("labplane", app.Flags)
	walk("labplane", app.Commands)
}

func TestFlagsAfterTheLabID(t *testing.T) {
	s := newSite(t, goodConfig)
	st := s.open()
	before := addLab(t, st, labs.Lab{ID: "lab1", Learner: "ann", Course: "os101", Status: labs.Active})

	res := s.run("labs", "show", "lab1", "--output", "json")
	var view struct {
		ID     string       `json:"id"`
		Events []labs.Event `json:"events"`
	}
	if res.code != 0 || json.Unmarshal([]byte(res.out), &view) != nil || view.ID != "lab1" || len(view.Events) != 2 {
		t.Fatalf("show ID --output json: %s", res)
	}
	res = s.run("labs", "delete", "lab1", "--dry-run", "-o", "json")
	var dry struct {
		DryRun bool     `json:"dry_run"`
		Action string   `json:"action"`
		Lab    labs.Lab `json:"lab"`
	}
	if res.code != 0 || json.Unmarshal([]byte(res.out), &dry) != nil || !dry.DryRun || dry.Action != "delete" || dry.Lab.ID != "lab1" {
		t.Fatalf("delete ID --dry-run -o json: %s", res)
	}
	if res := s.run("labs", "suspend", "lab1", "--dry-run"); res.code != 0 || !strings.Contains(res.out, "dry run: would suspend lab lab1") {
		t.Fatalf("suspend ID --dry-run: %s", res)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"labs", "show", "lab1", "extra"}, "needs one lab ID"},
		{[]string{"labs", "show", "lab1", "--output", "json", "extra"}, "needs one lab ID"},
		{[]string{"labs", "show", "lab1", "--bogus"}, "bogus"},
		{[]string{"labs", "show", "lab1", "--output"}, "output"},
		{[]string{"labs", "resume", "lab1", "--force"}, "force"}, // resume has no --force
		{[]string{"labs", "show", "lab1", "-o", "yaml"}, `--output "yaml"`},
	} {
		if res := s.run(tt.args...); res.code != 2 || !strings.Contains(res.err, tt.want) {
			t.Errorf("%v: want exit 2 and %q, got %s", tt.args, tt.want, res)
		}
	}
	if after, err := st.GetLab(context.Background(), "lab1"); err != nil || after.Version != before.Version {
		t.Errorf("the lab was touched: %v version %d (was %d)", err, after.Version, before.Version)
	}
}

// A SQLite registry whose directory others may write to is refused with exit 2, naming the
// directory and the fix, and no file is made.
func TestRegistryInADirectoryOthersWriteExits2(t *testing.T) {
	s := newSite(t, goodConfig)
	if err := os.Chmod(s.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"labs", "list"}, {"reap", "--once", "--dry-run"}, {"runs", "list"}} {
		if res := s.run(args...); res.code != 2 || !strings.Contains(res.err, s.dir+" is writable by others (mode 0777)") ||
			!strings.Contains(res.err, "chmod 700 "+s.dir) {
			t.Errorf("%v: want exit 2 naming %s and the fix, got %s", args, s.dir, res)
		}
	}
	if exists(filepath.Join(s.dir, "labplane.db")) {
		t.Error("a registry was made")
	}
}

// TestLabsExtend: labs extend adds time to the budget of a lab's learner in its course (shown
// by labs show, recorded in the audit trail); a learner whose budget is spent cannot launch;
// a course with no usage_limit has no budget to extend, and bad input exits 2.
func TestLabsExtend(t *testing.T) {
	s := newSite(t, goodConfig+"policy:\n  courses:\n    os101:\n      usage_limit: 1h\n")
	st := s.open()
	addLab(t, st, labs.Lab{ID: "lab1", Learner: "ann", Course: "os101", Status: labs.Active, StackStatus: "CREATE_COMPLETE"})
	addLab(t, st, labs.Lab{ID: "lab2", Learner: "ann", Course: "os102", Status: labs.Active, StackStatus: "CREATE_COMPLETE"})
	// ann was active for 1h5m: a heartbeat every 5 minutes
	start := time.Now().Add(-2 * time.Hour)
	for i := 0; i <= 13; i++ {
		if _, err := st.Heartbeat(t.Context(), "lab1", start.Add(time.Duration(i)*labs.ActivityGap)); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"labs", "extend", "lab1"}, "needs --by"},
		{[]string{"labs", "extend", "lab1", "--by", "0s"}, "from 1s to 1000h"},
		{[]string{"labs", "extend", "lab1", "--by", "soon"}, "soon"},
		{[]string{"labs", "extend", "lab2", "--by", "1h"}, "course os102 has no usage_limit"},
		{[]string{"labs", "extend", "nosuch", "--by", "1h"}, "not found"},
		{[]string{"labs", "launch", "--learner", "ann", "--course", "os101"}, "has used 1h5m0s of the 1h0m0s allowed in course os101"},
	} {
		if res := s.run(bad.args...); res.code != 2 || !strings.Contains(res.err, bad.want) {
			t.Errorf("%v: want exit 2 and %q on stderr, got %s", bad.args, bad.want, res)
		}
	}
	if res := s.run("labs", "show", "lab1"); res.code != 0 || !strings.Contains(res.out, "time budget in the course: 1h5m0s used of 1h0m0s, 0s left (exhausted") {
		t.Errorf("show, the budget spent: %s", res)
	}

	res := s.run("labs", "extend", "lab1", "--by", "2h", "--output", "json")
	var got struct {
		Learner, Course string
		Budget          policy.BudgetView
	}
	if err := json.Unmarshal([]byte(res.out), &got); res.code != 0 || err != nil || got.Learner != "ann" || got.Course != "os101" ||
		got.Budget != (policy.BudgetView{LimitSeconds: 3 * 3600, UsedSeconds: 3900, LeftSeconds: 3*3600 - 3900}) {
		t.Fatalf("extend --by 2h: %+v (%v) %s", got, err, res)
	}
	res = s.run("labs", "show", "lab1")
	if res.code != 0 || !strings.Contains(res.out, "1h5m0s used of 3h0m0s, 1h55m0s left\n") || !strings.Contains(res.out, "added 2h0m0s to the time budget of ann in os101") {
		t.Errorf("show after the extension: %s", res)
	}
	if res := s.run("labs", "show", "lab2", "-o", "json"); res.code != 0 || strings.Contains(res.out, `"budget"`) {
		t.Errorf("a lab of a course with no usage_limit shows a budget: %s", res)
	}
}
