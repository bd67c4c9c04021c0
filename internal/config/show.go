package config

import (
	"time"

	"github.com/labplane/labplane/internal/policy"
)

// Effective returns the configuration as labplane uses it, for `config show`: every default
// filled in, each course's policy whole (the defaults and policy: beneath it), the store's
// DSN hidden unless it is a SQLite file. Its YAML has the file's keys, in the file's order.
func (c *Config) Effective() *Config {
	e := *c
	if e.Store.Driver != "sqlite" {
		e.Store.DSN = "(hidden)"
	}
	set := c.Rules()
	e.Policy = Policy{RulesFile: rulesFile(set.Default)}
	if len(set.Courses) > 0 {
		e.Policy.Courses = make(map[string]RulesFile, len(set.Courses))
		for course, r := range set.Courses {
			e.Policy.Courses[course] = rulesFile(r)
		}
	}
	return &e
}

// rulesFile writes validated rules as the file would: delete_after left out for "never",
// usage_limit for no limit (and usage_warn_at with it).
func rulesFile(r policy.Rules) RulesFile {
	attempts := r.MaxAttempts
	return RulesFile{IdleSuspendAfter: durationOf(r.IdleSuspendAfter), LeaveGrace: durationOf(r.LeaveGrace),
		DeleteAfter: durationOf(r.DeleteAfter), LaunchTimeout: durationOf(r.LaunchTimeout), StuckAfter: durationOf(r.StuckAfter),
		OrphanGrace: durationOf(r.OrphanGrace), RetryBackoff: durationOf(r.RetryBackoff), MaxAttempts: &attempts,
		UsageLimit: durationOf(r.UsageLimit), UsageWarnAt: durationOf(min(r.UsageWarnAt, r.UsageLimit))}
}

// durationOf is a parsed duration as if written (none for 0).
func durationOf(d time.Duration) Duration {
	if d == 0 {
		return Duration{}
	}
	return Duration{raw: d.String(), d: d}
}

// MarshalYAML writes the duration in effect (Go's notation: 15s, 5m0s, 336h0m0s).
func (d Duration) MarshalYAML() (any, error) { return d.d.String(), nil }

// IsZero: a duration neither written nor defaulted is left out (omitempty).
func (d Duration) IsZero() bool { return d.d == 0 && d.raw == "" }

// MarshalYAML writes a number, or auto.
func (b InFlight) MarshalYAML() (any, error) {
	if b.Auto {
		return "auto", nil
	}
	return b.Fixed, nil
}
