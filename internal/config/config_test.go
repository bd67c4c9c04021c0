package config_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/specfile"
)

// write puts a config and a template file in a temp dir and returns the config's path.
func write(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lab.yaml"), []byte("heat_template_version: 2018-08-31\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "labplane.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `
clouds:
  - name: a
    cloud: local-a
templates:
  lab: lab.yaml
`

// Per-course rules are keyed by the course as the LMS names it: an Open edX course key.
func TestPolicyForAnOpenEdXCourseKey(t *testing.T) {
	c, err := config.Load(write(t, minimal+"policy:\n  courses:\n    \"course-v1:hastexo+hx212+201907\":\n      idle_suspend_after: 5m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Rules().For("course-v1:hastexo+hx212+201907").IdleSuspendAfter; got != 5*time.Minute {
		t.Errorf("idle_suspend_after for the course key: %s, want 5m", got)
	}
	if got := c.Rules().For("os101").IdleSuspendAfter; got != config.DefaultRules.IdleSuspendAfter {
		t.Errorf("idle_suspend_after for another course: %s, want the default", got)
	}
}

func TestMaxInFlightAuto(t *testing.T) {
	for _, tc := range []struct {
		body           string
		floor, ceiling int
	}{
		{"max_in_flight: auto", config.DefaultInFlightFloor, config.DefaultInFlightCeiling},
		{"max_in_flight: auto, in_flight_floor: 4, in_flight_ceiling: 100", 4, 100},
		{"max_in_flight: auto, in_flight_floor: 40", 40, 40},
	} {
		c, err := config.Load(write(t, "clouds:\n  - {name: a, cloud: x, "+tc.body+"}\ntemplates:\n  lab: lab.yaml\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		cl := c.Clouds[0]
		if !cl.MaxInFlight.Auto || cl.MaxInFlight.Fixed != 0 || cl.InFlightFloor != tc.floor || cl.InFlightCeiling != tc.ceiling {
			t.Errorf("%s: %+v, want auto from %d to %d", tc.body, cl, tc.floor, tc.ceiling)
		}
		if js, err := json.Marshal(cl); err != nil || !strings.Contains(string(js), `"max_in_flight":"auto"`) {
			t.Errorf("%s: as JSON %s %v", tc.body, js, err)
		}
	}
}

func TestMinimalConfigGetsTheDefaults(t *testing.T) {
	p := write(t, minimal)
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Driver != "sqlite" || c.DSN() != filepath.Join(filepath.Dir(p), "labplane.db") {
		t.Errorf("store: %s %s", c.Store.Driver, c.DSN())
	}
	if c.Clouds[0].MaxInFlight.Fixed != config.DefaultMaxInFlight || c.DefaultTemplate != "lab" {
		t.Errorf("defaults not applied: %+v %q", c.Clouds[0], c.DefaultTemplate)
	}
	if got := c.Rules().For("any"); got != config.DefaultRules || got.DeleteAfter != 0 {
		t.Errorf("rules: %+v", got)
	}
	if tp, err := c.TemplatePath("lab"); err != nil || tp != filepath.Join(filepath.Dir(p), "lab.yaml") {
		t.Errorf("template path: %q %v", tp, err)
	}
	if c.Hooks.Timeout.D() != config.DefaultHookTimeout {
		t.Errorf("hook timeout: %s", c.Hooks.Timeout.D())
	}
	if c.Site != config.DefaultSite || c.Serve.Listen != config.DefaultListen || c.Scheduler.SuspendEvery.D() != config.DefaultSuspendEvery {
		t.Errorf("serve defaults: %q %q %s", c.Site, c.Serve.Listen, c.Scheduler.SuspendEvery.D())
	}
	if c.Clouds[0].RequestTimeout.D() != config.DefaultRequestTimeout || c.Scheduler.PassTimeout.D() != config.DefaultPassTimeout {
		t.Errorf("timeouts: request %s, pass %s", c.Clouds[0].RequestTimeout.D(), c.Scheduler.PassTimeout.D())
	}
}

func TestPerCourseOverridesMergeFieldByField(t *testing.T) {
	c, err := config.Load(write(t, minimal+`
policy:
  idle_suspend_after: 5m
  delete_after: 336h
  courses:
    k8s:
      idle_suspend_after: 20m
      leave_grace: 1m
      max_attempts: 5
      usage_limit: 20h
      usage_warn_at: 30m
`))
	if err != nil {
		t.Fatal(err)
	}
	base, k8s := c.Rules().For("other"), c.Rules().For("k8s")
	if base.IdleSuspendAfter != 5*time.Minute || base.DeleteAfter != 336*time.Hour || base.LeaveGrace != 3*time.Minute || k8s.LeaveGrace != time.Minute {
		t.Errorf("base: %+v", base)
	}
	if k8s.IdleSuspendAfter != 20*time.Minute || k8s.MaxAttempts != 5 || k8s.DeleteAfter != 336*time.Hour || k8s.StuckAfter != config.DefaultRules.StuckAfter {
		t.Errorf("k8s: %+v", k8s)
	}
	if base.UsageLimit != 0 || base.UsageWarnAt != 15*time.Minute || k8s.UsageLimit != 20*time.Hour || k8s.UsageWarnAt != 30*time.Minute {
		t.Errorf("usage limits: base %s (warn %s), k8s %s (warn %s)", base.UsageLimit, base.UsageWarnAt, k8s.UsageLimit, k8s.UsageWarnAt)
	}
}

func TestBadConfigNamesFileAndField(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // fragments, each must appear in the error
	}{
		{"delete_after 0 is ambiguous", minimal + "policy:\n  delete_after: 0\n", []string{"policy.delete_after: 0 is ambiguous"}},
		{"pool of a course no lab can have", minimal + "pools:\n  \"os 101\":\n    size: 2\n", []string{`pools: course "os 101"`}},
		{"pool of no labs", minimal + "pools:\n  os101:\n    size: 0\n", []string{"pools.os101.size: must be from 1 to 1000 (got 0)"}},
		{"pool of an unknown template", minimal + "pools:\n  os101:\n    size: 2\n    template: nope\n", []string{`pools.os101.template: "nope" is not one of the templates`}},
		{"usage_limit 0 is ambiguous", minimal + "policy:\n  usage_limit: 0h\n", []string{"policy.usage_limit: 0 is ambiguous"}},
		{"usage_limit not a duration", minimal + "policy:\n  courses:\n    os101:\n      usage_limit: 20\n", []string{`policy.courses.os101.usage_limit: "20" is not a duration`}},
		{"usage_warn_at past the limit", minimal + "policy:\n  usage_limit: 10m\n", []string{"policy.usage_warn_at: 15m0s is not less than usage_limit 10m0s"}},
		{"delete_after 0s is ambiguous too", minimal + "policy:\n  delete_after: 0s\n", []string{"policy.delete_after: 0 is ambiguous"}},
		{"a bare number is not a duration", minimal + "policy:\n  idle_suspend_after: 90\n", []string{`policy.idle_suspend_after: "90" is not a duration`}},
		{"a course no lab can have", minimal + "policy:\n  courses:\n    \"course v1\":\n      idle_suspend_after: 5m\n", []string{`policy.courses: course "course v1": want an Open edX course key`}},
		{"per-course field", minimal + "policy:\n  courses:\n    os101:\n      stuck_after: soon\n", []string{`policy.courses.os101.stuck_after: "soon" is not a duration`}},
		{"negative duration", minimal + "policy:\n  orphan_grace: -1h\n", []string{"policy.orphan_grace", "negative"}},
		{"leave_grace not a duration", minimal + "policy:\n  courses:\n    os101:\n      leave_grace: soon\n", []string{`policy.courses.os101.leave_grace: "soon" is not a duration`}},
		{"max_attempts 0", minimal + "policy:\n  max_attempts: 0\n", []string{"policy.max_attempts: must be at least 1"}},
		{"a cert without its key", minimal + "serve:\n  tls: {cert_file: lab.yaml}\n", []string{`serve.tls: cert_file and key_file go together (got cert_file "lab.yaml", key_file "")`}},
		{"a client CA without TLS", minimal + "serve:\n  tls: {client_ca_file: lab.yaml}\n", []string{"serve.tls.client_ca_file: needs cert_file and key_file"}},
		{"a missing certificate", minimal + "serve:\n  tls: {cert_file: nope.crt, key_file: lab.yaml}\n", []string{"serve.tls.cert_file: stat ", "nope.crt: no such file"}},
		{"a public address without TLS", minimal + "serve:\n  listen: 10.0.0.5:8080\n", []string{"serve.listen: 10.0.0.5:8080 is not a loopback address", "serve.insecure_listen"}},
		{"rate_limit negative", minimal + "serve:\n  rate_limit: {per_second: -1}\n", []string{"serve.rate_limit.per_second: must be more than 0 (got -1)"}},
		{"rate_limit burst alone", minimal + "serve:\n  rate_limit: {burst: 5}\n", []string{"serve.rate_limit.burst: must be at least 1, with per_second (got 5)"}},
		{"hooks.max_parallel negative", minimal + "hooks:\n  max_parallel: -1\n", []string{"hooks.max_parallel: must be at least 1 (got -1)"}},
		{"hooks.env not a name", minimal + "hooks:\n  env: [PATH, \"A=B\"]\n", []string{`hooks.env[1]: "A=B" is not an environment variable's name`}},
		{"unknown field", minimal + "polcy:\n  idle: 1m\n", []string{`unknown field "polcy"`}},
		{"no clouds", "templates:\n  lab: lab.yaml\n", []string{"clouds: at least one cloud is required"}},
		{"cloud without entry", "clouds:\n  - name: a\ntemplates:\n  lab: lab.yaml\n", []string{"clouds[0].cloud: required"}},
		{"duplicate cloud", "clouds:\n  - {name: a, cloud: x}\n  - {name: a, cloud: y}\ntemplates:\n  lab: lab.yaml\n", []string{`clouds[1].name: "a" is used by another cloud`}},
		{"bad max_in_flight", "clouds:\n  - {name: a, cloud: x, max_in_flight: -2}\ntemplates:\n  lab: lab.yaml\n", []string{`clouds[0].max_in_flight: must be a number of at least 1, or auto (got "-2")`}},
		{"max_in_flight neither a number nor auto", "clouds:\n  - {name: a, cloud: x, max_in_flight: adaptive}\ntemplates:\n  lab: lab.yaml\n", []string{`clouds[0].max_in_flight: must be a number of at least 1, or auto (got "adaptive")`}},
		{"a floor for a fixed bound", "clouds:\n  - {name: a, cloud: x, max_in_flight: 8, in_flight_floor: 2}\ntemplates:\n  lab: lab.yaml\n", []string{`clouds[0].in_flight_floor: in_flight_floor and in_flight_ceiling bound max_in_flight: auto only (max_in_flight is "8")`}},
		{"ceiling under the floor", "clouds:\n  - {name: a, cloud: x, max_in_flight: auto, in_flight_floor: 8, in_flight_ceiling: 4}\ntemplates:\n  lab: lab.yaml\n", []string{"clouds[0].in_flight_ceiling: must be at least in_flight_floor (8); got 4"}},
		{"missing template file", "clouds:\n  - {name: a, cloud: x}\ntemplates:\n  lab: nope.yaml\n", []string{"templates.lab: template file nope.yaml: no such file"}},
		{"default template unknown", minimal + "default_template: big\n", []string{`default_template: "big" is not one of the templates`}},
		{"bad driver", minimal + "store:\n  driver: mysql\n", []string{`store.driver: unknown driver "mysql"`}},
		{"postgres without dsn", minimal + "store:\n  driver: postgres\n", []string{"store.dsn: required for postgres"}},
		{"dsn variable unset", minimal + "store:\n  driver: postgres\n  dsn: ${LABPLANE_TEST_UNSET_DSN}\n", []string{"store.dsn: refers to environment variable LABPLANE_TEST_UNSET_DSN"}},
		{"listen without a port", minimal + "serve:\n  listen: localhost\n", []string{`serve.listen: "localhost" is not host:port`}},
		{"zero interval", minimal + "scheduler:\n  suspend_every: 0s\n", []string{`scheduler.suspend_every: "0s" must be more than zero`}},
		{"zero pass timeout", minimal + "scheduler:\n  pass_timeout: 0s\n", []string{`scheduler.pass_timeout: "0s" must be more than zero`}},
		{"bad request timeout", "clouds:\n  - {name: a, cloud: x, request_timeout: 1 minute}\ntemplates:\n  lab: lab.yaml\n", []string{`clouds[0].request_timeout: "1 minute" is not a duration`}},
		{"bad site", minimal + "site: My Site\n", []string{`site: "My Site" must be lower-case`}},
		{"yaml syntax", "clouds: [\n", []string{"labplane.yaml", "line"}},
		{"several problems at once", "clouds:\n  - {name: A, cloud: ''}\ntemplates: {}\n", []string{"clouds[0].name", "clouds[0].cloud", "templates: at least one"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, tc.body)
			_, err := config.Load(p)
			var cerr *specfile.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want a *specfile.Error, got %v", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, p+":") {
				t.Errorf("error does not start with the file name: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "labplane.yaml"))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("want a no-such-file error, got %v", err)
	}
}

func TestDSNReadsTheEnvironment(t *testing.T) {
	t.Setenv("LABPLANE_TEST_DSN", "postgres://u:secret@127.0.0.1/db")
	c, err := config.Load(write(t, minimal+"store:\n  driver: postgres\n  dsn: ${LABPLANE_TEST_DSN}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DSN() != "postgres://u:secret@127.0.0.1/db" {
		t.Errorf("dsn: %q", c.DSN())
	}
}

func TestTheExampleConfigIsValid(t *testing.T) {
	if _, err := config.Load("../../examples/labplane.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestSuspendedCostFactor(t *testing.T) {
	cloud := func(factor string) string {
		return "clouds:\n  - {name: a, cloud: x" + factor + "}\n  - {name: b, cloud: y}\ntemplates:\n  lab: lab.yaml\n"
	}
	tests := []struct {
		name    string
		factor  string
		want    float64 // cloud a's factor when valid
		problem string  // the specfile.Problem expected on clouds[0].suspended_cost_factor, if any
	}{
		{"absent: the default", "", config.DefaultSuspendedCostFactor, ""},
		{"zero", ", suspended_cost_factor: 0", 0, ""},
		{"a part", ", suspended_cost_factor: 0.25", 0.25, ""},
		{"all", ", suspended_cost_factor: 1", 1, ""},
		{"negative", ", suspended_cost_factor: -0.1", 0, "must be from 0 (a suspended lab costs nothing) to 1 (as much as a running one); got -0.1"},
		{"above one", ", suspended_cost_factor: 1.5", 0, "must be from 0 (a suspended lab costs nothing) to 1 (as much as a running one); got 1.5"},
		{"not a number", ", suspended_cost_factor: .nan", 0, "must be from 0 (a suspended lab costs nothing) to 1 (as much as a running one); got NaN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Load(write(t, cloud(tc.factor)))
			if tc.problem != "" {
				var cerr *specfile.Error
				if !errors.As(err, &cerr) {
					t.Fatalf("want a *specfile.Error, got %v", err)
				}
				want := []specfile.Problem{{Field: "clouds[0].suspended_cost_factor", Msg: tc.problem}}
				if !reflect.DeepEqual(cerr.Problems, want) {
					t.Errorf("problems = %+v, want %+v", cerr.Problems, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]float64{"a": tc.want, "b": config.DefaultSuspendedCostFactor}
			if got := c.SuspendedCostFactors(); !reflect.DeepEqual(got, want) {
				t.Errorf("SuspendedCostFactors() = %v, want %v", got, want)
			}
		})
	}
	if _, err := config.Load(write(t, cloud(", suspended_cost_factor: half"))); err == nil || !strings.Contains(err.Error(), "half") {
		t.Errorf("a factor that is not a number: %v", err)
	}
	unvalidated := &config.Config{Clouds: []config.Cloud{{Name: "a"}}}
	if got := unvalidated.SuspendedCostFactors(); got["a"] != config.DefaultSuspendedCostFactor || len(got) != 1 {
		t.Errorf("clouds not validated: %v, want the default", got)
	}
}

// serve.rate_limit: none unless set; its burst defaults to a second's worth.
func TestRateLimit(t *testing.T) {
	c, err := config.Load(write(t, minimal))
	if err != nil || c.Serve.RateLimit != (config.RateLimit{}) {
		t.Fatalf("no rate_limit: %+v, %v", c.Serve.RateLimit, err)
	}
	c, err = config.Load(write(t, minimal+"serve:\n  rate_limit: {per_second: 2.5}\n"))
	if err != nil || c.Serve.RateLimit != (config.RateLimit{PerSecond: 2.5, Burst: 3}) {
		t.Fatalf("rate_limit 2.5/s: %+v, %v; want a burst of 3", c.Serve.RateLimit, err)
	}
}

// A warm pool is keyed by course key; its template defaults to the default template.
func TestPools(t *testing.T) {
	c, err := config.Load(write(t, minimal+"pools:\n  \"course-v1:hastexo+hx212+201907\":\n    size: 20\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Pools["course-v1:hastexo+hx212+201907"]; p.Size != 20 || p.Template != "lab" {
		t.Errorf("pool: %+v; want 20 of the default template lab", p)
	}
	if c.Scheduler.PoolsEvery.D() != config.DefaultPoolsEvery {
		t.Errorf("scheduler.pools_every: %s", c.Scheduler.PoolsEvery.D())
	}
}
