// Package labs holds labplane's domain: a lab (one learner's Heat stack for one course), its
// status in the registry, the stack as a cloud reports it, and the audit events that record
// every action. It has no dependencies: the store, the clouds, the policy and the reaper all
// speak in these types.
package labs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Status is what the registry believes about a lab. The cloud is the truth: the reaper
// re-reads the stack before acting and brings the registry in line.
type Status string

const (
	// Launching: the row exists, the stack is being created (or about to be).
	Launching Status = "launching"
	// Active: the stack is complete and running (CREATE_COMPLETE, RESUME_COMPLETE).
	Active Status = "active"
	// Suspending: a suspend was requested and has not finished.
	Suspending Status = "suspending"
	// Suspended: the stack is suspended in place (SUSPEND_COMPLETE); it bills nothing, or little.
	Suspended Status = "suspended"
	// Resuming: a resume was requested and has not finished.
	Resuming Status = "resuming"
	// Deleting: a delete was requested and has not finished.
	Deleting Status = "deleting"
	// Failed: the last action on the stack failed; the reaper retries with backoff.
	Failed Status = "failed"
	// NeedsOperator: max_attempts actions failed; the reaper reports it and no longer acts.
	NeedsOperator Status = "needs-operator"
	// Deleted: the stack is gone. The row stays for the audit trail (and to spot zombies).
	Deleted Status = "deleted"
)

// Statuses lists every status, in lifecycle order.
var Statuses = []Status{Launching, Active, Suspending, Suspended, Resuming, Deleting, Failed, NeedsOperator, Deleted}

// LiveStatuses are every status but Deleted.
func LiveStatuses() []Status { return Statuses[: len(Statuses)-1 : len(Statuses)-1] } // Deleted is last

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// Lab is one learner's lab for one course: a row in the registry.
type Lab struct {
	ID       string `json:"id"`
	Learner  string `json:"learner"`
	Course   string `json:"course"`
	Template string `json:"template"`
	Cloud    string `json:"cloud"`
	// StackName and StackID identify the Heat stack; StackID is empty until the create call returned.
	StackName string `json:"stack_name"`
	StackID   string `json:"stack_id,omitempty"`
	Status    Status `json:"status"`
	// StackStatus is the stack status last observed on the cloud (CREATE_COMPLETE, ...), and
	// StackStatusSince when labplane first saw it (Heat's updated_time does not move on suspend).
	StackStatus      string    `json:"stack_status,omitempty"`
	StackStatusSince time.Time `json:"stack_status_since"`
	CreatedAt        time.Time `json:"created_at"`
	// LastActivity is the last heartbeat, launch completion or resume: what "idle" is measured from.
	LastHeartbeat time.Time `json:"last_heartbeat"`
	LastResumedAt time.Time `json:"last_resumed_at"`
	// LeftAt is when the learner last left the lab (the LMS saw its page closed; see Left).
	LeftAt time.Time `json:"left_at,omitzero"`
	// Attempts counts consecutive failed actions; NextAttemptAt is when the reaper may try again.
	Attempts      int       `json:"attempts"`
	NextAttemptAt time.Time `json:"next_attempt_at"`
	LastError     string    `json:"last_error,omitempty"`
	// Outputs are the stack's outputs once complete (connection details for Guacamole).
	Outputs   Outputs   `json:"outputs,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	DeletedAt time.Time `json:"deleted_at"`
	// ClaimedAt is when labplane took the suspend or delete now under way (Status Suspending
	// or Deleting), before its hooks ran, and ClaimedBy the process that took it (its name
	// is a registry lock the process holds while it lives); SentAt is when that action's
	// request went to the cloud. All three are cleared once the outcome is recorded. Until a
	// suspend is sent, a learner's return cancels it; a claim whose process died, or older
	// than stuck_after, may be taken over. See Claimed.
	ClaimedAt time.Time `json:"claimed_at"`
	ClaimedBy string    `json:"claimed_by,omitempty"`
	SentAt    time.Time `json:"sent_at"`
	// Version increases on every update; the store refuses an update made from a stale copy.
	Version int64 `json:"version"`
}

// Claims reports whether the stack is the lab's: on the lab's cloud, with the lab's stack id,
// or with its stack name while the lab has no id recorded (a launch whose create has not
// answered yet, or whose answer was lost).
func (l Lab) Claims(st Stack) bool {
	return st.Cloud == l.Cloud && (st.ID == l.StackID || (l.StackID == "" && st.Name == l.StackName))
}

// Claimed reports whether an action claimed on the lab is still under way at now: claimed
// (or sent) within lease, the time within which a live claimant sees it through.
func (l Lab) Claimed(now time.Time, lease time.Duration) bool {
	return !l.ClaimedAt.IsZero() && now.Sub(l.ClaimedAt) < lease
}

// Resumable reports whether a learner back for the lab gets it resumed: it is suspended, or
// was left by a failed suspend or resume (resuming it is the way back to a running lab: Heat
// resumes the resources that were suspended, and nothing else would bring it back while the
// learner is there).
func (l Lab) Resumable() bool {
	return l.Status == Suspended || (l.Status == Failed && (l.StackStatus == "SUSPEND_FAILED" || l.StackStatus == "RESUME_FAILED"))
}

// Pooled reports whether the lab is one of its course's warm pool, launched ahead of any
// learner and kept suspended: it has no learner until a launch takes it.
func (l Lab) Pooled() bool { return l.Learner == "" }

// Unclaim clears the lab's claim: its action is seen through, cancelled or taken over.
func (l *Lab) Unclaim() { l.ClaimedAt, l.ClaimedBy, l.SentAt = time.Time{}, "", time.Time{} }

// LastUsed is the later of the last heartbeat and the last resume: when a learner last
// showed they were there.
func (l Lab) LastUsed() time.Time {
	if l.LastResumedAt.After(l.LastHeartbeat) {
		return l.LastResumedAt
	}
	return l.LastHeartbeat
}

// Left reports whether the learner left the lab (the LMS saw its page closed) and has shown
// no activity since.
func (l Lab) Left() bool { return !l.LeftAt.IsZero() && !l.LeftAt.Before(l.LastUsed()) }

// LastActivity is LastUsed, or the creation if later: a lab is idle when this is older than
// the policy's idle_suspend_after.
func (l Lab) LastActivity() time.Time {
	if u := l.LastUsed(); u.After(l.CreatedAt) {
		return u
	}
	return l.CreatedAt
}

// Event is one line of the audit trail: who did what to which lab, the status before and
// after, the cloud's request id and the error, if any.
type Event struct {
	ID        int64     `json:"id"`
	LabID     string    `json:"lab_id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	From      Status    `json:"from,omitempty"`
	To        Status    `json:"to,omitempty"`
	Cloud     string    `json:"cloud,omitempty"`
	StackID   string    `json:"stack_id,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	Error     string    `json:"error,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// Activity is a span of time a learner was active in a lab: from the first to the last of a
// run of heartbeats that came close enough together (the registry decides how close). A span
// of one heartbeat has no length.
type Activity struct {
	LabID string    `json:"lab_id"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
}

// Filter selects labs in a listing; zero fields match everything.
type Filter struct {
	Cloud   string
	Course  string
	Learner string
	// Statuses, when not empty, keeps only labs in one of them.
	Statuses []Status
	// After, when set, keeps only the labs listed after the one with this id (in the order of
	// listings: by creation, then id): a page's cursor. Limit, when above zero, keeps the first
	// Limit labs.
	After string
	Limit int
}

// Tags labplane puts on every stack it creates. A stack without TagManaged is never touched,
// and an installation (a site) touches only stacks with its own SiteTag: two labplanes sharing
// a cloud project never take each other's labs for orphans.
const (
	TagManaged      = "labplane"
	tagSitePrefix   = "labplane-site="
	tagLabPrefix    = "labplane-lab="
	tagCoursePrefix = "course="
	tagLearnerPref  = "learner="
	// TagPool marks a stack launched for a course's warm pool, with no learner yet: the
	// registry records the learner who takes it, the stack's tags stay as they were.
	TagPool = "labplane-pool"
)

// SiteTag is the tag of an installation's stacks.
func SiteTag(site string) string { return tagSitePrefix + site }

// MaxTagLen is the longest tag Heat keeps (its tag column holds 80 characters).
const MaxTagLen = 80

// StackTags returns the tags for a lab's stack at a site. The course and the learner are
// tagged as they are when the tag fits Heat's rules (MaxTagLen, no comma), else as a digest
// (course-digest=<16 hex digits>): the registry keeps the full identifiers, and the lab's tag
// ties the stack to its row.
func StackTags(l Lab, site string) []string {
	tags := []string{TagManaged, SiteTag(site), tagLabPrefix + l.ID, fitTag(tagCoursePrefix, "course-digest=", l.Course)}
	if l.Pooled() {
		return append(tags, TagPool)
	}
	return append(tags, fitTag(tagLearnerPref, "learner-digest=", l.Learner))
}

// fitTag is prefix+v if Heat can keep it, else digestPrefix and a digest of v.
func fitTag(prefix, digestPrefix, v string) string {
	if t := prefix + v; utf8.RuneCountInString(t) <= MaxTagLen && !strings.ContainsRune(v, ',') {
		return t
	}
	return digestPrefix + Digest(v)
}

// Digest is a short digest of an identifier (16 hex digits of its SHA-256), where the
// identifier itself does not fit: a Heat tag, a registry lock's key.
func Digest(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:8])
}

// The identifiers the LMS sends, as Open edX makes them: a course key (course-v1:ORG+COURSE+RUN,
// or the older ORG/COURSE/RUN; each part letters, digits and _-~.:), or any short name made of
// the same; a learner's anonymous id (32 hex digits) or username (letters, digits and _-.@+).
// Both up to 255 characters; letters and digits may be any script's, as Open edX allows.
var (
	coursePattern  = regexp.MustCompile(`^[\p{L}\p{N}][\p{L}\p{N}_.~:+/@-]*$`)
	learnerPattern = regexp.MustCompile(`^[\p{L}\p{N}_.@+-]+$`)
)

// MaxIDLen is the longest course key or learner id accepted, in characters.
const MaxIDLen = 255

// CheckCourse says what is wrong with a course key, if anything.
func CheckCourse(course string) error {
	if utf8.RuneCountInString(course) > MaxIDLen || !coursePattern.MatchString(course) {
		return fmt.Errorf("course %q: want an Open edX course key (course-v1:ORG+COURSE+RUN, or ORG/COURSE/RUN) or a name: 1-%d letters, digits and _-~.:+/@, starting with a letter or digit", course, MaxIDLen)
	}
	return nil
}

// CheckLearner says what is wrong with a learner id, if anything.
func CheckLearner(learner string) error {
	if utf8.RuneCountInString(learner) > MaxIDLen || !learnerPattern.MatchString(learner) {
		return fmt.Errorf("learner %q: want an Open edX anonymous id (32 hex digits) or username: 1-%d letters, digits and _-.@+", learner, MaxIDLen)
	}
	return nil
}

// Stack is a Heat stack as a cloud reports it.
type Stack struct {
	Cloud        string    `json:"cloud"`
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Status       string    `json:"status"`
	StatusReason string    `json:"status_reason,omitempty"`
	Tags         []string  `json:"tags,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	Outputs      Outputs   `json:"outputs,omitempty"`
	// RequestID is the cloud's request id (X-Openstack-Request-Id) of the call that returned
	// this view, for the audit trail.
	RequestID string `json:"request_id,omitempty"`
}

// Outputs are a stack's outputs: the lab's connection details. Values whose names look
// secret (a password, a token) are hidden when printed or encoded as JSON; code that must
// hand them over (the API answering the LMS) reads the map directly.
type Outputs map[string]string

var secretOutput = regexp.MustCompile(`(?i)password|passwd|secret|token|private_key|credential`)

// Redacted returns a copy with secret-looking values replaced by "(hidden)".
func (o Outputs) Redacted() Outputs {
	if o == nil {
		return nil
	}
	out := make(Outputs, len(o))
	for k, v := range o {
		if secretOutput.MatchString(k) {
			v = "(hidden)"
		}
		out[k] = v
	}
	return out
}

// MarshalJSON encodes the redacted outputs.
func (o Outputs) MarshalJSON() ([]byte, error) { return json.Marshal(map[string]string(o.Redacted())) }

// StackKey identifies a stack across clouds.
type StackKey struct{ Cloud, ID string }

// Managed reports whether the stack carries labplane's tag.
func (s Stack) Managed() bool { return s.HasTag(TagManaged) }

// HasTag reports whether the stack carries the tag.
func (s Stack) HasTag(tag string) bool { return slices.Contains(s.Tags, tag) }

// LabID returns the lab id from the stack's labplane-lab=<id> tag, or "".
func (s Stack) LabID() string {
	for _, t := range s.Tags {
		if id, ok := strings.CutPrefix(t, tagLabPrefix); ok {
			return id
		}
	}
	return ""
}

// Phase splits a Heat status such as SUSPEND_IN_PROGRESS into its action and state.
func (s Stack) Phase() (action, state string) {
	action, state, _ = strings.Cut(s.Status, "_")
	return action, state
}

// Gone reports whether the stack no longer exists (DELETE_COMPLETE).
func (s Stack) Gone() bool { return s.Status == "DELETE_COMPLETE" }

// An Operation is a create, suspend, resume or delete sent to a cloud in one of its slots
// (max_in_flight), recorded before it is sent and cleared once it is known to be over. One
// whose sender stopped first (it died, or its wait timed out) keeps its slot taken until the
// cloud is seen done with the stack: the cloud goes on with it either way.
type Operation struct {
	Cloud string
	Slot  int
	Op    string
	// StackName names the stack; StackID is "" for a create sent before the cloud named it.
	StackName, StackID string
	SentAt             time.Time
}

// CourseCount is how many live labs of a course on a cloud are in a status, and how many of
// them were used (a heartbeat or a resume) at a given time or later.
type CourseCount struct {
	Course     string
	Status     Status
	Labs, Used int
}

// Drain is a cloud an operator drained at run time: no new lab goes to it, its labs stay.
type Drain struct {
	Cloud string    `json:"cloud"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"`
}

// Tally is how many labs of a course on a cloud are in a status.
type Tally struct {
	Course string `json:"course"`
	Cloud  string `json:"cloud"`
	Status Status `json:"status"`
	Labs   int    `json:"labs"`
}

// ActivityGap is how far apart two heartbeats may be and still belong to one span of the
// learner's activity. An LMS sends one about every minute while the lab's page is open; a
// browser may slow a background tab's timers to once a minute, and the network may lose one
// or two: a silence shorter than this is the learner still there, a longer one ends the span
// (the learner left).
const ActivityGap = 5 * time.Minute

// Errors callers branch on.
var (
	// ErrNotFound: no such lab.
	ErrNotFound = errors.New("lab not found")
	// ErrStale: the lab changed since it was read (another actor updated it); re-read and retry.
	ErrStale = errors.New("lab changed since it was read")
	// ErrUnavailable: the registry cannot be reached right now (its database is stopped or
	// restarting); not the request's fault, and the same call may work later.
	ErrUnavailable = errors.New("the registry's database is unavailable")
	// ErrDeleted: the lab is deleted; it takes no heartbeat.
	ErrDeleted = errors.New("lab is deleted")
	// ErrExists: the learner already has a live lab for that course.
	ErrExists = errors.New("learner already has a lab for this course")
)
