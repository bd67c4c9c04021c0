package policy

import (
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// Rules are the policy knobs for one course. A zero DeleteAfter means never delete by age.
type Rules struct {
	// IdleSuspendAfter: a running lab with no activity (heartbeat, launch, resume) for this
	// long is suspended. It is also what "a recent heartbeat" means: a lab active within it
	// is never suspended or deleted.
	IdleSuspendAfter time.Duration `json:"idle_suspend_after"`
	// DeleteAfter: a lab older than this (since its creation) is deleted, unless in use.
	DeleteAfter time.Duration `json:"delete_after,omitempty"`
	// LaunchTimeout: a stack still creating after this long is deleted.
	LaunchTimeout time.Duration `json:"launch_timeout"`
	// StuckAfter: a stack in another *_IN_PROGRESS state for this long is stuck.
	StuckAfter time.Duration `json:"stuck_after"`
	// OrphanGrace: a stack tagged by labplane with no registry row is deleted only after
	// labplane has seen it for this long.
	OrphanGrace time.Duration `json:"orphan_grace"`
	// MaxAttempts: failed actions on a lab before it is left to an operator.
	MaxAttempts int `json:"max_attempts"`
	// RetryBackoff: the wait after the first failed action; it doubles with each failure.
	RetryBackoff time.Duration `json:"retry_backoff"`
}

// InUse reports whether the learner is in the lab at now: a heartbeat or a resume within
// IdleSuspendAfter. A lab in use is never suspended or deleted unless someone asked for it.
func (r Rules) InUse(l labs.Lab, now time.Time) bool {
	return now.Sub(l.LastUsed()) < r.IdleSuspendAfter
}

// Set is the rules for every course: Default, and per-course overrides already merged.
type Set struct {
	Default Rules            `json:"default"`
	Courses map[string]Rules `json:"courses,omitempty"`
}

// For returns the rules that apply to a course.
func (s Set) For(course string) Rules {
	if r, ok := s.Courses[course]; ok {
		return r
	}
	return s.Default
}

// maxBackoff caps the doubling of RetryBackoff.
const maxBackoff = 6 * time.Hour

// Backoff is the wait before the next attempt after the given number of consecutive failures
// (1 = the first failure): RetryBackoff, doubled per further failure, capped at six hours.
func (r Rules) Backoff(failures int) time.Duration {
	d := r.RetryBackoff
	for i := 1; i < failures && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}
