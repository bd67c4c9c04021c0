package reaper_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
)

// TestHeatWarmPool: on the real local Heat, a course's warm pool is launched and suspended,
// and a launch takes its lab and resumes the stack, which keeps the pool's tag.
func TestHeatWarmPool(t *testing.T) {
	r := newHeatRig(t, policy.Set{Default: testRules}, target{name: "local-a"})
	ctx := t.Context()
	r.mgr.Pools = map[string]lifecycle.Pool{r.course: {Size: 1, Template: "lab"}}
	if n, err := r.mgr.Fill(ctx, r.course); err != nil || n != 1 {
		t.Fatalf("fill: %d, %v", n, err)
	}
	lab := r.launch("ann", "", "")
	st, err := r.heat["local-a"].Get(ctx, lab.StackName, lab.StackID)
	if err != nil || lab.Learner != "ann" || lab.Status != labs.Active || st.Status != "RESUME_COMPLETE" || !st.HasTag(labs.TagPool) {
		t.Errorf("a launch from the pool: %s %s of %q; its stack %s, tags %v (%v); want ann's, resumed, tagged %s",
			lab.ID, lab.Status, lab.Learner, st.Status, st.Tags, err, labs.TagPool)
	}
}

// BenchmarkPoolLaunchHeat: the time from a launch to an active lab on the real local Heat
// (local-a), 20 launches one after another, without a warm pool (each a stack create) and
// with one (each a resume of a suspended stack of the pool, filled beforehand and not timed).
// It is the lifecycle's Start and Provision, which POST /v1/labs runs (the answer comes after
// Start; the LMS sees the lab active when Provision is done).
//
//	go test ./internal/reaper -run '^$' -bench PoolLaunchHeat -benchtime 1x
func BenchmarkPoolLaunchHeat(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local cloud")
	}
	const n = 20
	for b.Loop() {
		for _, pooled := range []bool{false, true} {
			r := newHeatRig(b, policy.Set{Default: classRules()}, target{name: "local-a"})
			if pooled {
				r.mgr.Pools = map[string]lifecycle.Pool{r.course: {Size: n, Template: "lab"}}
				if got, err := r.mgr.Fill(context.Background(), r.course); err != nil || got != n {
					b.Fatalf("fill: %d, %v", got, err)
				}
			}
			took := make([]time.Duration, n)
			for i := range n {
				start := time.Now()
				p, err := r.mgr.Start(context.Background(), lifecycle.LaunchRequest{Learner: fmt.Sprint("learner", i), Course: r.course, Actor: "bench"})
				if err != nil || p.Pooled() != pooled {
					b.Fatalf("launch %d: pooled %t, %v", i, p.Pooled(), err)
				}
				if lab, err := r.mgr.Provision(context.Background(), p); err != nil || lab.Status != labs.Active {
					b.Fatalf("launch %d: %s, %v", i, lab.Status, err)
				}
				took[i] = time.Since(start)
			}
			slices.Sort(took)
			name := map[bool]string{false: "no pool", true: "warm pool"}[pooled]
			b.Logf("%s: launch to active over %d launches: p50 %s, p99 %s (min %s)", name, n,
				took[n/2].Round(time.Millisecond), took[n-1].Round(time.Millisecond), took[0].Round(time.Millisecond))
			b.ReportMetric(took[n/2].Seconds(), map[bool]string{false: "p50-create-s", true: "p50-pool-s"}[pooled])
			b.ReportMetric(took[n-1].Seconds(), map[bool]string{false: "p99-create-s", true: "p99-pool-s"}[pooled])
			r.cleanup()
		}
	}
}
