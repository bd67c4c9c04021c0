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
	// DefaultInFlightFloor and DefaultInFlightCeiling bound max_in_flight: auto.
	DefaultInFlightFloor   = 2
	DefaultInFlightCeiling = 32
	// DefaultRequestTimeout: Heat answers anything in seconds; a request still going after a
	// minute is a connection that stopped answering.
	DefaultRequestTimeout = time.Minute
	DefaultHookTimeout    = 30 * time.Second
	// DefaultHooksMaxParallel: hooks running at once in a process (a class leaving would
	// start a shell per lab).
	DefaultHooksMaxParallel = 8

	// DefaultSuspendedCostFactor: a cloud bills nothing for a suspended lab (the case for
	// suspending labs assumes it).
	DefaultSuspendedCostFactor = 0.0

	DefaultListen        = "127.0.0.1:8080"
	DefaultShutdownGrace = 30 * time.Second
	DefaultTokenCache    = 5 * time.Second
	// The API's bodies are small (64 KiB at most) and its answers quick (/readyz's checks
	// take 5 s at most): a minute covers a slow network, not a client that stalls.
	DefaultReadTimeout  = 30 * time.Second
	DefaultWriteTimeout = time.Minute
	DefaultIdleTimeout  = 2 * time.Minute

	// The scheduler: suspending idle labs often (an idle lab bills until it is suspended),
	// the full pass and the reconciliation less often.
	DefaultSuspendEvery        = 15 * time.Second
	DefaultReapEvery           = 5 * time.Minute
	DefaultReconcileEvery      = 10 * time.Minute
	DefaultLaunchTimeoutsEvery = time.Minute
	DefaultPoolsEvery          = 30 * time.Second
	// DefaultPassTimeout bounds a reaper pass: far more than a pass takes (a class of 50
	// leaving is suspended in half a minute on the local Heat with max_in_flight 10), and
	// short enough that a pass stuck on a cloud holds up the suspends for minutes, not hours.
	DefaultPassTimeout = 10 * time.Minute
)

// DefaultRules apply where labplane.yaml says nothing.
var DefaultRules = policy.Rules{
	IdleSuspendAfter: 90 * time.Second,
	LeaveGrace:       3 * time.Minute,
	LaunchTimeout:    15 * time.Minute,
	StuckAfter:       30 * time.Minute,
	OrphanGrace:      time.Hour,
	MaxAttempts:      3,
	RetryBackoff:     time.Minute,
	UsageWarnAt:      15 * time.Minute,
}
