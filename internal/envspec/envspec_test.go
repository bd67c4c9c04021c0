package envspec_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labplane/labplane/internal/dev/testhosts/standins"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/specfile"
)

const goodEnvironment = `
release: olive.1
artifact: https://artifacts.example.com/edx-platform-{release}.tar.gz
artifact_checksum: sha256:https://artifacts.example.com/edx-platform-{release}.tar.gz.sha256
hosts:
  lms: [{name: lms-1, address: 10.0.0.11}, {name: lms-2, address: 10.0.0.12}]
  cms: [{name: cms-1, address: 10.0.0.13}]
  guacd: [{name: guacd-1, address: guacd-1.internal}]
settings:
  lms_site_name: lms.example.com
  cms_site_name: studio.example.com
  guacd_apt_repository: "deb https://apt.example.com/guacd bookworm main"
  guacd_apt_key: guacd.asc
  guacd_version: 1.5.5-1
secrets:
  secret_key: {env: STAGING_SECRET_KEY}
`

// writeEnv writes inventories/<name>/environment.yml under a temporary directory and returns
// the inventories directory.
func writeEnv(t *testing.T, name, spec string) string {
	t.Helper()
	inv := filepath.Join(t.TempDir(), "inventories")
	if err := os.MkdirAll(filepath.Join(inv, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inv, name, envspec.File), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inv, name, "guacd.asc"), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return inv
}

// withServices is goodEnvironment with every backing service.
const withServices = `  mongodb: {hosts: [mongo-1.internal, 10.0.0.31], user: edxapp, replica_set: rs0, tls: true}
  redis: {host: redis.internal}
  smtp: {host: smtp.example.com, user: mailer, starttls: true, from: noreply@example.com}
  search: {url: "https://search.internal:9201"}
  jwt: {public_signing_jwk_set: jwks.json}
`

func TestLoadEnvironmentServices(t *testing.T) {
	spec := strings.Replace(goodEnvironment, "settings:\n", "settings:\n"+withServices, 1)
	spec = strings.Replace(spec, "secrets:\n", "secrets:\n  mongodb_password: {env: MONGO_PW}\n  smtp_password: {env: SMTP_PW}\n  jwt_private_signing_jwk: {vault: jwk}\n  vault_file: v.yml\n", 1)
	inv := writeEnv(t, "staging", spec)
	jwks := filepath.Join(inv, "staging", "jwks.json")
	if err := os.WriteFile(jwks, []byte(`{"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inv, "staging", "v.yml"), []byte("$ANSIBLE_VAULT;1.1;AES256\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err := envspec.Load(inv, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if set, err := env.PublicJWKSet(); env.Settings.JWT.Issuer != "https://lms.example.com/oauth2" || env.Settings.JWT.Audience != "openedx" ||
		set != `{"keys":[{"kty":"RSA","kid":"k1","n":"AQAB","e":"AQAB"}]}` || err != nil {
		t.Errorf("jwt %+v, set %s %v", env.Settings.JWT, set, err)
	}
	if err := os.WriteFile(jwks, []byte(`{"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB", "d": "hunter2"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := envspec.Load(inv, "staging"); err == nil || !strings.Contains(err.Error(), "settings.jwt.public_signing_jwk_set: jwks.json: key 0 is a private key") ||
		strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a private key in the public set: %v", err)
	}
	s := env.Settings
	if s.MongoDB.Port != 27017 || s.MongoDB.Name != "edxapp" || s.Redis.Port != 6379 || s.Redis.DB != 0 || s.SMTP.Port != 587 {
		t.Errorf("defaults not applied: %+v %+v %+v", s.MongoDB, s.Redis, s.SMTP)
	}
	if host, port, tls, err := envspec.SearchEndpoint(s.Search.URL); host != "search.internal" || port != 9201 || !tls || err != nil {
		t.Errorf("SearchEndpoint = %s %d %v %v", host, port, tls, err)
	}
	var names []string
	for _, r := range env.SecretRefs() {
		if r.Ref.Set() {
			names = append(names, r.Field+"="+r.Ref.Env)
		}
	}
	if got := strings.Join(names, " "); got != "secrets.secret_key=STAGING_SECRET_KEY secrets.mongodb_password=MONGO_PW secrets.smtp_password=SMTP_PW secrets.jwt_private_signing_jwk=" {
		t.Errorf("secret references: %s", got)
	}
}

func TestLoadEnvironmentTLS(t *testing.T) {
	inv := writeEnv(t, "staging", goodEnvironment)
	dir := filepath.Join(inv, "staging")
	files, err := standins.Certificate(dir, "lms.example.com", "studio.example.com")
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := standins.Certificate(t.TempDir(), "lms.example.com")
	if err != nil {
		t.Fatal(err)
	}
	load := func(tls string) (*envspec.Environment, error) {
		spec := strings.Replace(goodEnvironment, "settings:\n", "settings:\n  tls: "+tls+"\n", 1)
		if err := os.WriteFile(filepath.Join(dir, envspec.File), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		return envspec.Load(inv, "staging")
	}
	env, err := load("{mode: certificate, cert_file: cert.pem, key_file: key.pem, ca_file: ca.pem}")
	if err != nil {
		t.Fatal(err)
	}
	ep := env.Endpoints()
	if ep["lms"].Port != 443 || ep["cms"].Port != 18443 || !ep["lms"].HTTPS || ep["cms"].CAFile != files.CA || ep["guacd"].HTTPS {
		t.Errorf("endpoints %+v", ep)
	}
	if env, err := load("{mode: load_balancer}"); err != nil || env.Endpoints()["lms"].HTTPS || env.Settings.LMSPort != 80 {
		t.Errorf("load balancer mode: %v %+v", err, env)
	}
	if err := os.Chmod(wrong.Key, 0o644); err != nil {
		t.Fatal(err)
	}
	for tls, want := range map[string]string{
		"{mode: certificate, cert_file: " + wrong.Cert + ", key_file: key.pem}":           "not a PEM certificate and its matching private key",
		"{mode: certificate, cert_file: " + wrong.Cert + ", key_file: " + wrong.Key + "}": "is readable by others (mode 0644): chmod 600 it",
		"{mode: certificate, cert_file: cert.pem}":                                        "settings.tls: mode certificate needs cert_file and key_file",
		"{mode: load_balancer, cert_file: cert.pem}":                                      "settings.tls.cert_file: only with mode certificate",
		"{mode: https}": `settings.tls.mode: unknown mode "https"`,
	} {
		if _, err := load(tls); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("tls %s: %v, want %q", tls, err, want)
		}
	}
	if err := os.Chmod(wrong.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := load("{mode: certificate, cert_file: " + wrong.Cert + ", key_file: " + wrong.Key + "}"); err == nil ||
		!strings.Contains(err.Error(), "is not valid for studio.example.com (it is for lms.example.com)") {
		t.Errorf("a certificate without the CMS's name: %v", err)
	}
}

func TestLoadEnvironmentDefaults(t *testing.T) {
	inv := writeEnv(t, "staging", goodEnvironment)
	env, err := envspec.Load(inv, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if env.Name != "staging" || env.Dir != filepath.Join(inv, "staging") {
		t.Errorf("name %q dir %q", env.Name, env.Dir)
	}
	s := env.Settings
	if env.SSH.User != envspec.DefaultSSHUser || env.SSH.Port != 22 || s.LMSPort != 80 || s.CMSPort != 18010 || s.GuacdPort != 4822 ||
		s.Database.Engine != "sqlite3" || s.Database.Name != "edxapp" || env.Rollout.Serial != "100%" {
		t.Errorf("defaults not applied: %+v %+v %+v", env.SSH, s, env.Rollout)
	}
	if got := env.ArtifactFor("olive.2"); got != "https://artifacts.example.com/edx-platform-olive.2.tar.gz" {
		t.Errorf("ArtifactFor = %q", got)
	}
	if s.MongoDB.Configured() || s.Redis.Configured() || s.SMTP.Configured() || s.Search.URL != "" {
		t.Errorf("backing services configured by default: %+v", s)
	}
	env.Artifact = "artifacts/edx-platform-{release}.tar.gz"
	if got := env.ArtifactFor("olive.1"); got != filepath.Join(env.Dir, "artifacts/edx-platform-olive.1.tar.gz") {
		t.Errorf("a relative artifact path resolves against the environment: %q", got)
	}
}

func TestLoadEnvironmentErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(string) string
		want []string // each a line of the error: "FIELD: what"
	}{
		{"unknown field", func(s string) string { return s + "colour: blue\n" },
			[]string{`unknown field "colour"`}},
		{"no release", func(s string) string { return strings.Replace(s, "release: olive.1\n", "", 1) },
			[]string{"release: required"}},
		{"release with a slash", func(s string) string { return strings.Replace(s, "olive.1", "olive/1", 1) },
			[]string{`release: "olive/1" is not a release name`}},
		{"release that Ansible would template", func(s string) string {
			return strings.Replace(s, "olive.1", `"{{ lookup('pipe','id') }}"`, 1)
		}, []string{`is not a release name`}},
		{"site name that nginx would read as directives", func(s string) string {
			return strings.Replace(s, "lms_site_name: lms.example.com", `lms_site_name: "x; return 302 http://evil"`, 1)
		}, []string{`settings.lms_site_name: "x; return 302 http://evil" is not a host name`}},
		{"downloaded artifact without a checksum", func(s string) string {
			return strings.Replace(s, "artifact_checksum: sha256:https://artifacts.example.com/edx-platform-{release}.tar.gz.sha256\n", "", 1)
		}, []string{`artifact_checksum: required for an artifact the hosts download`}},
		{"checksum of another kind", func(s string) string {
			return strings.Replace(s, "artifact_checksum: sha256:", "artifact_checksum: md5:", 1)
		}, []string{`artifact_checksum: "md5:https://`, `is not sha256:, sha384: or sha512:`}},
		{"one digest for every release", func(s string) string {
			return strings.Replace(s, "sha256:https://artifacts.example.com/edx-platform-{release}.tar.gz.sha256", "sha256:"+strings.Repeat("ab", 32), 1)
		}, []string{`artifact_checksum: one digest cannot check every release's artifact`}},
		{"release that leaves the releases directory", func(s string) string { return strings.Replace(s, "olive.1", `".."`, 1) },
			[]string{`release: ".." is not a release name`}},
		{"a secret written inline", func(s string) string {
			return strings.Replace(s, "secret_key: {env: STAGING_SECRET_KEY}", "secret_key: hunter2-very-secret", 1)
		}, []string{"secrets.secret_key: line", "must not be written here"}},
		{"no secret key", func(s string) string {
			return strings.Replace(s, "secrets:\n  secret_key: {env: STAGING_SECRET_KEY}\n", "", 1)
		}, []string{"secrets.secret_key: required"}},
		{"vault reference without a vault file", func(s string) string {
			return strings.Replace(s, "{env: STAGING_SECRET_KEY}", "{vault: vault_secret_key}", 1)
		}, []string{"secrets.vault_file: required"}},
		{"a missing service", func(s string) string {
			return strings.Replace(s, "  guacd: [{name: guacd-1, address: guacd-1.internal}]\n", "", 1)
		}, []string{"hosts.guacd: at least one host is required"}},
		{"an unknown service", func(s string) string {
			return strings.Replace(s, "hosts:\n", "hosts:\n  mongo: [{name: m, address: 10.0.0.9}]\n", 1)
		}, []string{"hosts.mongo: unknown service"}},
		{"a bad address", func(s string) string { return strings.Replace(s, "10.0.0.13", "10.0.0.13 ; rm", 1) },
			[]string{`hosts.cms[0].address: "10.0.0.13 ; rm" is neither an IP address nor a DNS name`}},
		{"one host, two addresses", func(s string) string { return strings.Replace(s, "name: cms-1", "name: lms-1", 1) },
			[]string{"hosts.cms[0].address: lms-1 is also listed with address 10.0.0.11"}},
		{"hosts and provision", func(s string) string { return s + "provision: {module: ., cloud: c}\n" },
			[]string{"hosts: give either hosts or provision, not both"}},
		{"same ports", func(s string) string {
			return strings.Replace(s, "settings:\n", "settings:\n  lms_port: 8080\n  cms_port: 8080\n", 1)
		},
			[]string{"settings.cms_port: 8080 is also lms_port"}},
		{"a database without a host", func(s string) string {
			return strings.Replace(s, "settings:\n", "settings:\n  database: {engine: mysql}\n", 1)
		}, []string{"settings.database.host: required for mysql", "secrets.database_password: required"}},
		{"bad serial", func(s string) string { return s + "rollout: {serial: half}\n" },
			[]string{`rollout.serial: "half" is neither`}},
		{"a zero serial", func(s string) string { return s + "rollout: {serial: 0%}\n" },
			[]string{`rollout.serial: "0%" is neither`}},
		{"SSH sockets too deep", func(s string) string { return s + "ssh: {control_path_dir: /" + strings.Repeat("d", 80) + "}\n" },
			[]string{"ssh.control_path_dir: /ddd", "is 81 bytes long: at most 78"}},
		{"apt options in the source line", func(s string) string {
			return strings.Replace(s, `"deb https`, `"deb [trusted=yes] https`, 1)
		}, []string{"settings.guacd_apt_repository:", "has options: give the line without them"}},
		{"no repository key", func(s string) string {
			return strings.Replace(s, "guacd_apt_key: guacd.asc", "guacd_apt_key: nokey.asc", 1)
		},
			[]string{"settings.guacd_apt_key: nokey.asc: "}},
		{"no guacd version", func(s string) string { return strings.Replace(s, "  guacd_version: 1.5.5-1\n", "", 1) },
			[]string{"settings.guacd_version: required"}},
		{"a guacd version apt would read as options", func(s string) string {
			return strings.Replace(s, "guacd_version: 1.5.5-1", `guacd_version: "1.5 --allow-unauthenticated"`, 1)
		}, []string{`settings.guacd_version: "1.5 --allow-unauthenticated" is not a Debian package version`}},
		{"a guacd source that is not an address", func(s string) string {
			return strings.Replace(s, "  guacd_version: 1.5.5-1\n", "  guacd_version: 1.5.5-1\n  guacd_allowed_sources: [10.0.0.0/8, \"0.0.0.0/0; flush ruleset\"]\n", 1)
		}, []string{`settings.guacd_allowed_sources[1]: "0.0.0.0/0; flush ruleset" is neither an IP address nor a network`}},
		{"a bad private address", func(s string) string {
			return strings.Replace(s, "{name: cms-1, address: 10.0.0.13}", "{name: cms-1, address: 10.0.0.13, private_address: \"a b\"}", 1)
		}, []string{`hosts.cms[0].private_address: "a b" is neither`}},
		{"a MongoDB user without a password", func(s string) string {
			return strings.Replace(s, "settings:\n", "settings:\n  mongodb: {hosts: [m1], user: edxapp}\n", 1)
		}, []string{"secrets.mongodb_password: required"}},
		{"MongoDB without hosts", func(s string) string {
			return strings.Replace(s, "settings:\n", "settings:\n  mongodb: {name: edxapp}\n", 1)
		}, []string{"settings.mongodb.hosts: required"}},
		{"a Redis database out of range", func(s string) string {
			return strings.Replace(s, "settings:\n", "settings:\n  redis: {host: r, db: 16}\n", 1)
		}, []string{"settings.redis.db: 16 is not a Redis database number"}},
		{"a sender that is not an address", func(s string) string {
			return strings.Replace(s, "settings:\n", "settings:\n  smtp: {host: smtp.example.com, from: \"Platform <noreply@example.com>\"}\n", 1)
		}, []string{`settings.smtp.from: "Platform <noreply@example.com>" is not a mail address`}},
		{"a search URL with credentials", func(s string) string {
			return strings.Replace(s, "settings:\n", "settings:\n  search: {url: \"https://elastic:hunter2@search:9200\"}\n", 1)
		}, []string{"settings.search.url:", "has credentials: give none"}},
		{"not an apt line", func(s string) string { return strings.Replace(s, `"deb https`, `"https`, 1) },
			[]string{"settings.guacd_apt_repository:", "is not an apt source line"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			inv := writeEnv(t, "staging", c.edit(goodEnvironment))
			_, err := envspec.Load(inv, "staging")
			var cfgErr *specfile.Error
			if !errors.As(err, &cfgErr) {
				t.Fatalf("err = %v, want a *specfile.Error", err)
			}
			msg := err.Error()
			file := filepath.Join(inv, "staging", "environment.yml")
			if !strings.HasPrefix(msg, file+": ") {
				t.Errorf("the error does not start with the file's name:\n%s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("the error shows the inline secret:\n%s", msg)
			}
		})
	}
}

func TestLoadEnvironmentUnknown(t *testing.T) {
	inv := writeEnv(t, "staging", goodEnvironment)
	_, err := envspec.Load(inv, "prod")
	if err == nil || !strings.Contains(err.Error(), `no environment "prod" (have: staging)`) {
		t.Errorf("err = %v", err)
	}
	if _, err := envspec.Load(inv, "../etc"); err == nil || !strings.Contains(err.Error(), "is not an environment name") {
		t.Errorf("err = %v", err)
	}
}
