package cli_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/terraformbin"
)

// provisionProject is a project directory with inventories/<env>/environment.yml for each
// spec given; "MODULES" in a spec stands for the repository's provision/ directory.
func provisionProject(t *testing.T, specs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, spec := range specs {
		envDir := filepath.Join(dir, "inventories", name)
		if err := os.MkdirAll(envDir, 0o755); err != nil {
			t.Fatal(err)
		}
		spec = strings.ReplaceAll(spec, "MODULES", filepath.Join(moduleRoot(t), "provision"))
		if err := os.WriteFile(filepath.Join(envDir, "environment.yml"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(envDir, "guacd.asc"), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// specHead and specTail are what every spec here has: a release, settings and secrets.
const (
	specHead = `release: open-release-redwood.3
artifact: https://artifacts.example.com/edx-platform-{release}.tar.gz
artifact_checksum: sha256:https://artifacts.example.com/edx-platform-{release}.tar.gz.sha256
`
	specTail = `settings:
  lms_site_name: lms.example.com
  cms_site_name: studio.example.com
  guacd_apt_repository: deb https://apt.example.com/guacd bookworm main
  guacd_apt_key: guacd.asc
  guacd_version: 1.5.5-1
secrets:
  secret_key: {env: LABPLANE_SECRET_KEY}
`
)

// provisionedSpec takes its cloud and its name prefix.
const provisionedSpec = specHead + `provision:
  module: MODULES/examples/heat
  cloud: %s
  variables:
    name_prefix: %s
    tags: [labplane-cli-test]
    services:
      lms: {count: 2}
      cms: {count: 1}
      guacd: {count: 1}
` + specTail

const hostsSpec = specHead + `hosts:
  lms: [{name: lms-1, address: 10.0.0.10}]
  cms: [{name: cms-1, address: 10.0.0.40}]
  guacd: [{name: guacd-1, address: 10.0.0.70}]
` + specTail

// Bad usage and bad input that need no Terraform: exit 2, and nothing written.
func TestProvisionUsage(t *testing.T) {
	project := provisionProject(t, map[string]string{"fixed": hostsSpec})
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"provision", "nosuch", "plan"}, `no environment "nosuch" (have: fixed)`},
		{[]string{"provision", "fixed", "plan"}, "has no provision: section"},
		{[]string{"provision", "fixed"}, "usage: labplane provision ENV plan|apply|output|destroy"},
		{[]string{"provision", "fixed", "bogus"}, "usage: labplane provision ENV"},
		{[]string{"provision", "fixed", "plan", "--output", "yaml"}, `--output "yaml"`},
		{[]string{"provision", "fixed", "plan", "--nope"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		res := runCLI("", false, append([]string{"--project", project}, tt.args...)...)
		if res.code != 2 || !strings.Contains(res.err, tt.want) {
			t.Errorf("labplane %s: want exit 2 saying %q, got %s", strings.Join(tt.args, " "), tt.want, res)
		}
	}
	if _, err := os.Stat(filepath.Join(project, ".labplane")); err == nil {
		t.Error("bad input created the state directory")
	}
}

// labplane provision against the real Keystone + Heat, with debug logs: plan, apply (refused
// without a terminal or --yes, and when not confirmed), output, destroy; bad credentials; no
// password in any output, log or file of the state directory.
func TestProvisionAgainstRealHeat(t *testing.T) {
	if lease == nil {
		t.Skip("needs the local cloud (not with -short)")
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", lease.CloudsYAML())
	// the toolchain first, under its machine-wide lock, for as long as the build takes (a
	// busy machine building it in another package too): the commands below then find it ready
	if _, err := terraformbin.Ensure(t.Context(), terraformbin.Options{}); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("c%d", time.Now().UnixNano()%1e9)
	project := provisionProject(t, map[string]string{
		"dev":     fmt.Sprintf(provisionedSpec, "local-a", prefix),
		"nocloud": fmt.Sprintf(provisionedSpec, "nowhere", prefix+"x"),
		"full": specHead + `provision:
  module: MODULES/examples/openstack
  cloud: local-a
  variables:
    name_prefix: ` + prefix + `f
    ssh_allowed_cidrs: [192.0.2.0/24]
    image_name: debian-12
    default_flavor: m1.small
    ssh_public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq4h126ADqPo+s2PzuHTpiZsN+26Z3/48sGXnKNvkRl ansible@labplane
` + specTail,
	})
	var all strings.Builder
	run := func(wantCode int, in string, terminal bool, args ...string) result {
		t.Helper()
		res := runCLI(in, terminal, append([]string{"--project", project, "--log-level", "debug"}, args...)...)
		all.WriteString(res.out + res.err)
		if res.code != wantCode {
			t.Fatalf("labplane %s: want exit %d, got %s", strings.Join(args, " "), wantCode, res)
		}
		return res
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			runCLI("", false, "--project", project, "provision", "dev", "destroy", "--yes")
		}
	})

	res := run(0, "", false, "provision", "dev", "plan")
	if !strings.Contains(res.out, "1 to add, 0 to change, 0 to destroy") ||
		!strings.Contains(res.out, "create  module.environment.openstack_orchestration_stack_v1.nodes") ||
		!strings.Contains(res.out, "apply it with: labplane provision dev apply") {
		t.Errorf("plan:\n%s", res.out)
	}
	run(2, "", false, "provision", "dev", "apply")   // no terminal, no --yes
	run(2, "n\n", true, "provision", "dev", "apply") // not confirmed
	res = run(2, "", false, "provision", "dev", "output")
	if !strings.Contains(res.err, "nothing applied yet") || !strings.Contains(res.err, "run: labplane provision dev plan, then apply") {
		t.Errorf("output before apply: %s", res)
	}

	res = run(0, "y\n", true, "provision", "dev", "apply", "--output", "json") // confirmed at a terminal
	var applied struct {
		Add   int                                         `json:"add"`
		Hosts map[string][]struct{ Name, Address string } `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(res.out), &applied); err != nil {
		t.Fatalf("apply --output json: %v\n%s", err, res.out)
	}
	if applied.Add != 1 || len(applied.Hosts["lms"]) != 2 || applied.Hosts["lms"][1].Name != prefix+"-lms-2" ||
		applied.Hosts["guacd"][0].Address != "10.20.0.70" {
		t.Errorf("apply: %+v", applied)
	}
	if !strings.Contains(res.err, "Creation complete") {
		t.Errorf("no progress on stderr: %s", res.err)
	}
	run(2, "", false, "provision", "dev", "apply", "--yes") // the plan is spent

	res = run(0, "", false, "provision", "dev", "output")
	if !regexp.MustCompile(`(?m)^lms\s+`+prefix+`-lms-2\s+10\.20\.0\.11$`).MatchString(res.out) ||
		!regexp.MustCompile(`(?m)^cms\s+`+prefix+`-cms-1\s+10\.20\.0\.40$`).MatchString(res.out) {
		t.Errorf("output:\n%s", res.out)
	}
	res = run(0, "", false, "provision", "dev", "output", "-o", "json")
	if !strings.Contains(res.out, `"environment": "dev"`) || !strings.Contains(res.out, `"address": "10.20.0.11"`) {
		t.Errorf("output --output json:\n%s", res.out)
	}

	// provision -> deploy is one flow: the inventory is rendered from the hosts Terraform made
	res = run(0, "", false, "inventory", "render", "dev", "--stdout")
	for _, want := range []string{prefix + "-lms-2:\n", "ansible_host: 10.20.0.11", prefix + "-guacd-1:\n", "ansible_host: 10.20.0.70"} {
		if !strings.Contains(res.out, want) {
			t.Errorf("inventory render of a provisioned environment lacks %q:\n%s", want, res.out)
		}
	}

	res = run(2, "", false, "provision", "dev", "destroy") // shows the plan, then refuses without --yes
	if !strings.Contains(res.out, "destroy plan for dev") || !strings.Contains(res.out, "delete  module.environment.openstack_orchestration_stack_v1.nodes") {
		t.Errorf("destroy without --yes:\n%s", res)
	}
	// at a terminal (flags before the arguments work too): a line with the changes done of
	// the plan's, complete at the end, above the outcome
	pane := inTmux(t, fmt.Sprintf("%s --project %s provision --yes dev destroy", buildLabplane(t), project)).pane
	var final string
	waitUntil(t, "the destroy at a terminal to end", 5*time.Minute, func() bool { final = pane(); return strings.Contains(final, "EXIT=") })
	destroyed = true
	all.WriteString(final)
	t.Logf("destroy at a terminal:\n%s", strings.TrimSpace(final))
	if done := regexp.MustCompile(`(?m)^dev on local-a +changes +1/1 +\[=+\] +`+elapsedColumn).FindAllString(final, -1); len(done) != 1 ||
		!strings.Contains(final, "destroyed dev") || !strings.Contains(final, "1 destroyed") || !strings.Contains(final, "EXIT=0") {
		t.Errorf("destroy at a terminal: want the line of dev on local-a once, 1/1, the outcome and exit 0")
	}
	run(2, "", false, "provision", "dev", "output")
	if res := run(2, "", false, "inventory", "render", "dev"); !strings.Contains(res.err, "run: labplane provision dev plan, then apply") {
		t.Errorf("inventory render after destroy: %s", res)
	}
	if res := run(0, "", false, "provision", "dev", "destroy"); !strings.Contains(res.out, "nothing to destroy in dev") {
		t.Errorf("second destroy: %s", res)
	}

	// a cloud that is not in clouds.yaml: bad input, no state
	res = run(2, "", false, "provision", "nocloud", "plan")
	if !strings.Contains(res.err, `cloud "nowhere"`) || !strings.Contains(res.err, "does not exist in clouds.yaml") {
		t.Errorf("unknown cloud: %s", res)
	}
	if _, err := os.Stat(filepath.Join(project, ".labplane", "provision", "nocloud", "terraform.tfstate")); err == nil {
		t.Error("a state was written for a cloud that does not exist")
	}

	// the full example plans against Keystone; its apply fails on this cloud (no Nova, no
	// Neutron): exit 1, naming the resources and Terraform's messages
	run(0, "", false, "provision", "full", "plan")
	res = run(1, "", false, "provision", "full", "apply", "--yes")
	if !strings.Contains(res.err, "module.environment.module.network.openstack_networking_network_v2.this: Error creating OpenStack networking client") {
		t.Errorf("failed apply: %s", res)
	}

	state := filepath.Join(project, ".labplane")
	if st, err := os.Stat(state); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v %v", st, err)
	}
	raw, err := os.ReadFile(lease.CloudsYAML())
	if err != nil {
		t.Fatal(err)
	}
	passwords := regexp.MustCompile(`password:\s*(\S+)`).FindAllStringSubmatch(string(raw), -1)
	if len(passwords) == 0 {
		t.Fatal("no passwords in clouds.yaml to look for")
	}
	files := stateFiles(t, state)
	for _, m := range passwords {
		if strings.Contains(all.String(), m[1]) || strings.Contains(files, m[1]) {
			t.Error("a cloud password appears in the output, the logs or the state directory")
		}
	}
	if !strings.Contains(all.String(), "level=DEBUG") {
		t.Error("the run was meant to log at debug level")
	}
}

// stateFiles reads every regular file under dir.
func stateFiles(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		b.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
