// Package config loads and validates labplane.yaml: the store, the clouds, the lab templates,
// the policy (with per-course overrides) and the hooks. Every problem is reported with the
// file and the field, and every default lives in defaults.go.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/specfile"
)

// Config is a loaded and validated labplane.yaml.
type Config struct {
	// Path is the file it was loaded from; relative paths in it are resolved against its directory.
	Path string `yaml:"-" json:"path"`
	// Site names this installation. Its stacks are tagged labplane-site=<site>, and it never
	// touches a stack without that tag: two installations can share a cloud project.
	Site      string            `yaml:"site" json:"site"`
	Store     Store             `yaml:"store" json:"store"`
	Clouds    []Cloud           `yaml:"clouds" json:"clouds"`
	Templates map[string]string `yaml:"templates" json:"templates"`
	// DefaultTemplate is the template a launch uses when none is named; it may be left out
	// when there is exactly one template.
	DefaultTemplate string `yaml:"default_template" json:"default_template"`
	Policy          Policy `yaml:"policy" json:"-"`
	// Pools are the courses' warm pools, by course.
	Pools     map[string]Pool `yaml:"pools" json:"pools,omitempty"`
	Hooks     Hooks           `yaml:"hooks" json:"hooks"`
	Serve     Serve           `yaml:"serve" json:"serve"`
	Scheduler Scheduler       `yaml:"scheduler" json:"scheduler"`

	rules policy.Set
}

// Store selects the registry database.
type Store struct {
	// Driver is "sqlite" (the embedded default) or "postgres".
	Driver string `yaml:"driver" json:"driver"`
	// DSN is the sqlite file or the PostgreSQL URL. ${VAR} is replaced from the environment,
	// so a password need not be written in the file. Never printed.
	DSN string `yaml:"dsn" json:"-"`
}

// Cloud is one OpenStack cloud labs run on.
type Cloud struct {
	// Name is labplane's name for it (in the registry, the output and --cloud).
	Name string `yaml:"name" json:"name"`
	// Cloud is the entry in clouds.yaml (OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/clouds.yaml).
	Cloud string `yaml:"cloud" json:"cloud"`
	// MaxInFlight bounds the operations (create, suspend, resume, delete) in flight on it: a
	// number, or auto (a bound that adapts to the cloud, from InFlightFloor to InFlightCeiling).
	MaxInFlight InFlight `yaml:"max_in_flight" json:"max_in_flight"`
	// InFlightFloor and InFlightCeiling bound max_in_flight: auto.
	InFlightFloor   int `yaml:"in_flight_floor" json:"in_flight_floor,omitempty"`
	InFlightCeiling int `yaml:"in_flight_ceiling" json:"in_flight_ceiling,omitempty"`
	// RequestTimeout bounds each HTTP request to the cloud (Keystone and Heat), its response
	// body included: a connection that stops answering fails the call, transient, after it.
	RequestTimeout Duration `yaml:"request_timeout" json:"-"`
	// Capacity is how many live labs (suspended ones count) it may hold; 0 or absent = no limit.
	Capacity int `yaml:"capacity" json:"capacity,omitempty"`
	// Drain keeps its labs but places no new ones on it.
	Drain bool `yaml:"drain" json:"drain,omitempty"`
	// SuspendedCostFactor is the share of a running lab's price the cloud bills while the lab
	// is suspended, from 0 (nothing: the default) to 1 (as much as running). Cost reports bill
	// suspended hours at it. Set after validation.
	SuspendedCostFactor *float64 `yaml:"suspended_cost_factor" json:"suspended_cost_factor"`
}

// Policy is the reaper's rules: the top-level values apply to every course, Courses overrides
// them field by field for one course.
type Policy struct {
	RulesFile `yaml:",inline"`
	Courses   map[string]RulesFile `yaml:"courses,omitempty"`
}

// RulesFile is policy.Rules as written in the file: absent fields take the level above.
type RulesFile struct {
	IdleSuspendAfter Duration `yaml:"idle_suspend_after,omitempty"`
	LeaveGrace       Duration `yaml:"leave_grace,omitempty"`
	DeleteAfter      Duration `yaml:"delete_after,omitempty"`
	LaunchTimeout    Duration `yaml:"launch_timeout,omitempty"`
	StuckAfter       Duration `yaml:"stuck_after,omitempty"`
	OrphanGrace      Duration `yaml:"orphan_grace,omitempty"`
	RetryBackoff     Duration `yaml:"retry_backoff,omitempty"`
	MaxAttempts      *int     `yaml:"max_attempts,omitempty"`
	UsageLimit       Duration `yaml:"usage_limit,omitempty"`
	UsageWarnAt      Duration `yaml:"usage_warn_at,omitempty"`
}

// Hooks are shell commands run around lab actions, with the lab's details in their
// environment (LABPLANE_LAB_ID, LABPLANE_LEARNER, ...). A failing hook is reported, not fatal.
type Hooks struct {
	BeforeSuspend string   `yaml:"before_suspend" json:"before_suspend,omitempty"`
	AfterResume   string   `yaml:"after_resume" json:"after_resume,omitempty"`
	BeforeDelete  string   `yaml:"before_delete" json:"before_delete,omitempty"`
	Timeout       Duration `yaml:"timeout" json:"-"`
	// Env names the variables of labplane's environment the hooks get beyond PATH, HOME,
	// the locale and TZ; MaxParallel bounds the hooks running at once.
	Env         []string `yaml:"env" json:"env,omitempty"`
	MaxParallel int      `yaml:"max_parallel" json:"max_parallel,omitempty"`
}

// Serve configures `labplane serve`.
type Serve struct {
	// Listen is the API's address (host:port).
	Listen string `yaml:"listen" json:"listen"`
	// ShutdownGrace is how long a SIGTERM waits for actions in flight before cancelling them
	// (they are recorded either way).
	ShutdownGrace Duration `yaml:"shutdown_grace" json:"-"`
	// TokenCache is how long a checked API token is trusted without asking the store: a
	// revoked token stops working within it.
	TokenCache Duration `yaml:"token_cache" json:"-"`
	// ReadTimeout bounds reading a request, headers and body; WriteTimeout, from the end of
	// the headers to the end of the answer; IdleTimeout, a kept-alive connection waiting for
	// its next request. A slow or silent client holds no handler or connection past them.
	ReadTimeout  Duration `yaml:"read_timeout" json:"-"`
	WriteTimeout Duration `yaml:"write_timeout" json:"-"`
	IdleTimeout  Duration `yaml:"idle_timeout" json:"-"`
	// RateLimit bounds each token's requests; absent: no bound.
	RateLimit RateLimit `yaml:"rate_limit" json:"-"`
	// TLS serves the API over HTTPS; without it serve listens on loopback only, unless
	// InsecureListen says a TLS proxy in front takes care of it.
	TLS            TLS  `yaml:"tls" json:"tls"`
	InsecureListen bool `yaml:"insecure_listen" json:"insecure_listen,omitempty"`
}

// TLS is serve's certificate and key (PEM files, read again on SIGHUP) and, optionally, the CA
// whose certificates clients must show.
type TLS struct {
	CertFile     string `yaml:"cert_file" json:"cert_file,omitempty"`
	KeyFile      string `yaml:"key_file" json:"key_file,omitempty"`
	ClientCAFile string `yaml:"client_ca_file" json:"client_ca_file,omitempty"`
}

// Enabled reports whether serve serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Loopback reports whether a host:port address listens on loopback only.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckListen says what is wrong with serving on addr with s's TLS, if anything: without TLS,
// only a loopback address, unless insecure_listen.
func (s Serve) CheckListen(addr string) error {
	if s.TLS.Enabled() || s.InsecureListen || Loopback(addr) {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address, and the API would carry tokens and lab passwords in clear: "+
		"set serve.tls (cert_file, key_file), or serve.insecure_listen: true if a TLS proxy is in front", addr)
}

// RateLimit is a token bucket per API token: PerSecond requests a second on average, Burst at
// once (default: PerSecond, at least 1).
type RateLimit struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Scheduler sets how often `labplane serve` runs each part of the reaper. Each job runs on
// one replica at a time and never overlaps itself.
type Scheduler struct {
	SuspendEvery        Duration `yaml:"suspend_every" json:"-"`
	ReapEvery           Duration `yaml:"reap_every" json:"-"`
	ReconcileEvery      Duration `yaml:"reconcile_every" json:"-"`
	LaunchTimeoutsEvery Duration `yaml:"launch_timeouts_every" json:"-"`
	// PoolsEvery is how often the warm pools are filled up (a launch that takes a lab from a
	// pool also fills it at once).
	PoolsEvery Duration `yaml:"pools_every" json:"-"`
	// PassTimeout bounds a reaper pass (each job's run, and `reap --once`): when it is up the
	// actions still going are cancelled, recorded, and left to the next pass, so a pass stuck
	// on a cloud cannot hold the reaper's lock, and with it every suspend, for long.
	PassTimeout Duration `yaml:"pass_timeout" json:"-"`
}

// Pool is a course's warm pool: Size labs launched ahead of the learners, from Template, and
// kept suspended; a launch for the course takes one and resumes it.
type Pool struct {
	Size     int    `yaml:"size" json:"size"`
	Template string `yaml:"template" json:"template"`
}

// MaxPoolSize bounds a pool.
const MaxPoolSize = 1000

// Duration is a Go duration string (90s, 2m, 336h) as written in the file. It is parsed in
// Validate, where the field's name is known, so errors can name it.
type Duration struct {
	raw  string
	line int
	d    time.Duration
}

// UnmarshalYAML keeps the raw text; Validate parses it.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration such as 90s, 2m or 336h", n.Line)
	}
	d.raw, d.line = n.Value, n.Line
	return nil
}

// Set reports whether the field was written.
func (d Duration) Set() bool { return d.raw != "" }

// InFlight is max_in_flight as written: a number (Fixed), or auto. It is parsed in Validate.
type InFlight struct {
	raw   string
	Fixed int  // the bound; 0 with Auto
	Auto  bool // the bound adapts to the cloud (package inflight)
}

// UnmarshalYAML keeps the raw text; Validate parses it.
func (b *InFlight) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a number or auto", n.Line)
	}
	b.raw = n.Value
	return nil
}

// String is the bound as written in the file: a number, or auto.
func (b InFlight) String() string {
	if b.Auto {
		return "auto"
	}
	return strconv.Itoa(b.Fixed)
}

// MarshalJSON writes a number, or "auto".
func (b InFlight) MarshalJSON() ([]byte, error) {
	if b.Auto {
		return []byte(`"auto"`), nil
	}
	return []byte(strconv.Itoa(b.Fixed)), nil
}

// D is the parsed value (valid after Validate).
func (d Duration) D() time.Duration { return d.d }

// Rules returns the validated policy for every course.
func (c *Config) Rules() policy.Set { return c.rules }

// TemplatePath returns the absolute path of a named template.
func (c *Config) TemplatePath(name string) (string, error) {
	p, ok := c.Templates[name]
	if !ok {
		return "", fmt.Errorf("no template named %q among the configuration's templates (have: %s)", name, strings.Join(c.TemplateNames(), ", "))
	}
	return c.resolve(p), nil
}

// TemplateNames lists the template names, sorted.
func (c *Config) TemplateNames() []string {
	names := make([]string, 0, len(c.Templates))
	for n := range c.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SuspendedCostFactors maps each cloud's name to its suspended_cost_factor (the default where
// the clouds were not validated).
func (c *Config) SuspendedCostFactors() map[string]float64 {
	out := make(map[string]float64, len(c.Clouds))
	for _, cl := range c.Clouds {
		out[cl.Name] = DefaultSuspendedCostFactor
		if cl.SuspendedCostFactor != nil {
			out[cl.Name] = *cl.SuspendedCostFactor
		}
	}
	return out
}

// CloudNames lists the clouds in placement order.
func (c *Config) CloudNames() []string {
	names := make([]string, len(c.Clouds))
	for i, cl := range c.Clouds {
		names[i] = cl.Name
	}
	return names
}

// DSN returns the store DSN with ${VAR} expanded (sqlite paths resolved against the file).
func (c *Config) DSN() string {
	dsn := os.Expand(c.Store.DSN, os.Getenv)
	if c.Store.Driver == "sqlite" {
		return c.resolve(dsn)
	}
	return dsn
}

func (c *Config) resolve(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// Load reads, applies defaults to and validates a configuration file.
func Load(path string) (*Config, error) {
	return load(path, (*Config).validate)
}

func load(path string, validate func(*Config, *validator)) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, specfile.Fail(path, "no such file (pass --config PATH or set LABPLANE_CONFIG; examples/labplane.yaml is a start)")
		}
		return nil, specfile.Fail(path, "%s", specfile.DescribeFileError(err))
	}
	return parse(path, raw, validate)
}

// LoadRegistry reads a configuration file for the commands that need only the registry
// (deploy, runs): every field must be known, but only site and store are validated, so a
// labplane.yaml that serves only the platform's deploys needs no clouds or templates.
func LoadRegistry(path string) (*Config, error) {
	return load(path, func(c *Config, v *validator) {
		if c.Site == "" {
			c.Site = DefaultSite
		}
		c.validateStore(v)
	})
}

// Parse decodes, applies defaults to and validates a configuration held in memory; path
// names it in errors and anchors relative paths.
func Parse(path string, raw []byte) (*Config, error) {
	return parse(path, raw, (*Config).validate)
}

func parse(path string, raw []byte, validate func(*Config, *validator)) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, specfile.Fail(path, "%s", err)
	}
	c := &Config{}
	if err := specfile.Decode(path, raw, c); err != nil {
		return nil, err
	}
	c.Path = abs
	v := validator{File: path}
	validate(c, &v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

type validator = specfile.Validator

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (c *Config) validate(v *validator) {
	switch {
	case c.Site == "":
		c.Site = DefaultSite
	case !namePattern.MatchString(c.Site):
		v.Add("site", "%q must be lower-case letters, digits and dashes", c.Site)
	}
	c.validateStore(v)
	c.validateClouds(v)
	c.validateTemplates(v)
	c.validatePolicy(v)
	c.validatePools(v)
	withDefault(v, "hooks.timeout", &c.Hooks.Timeout, DefaultHookTimeout)
	switch {
	case c.Hooks.MaxParallel < 0:
		v.Add("hooks.max_parallel", "must be at least 1 (got %d)", c.Hooks.MaxParallel)
	case c.Hooks.MaxParallel == 0:
		c.Hooks.MaxParallel = DefaultHooksMaxParallel
	}
	for i, name := range c.Hooks.Env {
		if name == "" || strings.ContainsAny(name, "= ") {
			v.Add(fmt.Sprintf("hooks.env[%d]", i), "%q is not an environment variable's name", name)
		}
	}
	c.validateServe(v)
}

// withDefault parses a written duration, or sets the default.
func withDefault(v *validator, field string, d *Duration, def time.Duration) {
	if *d = parseDuration(v, field, *d, false); !d.Set() {
		d.d = def
	}
}

func (c *Config) validateServe(v *validator) {
	if c.Serve.Listen == "" {
		c.Serve.Listen = DefaultListen
	} else if _, port, err := net.SplitHostPort(c.Serve.Listen); err != nil || port == "" {
		v.Add("serve.listen", "%q is not host:port (such as 127.0.0.1:8080)", c.Serve.Listen)
	}
	if err := c.Serve.CheckListen(c.Serve.Listen); err != nil {
		v.Add("serve.listen", "%v", err)
	}
	t := &c.Serve.TLS
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		v.Add("serve.tls", "cert_file and key_file go together (got cert_file %q, key_file %q)", t.CertFile, t.KeyFile)
	case t.ClientCAFile != "" && !t.Enabled():
		v.Add("serve.tls.client_ca_file", "needs cert_file and key_file: client certificates come with TLS")
	}
	for _, f := range []struct {
		name string
		path *string
	}{{"cert_file", &t.CertFile}, {"key_file", &t.KeyFile}, {"client_ca_file", &t.ClientCAFile}} {
		if *f.path == "" {
			continue
		}
		*f.path = c.resolve(*f.path)
		if _, err := os.Stat(*f.path); err != nil {
			v.Add("serve.tls."+f.name, "%v", err)
		}
	}
	withDefault(v, "serve.shutdown_grace", &c.Serve.ShutdownGrace, DefaultShutdownGrace)
	withDefault(v, "serve.token_cache", &c.Serve.TokenCache, DefaultTokenCache)
	withDefault(v, "serve.read_timeout", &c.Serve.ReadTimeout, DefaultReadTimeout)
	withDefault(v, "serve.write_timeout", &c.Serve.WriteTimeout, DefaultWriteTimeout)
	withDefault(v, "serve.idle_timeout", &c.Serve.IdleTimeout, DefaultIdleTimeout)
	switch rl := &c.Serve.RateLimit; {
	case rl.PerSecond < 0:
		v.Add("serve.rate_limit.per_second", "must be more than 0 (got %g); leave rate_limit out for no bound", rl.PerSecond)
	case rl.Burst < 0 || (rl.Burst > 0 && rl.PerSecond == 0):
		v.Add("serve.rate_limit.burst", "must be at least 1, with per_second (got %d)", rl.Burst)
	case rl.PerSecond > 0 && rl.Burst == 0:
		rl.Burst = max(1, int(math.Ceil(rl.PerSecond)))
	}
	withDefault(v, "scheduler.suspend_every", &c.Scheduler.SuspendEvery, DefaultSuspendEvery)
	withDefault(v, "scheduler.reap_every", &c.Scheduler.ReapEvery, DefaultReapEvery)
	withDefault(v, "scheduler.reconcile_every", &c.Scheduler.ReconcileEvery, DefaultReconcileEvery)
	withDefault(v, "scheduler.launch_timeouts_every", &c.Scheduler.LaunchTimeoutsEvery, DefaultLaunchTimeoutsEvery)
	withDefault(v, "scheduler.pools_every", &c.Scheduler.PoolsEvery, DefaultPoolsEvery)
	withDefault(v, "scheduler.pass_timeout", &c.Scheduler.PassTimeout, DefaultPassTimeout)
}

func (c *Config) validateStore(v *validator) {
	switch c.Store.Driver {
	case "":
		c.Store.Driver = DefaultStoreDriver
	case "sqlite", "postgres":
	default:
		v.Add("store.driver", "unknown driver %q (use sqlite or postgres)", c.Store.Driver)
		return
	}
	if c.Store.DSN == "" {
		if c.Store.Driver == "postgres" {
			v.Add("store.dsn", "required for postgres (a URL such as postgres://labplane@db:5432/labplane; ${VAR} reads the environment)")
			return
		}
		c.Store.DSN = DefaultSQLiteFile
	}
	var missing []string
	os.Expand(c.Store.DSN, func(k string) string {
		if _, ok := os.LookupEnv(k); !ok {
			missing = append(missing, k)
		}
		return ""
	})
	for _, k := range missing {
		v.Add("store.dsn", "refers to environment variable %s, which is not set", k)
	}
}

func (c *Config) validateClouds(v *validator) {
	if len(c.Clouds) == 0 {
		v.Add("clouds", "at least one cloud is required")
	}
	seen := map[string]bool{}
	for i := range c.Clouds {
		cl := &c.Clouds[i]
		f := fmt.Sprintf("clouds[%d]", i)
		switch {
		case cl.Name == "":
			v.Add(f+".name", "required")
		case !namePattern.MatchString(cl.Name):
			v.Add(f+".name", "%q must be lower-case letters, digits and dashes", cl.Name)
		case seen[cl.Name]:
			v.Add(f+".name", "%q is used by another cloud", cl.Name)
		}
		seen[cl.Name] = true
		if cl.Cloud == "" {
			v.Add(f+".cloud", "required: the name of an entry in clouds.yaml")
		}
		cl.validateInFlight(v, f)
		withDefault(v, f+".request_timeout", &cl.RequestTimeout, DefaultRequestTimeout)
		if cl.Capacity < 0 {
			v.Add(f+".capacity", "must not be negative (got %d; leave it out for no limit)", cl.Capacity)
		}
		switch factor := cl.SuspendedCostFactor; {
		case factor == nil:
			cl.SuspendedCostFactor = new(DefaultSuspendedCostFactor)
		case !(*factor >= 0 && *factor <= 1): // NaN too
			v.Add(f+".suspended_cost_factor", "must be from 0 (a suspended lab costs nothing) to 1 (as much as a running one); got %g", *factor)
		}
	}
}

// validateInFlight parses max_in_flight and checks the auto bound's floor and ceiling.
func (cl *Cloud) validateInFlight(v *validator, f string) {
	b := &cl.MaxInFlight
	switch n, err := strconv.Atoi(b.raw); {
	case b.raw == "":
		b.Fixed = DefaultMaxInFlight
	case b.raw == "auto":
		b.Auto = true
	case err != nil || n < 1:
		v.Add(f+".max_in_flight", "must be a number of at least 1, or auto (got %q)", b.raw)
	default:
		b.Fixed = n
	}
	if !b.Auto {
		if cl.InFlightFloor != 0 || cl.InFlightCeiling != 0 {
			v.Add(f+".in_flight_floor", "in_flight_floor and in_flight_ceiling bound max_in_flight: auto only (max_in_flight is %q)", b)
		}
		return
	}
	if cl.InFlightFloor == 0 {
		cl.InFlightFloor = DefaultInFlightFloor
	}
	if cl.InFlightCeiling == 0 {
		cl.InFlightCeiling = max(DefaultInFlightCeiling, cl.InFlightFloor)
	}
	switch {
	case cl.InFlightFloor < 1:
		v.Add(f+".in_flight_floor", "must be at least 1 (got %d)", cl.InFlightFloor)
	case cl.InFlightCeiling < cl.InFlightFloor:
		v.Add(f+".in_flight_ceiling", "must be at least in_flight_floor (%d); got %d", cl.InFlightFloor, cl.InFlightCeiling)
	}
}

func (c *Config) validateTemplates(v *validator) {
	if len(c.Templates) == 0 {
		v.Add("templates", "at least one lab template is required (name: path of a Heat template)")
		return
	}
	for _, name := range c.TemplateNames() {
		f := "templates." + name
		p := c.Templates[name]
		if p == "" {
			v.Add(f, "the path of a Heat template file is required")
			continue
		}
		if st, err := os.Stat(c.resolve(p)); err != nil {
			v.Add(f, "template file %s: %s", p, specfile.DescribeFileError(err))
		} else if st.IsDir() {
			v.Add(f, "template file %s is a directory", p)
		}
	}
	switch {
	case c.DefaultTemplate == "" && len(c.Templates) == 1:
		c.DefaultTemplate = c.TemplateNames()[0]
	case c.DefaultTemplate == "":
		v.Add("default_template", "required when there is more than one template (one of: %s)", strings.Join(c.TemplateNames(), ", "))
	case c.Templates[c.DefaultTemplate] == "":
		v.Add("default_template", "%q is not one of the templates (%s)", c.DefaultTemplate, strings.Join(c.TemplateNames(), ", "))
	}
}

func (c *Config) validatePools(v *validator) {
	for course, p := range c.Pools {
		at := "pools." + course
		if err := labs.CheckCourse(course); err != nil {
			v.Add("pools", "%v: no lab can have it, so this pool would never be taken from", err)
		}
		if p.Size < 1 || p.Size > MaxPoolSize {
			v.Add(at+".size", "must be from 1 to %d (got %d); leave the pool out for none", MaxPoolSize, p.Size)
		}
		switch {
		case p.Template == "":
			p.Template = c.DefaultTemplate
			c.Pools[course] = p
		case c.Templates[p.Template] == "":
			v.Add(at+".template", "%q is not one of the templates (%s)", p.Template, strings.Join(c.TemplateNames(), ", "))
		}
	}
}

func (c *Config) validatePolicy(v *validator) {
	base := c.Policy.RulesFile.resolve(v, "policy", DefaultRules)
	c.rules = policy.Set{Default: base, Courses: map[string]policy.Rules{}}
	for course, rf := range c.Policy.Courses {
		if err := labs.CheckCourse(course); err != nil {
			v.Add("policy.courses", "%v: no lab can have it, so these rules would never apply", err)
		}
		c.rules.Courses[course] = rf.resolve(v, "policy.courses."+course, base)
	}
}

// resolve validates the written fields and fills the rest from base.
func (rf RulesFile) resolve(v *validator, at string, base policy.Rules) policy.Rules {
	r := base
	set := func(name string, d Duration, dst *time.Duration, zeroOK bool) {
		if d = parseDuration(v, at+"."+name, d, zeroOK); d.Set() {
			*dst = d.d
		}
	}
	set("idle_suspend_after", rf.IdleSuspendAfter, &r.IdleSuspendAfter, false)
	set("leave_grace", rf.LeaveGrace, &r.LeaveGrace, true)
	if isZero(rf.DeleteAfter.raw) {
		v.Add(at+".delete_after", "0 is ambiguous: leave delete_after out to never delete by age, or give a duration such as 336h")
	} else {
		set("delete_after", rf.DeleteAfter, &r.DeleteAfter, false)
	}
	set("launch_timeout", rf.LaunchTimeout, &r.LaunchTimeout, false)
	set("stuck_after", rf.StuckAfter, &r.StuckAfter, false)
	set("orphan_grace", rf.OrphanGrace, &r.OrphanGrace, true)
	set("retry_backoff", rf.RetryBackoff, &r.RetryBackoff, false)
	if isZero(rf.UsageLimit.raw) {
		v.Add(at+".usage_limit", "0 is ambiguous: leave usage_limit out for no limit, or give a duration such as 20h")
	} else {
		set("usage_limit", rf.UsageLimit, &r.UsageLimit, false)
	}
	set("usage_warn_at", rf.UsageWarnAt, &r.UsageWarnAt, true)
	if r.UsageLimit > 0 && r.UsageWarnAt >= r.UsageLimit {
		v.Add(at+".usage_warn_at", "%s is not less than usage_limit %s: every learner would be warned from the start", r.UsageWarnAt, r.UsageLimit)
	}
	if rf.MaxAttempts != nil {
		if *rf.MaxAttempts < 1 {
			v.Add(at+".max_attempts", "must be at least 1 (got %d)", *rf.MaxAttempts)
		} else {
			r.MaxAttempts = *rf.MaxAttempts
		}
	}
	return r
}

// isZero reports whether raw is a zero duration: "0", "0s", "0h0m".
func isZero(raw string) bool {
	d, err := time.ParseDuration(raw)
	return raw != "" && err == nil && d == 0
}

// parseDuration parses a written duration, reporting a bad one under field.
func parseDuration(v *validator, field string, d Duration, zeroOK bool) Duration {
	if !d.Set() {
		return d
	}
	parsed, err := time.ParseDuration(d.raw)
	switch {
	case err != nil:
		v.Add(field, "%q is not a duration: write a number with a unit, such as 90s, 2m or 336h", d.raw)
		return Duration{}
	case parsed < 0:
		v.Add(field, "%q must not be negative", d.raw)
		return Duration{}
	case parsed == 0 && !zeroOK:
		v.Add(field, "%q must be more than zero", d.raw)
		return Duration{}
	}
	d.d = parsed
	return d
}
