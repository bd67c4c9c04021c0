package envspec_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/inventory"
	"github.com/labplane/labplane/internal/specfile"
)

// FuzzLoad: whatever inventories/<env>/environment.yml holds, Load returns a spec or the list of
// its problems, one a line, each naming the file (and its field, once the YAML decodes), and
// never panics; a spec it accepts with its own hosts renders an inventory that reads back as YAML.
func FuzzLoad(f *testing.F) {
	f.Add(goodEnvironment)
	f.Add(strings.Replace(strings.Replace(goodEnvironment, "settings:\n", "settings:\n"+strings.Replace(withServices, "  jwt: {public_signing_jwk_set: jwks.json}\n", "", 1), 1),
		"secrets:\n", "secrets:\n  mongodb_password: {env: MONGO_PW}\n  smtp_password: {vault: smtp}\n  vault_file: guacd.asc\n", 1))
	f.Add(goodEnvironment + "ssh: {user: deploy, port: 2222, known_hosts_file: known_hosts, control_path_dir: cp, accept_new_host_keys: true}\n" +
		"rollout: {serial: 50%}\n")
	f.Add(strings.Replace(goodEnvironment, "  secret_key: {env: STAGING_SECRET_KEY}", "  secret_key: hunter2\n  database_password: {env: A, vault: b}", 1))
	f.Add("release: olive.1\nartifact: /srv/a-{release}.tgz\nartifact_checksum: sha256:https://x/{release}\nprovision: {module: ., cloud: c, variables: {os_password: x}}\n" +
		"hosts: {lms: []}\nsettings: {tls: {mode: certificate, cert_file: guacd.asc, key_file: guacd.asc}, database: {engine: mysql, port: 70000}}\n")
	f.Add("release: [1, 2]\nunknown: 1\nsettings: {lms_port: x}\n")
	f.Add("{{{")
	f.Add("\t\x00\xff")
	f.Add("a: &a [*a, *a]\n")
	inv := filepath.Join(f.TempDir(), "inventories")
	dir := filepath.Join(inv, "fuzz")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "guacd.asc"), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	file := filepath.Join(dir, envspec.File)
	f.Fuzz(func(t *testing.T, raw string) {
		if err := os.WriteFile(file, []byte(raw), 0o644); err != nil {
			t.Fatal(err)
		}
		env, err := envspec.Load(inv, "fuzz")
		if err != nil {
			var se *specfile.Error
			if !errors.As(err, &se) || se.File != file || len(se.Problems) == 0 {
				t.Fatalf("not the problems of %s: %#v", file, err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, file+": ") {
					t.Fatalf("a line of the error that does not name the file: %q", line)
				}
			}
			decoded := specfile.Decode(file, []byte(raw), &envspec.Environment{}) == nil
			for _, p := range se.Problems {
				if p.Msg == "" || decoded && p.Field == "" {
					t.Fatalf("a problem that does not say what is wrong, or where: %+v", p)
				}
			}
			return
		}
		if env.Provision != nil {
			return // its hosts come from Terraform
		}
		out, err := inventory.Render(env, env.Hosts)
		if err != nil {
			t.Fatalf("a spec Load accepts does not render: %v", err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(out, &doc); err != nil || doc["all"] == nil {
			t.Fatalf("the inventory does not read back (%v):\n%s", err, out)
		}
	})
}
