package reaper_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/store"
)

// hastexo-xblock's suspender: every 60 s it takes at most 4 stacks.
const (
	hastexoTick    = 60 * time.Second
	hastexoPerTick = 4
)

// classReport measures one class leaving at once: every lab idle, one reaper pass.
type classReport struct {
	labs        int
	maxInFlight int
	elapsed     time.Duration // from the start of the pass until every lab is suspended
	alone       time.Duration // one suspend alone on the cloud, measured in the run
	meanOp      time.Duration // the mean time a suspend held its slot during the class, measured
	bound       time.Duration // ceil(labs / max_in_flight) * meanOp: the best the bound allows
	labHours    float64       // lab-hours between the class leaving and each lab suspended
}

// latencies collects the time each suspend held its cloud slot (the cloud's latency under
// the load the class puts on it).
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) observe(op string, took time.Duration, err error) {
	if op != "suspend" || err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, took)
}

func (l *latencies) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = nil
}

// sum is the time every suspend held its slot, in all.
func (l *latencies) sum() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var sum time.Duration
	for _, d := range l.all {
		sum += d
	}
	return sum
}

func (l *latencies) mean() time.Duration {
	sum := l.sum()
	l.mu.Lock()
	defer l.mu.Unlock()
	return sum / time.Duration(max(1, len(l.all)))
}

// probeSuspend measures one suspend alone on the cloud (the latency the bound is made of),
// with a lab launched for it and deleted after.
func probeSuspend(b *testing.B, mgr *lifecycle.Manager) time.Duration {
	b.Helper()
	ctx := context.Background()
	lab, err := mgr.Launch(ctx, lifecycle.LaunchRequest{Learner: "probe", Course: "probe", Actor: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := mgr.Do(ctx, lifecycle.OpSuspend, lab.ID, "bench", true); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	if _, err := mgr.Do(ctx, lifecycle.OpDelete, lab.ID, "bench", true); err != nil {
		b.Fatal(err)
	}
	return took
}

func measureClass(b *testing.B, rp *reaper.Reaper, n, maxInFlight int, alone time.Duration, lat *latencies) classReport {
	b.Helper()
	lat.reset()
	start := time.Now()
	res, err := rp.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	var waited float64
	done := 0
	for _, o := range res.Outcomes {
		if o.Action.Kind == policy.Suspend && o.Done {
			done++
		}
	}
	if done != n {
		b.Fatalf("suspended %d of %d labs: %+v", done, n, res.Outcomes[:min(3, len(res.Outcomes))])
	}
	// each lab bills until its suspend is done: about its place in the queue times meanOp
	for _, o := range res.Outcomes {
		waited += o.Duration.Hours()
	}
	rounds := int(math.Ceil(float64(n) / float64(maxInFlight)))
	mean := lat.mean()
	return classReport{labs: n, maxInFlight: maxInFlight, elapsed: elapsed, alone: alone, meanOp: mean,
		bound: time.Duration(rounds) * mean, labHours: waited}
}

// hastexo models the same class under hastexo-xblock's defaults with the same measured
// suspend time: ceil(n/4) ticks 60 s apart; each lab bills until its tick's suspend is done.
func hastexo(n int, meanOp time.Duration) (elapsed time.Duration, labHours float64) {
	ticks := int(math.Ceil(float64(n) / hastexoPerTick))
	elapsed = time.Duration(ticks-1)*hastexoTick + meanOp
	for i := range n {
		labHours += (time.Duration(i/hastexoPerTick)*hastexoTick + meanOp).Hours()
	}
	return elapsed, labHours
}

func report(b *testing.B, name string, c classReport) {
	hElapsed, hHours := hastexo(c.labs, c.alone) // 4 at a time: about the latency of one alone
	ratio := c.elapsed.Seconds() / c.bound.Seconds()
	b.ReportMetric(c.elapsed.Seconds(), "s_all_suspended")
	b.ReportMetric(c.bound.Seconds(), "s_bound")
	b.ReportMetric(ratio, "ratio_to_bound")
	b.ReportMetric(hElapsed.Seconds(), "s_hastexo")
	b.ReportMetric(hElapsed.Seconds()/c.elapsed.Seconds(), "x_faster_than_hastexo")
	fmt.Printf("%s: %d labs, max_in_flight %d; one suspend alone takes %s, under the class's load %s (mean time holding a slot; both measured)\n",
		name, c.labs, c.maxInFlight, c.alone.Round(time.Millisecond), c.meanOp.Round(time.Millisecond))
	fmt.Printf("  labplane:                all suspended in %8s, bound ceil(%d/%d) x %s = %s, ratio %.3f (goal <= 1.2); %.2f lab-hours billed while waiting\n",
		c.elapsed.Round(time.Millisecond), c.labs, c.maxInFlight, c.meanOp.Round(time.Millisecond), c.bound.Round(time.Millisecond), ratio, c.labHours)
	fmt.Printf("  hastexo-xblock defaults: all suspended in %8s (4 stacks per 60 s tick, modelled with the same suspend time); %.2f lab-hours billed while waiting\n",
		hElapsed.Round(time.Second), hHours)
}

// BenchmarkClassLeaves: a class of 500 learners leaves at once, on the fake cloud with a
// realistic suspend time (2 s, about what the local Heat takes for the example lab). The bound
// is ceil(500/max_in_flight) times the cloud's latency measured during the run; the same class
// under hastexo-xblock's defaults is modelled beside it with that latency.
//
//	go test ./internal/reaper -short -run '^$' -bench ClassLeaves -benchtime 1x
func BenchmarkClassLeaves(b *testing.B) {
	const n, maxInFlight = 500, 50
	for b.Loop() {
		b.StopTimer()
		c := fakecloud.New("a", maxInFlight, 2*time.Second)
		var lat latencies
		c.Observe(lat.observe)
		r := newRig(b, c)
		alone := probeSuspend(b, r.mgr)
		launchMany(b, r.mgr, r.store, "class", n, 25)
		r.clock.Add(10 * time.Minute)
		b.StartTimer()
		report(b, "fake cloud", measureClass(b, r.reaper, n, maxInFlight, alone, &lat))
	}
}

// BenchmarkClassLeavesHeat: the same with 50 labs on the real local Heat (local-a), whose
// suspend time is whatever Heat takes under this load, measured in the run.
//
//	go test ./internal/reaper -run '^$' -bench ClassLeavesHeat -benchtime 1x
func BenchmarkClassLeavesHeat(b *testing.B) {
	classLeavesHeat(b, "local-a", "lab", "local Heat")
}

// BenchmarkClassLeavesHeatServers: the same with 50 labs of two real servers each
// (examples/templates/servers.yaml) on local-servers, whose Nova suspends 100 servers.
//
//	go test ./internal/reaper -run '^$' -bench ClassLeavesHeatServers -benchtime 1x
func BenchmarkClassLeavesHeatServers(b *testing.B) {
	classLeavesHeat(b, "local-servers", "servers", "local Heat, servers")
}

func classLeavesHeat(b *testing.B, cloudName, template, what string) {
	if testing.Short() {
		b.Skip("needs the local cloud")
	}
	const n, maxInFlight = 50, 10
	for b.Loop() {
		b.StopTimer()
		var lat latencies
		r := newHeatRig(b, policy.Set{Default: classRules()}, target{name: cloudName, maxInFlight: maxInFlight, observe: lat.observe})
		r.mgr.DefaultTemplate = template
		alone := probeSuspend(b, r.mgr)
		launchMany(b, r.mgr, r.store, r.course, n, 25) // the rig's course: its cleanup deletes them
		r.clock.Add(10 * time.Minute)
		b.StartTimer()
		report(b, what, measureClass(b, r.reaper, n, maxInFlight, alone, &lat))
		b.StopTimer()
		r.cleanup()
		b.StartTimer()
	}
}

// classRules are the tests' rules with room for a class's launches to wait for the cloud's
// slots: a launch's timeout counts its wait for a slot.
func classRules() policy.Rules {
	r := testRules
	r.LaunchTimeout = 10 * time.Minute
	return r
}

// launchMany launches n labs of course, at a time at once.
func launchMany(b *testing.B, mgr *lifecycle.Manager, st *store.Store, course string, n, at int) {
	b.Helper()
	sem := make(chan struct{}, at)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			req := lifecycle.LaunchRequest{Learner: fmt.Sprintf("learner%04d", i), Course: course, Actor: "bench"}
			if _, err := mgr.Launch(context.Background(), req); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	allActive(b, st, n, errs)
}

// allActive fails the benchmark with the first of errs (closed here), or unless n labs are active.
func allActive(b *testing.B, st *store.Store, n int, errs chan error) {
	b.Helper()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	live, err := st.ListLabs(context.Background(), labs.Filter{Statuses: []labs.Status{labs.Active}})
	if err != nil || len(live) != n {
		b.Fatalf("want %d active labs, got %d (%v)", n, len(live), err)
	}
}
