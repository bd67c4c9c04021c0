// Package envspec loads an environment's spec, inventories/<env>/environment.yml: the
// platform's hosts (or the Terraform module that makes them), its release, settings and
// references to its secrets. labplane.yaml, the labs' configuration, is config's.
package envspec

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/specfile"

	"gopkg.in/yaml.v3"
)

// Environment is a loaded and validated inventories/<env>/environment.yml: where the platform
// runs (hosts per service, or a Terraform module whose outputs list them), which release, its
// settings, and references to its secrets (never the secrets themselves).
type Environment struct {
	// Name is the environment's directory name under the inventories directory.
	Name string `yaml:"-" json:"name"`
	// Dir is the environment's directory (absolute); File the spec in it.
	Dir  string `yaml:"-" json:"dir"`
	File string `yaml:"-" json:"file"`

	// Release is the edx-platform release to deploy (the artifact's version).
	Release string `yaml:"release" json:"release"`
	// Artifact is the release artifact: an http(s) URL the hosts download, or a path on the
	// machine running labplane. "{release}" in it is replaced by the release.
	Artifact string `yaml:"artifact" json:"artifact"`
	// ArtifactChecksum is how the artifact is checked before it is unpacked:
	// "sha256:<hex>" (one release), or "sha256:<URL or path of a checksum file>" with
	// "{release}" replaced. Required for an http(s) artifact, which the hosts download.
	ArtifactChecksum string `yaml:"artifact_checksum" json:"artifact_checksum,omitempty"`
	// Hosts lists the hosts of each service; Provision takes them from Terraform instead.
	// Exactly one of the two is given.
	Hosts     map[string][]platform.Host `yaml:"hosts" json:"hosts,omitempty"`
	Provision *Provision                 `yaml:"provision" json:"provision,omitempty"`
	SSH       SSH                        `yaml:"ssh" json:"ssh"`
	Settings  Settings                   `yaml:"settings" json:"settings"`
	Secrets   Secrets                    `yaml:"secrets" json:"-"`
	Rollout   Rollout                    `yaml:"rollout" json:"rollout"`
}

// Provision names the Terraform configuration that creates the environment's hosts. Its
// output "hosts" ({lms: [{name, address}], cms: [...], guacd: [...]}) becomes the inventory.
type Provision struct {
	// Module is the Terraform module's directory, relative to the environment's (or
	// absolute). labplane calls it from a root module it generates, so it configures no
	// backend; its provider reads the cloud from OS_CLOUD.
	Module string `yaml:"module" json:"module"`
	// Cloud is the clouds.yaml entry Terraform authenticates with (passed as OS_CLOUD).
	Cloud string `yaml:"cloud" json:"cloud"`
	// Variables are the module's input variables. Never secrets: credentials come from
	// clouds.yaml or OS_* in labplane's environment.
	Variables map[string]any `yaml:"variables" json:"variables,omitempty"`
}

// SSH says how Ansible reaches the hosts.
type SSH struct {
	User string `yaml:"user" json:"user"`
	Port int    `yaml:"port" json:"port"`
	// PrivateKeyFile is relative to the environment's directory, or absolute.
	PrivateKeyFile string `yaml:"private_key_file" json:"private_key_file,omitempty"`
	// KnownHostsFile pins the hosts' keys; absent, ~/.ssh/known_hosts is used.
	KnownHostsFile string `yaml:"known_hosts_file" json:"known_hosts_file,omitempty"`
	// ControlPathDir is where Ansible keeps its SSH master connections' sockets (relative to
	// the environment's directory, or absolute); absent, Ansible's own ~/.ansible/cp.
	ControlPathDir string `yaml:"control_path_dir" json:"control_path_dir,omitempty"`
	// AcceptNewHostKeys trusts a host key seen for the first time (for hosts just created).
	AcceptNewHostKeys bool `yaml:"accept_new_host_keys" json:"accept_new_host_keys,omitempty"`
}

// Settings are the platform's non-secret settings.
type Settings struct {
	LMSSiteName string `yaml:"lms_site_name" json:"lms_site_name"`
	CMSSiteName string `yaml:"cms_site_name" json:"cms_site_name"`
	// LMSPort and CMSPort are where nginx serves each on its hosts (/heartbeat included).
	LMSPort  int      `yaml:"lms_port" json:"lms_port"`
	CMSPort  int      `yaml:"cms_port" json:"cms_port"`
	Database Database `yaml:"database" json:"database"`
	// VenvSystemSitePackages lets each release's virtualenv see the hosts' Debian Python
	// packages (Django, gunicorn, Celery): for a release built against them, as the tests'
	// stand-in is. A release whose wheels bring all it needs leaves it false.
	VenvSystemSitePackages bool `yaml:"venv_system_site_packages" json:"venv_system_site_packages,omitempty"`
	// GuacdPort is guacd's port on its hosts' private address.
	GuacdPort int `yaml:"guacd_port" json:"guacd_port"`
	// GuacdAptRepository is the apt source line of the repository guacd is installed from,
	// without options: the role adds signed-by with GuacdAptKey.
	GuacdAptRepository string `yaml:"guacd_apt_repository" json:"guacd_apt_repository"`
	// GuacdAptKey is the file (relative to the environment's directory, or absolute) holding
	// the OpenPGP public key that repository is signed with; apt trusts it for that
	// repository only.
	GuacdAptKey string `yaml:"guacd_apt_key" json:"guacd_apt_key"`
	// GuacdVersion is the guacd package version every guacd host runs (installed, upgraded or
	// downgraded to it).
	GuacdVersion string `yaml:"guacd_version" json:"guacd_version"`
	// GuacdAllowedSources are addresses or networks (CIDR) guacd answers besides the LMS hosts:
	// the machine labplane's health checks run from, monitoring.
	GuacdAllowedSources []string `yaml:"guacd_allowed_sources" json:"guacd_allowed_sources,omitempty"`
	// TLS says how clients reach the LMS and CMS over HTTPS (tls.go).
	TLS TLS `yaml:"tls" json:"tls"`
	// The backing services (services.go): each optional.
	MongoDB MongoDB `yaml:"mongodb" json:"mongodb"`
	Redis   Redis   `yaml:"redis" json:"redis"`
	SMTP    SMTP    `yaml:"smtp" json:"smtp"`
	Search  Search  `yaml:"search" json:"search"`
	JWT     JWT     `yaml:"jwt" json:"jwt"`
}

// Database is where lms and cms keep their data. Engine sqlite3 keeps it on each host (for
// small and test environments); mysql and postgresql need a host.
type Database struct {
	Engine string `yaml:"engine" json:"engine"`
	Host   string `yaml:"host" json:"host,omitempty"`
	Port   int    `yaml:"port" json:"port,omitempty"`
	Name   string `yaml:"name" json:"name"`
	User   string `yaml:"user" json:"user,omitempty"`
}

// Secrets are references to the environment's secrets: the values are read when Ansible
// runs, from labplane's environment or an ansible-vault file, and are never written.
type Secrets struct {
	DatabasePassword SecretRef `yaml:"database_password"`
	SecretKey        SecretRef `yaml:"secret_key"`
	MongoDBPassword  SecretRef `yaml:"mongodb_password"`
	RedisPassword    SecretRef `yaml:"redis_password"`
	SMTPPassword     SecretRef `yaml:"smtp_password"`
	// JWTPrivateSigningJWK is the JSON of the private JWK the LMS signs tokens with.
	JWTPrivateSigningJWK SecretRef `yaml:"jwt_private_signing_jwk"`
	// VaultFile is an ansible-vault encrypted variables file (relative to the environment's
	// directory) that {vault: VAR} references read from; its password comes from
	// VaultPasswordFile or the ANSIBLE_VAULT_PASSWORD_FILE environment variable.
	VaultFile         string `yaml:"vault_file"`
	VaultPasswordFile string `yaml:"vault_password_file"`
}

// SecretRef names where a secret is: {env: NAME} or {vault: VARIABLE}.
type SecretRef struct {
	Env   string `yaml:"env"`
	Vault string `yaml:"vault"`

	inline bool
	line   int
}

// UnmarshalYAML refuses a secret written in the file.
func (s *SecretRef) UnmarshalYAML(n *yaml.Node) error {
	s.line = n.Line
	if n.Kind == yaml.ScalarNode {
		s.inline = true // reported by validate, with the field's name
		return nil
	}
	type plain SecretRef
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	p.line = n.Line
	*s = SecretRef(p)
	return nil
}

// Set reports whether the reference was written.
func (s SecretRef) Set() bool { return s.Env != "" || s.Vault != "" || s.inline }

// Rollout is how a deploy goes through each service's hosts. A deploy stops a service's
// rollout at the first host that fails (the plays' max_fail_percentage is 0).
type Rollout struct {
	// Serial is how many hosts of a service are deployed at once: a count ("1") or a
	// percentage ("50%").
	Serial string `yaml:"serial" json:"serial"`
}

// File is the spec's name inside an environment's directory.
const File = "environment.yml"

var envNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// LoadEnvironment reads, applies defaults to and validates inventories/<name>/environment.yml.
func Load(inventories, name string) (*Environment, error) {
	file := filepath.Join(inventories, name, File)
	if !envNamePattern.MatchString(name) {
		return nil, specfile.Fail(file, "%q is not an environment name (lower-case letters, digits, - and _)", name)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		msg := specfile.DescribeFileError(err)
		if errors.Is(err, fs.ErrNotExist) {
			msg = fmt.Sprintf("no such file: no environment %q (have: %s)", name, strings.Join(listEnvironments(inventories), ", "))
		}
		return nil, specfile.Fail(file, "%s", msg)
	}
	return Parse(file, raw)
}

// listEnvironments names the environments under inventories, for errors.
func listEnvironments(inventories string) []string {
	var names []string
	entries, _ := os.ReadDir(inventories)
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(inventories, e.Name(), File)); err == nil {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return []string{"none in " + inventories}
	}
	return names
}

// ParseEnvironment decodes and validates a spec held in memory; file names it in errors, and
// its directory names the environment and anchors relative paths.
func Parse(file string, raw []byte) (*Environment, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, specfile.Fail(file, "%s", err)
	}
	e := &Environment{}
	if err := specfile.Decode(file, raw, e); err != nil {
		return nil, err
	}
	e.File, e.Dir = abs, filepath.Dir(abs)
	e.Name = filepath.Base(e.Dir)
	v := validator{File: file}
	e.validate(&v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Environment) validate(v *validator) {
	if e.Release == "" {
		v.Add("release", "required: the edx-platform release to deploy")
	} else if err := CheckRelease(e.Release); err != nil {
		v.Add("release", "%s", err)
	}
	if e.Artifact == "" {
		v.Add("artifact", "required: the release artifact's URL or path ({release} is replaced by the release)")
	}
	e.validateChecksum(v)
	switch {
	case e.Provision != nil && len(e.Hosts) > 0:
		v.Add("hosts", "give either hosts or provision, not both")
	case e.Provision != nil:
		e.validateProvision(v)
	default:
		e.validateHosts(v, "hosts", e.Hosts)
	}
	e.validateSSH(v)
	e.validateSettings(v)
	e.validateServices(v)
	e.validateJWT(v)
	e.validateTLS(v)
	e.validateSecrets(v)
	e.validateRollout(v)
}

var releasePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// CheckRelease checks a release's name, from a spec or a flag: it names a directory on the
// hosts and is handed to Ansible, so it is a plain name (letters, digits, . _ + -, not
// starting with a dot or a dash; no slashes, spaces or braces).
func CheckRelease(r string) error {
	if !releasePattern.MatchString(r) {
		return fmt.Errorf("%q is not a release name: use letters, digits, '.', '_', '+' and '-', starting with a letter or digit, at most 128 (it names a directory on the hosts)", r)
	}
	return nil
}

var hostNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidateHosts checks hosts per service, from the spec or from Terraform's outputs; field
// names where they came from in errors.
func (e *Environment) ValidateHosts(field string, hosts map[string][]platform.Host) error {
	v := validator{File: e.File}
	e.validateHosts(&v, field, hosts)
	return v.Err()
}

func (e *Environment) validateHosts(v *validator, field string, hosts map[string][]platform.Host) {
	for svc := range hosts {
		if !isService(svc) {
			v.Add(field+"."+svc, "unknown service (use %s)", strings.Join(platform.Services, ", "))
		}
	}
	address := map[string]string{} // host name -> address: one host may serve several services
	for _, svc := range platform.Services {
		f := field + "." + svc
		if len(hosts[svc]) == 0 {
			v.Add(f, "at least one host is required")
		}
		for i, h := range hosts[svc] {
			hf := fmt.Sprintf("%s[%d]", f, i)
			if !hostNamePattern.MatchString(h.Name) {
				v.Add(hf+".name", "%q must be letters, digits, dots, dashes and underscores", h.Name)
			}
			checkAddress(v, hf+".address", h.Address)
			if h.PrivateAddress != "" {
				checkAddress(v, hf+".private_address", h.PrivateAddress)
			}
			both := h.Address + " (private " + h.Private() + ")"
			if a, seen := address[h.Name]; seen && a != both {
				v.Add(hf+".address", "%s is also listed with address %s", h.Name, a)
			}
			address[h.Name] = both
		}
	}
}

func isService(s string) bool {
	for _, svc := range platform.Services {
		if s == svc {
			return true
		}
	}
	return false
}

func (e *Environment) validateProvision(v *validator) {
	p := e.Provision
	if p.Module == "" {
		v.Add("provision.module", "required: the Terraform module's directory, relative to %s", e.Dir)
	} else if st, err := os.Stat(e.Path(p.Module)); err != nil {
		v.Add("provision.module", "%s: %s", p.Module, specfile.DescribeFileError(err))
	} else if !st.IsDir() {
		v.Add("provision.module", "%s is not a directory", p.Module)
	}
	if p.Cloud == "" {
		v.Add("provision.cloud", "required: the clouds.yaml entry Terraform authenticates with")
	}
	names := make([]string, 0, len(p.Variables))
	for k := range p.Variables {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if looksSecret(k) {
			v.Add("provision.variables."+k, "looks like a secret: pass credentials through clouds.yaml or OS_* variables, never in the spec")
		}
	}
}

// looksSecret reports whether a variable's name suggests it holds a secret.
func looksSecret(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"password", "secret", "token", "credential", "private_key"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// maxControlPathDir is the longest ssh.control_path_dir.
const maxControlPathDir = 78

func (e *Environment) validateSSH(v *validator) {
	if e.SSH.User == "" {
		e.SSH.User = DefaultSSHUser
	}
	port(v, "ssh.port", &e.SSH.Port, DefaultSSHPort)
	// ssh binds the socket at <dir>/<10 characters>.<17 characters> while it connects, and a
	// Unix socket's path has at most 107 bytes
	if d := e.Path(e.SSH.ControlPathDir); len(d) > maxControlPathDir {
		v.Add("ssh.control_path_dir", "%s is %d bytes long: at most %d (ssh's sockets there must fit a Unix socket's 107)", d, len(d), maxControlPathDir)
	}
	for field, p := range map[string]string{"ssh.private_key_file": e.SSH.PrivateKeyFile, "ssh.known_hosts_file": e.SSH.KnownHostsFile} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(e.Path(p)); err != nil && !(field == "ssh.known_hosts_file" && errors.Is(err, fs.ErrNotExist)) {
			v.Add(field, "%s: %s", p, specfile.DescribeFileError(err))
		}
	}
}

func (e *Environment) validateSettings(v *validator) {
	s := &e.Settings
	siteName(v, "settings.lms_site_name", s.LMSSiteName, "the LMS's public name, such as lms.example.com")
	siteName(v, "settings.cms_site_name", s.CMSSiteName, "the CMS's public name, such as studio.example.com")
	lmsPort, cmsPort := DefaultLMSPort, DefaultCMSPort
	if s.TLS.Mode == TLSCertificate {
		lmsPort, cmsPort = DefaultLMSTLSPort, DefaultCMSTLSPort
	}
	port(v, "settings.lms_port", &s.LMSPort, lmsPort)
	port(v, "settings.cms_port", &s.CMSPort, cmsPort)
	port(v, "settings.guacd_port", &s.GuacdPort, DefaultGuacdPort)
	if s.LMSPort == s.CMSPort {
		v.Add("settings.cms_port", "%d is also lms_port: a host serving both needs two ports", s.CMSPort)
	}
	if s.GuacdAptRepository == "" {
		v.Add("settings.guacd_apt_repository", `required: the apt source guacd is installed from, such as "deb https://apt.example.com/guacd bookworm main"`)
	} else if !strings.HasPrefix(s.GuacdAptRepository, "deb ") {
		v.Add("settings.guacd_apt_repository", "%q is not an apt source line (it starts with \"deb \")", s.GuacdAptRepository)
	} else if strings.HasPrefix(s.GuacdAptRepository, "deb [") {
		v.Add("settings.guacd_apt_repository", "%q has options: give the line without them (labplane adds signed-by with settings.guacd_apt_key; trusted=yes is never used)", s.GuacdAptRepository)
	}
	if s.GuacdAptKey == "" {
		v.Add("settings.guacd_apt_key", "required: the file holding the OpenPGP public key guacd's repository is signed with")
	} else if _, err := os.Stat(e.Path(s.GuacdAptKey)); err != nil {
		v.Add("settings.guacd_apt_key", "%s: %s", s.GuacdAptKey, specfile.DescribeFileError(err))
	}
	for i, src := range s.GuacdAllowedSources {
		if _, _, err := net.ParseCIDR(src); err != nil && net.ParseIP(src) == nil {
			v.Add(fmt.Sprintf("settings.guacd_allowed_sources[%d]", i), "%q is neither an IP address nor a network (CIDR)", src)
		}
	}
	if s.GuacdVersion == "" {
		v.Add("settings.guacd_version", "required: the guacd package version every guacd host runs, such as 1.5.5-1 (apt-cache policy guacd lists a repository's)")
	} else if !debianVersion.MatchString(s.GuacdVersion) {
		v.Add("settings.guacd_version", "%q is not a Debian package version", s.GuacdVersion)
	}
	d := &s.Database
	switch d.Engine {
	case "":
		d.Engine = DefaultDatabaseEngine
	case "sqlite3", "mysql", "postgresql":
	default:
		v.Add("settings.database.engine", "unknown engine %q (use sqlite3, mysql or postgresql)", d.Engine)
	}
	if d.Name == "" {
		d.Name = DefaultDatabaseName
	}
	if d.Engine != "sqlite3" && d.Host == "" {
		v.Add("settings.database.host", "required for %s", d.Engine)
	}
	port(v, "settings.database.port", &d.Port, 0) // 0: the engine's default
}

// debianVersion is a Debian package version: [epoch:]upstream[-revision].
var debianVersion = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$`)

// siteNamePattern is a DNS name: it goes into nginx's server_name and Django's ALLOWED_HOSTS.
var siteNamePattern = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// siteName checks a public host name field.
func siteName(v *validator, field, name, what string) {
	switch {
	case name == "":
		v.Add(field, "required: %s", what)
	case len(name) > 253 || !siteNamePattern.MatchString(name):
		v.Add(field, "%q is not a host name (letters, digits, '-' and dots; it goes into nginx's server_name)", name)
	}
}

// port checks a port field; an absent one (0) becomes def.
func port(v *validator, field string, p *int, def int) {
	switch {
	case *p == 0:
		*p = def
	case *p < 1 || *p > 65535:
		v.Add(field, "%d is not a port", *p)
	}
}

var envVarPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// NamedSecret is one of the environment's secret references, with its field's name.
type NamedSecret struct {
	Field string
	Ref   SecretRef
	// Required: the spec must give it (the database password unless the engine is sqlite3).
	Required bool
}

// SecretRefs lists every secret reference of the spec, the one place that knows them all.
func (e *Environment) SecretRefs() []NamedSecret {
	return []NamedSecret{
		{"secrets.database_password", e.Secrets.DatabasePassword, e.Settings.Database.Engine != "sqlite3"},
		{"secrets.secret_key", e.Secrets.SecretKey, true},
		{"secrets.mongodb_password", e.Secrets.MongoDBPassword, e.Settings.MongoDB.User != ""},
		{"secrets.redis_password", e.Secrets.RedisPassword, false},
		{"secrets.smtp_password", e.Secrets.SMTPPassword, e.Settings.SMTP.User != ""},
		{"secrets.jwt_private_signing_jwk", e.Secrets.JWTPrivateSigningJWK, e.Settings.JWT.Configured()},
	}
}

func (e *Environment) validateSecrets(v *validator) {
	s := &e.Secrets
	usesVault := false
	for _, r := range e.SecretRefs() {
		switch {
		case r.Ref.inline:
			v.Add(r.Field, "line %d: a secret's value must not be written here: use {env: NAME} or {vault: VARIABLE}", r.Ref.line)
		case !r.Ref.Set() && r.Required:
			v.Add(r.Field, "required: {env: NAME} (read from labplane's environment) or {vault: VARIABLE} (from vault_file)")
		case r.Ref.Env != "" && r.Ref.Vault != "":
			v.Add(r.Field, "give env or vault, not both")
		case r.Ref.Env != "" && !envVarPattern.MatchString(r.Ref.Env):
			v.Add(r.Field+".env", "%q is not an environment variable name", r.Ref.Env)
		case r.Ref.Vault != "":
			usesVault = true
			if !envVarPattern.MatchString(r.Ref.Vault) {
				v.Add(r.Field+".vault", "%q is not a variable name", r.Ref.Vault)
			}
		}
	}
	if usesVault && s.VaultFile == "" {
		v.Add("secrets.vault_file", "required: a {vault: ...} reference needs the ansible-vault file it is in")
	}
	for field, p := range map[string]string{"secrets.vault_file": s.VaultFile, "secrets.vault_password_file": s.VaultPasswordFile} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(e.Path(p)); err != nil {
			v.Add(field, "%s: %s", p, specfile.DescribeFileError(err))
		}
	}
}

func (e *Environment) validateRollout(v *validator) {
	r := &e.Rollout
	if r.Serial == "" {
		r.Serial = DefaultSerial
	} else if n, pct := strings.CutSuffix(r.Serial, "%"); !validCount(n, pct) {
		v.Add("rollout.serial", "%q is neither a count of hosts (such as 2) nor a percentage (such as 50%%)", r.Serial)
	}
}

func validCount(n string, pct bool) bool {
	i, err := strconv.Atoi(n)
	if err != nil || i < 1 {
		return false
	}
	return !pct || i <= 100
}

// Path resolves a path written in the spec against the environment's directory.
func (e *Environment) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(e.Dir, p)
}

// Endpoints are where each service of the platform answers on its hosts, by service.
func (e *Environment) Endpoints() map[string]platform.Endpoint {
	s := e.Settings
	https, ca := s.TLS.Mode == TLSCertificate, ""
	if s.TLS.CAFile != "" {
		ca = e.Path(s.TLS.CAFile)
	}
	return map[string]platform.Endpoint{"lms": {Port: s.LMSPort, SiteName: s.LMSSiteName, HTTPS: https, CAFile: ca},
		"cms": {Port: s.CMSPort, SiteName: s.CMSSiteName, HTTPS: https, CAFile: ca}, "guacd": {Port: s.GuacdPort}}
}

// ArtifactFor is the artifact of a release: a URL, or an absolute path.
func (e *Environment) ArtifactFor(release string) string {
	return e.urlOrPath(strings.ReplaceAll(e.Artifact, "{release}", release))
}

// ChecksumFor is the artifact checksum of a release, as Ansible's get_url takes it
// ("sha256:<hex>" or "sha256:<URL or absolute path of a checksum file>"), or "".
func (e *Environment) ChecksumFor(release string) string {
	c := strings.ReplaceAll(e.ArtifactChecksum, "{release}", release)
	algo, value, ok := strings.Cut(c, ":")
	if !ok || hexDigest.MatchString(value) {
		return c
	}
	return algo + ":" + e.urlOrPath(value)
}

func (e *Environment) urlOrPath(s string) string {
	if IsURL(s) {
		return s
	}
	return e.Path(s)
}

// IsURL tells an artifact (or checksum file) the hosts download from one on this machine.
func IsURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

var (
	checksumPattern = regexp.MustCompile(`^(sha256|sha384|sha512):(.+)$`)
	hexDigest       = regexp.MustCompile(`^[0-9a-fA-F]{64,128}$`)
)

func (e *Environment) validateChecksum(v *validator) {
	c := e.ArtifactChecksum
	m := checksumPattern.FindStringSubmatch(c)
	switch {
	case c == "" && IsURL(e.Artifact):
		v.Add("artifact_checksum", "required for an artifact the hosts download: sha256:<URL of the release's checksum file, with {release}>, such as %s.sha256",
			e.Artifact)
	case c == "":
	case m == nil:
		v.Add("artifact_checksum", "%q is not sha256:, sha384: or sha512: followed by a digest or the URL or path of a checksum file", c)
	case !IsURL(e.Artifact) && IsURL(m[2]):
		v.Add("artifact_checksum", "the artifact is a file on this machine: give its digest, or the path of a checksum file, not a URL")
	case hexDigest.MatchString(m[2]) && strings.Contains(e.Artifact, "{release}"):
		v.Add("artifact_checksum", "one digest cannot check every release's artifact: give the URL or path of each release's checksum file, with {release}")
	}
}

type validator = specfile.Validator

// Defaults of an environment's spec.
const (
	DefaultSSHUser        = "root"
	DefaultSSHPort        = 22
	DefaultLMSPort        = 80
	DefaultCMSPort        = 18010
	DefaultGuacdPort      = 4822
	DefaultDatabaseEngine = "sqlite3"
	DefaultDatabaseName   = "edxapp"
	DefaultSerial         = "100%"
)
