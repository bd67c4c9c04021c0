package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labplane/labplane/internal/deploy"
	"github.com/labplane/labplane/internal/envspec"
)

// The ansible-playbook command a deploy makes, without running it.
func TestPlaybook(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "inventories")
	dir := filepath.Join(inv, "prod")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"environment.yml": `release: r7
artifact: https://a.example/edx-platform-{release}.tar.gz
hosts:
  lms: [{name: l, address: 10.0.0.1}]
  cms: [{name: c, address: 10.0.0.2}]
  guacd: [{name: g, address: 10.0.0.3}]
settings: {lms_site_name: l.example, cms_site_name: c.example, guacd_apt_repository: "deb http://r.example ./"}
secrets: {secret_key: {vault: vault_secret_key}, vault_file: vault.yml, vault_password_file: pass}
rollout: {serial: "1"}
`,
		"vault.yml": "$ANSIBLE_VAULT;1.1;AES256\n",
		"pass":      "not-a-real-password\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env, err := envspec.Load(inv, "prod")
	if err != nil {
		t.Fatal(err)
	}
	d := deploy.Deployer{Project: "/srv/labplane"}
	for _, c := range []struct {
		release string
		want    []string
		not     []string
	}{
		{"", []string{`"openedx_serial":"1"`, "--extra-vars=@" + filepath.Join(dir, "vault.yml"),
			"--vault-password-file=" + filepath.Join(dir, "pass"), "--inventory=/inv/hosts.yml", "/srv/labplane/playbooks/site.yml"},
			[]string{"openedx_release", "not-a-real-password"}},
		// another release (a rollback, a promotion): its version and artifact override the inventory's
		{"r6", []string{`"openedx_release":"r6"`, `"openedx_artifact":"https://a.example/edx-platform-r6.tar.gz"`}, nil},
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
