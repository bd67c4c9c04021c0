package policy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
)

// BenchmarkDecide decides about 100,000 labs (DecideLab under each course's rules) in a realistic mix: most suspended or in use,
// some idle, some past their delete time, some failed or in progress.
//
//	go test ./internal/policy -run '^$' -bench Decide -benchmem
func BenchmarkDecide(b *testing.B) {
	const n = 100_000
	now := t0.Add(30 * 24 * time.Hour)
	statuses := []string{"SUSPEND_COMPLETE", "SUSPEND_COMPLETE", "SUSPEND_COMPLETE", "CREATE_COMPLETE", "RESUME_COMPLETE",
		"CREATE_COMPLETE", "SUSPEND_FAILED", "DELETE_FAILED", "CREATE_IN_PROGRESS", "SUSPEND_IN_PROGRESS"}
	observed := make([]policy.Observed, n)
	for i := range observed {
		l := labs.Lab{ID: fmt.Sprintf("lab%06d", i), Learner: fmt.Sprintf("l%d", i), Course: fmt.Sprintf("c%d", i%20),
			Cloud: "a", StackName: fmt.Sprintf("lab-lab%06d", i), StackID: fmt.Sprintf("s%d", i),
			CreatedAt: now.Add(-time.Duration(i%40) * 24 * time.Hour), StackStatusSince: now.Add(-time.Hour)}
		st := &labs.Stack{Cloud: "a", ID: l.StackID, Name: l.StackName, Status: statuses[i%len(statuses)], Tags: labs.StackTags(l, "s")}
		l.StackStatus, l.Status = st.Status, policy.Implied(st.Status)
		if i%3 == 0 {
			l.LastHeartbeat = now.Add(-30 * time.Second) // in use
		}
		observed[i] = policy.Observed{Lab: l, Stack: st}
	}
	set := policy.Set{Default: rules, Courses: map[string]policy.Rules{"c1": rules, "c2": rules}}
	b.ReportAllocs()
	b.ResetTimer()
	actions := 0
	for b.Loop() {
		actions = 0
		for _, o := range observed {
			if _, ok := policy.DecideLab(o, now, set.For(o.Lab.Course)); ok {
				actions++
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/lab")
	b.ReportMetric(float64(actions), "actions")
}
