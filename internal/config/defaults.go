package config

import (
	"time"

	"github.com/labplane/labplane/internal/policy"
)

// The defaults, in one place. DeleteAfter has none: absent means never delete by age.
const (
	DefaultSite        = "labplane"
	DefaultStoreDriver = "sqlite"
	DefaultSQLiteFile  = "labplane.db"
	DefaultMaxInFlight = 4
	DefaultHookTimeout = 30 * time.Second
)

// DefaultRules apply where labplane.yaml says nothing.
var DefaultRules = policy.Rules{
	IdleSuspendAfter: 90 * time.Second,
	LaunchTimeout:    15 * time.Minute,
	StuckAfter:       30 * time.Minute,
	OrphanGrace:      time.Hour,
	MaxAttempts:      3,
	RetryBackoff:     time.Minute,
}
