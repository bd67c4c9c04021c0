package provision_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/dev/syncbuffer"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/inventory"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/provision"
	"github.com/labplane/labplane/internal/terraformbin"
)

// The tests here run the real terraform and provider against the local cloud's real Keystone
// and Heat (no Nova, no Neutron).

const testTag = "labplane-provision-test"

// heatEnv is the local environment (the heat example) with a name of its own, so that runs
// and tests never share a stack; tags find its stacks.
func heatEnv(t *testing.T) (*envspec.Environment, string) {
	t.Helper()
	if lease == nil {
		t.Skip("needs the local cloud (not with -short)")
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", lease.CloudsYAML())
	env := loadEnv(t, "local")
	prefix := fmt.Sprintf("t%d", time.Now().UnixNano()%1e9)
	env.Provision.Variables["name_prefix"] = prefix
	env.Provision.Variables["tags"] = []any{testTag, prefix}
	return env, prefix
}

// localHeat is the local cloud's orchestration API, to see what Terraform did.
func localHeat(t *testing.T) *heat.Heat {
	t.Helper()
	var discard strings.Builder
	h, err := heat.Open(context.Background(), heat.Options{Name: "local-a", ConfigFile: lease.CloudsYAML(), Logger: testLogger(t, &discard)})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// stacks lists the stacks tagged with the test's prefix.
func stacks(t *testing.T, h *heat.Heat, prefix string) []string {
	t.Helper()
	list, err := h.List(context.Background(), testTag, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list {
		if s.Gone() {
			continue // Heat's list shows a deleted stack for a moment after its delete
		}
		names = append(names, s.Name+" "+s.Status)
	}
	return names
}

// deleteStacks removes the test's stacks Terraform does not know of (cleanup after a
// cancelled create: the provider records a stack only once it is complete).
func deleteStacks(t *testing.T, h *heat.Heat, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := h.List(ctx, testTag, prefix)
	if err != nil {
		t.Error(err)
		return
	}
	for _, s := range list {
		if _, err := h.Delete(ctx, s.Name, s.ID); err != nil {
			t.Errorf("cleanup: delete %s: %v", s.Name, err)
		}
	}
}

// cloudPasswords are the passwords in the clouds.yaml the test gives Terraform
// (OS_CLIENT_CONFIG_FILE: a lease's).
func cloudPasswords(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(os.Getenv("OS_CLIENT_CONFIG_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`password:\s*(\S+)`).FindAllStringSubmatch(string(raw), -1) {
		out = append(out, strings.Trim(m[1], `"'`))
	}
	if len(out) == 0 {
		t.Fatal("no passwords in clouds.yaml to look for")
	}
	return out
}

// assertNoSecrets fails if a cloud password is in text or in a file of the workspace (the
// provider binary, a link into the mirror, aside).
func assertNoSecrets(t *testing.T, ws *provision.Workspace, text string) {
	t.Helper()
	passwords := cloudPasswords(t)
	for _, p := range passwords {
		if strings.Contains(text, p) {
			t.Error("a cloud password appears in the output or the logs")
		}
	}
	err := filepath.WalkDir(ws.Dir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, p := range passwords {
			if bytes.Contains(data, []byte(p)) {
				t.Errorf("a cloud password is in %s", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// realRun is a workspace of env on a real cloud, its logs and progress kept for the secret
// check; its steps fail the test on an error and log how long they took.
type realRun struct {
	t        *testing.T
	tc       terraformbin.Toolchain
	env      *envspec.Environment
	ws       *provision.Workspace
	logs     strings.Builder
	progress syncbuffer.Buffer
}

func newRealRun(t *testing.T, env *envspec.Environment) *realRun {
	t.Helper()
	r := &realRun{t: t, tc: toolchain(t), env: env}
	r.ws = open(t, env, provision.Options{Terraform: r.tc.Terraform, CLIConfig: r.tc.CLIConfig, Logger: testLogger(t, &r.logs), Progress: &r.progress})
	return r
}

// step runs one of the run's operations (op: its name), fails the test on its error, and logs
// how long it took.
func step[T any](r *realRun, op string, f func(context.Context) (T, error)) T {
	r.t.Helper()
	start := time.Now()
	v, err := f(context.Background())
	if err != nil {
		r.t.Fatalf("%s: %v", op, err)
	}
	r.t.Logf("%s: %.1fs", op, time.Since(start).Seconds())
	return v
}

// plan saves a plan.
func (r *realRun) plan() provision.Summary {
	r.t.Helper()
	return step(r, "plan", r.ws.Plan)
}

// apply applies the saved plan, which adds n resources, and checks the hosts it returns, the
// resources applied, and the progress of created (a resource's address); then the hosts in
// the state, terraform output and the inventory.
func (r *realRun) apply(want map[string][]platform.Host, n int, created string) {
	r.t.Helper()
	res := step(r, "apply", r.ws.Apply)
	if !reflect.DeepEqual(res.Hosts, want) || res.Add != n || len(res.Applied) != n {
		r.t.Errorf("apply: %+v", res)
	}
	if !strings.Contains(r.progress.String(), created+": Creation complete") {
		r.t.Errorf("progress: %s", r.progress.String())
	}
	assertHostsEverywhere(r.t, r.env, r.ws, want)
}

// destroy checks that a second plan has nothing to do (the provider reads back what it made
// as it made it), then destroys the n resources: no hosts are left, the state holds no
// resource, and no cloud password is in the logs, the progress or the workspace.
func (r *realRun) destroy(n int) {
	r.t.Helper()
	ctx := context.Background()
	if s, err := r.ws.Plan(ctx); err != nil || len(s.Changes) != 0 || s.Add+s.Change+s.Remove != 0 {
		r.t.Errorf("second plan: %+v %v", s, err)
	}
	if s, err := r.ws.PlanDestroy(ctx); err != nil || s.Remove != n || !s.Destroy {
		r.t.Fatalf("destroy plan: %+v %v", s, err)
	}
	res := step(r, "destroy", r.ws.Destroy)
	if res.Remove != n || res.Hosts != nil {
		r.t.Errorf("destroy: %+v", res)
	}
	if _, err := r.ws.Hosts(ctx); !errors.Is(err, provision.ErrNotProvisioned) {
		r.t.Errorf("hosts after destroy: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(r.ws.Dir(), provision.StateFile))
	if err != nil {
		r.t.Fatal(err)
	}
	var state struct {
		Resources []json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(raw, &state); err != nil {
		r.t.Fatal(err)
	}
	if len(state.Resources) != 0 {
		r.t.Errorf("the state still has %d resources after the destroy", len(state.Resources))
	}
	assertNoSecrets(r.t, r.ws, r.logs.String()+r.progress.String())
}

// plan -> apply -> output -> inventory -> destroy on the real Heat: the hosts the module
// outputs, read back from the stack, become the inventory; the stack is gone afterwards; no
// password anywhere; state and plans 0600.
func TestHeatProvision(t *testing.T) {
	env, prefix := heatEnv(t)
	r := newRealRun(t, env)
	h := localHeat(t)
	ctx := context.Background()
	t.Cleanup(func() { deleteStacks(t, h, prefix) })

	s := r.plan()
	stack := "module.environment.openstack_orchestration_stack_v1.nodes"
	if want := []provision.Change{{Address: stack, Type: "openstack_orchestration_stack_v1", Action: "create"}}; !reflect.DeepEqual(s.Changes, want) || s.Add != 1 {
		t.Fatalf("plan: %+v", s)
	}
	if saved, err := r.ws.SavedPlan(ctx, false); err != nil || !reflect.DeepEqual(saved, s) {
		t.Errorf("saved plan: %+v %v", saved, err)
	}
	if got := stacks(t, h, prefix); len(got) != 0 {
		t.Fatalf("the plan created %v", got)
	}
	assertMode(t, r.ws.Dir(), 0o700)
	assertMode(t, filepath.Join(r.ws.Dir(), provision.PlanFile), 0o600)

	r.apply(wantHosts(prefix), 1, stack)
	if got := stacks(t, h, prefix); !reflect.DeepEqual(got, []string{prefix + "-nodes CREATE_COMPLETE"}) {
		t.Errorf("stacks: %v", got)
	}
	if _, err := r.ws.Apply(ctx); !errors.Is(err, provision.ErrNoPlan) {
		t.Errorf("a plan applies once: %v", err)
	}
	assertMode(t, filepath.Join(r.ws.Dir(), provision.StateFile), 0o600)

	r.destroy(1)
	if got := stacks(t, h, prefix); len(got) != 0 {
		t.Errorf("after destroy: %v", got)
	}
}

// wantHosts are the hosts of the local environments (testdata/inventories/local and servers:
// lms 2, cms 1, guacd 1 in 10.20.0.0/24) named after prefix.
func wantHosts(prefix string) map[string][]platform.Host {
	return map[string][]platform.Host{
		"lms":   {{Name: prefix + "-lms-1", Address: "10.20.0.10"}, {Name: prefix + "-lms-2", Address: "10.20.0.11"}},
		"cms":   {{Name: prefix + "-cms-1", Address: "10.20.0.40"}},
		"guacd": {{Name: prefix + "-guacd-1", Address: "10.20.0.70"}},
	}
}

// assertHostsEverywhere checks the hosts of an applied workspace three ways: the state
// (offline), terraform output, and the inventory rendered from a fresh workspace handle with
// no terraform at all (what inventory render does): each service's group, its hosts' names
// and ansible_host.
func assertHostsEverywhere(t *testing.T, env *envspec.Environment, ws *provision.Workspace, want map[string][]platform.Host) {
	t.Helper()
	ctx := context.Background()
	offline, err := ws.Hosts(ctx)
	if err != nil || !reflect.DeepEqual(offline, want) {
		t.Errorf("hosts: %v %v", offline, err)
	}
	out, err := ws.Output(ctx)
	if err != nil || !reflect.DeepEqual(out, want) {
		t.Errorf("output: %v %v", out, err)
	}
	cold, err := provision.Open(env, ws.Dir(), provision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := cold.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Render(env, hosts)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		All struct {
			Children map[string]struct {
				Children map[string]struct {
					Hosts map[string]struct {
						AnsibleHost string `yaml:"ansible_host"`
					} `yaml:"hosts"`
				} `yaml:"children"`
			} `yaml:"children"`
		} `yaml:"all"`
	}
	if err := yaml.Unmarshal(inv, &doc); err != nil {
		t.Fatal(err)
	}
	got, wantInv := map[string]map[string]string{}, map[string]map[string]string{}
	for service, g := range doc.All.Children[inventory.ParentGroup].Children {
		got[service] = map[string]string{}
		for name, h := range g.Hosts {
			got[service][name] = h.AnsibleHost
		}
	}
	for service, hs := range want {
		wantInv[service] = map[string]string{}
		for _, h := range hs {
			wantInv[service][h.Name] = h.Address
		}
	}
	if !reflect.DeepEqual(got, wantInv) {
		t.Errorf("inventory: %v, want %v\n%s", got, wantInv, inv)
	}
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
	}
}

// The openstack example (network and compute modules) plans against the local Keystone: the
// provider authenticates, and a plan of new resources needs no other service. Applying it
// fails on this cloud (no Nova, no Neutron): the error names each resource and Terraform's
// message, it is a failure (exit 1), not bad input, and nothing is in the state.
func TestOpenStackExample(t *testing.T) {
	if lease == nil {
		t.Skip("needs the local cloud (not with -short)")
	}
	tc := toolchain(t)
	t.Setenv("OS_CLIENT_CONFIG_FILE", lease.CloudsYAML())
	ctx := context.Background()
	var logs strings.Builder
	ws := open(t, loadEnv(t, "openstack"), provision.Options{Terraform: tc.Terraform, CLIConfig: tc.CLIConfig, Logger: testLogger(t, &logs)})
	s, err := ws.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, c := range s.Changes {
		if c.Action != "create" {
			t.Errorf("%s: %s", c.Address, c.Action)
		}
		got[c.Type]++
	}
	want := map[string]int{
		"openstack_compute_keypair_v2":          1,
		"openstack_networking_network_v2":       1,
		"openstack_networking_subnet_v2":        1,
		"openstack_networking_secgroup_v2":      3,
		"openstack_networking_secgroup_rule_v2": 1 + 3 + 1, // ssh from one network, http on 3 ports, guacd
		"openstack_compute_instance_v2":         4,         // lms 2, cms 1, guacd 1
	}
	if !reflect.DeepEqual(got, want) || s.Add != 15 {
		t.Errorf("planned %v (add %d), want %v", got, s.Add, want)
	}
	for _, addr := range []string{`module.environment.module.compute.openstack_compute_instance_v2.host["lms-2"]`,
		"module.environment.module.network.openstack_networking_subnet_v2.this"} {
		if !containsChange(s.Changes, addr) {
			t.Errorf("no %s in the plan", addr)
		}
	}

	_, err = ws.Apply(ctx)
	var perr *provision.Error
	if !errors.As(err, &perr) || errors.Is(err, provision.ErrBadInput) || perr.Op != "apply" {
		t.Fatalf("apply: want a failure of the job, got %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "module.environment.module.network.openstack_networking_network_v2.this: Error creating OpenStack networking client: No suitable endpoint") ||
		!strings.Contains(msg, "module.environment.openstack_compute_keypair_v2.ansible: Error creating OpenStack compute client") {
		t.Errorf("the error does not name the resources and Terraform's messages:\n%s", msg)
	}
	if hosts, err := ws.Hosts(ctx); !errors.Is(err, provision.ErrNotProvisioned) {
		t.Errorf("hosts after a failed apply: %v %v", hosts, err)
	}
	assertNoSecrets(t, ws, logs.String()+msg)
}

func containsChange(changes []provision.Change, addr string) bool {
	for _, c := range changes {
		if c.Address == addr {
			return true
		}
	}
	return false
}

// Bad credentials and an unknown cloud: exit 2's error naming the cloud, no state, no plan,
// no password shown.
func TestBadCredentials(t *testing.T) {
	env, _ := heatEnv(t)
	tc := toolchain(t)
	raw, err := os.ReadFile(lease.CloudsYAML())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Clouds map[string]map[string]any `yaml:"clouds"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	bad := map[string]any{}
	for k, v := range doc.Clouds["local-a"] {
		bad[k] = v
	}
	auth := map[string]any{}
	for k, v := range doc.Clouds["local-a"]["auth"].(map[string]any) {
		auth[k] = v
	}
	auth["password"] = "not-the-password"
	bad["auth"] = auth
	doc.Clouds["wrong-password"] = bad
	clouds := filepath.Join(t.TempDir(), "clouds.yaml")
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(clouds, out, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", clouds)

	for cloudName, want := range map[string]string{
		"wrong-password": "got 401",
		"nowhere":        "cloud nowhere does not exist in clouds.yaml",
	} {
		t.Run(cloudName, func(t *testing.T) {
			env.Provision.Cloud = cloudName
			var logs strings.Builder
			ws := open(t, env, provision.Options{Terraform: tc.Terraform, CLIConfig: tc.CLIConfig, Logger: testLogger(t, &logs)})
			_, err := ws.Plan(context.Background())
			if !errors.Is(err, provision.ErrBadInput) || !strings.Contains(err.Error(), want) ||
				!strings.Contains(err.Error(), fmt.Sprintf("cloud %q", cloudName)) {
				t.Fatalf("want bad input saying %q about cloud %s, got %v", want, cloudName, err)
			}
			if strings.Contains(err.Error(), "Invalid provider configuration") {
				t.Errorf("Terraform's generic follow-up message was kept: %v", err)
			}
			assertNoState(t, ws)
			assertNoSecrets(t, ws, logs.String()+err.Error())
		})
	}
}

// A plan is stale once the spec's variables change: Apply refuses it and runs nothing.
func TestStalePlan(t *testing.T) {
	env, _ := heatEnv(t)
	tc := toolchain(t)
	ws := open(t, env, provision.Options{Terraform: tc.Terraform, CLIConfig: tc.CLIConfig})
	ctx := context.Background()
	if _, err := ws.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	env.Provision.Variables["cidr"] = "10.99.0.0/24"
	if _, err := ws.Apply(ctx); !errors.Is(err, provision.ErrStalePlan) {
		t.Fatalf("want a stale plan, got %v", err)
	}
	assertNoStateFile(t, ws)

	// a module's file changed since the plan: stale too
	env.Provision.Variables["cidr"] = "10.20.0.0/24"
	env.Provision.Module = copyModule(t, env)
	if _, err := ws.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(env.Path(env.Provision.Module), "outputs.tf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "# changed")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Apply(ctx); !errors.Is(err, provision.ErrStalePlan) {
		t.Fatalf("want a stale plan after a module change, got %v", err)
	}
	assertNoStateFile(t, ws)
}

func assertNoStateFile(t *testing.T, ws *provision.Workspace) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(ws.Dir(), provision.StateFile)); err == nil {
		t.Error("a stale plan was applied: the state was written")
	}
}

// copyModule copies env's module to a temporary directory and returns its absolute path.
func copyModule(t *testing.T, env *envspec.Environment) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(env.Path(env.Provision.Module))); err != nil {
		t.Fatal(err)
	}
	return dir
}

// An apply cancelled while Heat creates the stack: Terraform is interrupted and stops
// cleanly, the error says which resource was being created, and the next plan works (no
// stale lock). The provider records a stack only once it is complete, so the interrupted
// stack is not in the state: the next plan creates it again, and the test deletes the
// interrupted one through the Heat API.
func TestCancelledApply(t *testing.T) {
	env, prefix := heatEnv(t)
	tc := toolchain(t)
	h := localHeat(t)
	env.Provision.Variables["create_wait_secs"] = 60
	progress := &syncbuffer.Buffer{}
	ws := open(t, env, provision.Options{Terraform: tc.Terraform, CLIConfig: tc.CLIConfig, Progress: progress})
	t.Cleanup(func() { deleteStacks(t, h, prefix) })
	if _, err := ws.Plan(context.Background()); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil && !strings.Contains(progress.String(), "Creating...") {
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(3 * time.Second) // Heat is creating the stack
		cancel()
	}()
	start := time.Now()
	_, err := ws.Apply(ctx)
	took := time.Since(start)
	var perr *provision.Error
	if !errors.Is(err, context.Canceled) || !errors.As(err, &perr) {
		t.Fatalf("want an interrupted apply, got %v", err)
	}
	if !reflect.DeepEqual(perr.Unfinished, []string{"module.environment.openstack_orchestration_stack_v1.nodes"}) {
		t.Errorf("unfinished: %v (%v)", perr.Unfinished, err)
	}
	if took > 45*time.Second {
		t.Errorf("the interrupted apply took %v: Terraform did not stop on the interrupt", took)
	}
	t.Logf("interrupted after %v: %v", took.Round(time.Millisecond), err)
	if _, err := os.Stat(filepath.Join(ws.Dir(), ".terraform.tfstate.lock.info")); err == nil {
		t.Error("the state lock's info file was left behind")
	}

	env.Provision.Variables["create_wait_secs"] = 0
	s, err := ws.Plan(context.Background())
	if err != nil {
		t.Fatalf("plan after the interrupted apply: %v", err)
	}
	if s.Add != 1 {
		t.Errorf("plan after the interrupted apply: %+v", s)
	}
	if got := stacks(t, h, prefix); len(got) != 1 {
		t.Errorf("stacks after the interrupt: %v", got)
	}
}
