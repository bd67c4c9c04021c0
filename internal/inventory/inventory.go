// Package inventory renders an environment's Ansible inventory: a pure function from the
// environment spec and its hosts to YAML (one group per service under an openedx parent
// group, the spec's settings as group variables), and an atomic write of it.
package inventory

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/atomicfile"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/platform"
)

// File is the rendered inventory's name inside the environment's directory.
const File = "hosts.yml"

// ParentGroup holds every service's group.
const ParentGroup = "openedx"

const header = "# Rendered by `labplane inventory render` from environment.yml: do not edit.\n" +
	"# Variables in group_vars/ beside this file override the ones here.\n"

type inventory struct {
	All group `yaml:"all"`
}

type group struct {
	Hosts    map[string]vars  `yaml:"hosts,omitempty"`
	Vars     vars             `yaml:"vars,omitempty"`
	Children map[string]group `yaml:"children,omitempty"`
}

// vars keeps the order variables are added in, so the file reads in a sensible order.
type vars struct {
	keys   []string
	values []any
}

func (v *vars) set(k string, val any) { v.keys, v.values = append(v.keys, k), append(v.values, val) }

func (v vars) IsZero() bool { return len(v.keys) == 0 }

func (v vars) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for i, k := range v.keys {
		var val yaml.Node
		if err := val.Encode(v.values[i]); err != nil {
			return nil, err
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &val)
	}
	return n, nil
}

// Render returns the inventory of env with the given hosts per service (the spec's own, or
// Terraform's outputs). It reads nothing and writes nothing; secrets appear only as lookups.
func Render(env *envspec.Environment, hosts map[string][]platform.Host) ([]byte, error) {
	if err := env.ValidateHosts("hosts", hosts); err != nil {
		return nil, err
	}
	var all vars
	all.set("ansible_user", env.SSH.User)
	all.set("ansible_port", env.SSH.Port)
	if env.SSH.PrivateKeyFile != "" {
		all.set("ansible_ssh_private_key_file", env.Path(env.SSH.PrivateKeyFile))
	}
	if args := sshArgs(env); args != "" {
		all.set("ansible_ssh_common_args", args)
	}
	if env.SSH.ControlPathDir != "" {
		all.set("ansible_control_path_dir", env.Path(env.SSH.ControlPathDir))
	}

	s := env.Settings
	var openedx vars
	openedx.set("openedx_environment", env.Name)
	openedx.set("openedx_release", env.Release)
	openedx.set("openedx_artifact", env.ArtifactFor(env.Release))
	if c := env.ChecksumFor(env.Release); c != "" {
		openedx.set("openedx_artifact_checksum", c)
	}
	if s.VenvSystemSitePackages {
		openedx.set("openedx_venv_system_site_packages", true)
	}
	openedx.set("openedx_database_engine", s.Database.Engine)
	openedx.set("openedx_database_name", s.Database.Name)
	if s.Database.Engine != "sqlite3" {
		openedx.set("openedx_database_host", s.Database.Host)
		if s.Database.Port != 0 {
			openedx.set("openedx_database_port", s.Database.Port)
		}
		openedx.set("openedx_database_user", s.Database.User)
	}
	if r := env.Secrets.DatabasePassword; r.Set() {
		openedx.set("openedx_database_password", secretLookup(r))
	}
	openedx.set("openedx_secret_key", secretLookup(env.Secrets.SecretKey))
	if err := setServices(&openedx, env); err != nil {
		return nil, err
	}
	if t := s.TLS; t.Mode != "" {
		openedx.set("openedx_tls_mode", t.Mode)
		if t.Mode == envspec.TLSCertificate {
			openedx.set("openedx_tls_cert_file", env.Path(t.CertFile))
			openedx.set("openedx_tls_key_file", env.Path(t.KeyFile))
		}
	}

	services := map[string]vars{}
	lms := vars{}
	lms.set("lms_site_name", s.LMSSiteName)
	lms.set("lms_port", s.LMSPort)
	services["lms"] = lms
	cms := vars{}
	cms.set("cms_site_name", s.CMSSiteName)
	cms.set("cms_port", s.CMSPort)
	services["cms"] = cms
	guacd := vars{}
	guacd.set("guacd_port", s.GuacdPort)
	guacd.set("guacd_apt_repository", s.GuacdAptRepository)
	guacd.set("guacd_apt_key", env.Path(s.GuacdAptKey))
	guacd.set("guacd_version", s.GuacdVersion)
	guacd.set("guacd_allowed_clients", guacdClients(hosts["lms"], s.GuacdAllowedSources))
	services["guacd"] = guacd

	children := map[string]group{}
	for _, svc := range platform.Services {
		g := group{Hosts: map[string]vars{}, Vars: services[svc]}
		for _, h := range hosts[svc] {
			var hv vars
			hv.set("ansible_host", h.Address)
			if svc == "guacd" {
				hv.set("guacd_bind_address", h.Private())
			}
			g.Hosts[h.Name] = hv
		}
		children[svc] = g
	}
	inv := inventory{All: group{Vars: all, Children: map[string]group{
		ParentGroup: {Vars: openedx, Children: children},
	}}}
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(inv); err != nil {
		return nil, fmt.Errorf("render inventory of %s: %w", env.Name, err)
	}
	return buf.Bytes(), nil
}

// setServices sets the backing services' variables of the openedx role (each only when the spec
// has the service), their secrets as lookups.
func setServices(openedx *vars, env *envspec.Environment) error {
	s, sec := env.Settings, env.Secrets
	if m := s.MongoDB; m.Configured() {
		openedx.set("openedx_mongodb", map[string]any{"hosts": m.Hosts, "port": m.Port, "name": m.Name, "user": m.User,
			"replica_set": m.ReplicaSet, "tls": m.TLS, "auth_source": m.AuthSource})
		if sec.MongoDBPassword.Set() {
			openedx.set("openedx_mongodb_password", secretLookup(sec.MongoDBPassword))
		}
	}
	if r := s.Redis; r.Configured() {
		openedx.set("openedx_redis", map[string]any{"host": r.Host, "port": r.Port, "db": r.DB})
		if sec.RedisPassword.Set() {
			openedx.set("openedx_redis_password", secretLookup(sec.RedisPassword))
		}
	}
	if m := s.SMTP; m.Configured() {
		openedx.set("openedx_smtp", map[string]any{"host": m.Host, "port": m.Port, "user": m.User, "starttls": m.StartTLS, "from": m.From})
		if sec.SMTPPassword.Set() {
			openedx.set("openedx_smtp_password", secretLookup(sec.SMTPPassword))
		}
	}
	if s.JWT.Configured() {
		public, err := env.PublicJWKSet() // checked when the spec was loaded; read again here, where it is used
		if err != nil {
			return fmt.Errorf("render inventory of %s: settings.jwt.public_signing_jwk_set: %w", env.Name, err)
		}
		openedx.set("openedx_jwt", map[string]any{"issuer": s.JWT.Issuer, "audience": s.JWT.Audience, "public_signing_jwk_set": public})
		openedx.set("openedx_jwt_private_signing_jwk", secretLookup(sec.JWTPrivateSigningJWK))
	}
	if s.Search.URL != "" {
		host, port, tls, _ := envspec.SearchEndpoint(s.Search.URL) // checked when the spec was loaded
		openedx.set("openedx_search", map[string]any{"host": host, "port": port, "tls": tls})
	}
	return nil
}

// guacdClients are the addresses guacd accepts connections from: the LMS hosts' private ones,
// and the sources the spec adds.
func guacdClients(lms []platform.Host, sources []string) []string {
	out := slices.Clone(sources)
	for _, h := range lms {
		out = append(out, h.Private())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// secretLookup is the Jinja expression that reads a secret when Ansible runs.
func secretLookup(r envspec.SecretRef) string {
	if r.Vault != "" {
		return "{{ " + r.Vault + " }}"
	}
	return "{{ lookup('ansible.builtin.env', '" + r.Env + "') }}"
}

func sshArgs(env *envspec.Environment) string {
	var args []string
	if env.SSH.KnownHostsFile != "" {
		args = append(args, "-o UserKnownHostsFile="+env.Path(env.SSH.KnownHostsFile))
	}
	if env.SSH.AcceptNewHostKeys {
		args = append(args, "-o StrictHostKeyChecking=accept-new")
	}
	return strings.Join(args, " ")
}

// Write renders the inventory into the environment's directory atomically (a temporary file
// renamed over the old one) and returns its path.
func Write(env *envspec.Environment, hosts map[string][]platform.Host) (string, error) {
	out, err := Render(env, hosts)
	if err != nil {
		return "", err
	}
	path := filepath.Join(env.Dir, File)
	return path, atomicfile.Write(path, out, 0o644)
}
