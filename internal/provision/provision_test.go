package provision_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-exec/tfexec"

	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/provision"
	"github.com/labplane/labplane/internal/specfile"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// loadEnv loads a spec from testdata/inventories (local: the heat example; openstack: the
// network and compute modules).
func loadEnv(t *testing.T, name string) *envspec.Environment {
	t.Helper()
	env, err := envspec.Load(filepath.Join("testdata", "inventories"), name)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func open(t *testing.T, env *envspec.Environment, o provision.Options) *provision.Workspace {
	t.Helper()
	ws, err := provision.Open(env, t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// The commands a workspace builds: a plan saved to the workspace, applied exactly, under
// Terraform's lock; nothing else (no -var, no -target, no -auto-approve on a config).
func TestCommands(t *testing.T) {
	ws := open(t, loadEnv(t, "local"), provision.Options{Terraform: "/usr/bin/terraform", Environ: []string{}})
	plan := filepath.Join(ws.Dir(), provision.PlanFile)
	destroyPlan := filepath.Join(ws.Dir(), provision.DestroyPlanFile)
	tests := []struct {
		name      string
		got, want any
	}{
		{"init", ws.InitOptions(), []tfexec.InitOption{tfexec.Backend(true), tfexec.Get(true), tfexec.Upgrade(false)}},
		{"plan", ws.PlanOptions(false), []tfexec.PlanOption{tfexec.Out(plan), tfexec.Lock(true), tfexec.Refresh(true), tfexec.Destroy(false)}},
		{"plan -destroy", ws.PlanOptions(true), []tfexec.PlanOption{tfexec.Out(destroyPlan), tfexec.Lock(true), tfexec.Refresh(true), tfexec.Destroy(true)}},
		{"apply", ws.ApplyOptions(false), []tfexec.ApplyOption{tfexec.Lock(true), tfexec.DirOrPlan(plan)}},
		{"destroy", ws.ApplyOptions(true), []tfexec.ApplyOption{tfexec.Lock(true), tfexec.DirOrPlan(destroyPlan)}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

// Terraform's environment: PATH, HOME, proxies and OS_* from labplane's; the spec's cloud;
// the CLI configuration; nothing else (no TF_VAR_, no other secrets).
func TestChildEnv(t *testing.T) {
	env := loadEnv(t, "local")
	cwd := t.TempDir()
	t.Chdir(cwd)
	environ := []string{
		"PATH=/usr/bin", "HOME=/home/op", "HTTPS_PROXY=http://proxy:3128",
		"OS_CLOUD=someone-else", "OS_PASSWORD=hunter2", "OS_CLIENT_CONFIG_FILE=etc/clouds.yaml",
		"TF_VAR_password=secret", "AWS_SECRET_ACCESS_KEY=nope", "LABPLANE_CONFIG=x.yaml", "TF_LOG=TRACE",
	}
	ws := open(t, env, provision.Options{Terraform: "terraform", CLIConfig: "/cache/terraform.rc", Environ: environ})
	want := map[string]string{
		"PATH": "/usr/bin", "HOME": "/home/op", "HTTPS_PROXY": "http://proxy:3128",
		"OS_CLOUD":              "local-a", // the spec's provision.cloud wins
		"OS_PASSWORD":           "hunter2", // OS_* credentials pass through the environment only
		"OS_CLIENT_CONFIG_FILE": filepath.Join(cwd, "etc", "clouds.yaml"),
		"OS_DELAYED_AUTH":       "false",
		"CHECKPOINT_DISABLE":    "1",
		"TF_CLI_CONFIG_FILE":    "/cache/terraform.rc",
	}
	if got := ws.ChildEnv(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if p := tfexec.ProhibitedEnv(ws.ChildEnv()); len(p) > 0 {
		t.Errorf("terraform-exec refuses %v", p)
	}

	// a clouds.yaml in labplane's directory is found by its absolute path
	if err := os.WriteFile(filepath.Join(cwd, "clouds.yaml"), []byte("clouds: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ws = open(t, env, provision.Options{Environ: []string{"PATH=/usr/bin"}})
	if got := ws.ChildEnv()["OS_CLIENT_CONFIG_FILE"]; got != filepath.Join(cwd, "clouds.yaml") {
		t.Errorf("OS_CLIENT_CONFIG_FILE = %q", got)
	}
}

// The generated root module calls the spec's module by a relative path with its variables,
// template sequences escaped, and outputs its hosts.
func TestRootModule(t *testing.T) {
	env := loadEnv(t, "local")
	env.Provision.Variables["tags"] = []any{"literal ${not.an.expression}", "%{ if x }"}
	root := filepath.Join(t.TempDir(), "state", "provision", "local")
	ws, err := provision.Open(env, root, provision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ws.RootModule()
	if err != nil {
		t.Fatal(err)
	}
	// the module's path from the workspace differs per machine: compare the rest
	rel, err := filepath.Rel(root, env.Path(env.Provision.Module))
	if err != nil {
		t.Fatal(err)
	}
	got = bytes.ReplaceAll(got, []byte(rel), []byte("MODULE"))
	got = bytes.ReplaceAll(got, []byte(env.File), []byte("SPEC"))
	golden := filepath.Join("testdata", "main.tf.json.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("root module differs from %s (go test -update rewrites it):\n%s", golden, got)
	}
}

// Terraform's machine-readable UI, recorded from real runs: a Heat stack created, and an
// apply on a cloud without Nova or Neutron.
func TestUIStream(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "apply-heat.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	planned, counts, diags, applied, unfinished, told := provision.UIStream(raw, 7)
	stack := "openstack_orchestration_stack_v1.s"
	if want := []provision.Change{{Address: stack, Type: "openstack_orchestration_stack_v1", Action: "create"}}; !reflect.DeepEqual(planned, want) || !reflect.DeepEqual(applied, want) {
		t.Errorf("planned %v, applied %v", planned, applied)
	}
	if !slices.Equal(told, []string{stack + " done"}) {
		t.Errorf("told of %v", told)
	}
	if counts != (provision.Counts{Add: 1}) || len(diags) != 0 || len(unfinished) != 0 {
		t.Errorf("counts %v, diagnostics %v, unfinished %v", counts, diags, unfinished)
	}

	raw, err = os.ReadFile(filepath.Join("testdata", "apply-failed.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	planned, _, diags, applied, unfinished, told = provision.UIStream(raw, 1<<20)
	if len(planned) != 14 || len(applied) != 0 || len(unfinished) != 5 || len(diags) != 5 {
		t.Fatalf("planned %d, applied %d, unfinished %v, diagnostics %v", len(planned), len(applied), unfinished, diags)
	}
	if len(told) != 5 || !strings.HasSuffix(told[0], " failed") {
		t.Errorf("told of %v, want the 5 changes that failed", told)
	}
	d := diags[0]
	if d.Address != "openstack_compute_keypair_v2.ansible" || !strings.Contains(d.Summary, "No suitable endpoint") || d.Severity != "error" {
		t.Errorf("diagnostic %+v", d)
	}
}

// What Terraform says is related to the spec: provision.variables, the cloud.
func TestExplain(t *testing.T) {
	env := loadEnv(t, "local")
	ws := open(t, env, provision.Options{})
	tests := []struct {
		name  string
		op    string
		in    []provision.Diagnostic
		want  string // in the first diagnostic's summary or address
		bad   bool
		count int
	}{
		{"missing variable", "validate", []provision.Diagnostic{{Severity: "error", Summary: "Missing required argument",
			Detail: `The argument "services" is required, but no definition was found.`, File: "main.tf.json", Line: 4}},
			"provision.variables.services: required by the module", true, 1},
		{"unknown variable", "validate", []provision.Diagnostic{{Severity: "error", Summary: "Unsupported argument",
			Detail: `An argument named "flavour" is not expected here.`, File: "main.tf.json", Line: 9}},
			"provision.variables.flavour: the module ../../../../../provision/examples/heat has no such variable", true, 1},
		{"bad credentials", "plan", []provision.Diagnostic{
			{Severity: "error", Summary: "Expected HTTP response code [201 202] when accessing [POST http://127.0.0.1:25000/v3/auth/tokens], but got 401 instead",
				Address: `provider["registry.terraform.io/terraform-provider-openstack/openstack"]`},
			{Severity: "error", Summary: "Invalid provider configuration", Detail: "Provider ... requires explicit configuration."}},
			`cloud "local-a"`, true, 1},
		{"variable validation", "plan", []provision.Diagnostic{{Severity: "error", Summary: "Invalid value for variable",
			File: "../../../../../provision/examples/heat/variables.tf", Line: 30}}, "Invalid value for variable", true, 1},
		{"error in the module", "validate", []provision.Diagnostic{{Severity: "error", Summary: "Unsupported block type",
			File: "../../../../../provision/examples/heat/main.tf", Line: 3}}, "Unsupported block type", true, 1},
		{"failed create", "apply", []provision.Diagnostic{{Severity: "error", Summary: "Error creating OpenStack compute client",
			Address: "module.environment.openstack_compute_keypair_v2.ansible", File: "../x/main.tf", Line: 5}}, "Error creating", false, 1},
		{"warnings are not errors", "plan", []provision.Diagnostic{{Severity: "warning", Summary: "Deprecated"}}, "", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, bad := ws.Explain(tt.op, tt.in)
			if bad != tt.bad || len(got) != tt.count {
				t.Fatalf("bad %v (want %v), %d diagnostics %+v", bad, tt.bad, len(got), got)
			}
			if tt.count > 0 && !strings.Contains(got[0].Summary+got[0].Address, tt.want) {
				t.Errorf("got %+v, want %q in it", got[0], tt.want)
			}
			if tt.count > 0 && got[0].File != "" && !filepath.IsAbs(got[0].File) {
				t.Errorf("file %q is relative to the workspace", got[0].File)
			}
		})
	}
}

// An environment that lists its hosts has nothing to provision.
func TestOpenHostsEnvironment(t *testing.T) {
	env := loadEnv(t, "local")
	env.Provision = nil
	_, err := provision.Open(env, t.TempDir(), provision.Options{})
	if !errors.Is(err, provision.ErrBadInput) {
		t.Errorf("got %v", err)
	}
}

// Hosts reads the state, offline: nothing applied is ErrNotProvisioned; the output is
// validated like a spec's hosts.
func TestHostsFromState(t *testing.T) {
	ctx := context.Background()
	ws := open(t, loadEnv(t, "local"), provision.Options{}) // no terraform: Hosts needs none
	if _, err := ws.Hosts(ctx); !errors.Is(err, provision.ErrNotProvisioned) {
		t.Fatalf("no state: %v", err)
	}
	state := func(outputs string) {
		t.Helper()
		doc := `{"version": 4, "terraform_version": "1.11.4", "serial": 3, "lineage": "x", "outputs": ` + outputs + `, "resources": []}`
		if err := os.WriteFile(filepath.Join(ws.Dir(), provision.StateFile), []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	state(`{}`) // everything destroyed
	if _, err := ws.Hosts(ctx); !errors.Is(err, provision.ErrNotProvisioned) {
		t.Fatalf("no hosts output: %v", err)
	}
	state(`{"hosts": {"type": ["object", {}], "value": {
		"lms": [{"name": "a-lms-1", "address": "10.0.0.10"}, {"name": "a-lms-2", "address": "10.0.0.11"}],
		"cms": [{"name": "a-cms-1", "address": "10.0.0.40"}],
		"guacd": [{"name": "a-guacd-1", "address": "10.0.0.70", "private": "extra fields are ignored"}]}}}`)
	hosts, err := ws.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]platform.Host{
		"lms":   {{Name: "a-lms-1", Address: "10.0.0.10"}, {Name: "a-lms-2", Address: "10.0.0.11"}},
		"cms":   {{Name: "a-cms-1", Address: "10.0.0.40"}},
		"guacd": {{Name: "a-guacd-1", Address: "10.0.0.70"}},
	}
	if !reflect.DeepEqual(hosts, want) {
		t.Errorf("got %v", hosts)
	}
	state(`{"hosts": {"value": {"lms": [{"name": "a-lms-1", "address": ""}], "cms": [], "guacd": []}}}`)
	var cfgErr *specfile.Error
	if _, err := ws.Hosts(ctx); !errors.As(err, &cfgErr) || !strings.Contains(err.Error(), "terraform output hosts.lms[0].address") {
		t.Errorf("invalid hosts: %v", err)
	}
	state(`{"hosts": {"value": ["not", "a", "map"]}}`)
	if _, err := ws.Hosts(ctx); !errors.Is(err, provision.ErrBadInput) {
		t.Errorf("malformed hosts: %v", err)
	}
}

// Apply applies a saved plan or nothing: without one it runs no terraform at all.
func TestApplyWithoutPlan(t *testing.T) {
	ws := open(t, loadEnv(t, "local"), provision.Options{Terraform: "/nonexistent/terraform"})
	for _, apply := range []func(context.Context) (provision.Result, error){ws.Apply, ws.Destroy} {
		if _, err := apply(context.Background()); !errors.Is(err, provision.ErrNoPlan) {
			t.Errorf("got %v", err)
		}
	}
	if _, err := ws.SavedPlan(context.Background(), false); !errors.Is(err, provision.ErrNoPlan) {
		t.Errorf("saved plan: %v", err)
	}
}
