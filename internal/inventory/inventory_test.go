package inventory_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/inventory"
	"github.com/labplane/labplane/internal/platform"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The golden inventories are the rendered inventories of testdata/inventories/*, with the
// absolute path of testdata written as TESTDATA.
func TestRenderGolden(t *testing.T) {
	inv, err := filepath.Abs("testdata/inventories")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"staging", "vaulted"} {
		t.Run(name, func(t *testing.T) {
			env, err := envspec.Load(inv, name)
			if err != nil {
				t.Fatal(err)
			}
			out, err := inventory.Render(env, env.Hosts)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := inventory.Render(env, env.Hosts)
			if !bytes.Equal(out, again) {
				t.Error("two renders of one spec differ")
			}
			out = bytes.ReplaceAll(out, []byte(filepath.Dir(inv)), []byte("TESTDATA"))
			golden := filepath.Join("testdata", name+".hosts.yml")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/inventory -update)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("rendered inventory differs from %s (go test -update rewrites it):\n%s", golden, out)
			}
		})
	}
}

// What Ansible reads: the groups, the hosts, the variables, and secrets only as lookups.
func TestRenderStructure(t *testing.T) {
	t.Setenv("STAGING_SECRET_KEY", "s3cr3t-value")
	inv, _ := filepath.Abs("testdata/inventories")
	env, err := envspec.Load(inv, "staging")
	if err != nil {
		t.Fatal(err)
	}
	out, err := inventory.Render(env, env.Hosts)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("s3cr3t-value")) {
		t.Fatal("the inventory holds a secret's value")
	}
	type group struct {
		Hosts    map[string]map[string]any `yaml:"hosts"`
		Vars     map[string]any            `yaml:"vars"`
		Children map[string]group          `yaml:"children"`
	}
	var parsed struct{ All group }
	if err := yaml.Unmarshal(out, &parsed); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, out)
	}
	openedx := parsed.All.Children[inventory.ParentGroup]
	for svc, hosts := range map[string][]string{"lms": {"lms-1", "lms-2"}, "cms": {"cms-1"}, "guacd": {"guacd-1"}} {
		g, ok := openedx.Children[svc]
		if !ok {
			t.Fatalf("no %s group under openedx", svc)
		}
		for _, h := range hosts {
			if g.Hosts[h]["ansible_host"] == nil {
				t.Errorf("%s: host %s has no ansible_host", svc, h)
			}
		}
	}
	if got := openedx.Vars["openedx_secret_key"]; got != "{{ lookup('ansible.builtin.env', 'STAGING_SECRET_KEY') }}" {
		t.Errorf("openedx_secret_key = %v", got)
	}
	if got := openedx.Vars["openedx_artifact"]; got != "https://artifacts.example.com/edx-platform-olive.1.tar.gz" {
		t.Errorf("openedx_artifact = %v", got)
	}
	if got := openedx.Children["lms"].Vars["lms_port"]; got != 80 {
		t.Errorf("lms_port = %#v, want the number 80", got)
	}
	if got := parsed.All.Vars["ansible_ssh_common_args"]; got != "-o StrictHostKeyChecking=accept-new" {
		t.Errorf("ansible_ssh_common_args = %v", got)
	}
	if got := parsed.All.Vars["ansible_control_path_dir"]; got != filepath.Join(inv, "staging", "cp") {
		t.Errorf("ansible_control_path_dir = %v, want the spec's relative cp in its directory", got)
	}
}

func TestRenderRefusesBadHosts(t *testing.T) {
	inv, _ := filepath.Abs("testdata/inventories")
	env, err := envspec.Load(inv, "staging")
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string][]platform.Host{"lms": {{Name: "lms-1", Address: "10.0.0.11"}}, "cms": {{Name: "cms-1", Address: "not an address"}}}
	_, err = inventory.Render(env, hosts)
	for _, want := range []string{"hosts.guacd: at least one host is required", `hosts.cms[0].address: "not an address"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
}

// Write replaces the file whole: no temporary file is left, and a failed render leaves the
// previous inventory as it was.
func TestWriteAtomically(t *testing.T) {
	src, _ := filepath.Abs("testdata/inventories/vaulted/environment.yml")
	dir := filepath.Join(t.TempDir(), "inventories", "vaulted")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"environment.yml", "secrets.vault.yml", "guacd-repository.asc"} {
		b, _ := os.ReadFile(filepath.Join(filepath.Dir(src), f))
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env, err := envspec.Load(filepath.Dir(dir), "vaulted")
	if err != nil {
		t.Fatal(err)
	}
	path, err := inventory.Write(env, env.Hosts)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(path)
	if _, err := inventory.Write(env, map[string][]platform.Host{}); err == nil {
		t.Fatal("Write with no hosts succeeded")
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, first) {
		t.Error("a failed Write changed the inventory")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
