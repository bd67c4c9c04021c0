package inventory_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/inventory"
	"github.com/labplane/labplane/internal/platform"
)

// The example environments in the project's inventories/ render as their golden files
// (testdata/examples, the project's path written as PROJECT), and Ansible reads what they
// render: ansible-inventory lists each host in its service's group under openedx, with its
// address. production's hosts are what provision/examples/openstack's `hosts` output gives.
func TestExampleEnvironments(t *testing.T) {
	project, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	provisioned := map[string][]platform.Host{
		"lms":   {{Name: "production-lms-1", Address: "10.20.0.11"}, {Name: "production-lms-2", Address: "10.20.0.12"}},
		"cms":   {{Name: "production-cms-1", Address: "10.20.0.13"}},
		"guacd": {{Name: "production-guacd-1", Address: "10.20.0.14"}, {Name: "production-guacd-2", Address: "10.20.0.15"}},
	}
	for _, name := range []string{"staging", "production"} {
		t.Run(name, func(t *testing.T) {
			env, err := envspec.Load(filepath.Join(project, "inventories"), name)
			if err != nil {
				t.Fatal(err)
			}
			hosts := env.Hosts
			if env.Provision != nil {
				hosts = provisioned
			}
			out, err := inventory.Render(env, hosts)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "examples", name+".hosts.yml")
			portable := bytes.ReplaceAll(out, []byte(project), []byte("PROJECT"))
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, portable, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/inventory -update)", err)
			}
			if !bytes.Equal(portable, want) {
				t.Errorf("inventories/%s renders otherwise than %s (go test -update rewrites it):\n%s", name, golden, portable)
			}
			if testing.Short() {
				t.Skip("ansible-inventory: not with -short")
			}
			checkWithAnsible(t, out, hosts)
		})
	}
}

// checkWithAnsible runs ansible-inventory --list on an inventory and checks its groups and
// hosts.
func checkWithAnsible(t *testing.T, inv []byte, hosts map[string][]platform.Host) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "hosts.yml")
	if err := os.WriteFile(file, inv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := apt.Ensure(t.Context(), os.Stderr, ansible.Packages...); err != nil {
		t.Fatal(err)
	}
	bin, err := ansible.LookPath("ansible-inventory")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, "-i", file, "--list")
	cmd.Env = append(os.Environ(), "ANSIBLE_INVENTORY_UNPARSED_FAILED=True", "ANSIBLE_HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-inventory: %v\n%s", err, stderr.String())
	}
	var listed map[string]struct {
		Hosts    []string                  `json:"hosts"`
		Children []string                  `json:"children"`
		HostVars map[string]map[string]any `json:"hostvars"`
	}
	if err := json.Unmarshal(stdout, &listed); err != nil {
		t.Fatalf("ansible-inventory --list: %v\n%s", err, stdout)
	}
	for svc, want := range hosts {
		if !slices.Contains(listed[inventory.ParentGroup].Children, svc) {
			t.Errorf("ansible-inventory: group %s is not under %s: %v", svc, inventory.ParentGroup, listed[inventory.ParentGroup].Children)
		}
		for _, h := range want {
			if !slices.Contains(listed[svc].Hosts, h.Name) {
				t.Errorf("ansible-inventory: host %s is not in group %s: %v", h.Name, svc, listed[svc].Hosts)
			}
			if got := listed["_meta"].HostVars[h.Name]["ansible_host"]; got != h.Address {
				t.Errorf("ansible-inventory: %s's ansible_host = %v, want %s", h.Name, got, h.Address)
			}
		}
	}
}
