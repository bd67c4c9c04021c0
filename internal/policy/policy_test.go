package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
)

var (
	t0    = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	rules = policy.Rules{
		IdleSuspendAfter: 2 * time.Minute,
		DeleteAfter:      14 * 24 * time.Hour,
		LaunchTimeout:    15 * time.Minute,
		StuckAfter:       30 * time.Minute,
		OrphanGrace:      time.Hour,
		MaxAttempts:      3,
		RetryBackoff:     time.Minute,
	}
)

func lab(status labs.Status, stackStatus string) labs.Lab {
	return labs.Lab{ID: "l1", Learner: "ann", Course: "os101", Cloud: "a", StackName: "lab-l1", StackID: "s1",
		Status: status, StackStatus: stackStatus, StackStatusSince: t0, CreatedAt: t0}
}

func stack(status string) *labs.Stack {
	return &labs.Stack{Cloud: "a", ID: "s1", Name: "lab-l1", Status: status,
		Tags: labs.StackTags(labs.Lab{ID: "l1", Course: "os101", Learner: "ann"}, "s"), CreatedAt: t0}
}

func TestDecideLab(t *testing.T) {
	untagged := stack("CREATE_COMPLETE")
	untagged.Tags = []string{"someone-else"}
	withHeartbeat := func(l labs.Lab, at time.Time) labs.Lab { l.LastHeartbeat = at; return l }
	withAttempts := func(l labs.Lab, n int, next time.Time) labs.Lab {
		l.Attempts, l.NextAttemptAt = n, next
		return l
	}
	day := 24 * time.Hour
	tests := []struct {
		name   string
		lab    labs.Lab
		stack  *labs.Stack
		now    time.Time
		want   policy.Kind // "" = no action
		to     labs.Status
		reason string // a fragment the reason must contain
	}{
		{"running and in use: nothing", withHeartbeat(lab(labs.Active, "CREATE_COMPLETE"), t0.Add(10*time.Minute)), stack("CREATE_COMPLETE"), t0.Add(11 * time.Minute), "", "", ""},
		{"running, idle: suspend", lab(labs.Active, "CREATE_COMPLETE"), stack("CREATE_COMPLETE"), t0.Add(3 * time.Minute), policy.Suspend, "", "idle for 3m0s"},
		{"a launch that took long is not idle when it completes", func() labs.Lab { l := lab(labs.Launching, "CREATE_IN_PROGRESS"); return l }(), stack("CREATE_COMPLETE"), t0.Add(10 * time.Minute), policy.Sync, labs.Active, ""},
		{"idle counts from the launch's completion", func() labs.Lab {
			l := lab(labs.Active, "CREATE_COMPLETE")
			l.StackStatusSince = t0.Add(10 * time.Minute)
			return l
		}(), stack("CREATE_COMPLETE"), t0.Add(11 * time.Minute), "", "", ""},
		{"and suspends after idle_suspend_after from it", func() labs.Lab {
			l := lab(labs.Active, "CREATE_COMPLETE")
			l.StackStatusSince = t0.Add(10 * time.Minute)
			return l
		}(), stack("CREATE_COMPLETE"), t0.Add(13 * time.Minute), policy.Suspend, "", "idle for 3m0s"},
		{"idle just under the limit: nothing", lab(labs.Active, "CREATE_COMPLETE"), stack("CREATE_COMPLETE"), t0.Add(119 * time.Second), "", "", ""},
		{"resumed recently counts as activity", func() labs.Lab {
			l := lab(labs.Active, "RESUME_COMPLETE")
			l.LastResumedAt = t0.Add(time.Hour)
			return l
		}(), stack("RESUME_COMPLETE"), t0.Add(time.Hour + time.Minute), "", "", ""},
		{"suspended: nothing", lab(labs.Suspended, "SUSPEND_COMPLETE"), stack("SUSPEND_COMPLETE"), t0.Add(5 * day), "", "", ""},
		{"suspended past delete_after: delete", lab(labs.Suspended, "SUSPEND_COMPLETE"), stack("SUSPEND_COMPLETE"), t0.Add(15 * day), policy.Delete, "", "older than delete_after"},
		{"past delete_after but heartbeat recent: held", withHeartbeat(lab(labs.Active, "RESUME_COMPLETE"), t0.Add(15*day-time.Minute)), stack("RESUME_COMPLETE"), t0.Add(15 * day), policy.Hold, "", "in use"},
		{"registry behind the cloud: sync", lab(labs.Launching, ""), stack("CREATE_COMPLETE"), t0.Add(time.Minute), policy.Sync, labs.Active, "cloud shows CREATE_COMPLETE"},
		{"suspend finished elsewhere: sync", lab(labs.Suspending, "SUSPEND_IN_PROGRESS"), stack("SUSPEND_COMPLETE"), t0.Add(time.Minute), policy.Sync, labs.Suspended, ""},
		{"creating within launch_timeout: nothing", lab(labs.Launching, "CREATE_IN_PROGRESS"), stack("CREATE_IN_PROGRESS"), t0.Add(14 * time.Minute), "", "", ""},
		{"creating past launch_timeout: delete", lab(labs.Launching, "CREATE_IN_PROGRESS"), stack("CREATE_IN_PROGRESS"), t0.Add(16 * time.Minute), policy.Delete, "", "launch_timeout"},
		{"create failed: delete", lab(labs.Launching, "CREATE_IN_PROGRESS"), &labs.Stack{Cloud: "a", ID: "s1", Name: "lab-l1", Status: "CREATE_FAILED", StatusReason: "boom", Tags: stack("").Tags}, t0.Add(time.Minute), policy.Delete, "", "CREATE_FAILED: boom"},
		{"suspend in progress, not stuck: nothing", lab(labs.Suspending, "SUSPEND_IN_PROGRESS"), stack("SUSPEND_IN_PROGRESS"), t0.Add(29 * time.Minute), "", "", ""},
		{"suspend in progress newly seen: sync records since", lab(labs.Active, "CREATE_COMPLETE"), stack("SUSPEND_IN_PROGRESS"), t0.Add(3 * time.Hour), policy.Sync, labs.Suspending, ""},
		{"suspend stuck past stuck_after: flag", lab(labs.Suspending, "SUSPEND_IN_PROGRESS"), stack("SUSPEND_IN_PROGRESS"), t0.Add(31 * time.Minute), policy.Flag, labs.NeedsOperator, "stuck in SUSPEND_IN_PROGRESS"},
		{"suspend stuck and past delete_after: delete", lab(labs.Suspending, "SUSPEND_IN_PROGRESS"), stack("SUSPEND_IN_PROGRESS"), t0.Add(15 * day), policy.Delete, "", "stuck"},
		{"delete stuck: delete again", lab(labs.Deleting, "DELETE_IN_PROGRESS"), stack("DELETE_IN_PROGRESS"), t0.Add(31 * time.Minute), policy.Delete, "", "stuck in DELETE_IN_PROGRESS"},
		{"delete failed: retry", lab(labs.Failed, "DELETE_FAILED"), stack("DELETE_FAILED"), t0.Add(time.Hour), policy.Delete, "", "DELETE_FAILED"},
		{"delete failed, backing off", withAttempts(lab(labs.Failed, "DELETE_FAILED"), 1, t0.Add(2*time.Hour)), stack("DELETE_FAILED"), t0.Add(time.Hour), policy.Hold, "", "backing off"},
		{"delete failed max_attempts times: flag", withAttempts(lab(labs.Failed, "DELETE_FAILED"), 3, t0), stack("DELETE_FAILED"), t0.Add(time.Hour), policy.Flag, labs.NeedsOperator, "3 attempts failed"},
		{"flagged and still failed: held", withAttempts(lab(labs.NeedsOperator, "DELETE_FAILED"), 3, t0), stack("DELETE_FAILED"), t0.Add(time.Hour), policy.Hold, "", "needs an operator"},
		{"flagged, operator fixed it: sync", withAttempts(lab(labs.NeedsOperator, "DELETE_FAILED"), 3, t0), stack("SUSPEND_COMPLETE"), t0.Add(time.Hour), policy.Sync, labs.Suspended, "sound state"},
		{"suspend failed, idle: retry suspend", lab(labs.Failed, "SUSPEND_FAILED"), stack("SUSPEND_FAILED"), t0.Add(time.Hour), policy.Suspend, "", "idle"},
		{"suspend failed, backing off", withAttempts(lab(labs.Failed, "SUSPEND_FAILED"), 2, t0.Add(2*time.Hour)), stack("SUSPEND_FAILED"), t0.Add(time.Hour), policy.Hold, "", "backing off"},
		{"resume failed, idle: suspend", lab(labs.Failed, "RESUME_FAILED"), stack("RESUME_FAILED"), t0.Add(time.Hour), policy.Suspend, "", "idle"},
		{"stack gone: mark deleted", lab(labs.Active, "CREATE_COMPLETE"), nil, t0.Add(time.Hour), policy.Sync, labs.Deleted, "gone"},
		{"stack DELETE_COMPLETE: mark deleted", lab(labs.Deleting, "DELETE_IN_PROGRESS"), stack("DELETE_COMPLETE"), t0.Add(time.Hour), policy.Sync, labs.Deleted, "delete finished"},
		{"launch without a stack yet: nothing", func() labs.Lab { l := lab(labs.Launching, ""); l.StackID = ""; return l }(), nil, t0.Add(time.Minute), "", "", ""},
		{"launch that never made a stack: mark deleted", func() labs.Lab { l := lab(labs.Launching, ""); l.StackID = ""; return l }(), nil, t0.Add(time.Hour), policy.Sync, labs.Deleted, "never created"},
		{"untagged stack: never touched", lab(labs.Active, "CREATE_COMPLETE"), untagged, t0.Add(15 * day), policy.Hold, "", "never touched"},
		{"no delete_after: never deleted by age", lab(labs.Suspended, "SUSPEND_COMPLETE"), stack("SUSPEND_COMPLETE"), t0.Add(1000 * day), "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rules
			if strings.HasPrefix(tc.name, "no delete_after") {
				r.DeleteAfter = 0
			}
			a, ok := policy.DecideLab(policy.Observed{Lab: tc.lab, Stack: tc.stack}, tc.now, r)
			if tc.want == "" {
				if ok {
					t.Fatalf("want no action, got %s (%s)", a.Kind, a.Reason)
				}
				return
			}
			if !ok || a.Kind != tc.want {
				t.Fatalf("want %s, got ok=%v %s (%s)", tc.want, ok, a.Kind, a.Reason)
			}
			if a.To != tc.to {
				t.Errorf("to: want %q, got %q", tc.to, a.To)
			}
			if !strings.Contains(a.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", a.Reason, tc.reason)
			}
		})
	}
}

func TestDecideStray(t *testing.T) {
	deleted := lab(labs.Deleted, "DELETE_COMPLETE")
	other := lab(labs.Active, "CREATE_COMPLETE")
	other.Cloud, other.StackID = "b", "s2"
	// the lab's own stack, listed through a second cloud that reaches the same project
	twice := lab(labs.Active, "CREATE_COMPLETE")
	twice.Cloud = "b"
	untagged := *stack("CREATE_COMPLETE")
	untagged.Tags = nil
	// a launch recorded after the pass read the registry: no stack id yet (issue 13 #1)
	launching := lab(labs.Launching, "")
	launching.StackID = ""
	tests := []struct {
		name   string
		stray  policy.Stray
		want   policy.Kind
		reason string
	}{
		{"zombie of a deleted lab", policy.Stray{Stack: *stack("CREATE_COMPLETE"), Lab: &deleted, FirstSeen: t0}, policy.DeleteZombie, "is deleted"},
		{"zombie left by a failover", policy.Stray{Stack: *stack("CREATE_FAILED"), Lab: &other, FirstSeen: t0}, policy.DeleteZombie, "owns stack lab-l1 on b"},
		{"the lab's stack seen through another cloud", policy.Stray{Stack: *stack("CREATE_COMPLETE"), Lab: &twice, FirstSeen: t0}, policy.Hold, "two configured clouds"},
		{"a launch recorded after the registry was read", policy.Stray{Stack: *stack("CREATE_IN_PROGRESS"), Lab: &launching, FirstSeen: t0}, policy.Hold, "launch under way"},
		{"orphan within grace", policy.Stray{Stack: *stack("CREATE_COMPLETE"), FirstSeen: t0.Add(-59 * time.Minute)}, policy.Hold, "deleted after orphan_grace"},
		{"orphan past grace", policy.Stray{Stack: *stack("CREATE_COMPLETE"), FirstSeen: t0.Add(-time.Hour)}, policy.DeleteOrphan, "orphan"},
		{"untagged: never touched", policy.Stray{Stack: untagged, FirstSeen: t0.Add(-100 * time.Hour)}, policy.Hold, "never touched"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := policy.DecideStray(tc.stray, t0, rules)
			if a.Kind != tc.want || !strings.Contains(a.Reason, tc.reason) {
				t.Fatalf("want %s (%q), got %s (%s)", tc.want, tc.reason, a.Kind, a.Reason)
			}
		})
	}
}

func TestPerCourseRules(t *testing.T) {
	set := policy.Set{Default: rules, Courses: map[string]policy.Rules{"long": func() policy.Rules { r := rules; r.IdleSuspendAfter = time.Hour; return r }()}}
	short, long := lab(labs.Active, "CREATE_COMPLETE"), lab(labs.Active, "CREATE_COMPLETE")
	long.ID, long.Course = "l2", "long"
	now := t0.Add(10 * time.Minute)
	if a, ok := policy.DecideLab(policy.Observed{Lab: short, Stack: stack("CREATE_COMPLETE")}, now, set.For(short.Course)); !ok || a.Kind != policy.Suspend {
		t.Fatalf("want l1 suspended under the default rules, got %+v (%v)", a, ok)
	}
	if a, ok := policy.DecideLab(policy.Observed{Lab: long, Stack: stack("CREATE_COMPLETE")}, now, set.For(long.Course)); ok {
		t.Fatalf("want l2 left alone under its course's rules, got %+v", a)
	}
}

func TestBackoffDoublesAndCaps(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {20, 6 * time.Hour}} {
		if got := rules.Backoff(tc.failures); got != tc.want {
			t.Errorf("Backoff(%d) = %s, want %s", tc.failures, got, tc.want)
		}
	}
}

func TestImplied(t *testing.T) {
	for status, want := range map[string]labs.Status{
		"CREATE_IN_PROGRESS": labs.Launching, "CREATE_COMPLETE": labs.Active, "CREATE_FAILED": labs.Failed,
		"SUSPEND_IN_PROGRESS": labs.Suspending, "SUSPEND_COMPLETE": labs.Suspended, "SUSPEND_FAILED": labs.Failed,
		"RESUME_IN_PROGRESS": labs.Resuming, "RESUME_COMPLETE": labs.Active, "DELETE_IN_PROGRESS": labs.Deleting,
		"DELETE_COMPLETE": labs.Deleted, "UPDATE_COMPLETE": labs.Active,
	} {
		if got := policy.Implied(status); got != want {
			t.Errorf("Implied(%s) = %s, want %s", status, got, want)
		}
	}
}

// The deadlines the API shows are the reaper's: an active lab is held until the second before
// suspend_at and suspended at it; one past delete_after is deleted at delete_at, not before (a
// delete waits for the learner to be gone).
func TestDeadlinesAreTheDecisions(t *testing.T) {
	launched := t0.Add(3 * time.Minute) // its launch took 3 minutes
	rules := rules
	rules.IdleSuspendAfter, rules.LeaveGrace = 15*time.Minute, 3*time.Minute
	cases := []struct {
		name string
		lab  labs.Lab
		kind policy.Kind
	}{
		{"launched, never used", labs.Lab{CreatedAt: t0, StackStatusSince: launched}, policy.Suspend},
		{"a heartbeat", labs.Lab{CreatedAt: t0, StackStatusSince: launched, LastHeartbeat: t0.Add(time.Hour)}, policy.Suspend},
		{"resumed", labs.Lab{CreatedAt: t0, StackStatusSince: launched, LastResumedAt: t0.Add(time.Hour)}, policy.Suspend},
		{"old, in use", labs.Lab{CreatedAt: t0, StackStatusSince: launched, LastHeartbeat: t0.Add(rules.DeleteAfter - time.Minute)}, policy.Delete},
		{"left", labs.Lab{CreatedAt: t0, StackStatusSince: launched, LastHeartbeat: t0.Add(time.Hour), LeftAt: t0.Add(time.Hour + time.Second)}, policy.Suspend},
		{"left, back", labs.Lab{CreatedAt: t0, StackStatusSince: launched, LastHeartbeat: t0.Add(time.Hour + time.Minute), LeftAt: t0.Add(time.Hour)}, policy.Suspend},
		{"old, left", labs.Lab{CreatedAt: t0, StackStatusSince: launched, LastHeartbeat: t0.Add(rules.DeleteAfter - time.Minute), LeftAt: t0.Add(rules.DeleteAfter - time.Minute)}, policy.Delete},
	}
	for _, c := range cases {
		l := lab(labs.Active, "CREATE_COMPLETE")
		l.CreatedAt, l.StackStatusSince, l.LastHeartbeat, l.LastResumedAt, l.LeftAt = c.lab.CreatedAt, c.lab.StackStatusSince, c.lab.LastHeartbeat, c.lab.LastResumedAt, c.lab.LeftAt
		suspendAt, deleteAt := rules.Deadlines(l, t0)
		due := suspendAt
		if c.kind == policy.Delete {
			due = deleteAt
		}
		if due.IsZero() {
			t.Fatalf("%s: no deadline for %s", c.name, c.kind)
		}
		before, _ := policy.DecideLab(policy.Observed{Lab: l, Stack: stack("CREATE_COMPLETE")}, due.Add(-time.Second), rules)
		at, _ := policy.DecideLab(policy.Observed{Lab: l, Stack: stack("CREATE_COMPLETE")}, due, rules)
		if before.Kind == c.kind || at.Kind != c.kind {
			t.Errorf("%s: deadline %s; a second before: %s (%s); at it: %s (%s)", c.name, due, before.Kind, before.Reason, at.Kind, at.Reason)
		}
		if want := c.lab.LeftAt.Add(rules.LeaveGrace); c.name == "left" && !due.Equal(want) {
			t.Errorf("left: suspend_at %s, want leave_grace after the leave, %s", due, want)
		}
		if want := c.lab.LastHeartbeat.Add(rules.IdleSuspendAfter); c.name == "left, back" && !due.Equal(want) {
			t.Errorf("left, then back: suspend_at %s, want idle_suspend_after after the heartbeat, %s", due, want)
		}
	}
	suspended := lab(labs.Suspended, "SUSPEND_COMPLETE")
	if s, d := rules.Deadlines(suspended, t0); !s.IsZero() || !d.Equal(t0.Add(rules.DeleteAfter)) {
		t.Errorf("a suspended lab: suspend_at %s, delete_at %s; want none, and its age's", s, d)
	}
	for _, st := range []labs.Status{labs.Deleting, labs.Deleted} {
		if s, d := rules.Deadlines(lab(st, "DELETE_IN_PROGRESS"), t0); !s.IsZero() || !d.IsZero() {
			t.Errorf("a %s lab: deadlines %s, %s", st, s, d)
		}
	}
}

func TestBudget(t *testing.T) {
	r := policy.Rules{UsageLimit: 10 * time.Hour, UsageWarnAt: 15 * time.Minute}
	tests := []struct {
		name                     string
		rules                    policy.Rules
		used, added, wantLeft    time.Duration
		limited, warn, exhausted bool
	}{
		{"no usage_limit: unlimited, whatever was used", policy.Rules{UsageWarnAt: time.Hour}, 100 * time.Hour, time.Hour, 0, false, false, false},
		{"plenty left", r, time.Hour, 0, 9 * time.Hour, true, false, false},
		{"warned at usage_warn_at left", r, 9*time.Hour + 45*time.Minute, 0, 15 * time.Minute, true, true, false},
		{"one second before the warning", r, 9*time.Hour + 45*time.Minute - time.Second, 0, 15*time.Minute + time.Second, true, false, false},
		{"used up exactly", r, 10 * time.Hour, 0, 0, true, true, true},
		{"past the limit: nothing left, not less", r, 11 * time.Hour, 0, 0, true, true, true},
		{"time added by an operator counts", r, 11 * time.Hour, 2 * time.Hour, time.Hour, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.rules.Budget(tt.used, tt.added)
			if b.Limited() != tt.limited || b.Left() != tt.wantLeft || b.Warn() != tt.warn || b.Exhausted() != tt.exhausted {
				t.Errorf("%+v: limited %t left %s warn %t exhausted %t; want %t %s %t %t", b, b.Limited(), b.Left(), b.Warn(), b.Exhausted(),
					tt.limited, tt.wantLeft, tt.warn, tt.exhausted)
			}
		})
	}
}
