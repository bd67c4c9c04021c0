package reaper_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"syscall"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/store"
)

// cpuTime is the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// passCost is what one pass cost this process: CPU time, bytes allocated, the most heap it
// held above what the process held before it, and the calls made to the clouds by kind.
type passCost struct {
	cpu       time.Duration
	allocated uint64
	peak      uint64
	lists     int
	gets      int
	res       reaper.Result
}

// BenchmarkSuspendIdleAtScale: 100,000 labs on 10 fake clouds (10,000 each: a fifth running,
// the rest suspended; max_in_flight 50 each) in a SQLite registry. The suspend-idle job, every 15 s, as serve runs it
// (RunDue: the registry's labs due and their stacks only) beside the full pass it ran before
// (RunOnly: every live lab, every cloud's whole list), first with nothing due, then with 10%
// of the labs idle. Each pass's CPU time (this process, getrusage), allocations, peak heap
// (above the process's live heap before it: the fake clouds' own stacks are not the pass's)
// and cloud calls are printed, with the Heat calls a minute that the job would make at this size (a
// real Heat pages its list 100 stacks a call).
//
//	go test ./internal/reaper -short -run '^$' -bench SuspendIdleAtScale -benchtime 1x
func BenchmarkSuspendIdleAtScale(b *testing.B) {
	const nClouds, perCloud, runningShare, maxInFlight = 10, 10_000, 5, 50 // a fifth running
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		st, err := store.Open(ctx, store.SQLite, filepath.Join(b.TempDir(), "labplane.db")+"?_pragma=synchronous(OFF)")
		if err != nil {
			b.Fatal(err)
		}
		clk := clock.NewManual(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
		var clouds []*fakecloud.Cloud
		var targets []lifecycle.Target
		var rc []reaper.Cloud
		for c := range nClouds {
			fc := fakecloud.New(fmt.Sprintf("c%d", c), 0, 0)
			clouds = append(clouds, fc)
			targets = append(targets, lifecycle.Target{Cloud: fc, MaxInFlight: maxInFlight})
			rc = append(rc, fc)
		}
		var running []labs.Lab
		seedStart := time.Now()
		for c, fc := range clouds {
			for i := range perCloud {
				id := fmt.Sprintf("c%d-%05d", c, i)
				lab := labs.Lab{ID: id, Learner: "l" + id, Course: "os101", Template: "lab", Cloud: fc.Name(), StackName: "lab-" + id,
					Status: labs.Suspended, StackStatus: "SUSPEND_COMPLETE", CreatedAt: clk.Now().Add(-time.Hour), LastHeartbeat: clk.Now(),
					StackStatusSince: clk.Now().Add(-time.Hour)}
				if i%runningShare == 0 {
					lab.Status, lab.StackStatus = labs.Active, "CREATE_COMPLETE"
				}
				stack := fc.Put(labs.Stack{Name: lab.StackName, Status: lab.StackStatus, Tags: labs.StackTags(lab, "test")})
				lab.StackID = stack.ID
				if _, err := st.CreateLab(ctx, lab, labs.Event{At: lab.CreatedAt, Actor: "bench", Action: "launch"}); err != nil {
					b.Fatal(err)
				}
				if lab.Status == labs.Active {
					running = append(running, lab)
				}
			}
		}
		b.Logf("seeded %d labs in %s", nClouds*perCloud, time.Since(seedStart).Round(time.Second))
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		rules := policy.Set{Default: testRules}
		mgr := &lifecycle.Manager{Site: "test", Registry: st, Locks: st, Slots: store.NewWaiter(st), Targets: targets, Rules: rules, Now: clk.Now, Log: log,
			Template: func(string) (string, error) { return "/lab.yaml", nil }, DefaultTemplate: "lab"}
		rp := &reaper.Reaper{Site: "test", Registry: st, Clouds: rc, Applier: mgr, Rules: rules, Now: clk.Now, Log: log, Actor: "bench",
			MostInFlight: mgr.MostInFlight}

		measure := func(run func(context.Context, func(policy.Action) bool) (reaper.Result, error)) passCost {
			lists0, gets0 := calls(clouds)
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			stop := samplePeakHeap()
			cpu0 := cpuTime()
			res, err := run(ctx, reaper.SuspendIdle)
			cpu := cpuTime() - cpu0
			peak := stop()
			runtime.ReadMemStats(&m1)
			if err != nil {
				b.Fatal(err)
			}
			lists, gets := calls(clouds)
			return passCost{cpu: cpu, allocated: m1.TotalAlloc - m0.TotalAlloc, peak: peak - min(peak, m0.HeapAlloc),
				lists: lists - lists0, gets: gets - gets0, res: res}
		}
		suspended := func(c passCost) int {
			n := 0
			for _, o := range c.res.Outcomes {
				if o.Done && o.Action.Kind == policy.Suspend {
					n++
				}
			}
			return n
		}

		// nothing due: every running lab's learner is there
		b.StartTimer()
		dueIdle := measure(rp.RunDue)
		b.StopTimer()
		fullIdle := measure(rp.RunOnly)
		byCloud := measure(func(ctx context.Context, keep func(policy.Action) bool) (reaper.Result, error) {
			var all reaper.Result
			for _, c := range clouds { // as serve runs it: each cloud's pass a job of its own
				res, err := rp.ForCloud(c.Name()).RunOnly(ctx, keep)
				if err != nil {
					return all, err
				}
				all.Outcomes = append(all.Outcomes, res.Outcomes...)
			}
			return all, nil
		})
		if n := len(dueIdle.res.Outcomes) + len(fullIdle.res.Outcomes) + len(byCloud.res.Outcomes); n != 0 {
			b.Fatalf("%d actions with nothing due", n)
		}

		// 10% of the labs idle: half the running ones left 10 minutes ago, the other half are there
		clk.Add(10 * time.Minute)
		for i, lab := range running {
			if i%2 == 0 {
				if _, err := st.Heartbeat(ctx, lab.ID, clk.Now()); err != nil {
					b.Fatal(err)
				}
			}
		}
		dueSome := measure(rp.RunDue)
		if got, want := suspended(dueSome), len(running)/2; got != want {
			b.Fatalf("RunDue suspended %d labs, want the %d idle ones: plan %d labs, %d actions, %d held, %v; %+v", got, want, dueSome.res.Plan.Labs, len(dueSome.res.Plan.Actions), len(dueSome.res.Plan.Held), dueSome.res.Plan.CloudErrors, dueSome.res.Outcomes[:min(1, len(dueSome.res.Outcomes))])
		}

		// and the other half left 10 minutes later: the full pass suspends them
		clk.Add(10 * time.Minute)
		fullSome := measure(rp.RunOnly)
		if got, want := suspended(fullSome), len(running)/2; got != want {
			b.Fatalf("RunOnly suspended %d labs, want the %d idle ones", got, want)
		}

		heatCalls := func(c passCost) int { // reads only; a real Heat lists 100 stacks a call
			return c.lists*((perCloud+99)/100) + c.gets
		}
		b.ReportMetric(dueIdle.cpu.Seconds(), "cpu_s_nothing_due")
		b.ReportMetric(fullIdle.cpu.Seconds(), "cpu_s_full_pass_nothing_due")
		b.ReportMetric(dueSome.cpu.Seconds(), "cpu_s_10pct_due")
		fmt.Printf("suspend-idle over %d labs on %d fake clouds (%d running), SQLite:\n", nClouds*perCloud, nClouds, len(running))
		row := func(what string, c passCost) {
			fmt.Printf("  %-52s %6.3f CPU-s  %7.1f MB allocated  %6.1f MB peak  %4d lists  %6d gets: %6d reads of a real Heat\n",
				what, c.cpu.Seconds(), float64(c.allocated)/1e6, float64(c.peak)/1e6, c.lists, c.gets, heatCalls(c))
		}
		row("nothing due, the full pass it ran before (RunOnly)", fullIdle)
		row("nothing due, the full pass cloud by cloud (ForCloud)", byCloud)
		row("nothing due, the labs due only (RunDue)", dueIdle)
		row(fmt.Sprintf("%d idle (10%%), the labs due only (RunDue)", suspended(dueSome)), dueSome)
		row(fmt.Sprintf("%d idle (10%%), the full pass (RunOnly)", suspended(fullSome)), fullSome)
		fmt.Printf("  suspend-idle runs every 15 s: with nothing due it reads a real Heat %d times a minute, against %d for the full pass\n",
			4*heatCalls(dueIdle), 4*heatCalls(fullIdle))
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		fmt.Printf("  peak RSS of the whole benchmark (seeding included): %d MB\n", ru.Maxrss/1024)
		st.Close()
		b.StartTimer()
	}
}

// samplePeakHeap samples the heap's live and not yet collected objects every millisecond
// (runtime/metrics: no stop of the world) until the function it returns is called, which
// returns the most it saw.
func samplePeakHeap() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	done, peak := make(chan struct{}), make(chan uint64)
	go func() {
		most := read()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				most = max(most, read())
			case <-done:
				peak <- max(most, read())
				return
			}
		}
	}()
	return func() uint64 { close(done); return <-peak }
}

// calls sums the list and get calls made to the clouds.
func calls(clouds []*fakecloud.Cloud) (lists, gets int) {
	for _, c := range clouds {
		lists += c.Calls("list")
		gets += c.Calls("get")
	}
	return lists, gets
}
