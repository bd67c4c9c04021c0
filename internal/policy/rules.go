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
	// LeaveGrace: a lab whose learner left it (labs.Lab.Left: the LMS saw its page closed) is
	// suspended this long after, unless activity returns first (or idleness comes sooner).
	LeaveGrace time.Duration `json:"leave_grace,omitempty"`
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
	// UsageLimit is the time a learner may be active in the course's labs (see Budget); zero:
	// no limit. UsageWarnAt is the time left from which the learner is warned.
	UsageLimit  time.Duration `json:"usage_limit,omitempty"`
	UsageWarnAt time.Duration `json:"usage_warn_at,omitempty"`
}

// InUse reports whether the learner is in the lab at now: a heartbeat or a resume within
// IdleSuspendAfter, and not left for LeaveGrace since. A lab in use is never suspended or
// deleted unless someone asked for it.
func (r Rules) InUse(l labs.Lab, now time.Time) bool {
	return now.Sub(l.LastUsed()) < r.IdleSuspendAfter && !r.goneAt(l, now)
}

// goneAt reports whether the lab's learner left it LeaveGrace or more before now.
func (r Rules) goneAt(l labs.Lab, now time.Time) bool {
	return l.Left() && now.Sub(l.LeftAt) >= r.LeaveGrace
}

// IdleSince is when a lab whose stack shows stackStatus counts as idle from: its last
// heartbeat or resume, or the moment its launch completed if later (a launch may take
// minutes: the learner has not had the lab before). The launch completed when the registry
// first saw CREATE_COMPLETE (the lab's StackStatusSince), or now if this is the first time.
func IdleSince(l labs.Lab, stackStatus string, now time.Time) time.Time {
	active := l.LastActivity()
	if stackStatus == "CREATE_COMPLETE" {
		ready := now
		if l.StackStatus == stackStatus && !l.StackStatusSince.IsZero() {
			ready = l.StackStatusSince
		}
		if ready.After(active) {
			active = ready
		}
	}
	return active
}

// Deadlines are when the lab will be suspended and deleted if its learner shows no more
// activity, from what the registry knows of it at now (zero: not from its status, or never):
// what the LMS shows as "your lab will be suspended in 5 minutes". The reaper acts at its
// first pass from then. A delete waits for the learner to be gone too (InUse).
func (r Rules) Deadlines(l labs.Lab, now time.Time) (suspendAt, deleteAt time.Time) {
	if l.Status == labs.Deleting || l.Status == labs.Deleted || r.IdleSuspendAfter <= 0 {
		return time.Time{}, time.Time{}
	}
	if l.Status == labs.Active {
		suspendAt = IdleSince(l, l.StackStatus, now).Add(r.IdleSuspendAfter)
		if left := l.LeftAt.Add(r.LeaveGrace); l.Left() && left.Before(suspendAt) {
			suspendAt = left
		}
	}
	if r.DeleteAfter > 0 {
		deleteAt = l.CreatedAt.Add(r.DeleteAfter)
		gone := l.LastUsed().Add(r.IdleSuspendAfter)
		if left := l.LeftAt.Add(r.LeaveGrace); l.Left() && left.Before(gone) {
			gone = left
		}
		if gone.After(deleteAt) {
			deleteAt = gone
		}
	}
	return suspendAt, deleteAt
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
