package deploy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/deploy"
	"github.com/labplane/labplane/internal/envspec"
)

// The ansible-playbook command a deploy makes, without running it.
func TestPlaybook(t *testing.T) {
	dir, env := writeEnvironment(t, map[string]string{
		"environment.yml": `release: r7
artifact: https://a.example/edx-platform-{release}.tar.gz
artifact_checksum: sha256:https://a.example/edx-platform-{release}.tar.gz.sha256
` + platformSpec + `rollout: {serial: "1"}
`,
	})
	d := deploy.Deployer{Project: "/srv/labplane"}
	for _, c := range []struct {
		release string
		want    []string
		not     []string
	}{
		{"", []string{`"openedx_serial":"1"`, "--extra-vars=@" + filepath.Join(dir, "vault.yml"),
			"--vault-password-file=" + filepath.Join(dir, "pass"), "--inventory=/inv/hosts.yml", "/srv/labplane/playbooks/site.yml"},
			[]string{"openedx_release", "not-a-real-password"}},
		// another release (a rollback, a promotion): its version and artifact override the
		// inventory's, marked for Ansible as text it must not template
		{"r6", []string{`"openedx_release":{"__ansible_unsafe":"r6"}`, `"openedx_artifact":{"__ansible_unsafe":"https://a.example/edx-platform-r6.tar.gz"}`,
			`"openedx_artifact_checksum":{"__ansible_unsafe":"sha256:https://a.example/edx-platform-r6.tar.gz.sha256"}`}, nil},
	} {
		p := d.Playbook(deploy.Request{Env: env, Inventory: "/inv/hosts.yml", Release: c.release})
		args, err := p.Command()
		if err != nil {
			t.Fatal(err)
		}
		line := strings.Join(args, " ")
		for _, w := range c.want {
			if !strings.Contains(line, w) {
				t.Errorf("release %q: command %q lacks %q", c.release, line, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(line, n) {
				t.Errorf("release %q: command %q has %q", c.release, line, n)
			}
		}
		if p.Dir != "/srv/labplane" || p.Env["ANSIBLE_ROLES_PATH"] != "/srv/labplane/roles" {
			t.Errorf("dir %q env %v", p.Dir, p.Env)
		}
	}
}

// An artifact on this machine is checked against the spec's checksum before anything runs.
func TestLocalArtifactChecksum(t *testing.T) {
	artifact := []byte("not really a tarball")
	sum := sha256.Sum256(artifact)
	_, env := writeEnvironment(t, map[string]string{
		"edx-platform-r7.tar.gz":        string(artifact),
		"edx-platform-r8.tar.gz":        "tampered",
		"edx-platform-r7.tar.gz.sha256": hex.EncodeToString(sum[:]) + "  edx-platform-r7.tar.gz\n",
		"edx-platform-r8.tar.gz.sha256": hex.EncodeToString(sum[:]) + "  edx-platform-r8.tar.gz\n",
		"environment.yml": `release: r7
artifact: edx-platform-{release}.tar.gz
artifact_checksum: sha256:edx-platform-{release}.tar.gz.sha256
` + platformSpec + ``,
	})
	// no registry: a deploy refused before anything is recorded must not reach it
	d := deploy.Deployer{Project: "/srv/labplane", Ansible: "/nonexistent/ansible-playbook"}
	_, err := d.Deploy(t.Context(), deploy.Request{Env: env, Inventory: "/inv/hosts.yml", Release: "r8"})
	var bad *deploy.BadInputError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), "its sha256 is ") || !strings.Contains(err.Error(), "nothing was deployed") {
		t.Errorf("deploy of a tampered artifact: %v", err)
	}
	// the right one passes the check, and stops at the next (no ansible-playbook there)
	_, err = d.Deploy(t.Context(), deploy.Request{Env: env, Inventory: "/inv/hosts.yml"})
	if err == nil || strings.Contains(err.Error(), "sha256") {
		t.Errorf("deploy of the artifact its checksum names: %v", err)
	}
}

// platformSpec is the part of the specs below that they share: the hosts, the settings and a
// secret from the vault file writeEnvironment writes.
const platformSpec = `hosts:
  lms: [{name: l, address: 10.0.0.1}]
  cms: [{name: c, address: 10.0.0.2}]
  guacd: [{name: g, address: 10.0.0.3}]
settings: {lms_site_name: l.example, cms_site_name: c.example, guacd_apt_repository: "deb http://r.example ./",
  guacd_apt_key: guacd.asc, guacd_version: 1.5.5-1}
secrets: {secret_key: {vault: vault_secret_key}, vault_file: vault.yml, vault_password_file: pass}
`

// writeEnvironment writes the files of an environment "prod" (environment.yml among them), with
// a vault file and its password file, and loads its spec.
func writeEnvironment(t *testing.T, files map[string]string) (dir string, env *envspec.Environment) {
	t.Helper()
	files["vault.yml"], files["pass"] = "$ANSIBLE_VAULT;1.1;AES256\n", "not-a-real-password\n"
	files["guacd.asc"] = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n"
	inv := filepath.Join(t.TempDir(), "inventories")
	dir = filepath.Join(inv, "prod")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env, err := envspec.Load(inv, "prod")
	if err != nil {
		t.Fatal(err)
	}
	return dir, env
}

// The playbooks and roles pass ansible-lint's production profile.
func TestLint(t *testing.T) {
	if hosts == nil {
		t.Skip("needs Debian's ansible-lint, installed with the test hosts' packages: not with -short")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ansible-lint", "--nocolor", "--profile", "production", "playbooks/", "roles/")
	cmd.Dir = projectRoot(t)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ansible-lint: %v\n%s", err, out)
	}
}

// Ansible, run in the project's directory as a deploy runs it (Playbook's Dir), reads the
// project's ansible.cfg: the settings that save CPU on every task are in force.
func TestAnsibleConfig(t *testing.T) {
	if hosts == nil {
		t.Skip("needs Debian's ansible, installed with the test hosts' packages: not with -short")
	}
	t.Parallel()
	root := projectRoot(t)
	cfg := filepath.Join(root, "ansible.cfg")
	if p := (&deploy.Deployer{Project: root}).Playbook(deploy.Request{Env: &envspec.Environment{}}); p.Dir != root {
		t.Fatalf("ansible-playbook runs in %q, not the project's directory %s", p.Dir, root)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"DEFAULT_INTERNAL_POLL_INTERVAL(" + cfg + ") = 0.05", "INTERPRETER_PYTHON(" + cfg + ") = /usr/bin/python3"}},
		{[]string{"-t", "connection"}, []string{"ssh_args(" + cfg + ") = -o ControlMaster=auto -o ControlPersist=60s"}},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "ansible-config", append([]string{"dump", "--only-changed"}, c.args...)...)
		cmd.Dir = root
		for _, kv := range os.Environ() { // as a deploy from a shell without ANSIBLE_CONFIG
			if !strings.HasPrefix(kv, "ANSIBLE_CONFIG=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("ansible-config dump: %v\n%s", err, out)
		}
		for _, w := range c.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("ansible-config dump %v lacks %q:\n%s", c.args, w, out)
			}
		}
	}
}
