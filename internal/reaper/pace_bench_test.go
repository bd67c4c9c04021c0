package reaper_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stacks"
	"github.com/gophercloud/utils/v2/openstack/clientconfig"

	"github.com/labplane/labplane/internal/inflight"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/store"
)

// shellLoop does what an operator's shell loop does straight on Heat's API, the baseline of
// BenchmarkPaceHeat: workers at a time, send an action (suspend or resume) to the next stack
// and read it every 100 ms until it is <ACTION>_COMPLETE. It returns how long the whole list
// took, and the actions Heat refused or failed.
func shellLoop(ctx context.Context, sc *gophercloud.ServiceClient, action string, sts []labs.Stack, workers int) (time.Duration, []error) {
	next := make(chan labs.Stack, len(sts))
	for _, st := range sts {
		next <- st
	}
	close(next)
	errs := make(chan error, len(sts))
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for st := range next {
				url := sc.ServiceURL("stacks", st.Name, st.ID, "actions")
				if _, err := sc.Post(ctx, url, map[string]any{action: nil}, nil, &gophercloud.RequestOpts{OkCodes: []int{200}}); err != nil {
					errs <- fmt.Errorf("%s %s: %w", action, st.Name, err)
					continue
				}
				if err := readUntilDone(ctx, sc, st.Name, st.ID, strings.ToUpper(action)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	var failed []error
	for err := range errs {
		failed = append(failed, err)
	}
	return took, failed
}

// shellCreate creates n stacks of the example lab straight on Heat's API, workers at a time,
// reading each every 100 ms until CREATE_COMPLETE, and deletes them after (all at once, not
// timed): how long the creates took.
func shellCreate(ctx context.Context, b *testing.B, sc *gophercloud.ServiceClient, prefix string, n, workers int) time.Duration {
	b.Helper()
	template, err := filepath.Abs("../../examples/templates/lab.yaml")
	if err != nil {
		b.Fatal(err)
	}
	names := make(chan string, n)
	for i := range n {
		names <- fmt.Sprintf("shell-%s-%03d", prefix, i)
	}
	close(names)
	var mu sync.Mutex
	var made []labs.Stack
	errs := make(chan error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for name := range names {
				opts := stacks.CreateOpts{Name: name, TemplateOpts: &stacks.Template{TE: stacks.TE{URL: "file://" + template}}, Timeout: 10}
				st, err := stacks.Create(ctx, sc, opts).Extract()
				if err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					continue
				}
				mu.Lock()
				made = append(made, labs.Stack{Name: name, ID: st.ID})
				mu.Unlock()
				if err := readUntilDone(ctx, sc, name, st.ID, "CREATE"); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for _, st := range made {
		if err := stacks.Delete(ctx, sc, st.Name, st.ID).ExtractErr(); err != nil {
			b.Errorf("delete %s: %v", st.Name, err)
		}
	}
	for _, st := range made {
		for {
			got, err := stacks.Get(ctx, sc, st.Name, st.ID).Extract()
			if err != nil || got.Status == "DELETE_COMPLETE" {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	for err := range errs {
		b.Fatal(err)
	}
	return took
}

// readUntilDone reads a stack every 100 ms, as a shell loop would, until its action is
// <ACTION>_COMPLETE (nil) or <ACTION>_FAILED (an error with Heat's reason).
func readUntilDone(ctx context.Context, sc *gophercloud.ServiceClient, name, id, action string) error {
	for {
		time.Sleep(100 * time.Millisecond)
		got, err := stacks.Get(ctx, sc, name, id).Extract()
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("%s %s: %w", strings.ToLower(action), name, ctx.Err())
		case err != nil:
			// a loaded Heat answers 500 at times: read again
		case got.Status == action+"_COMPLETE":
			return nil
		case got.Status == action+"_FAILED":
			return fmt.Errorf("%s %s: %s", strings.ToLower(action), name, got.StatusReason)
		}
	}
}

// BenchmarkPaceHeat: a class of 100 comes and goes on the real local Heat (local-a), the
// production poll interval (1 s), labplane beside a shell loop straight on Heat's API that keeps
// 8 actions in flight and reads each stack every 100 ms:
//
//  1. the class arrives: the shell loop creates 100 stacks of the example lab (then deletes
//     them); labplane launches 100 labs at once, max_in_flight 8;
//  2. the class leaves: the shell loop suspends the 100 labs' stacks and resumes them;
//     labplane's reaper suspends them in one pass (what `labplane reap --once --yes` runs);
//  3. the class returns: labplane's launch-or-get of the 100 labs at once resumes them;
//  4. the same leave and return with max_in_flight: auto (floor 2, ceiling 32), the bound's
//     trajectory against Heat's suspend times printed;
//  5. the class leaves once more, all 100 suspends sent at once by the shell loop with no
//     bound: its time, and how many of them Heat refused or failed.
//
// The ratios to the shell loop are printed, with the reads of a stack labplane made per action.
//
//	go test ./internal/reaper -run '^$' -bench PaceHeat -benchtime 1x -timeout 40m
func BenchmarkPaceHeat(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local cloud")
	}
	const n, bound, floor, ceiling = 100, 8, 2, 32
	ctx := context.Background()
	sc, err := clientconfig.NewServiceClient(ctx, "orchestration", &clientconfig.ClientOpts{Cloud: "local-a"})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		var lat latencies
		var trajectory boundTrajectory
		r := newHeatRig(b, policy.Set{Default: classRules()}, target{name: "local-a", maxInFlight: bound, poll: time.Second,
			observe: func(op string, took time.Duration, err error) {
				lat.observe(op, took, err)
				trajectory.observe(op, took, err)
			}})
		h := r.heat["local-a"]
		// reads per action over what f does
		reads := func(f func()) float64 {
			w0, r0 := h.Reads()
			f()
			w, rd := h.Reads()
			return float64(rd-r0) / float64(max(1, w-w0))
		}
		timed := func(f func()) (took time.Duration, readsPerOp float64) {
			start := time.Now()
			readsPerOp = reads(f)
			return time.Since(start), readsPerOp
		}
		leave := func() (time.Duration, float64) {
			r.clock.Add(10 * time.Minute)
			return timed(func() {
				res, err := r.reaper.Run(ctx)
				if err != nil {
					b.Fatal(err)
				}
				done := 0
				for _, o := range res.Outcomes {
					if o.Action.Kind == policy.Suspend && o.Done {
						done++
					}
				}
				if done != n {
					b.Fatalf("suspended %d of %d labs", done, n)
				}
			})
		}
		arrive := func() (time.Duration, float64) {
			return timed(func() { launchMany(b, r.mgr, r.store, r.course, n, n) })
		}
		comeBack := func() (time.Duration, float64) { return timed(func() { returnMany(b, r.mgr, r.store, r.course, n) }) }

		progress := func(what string, took time.Duration) { fmt.Printf("  (%s: %.2fs)\n", what, took.Seconds()) }
		shellCreated := shellCreate(ctx, b, sc, r.course, n, bound)
		progress("shell loop creating", shellCreated)
		launched, launchReads := arrive()
		progress("labplane launching", launched)
		sts, err := h.List(ctx, labs.SiteTag(r.course))
		if err != nil || len(sts) != n {
			b.Fatalf("the class's stacks: %d, %v", len(sts), err)
		}
		shellSuspended, errs := shellLoop(ctx, sc, "suspend", sts, bound)
		failOn(b, errs)
		progress("shell loop suspending", shellSuspended)
		shellResumed, errs := shellLoop(ctx, sc, "resume", sts, bound)
		failOn(b, errs)
		progress("shell loop resuming", shellResumed)

		r.clock.Add(10 * time.Minute)
		planned, _ := timed(func() {
			if _, err := r.reaper.Plan(ctx); err != nil {
				b.Fatal(err)
			}
		})
		lat.reset()
		b.StartTimer()
		suspended, suspendReads := leave()
		b.StopTimer()
		meanSuspend, inHeat := lat.mean(), lat.sum()
		progress("labplane's reaper pass", suspended)
		resumed, resumeReads := comeBack()
		progress("labplane's launch-or-get", resumed)

		r.mgr.Targets[0].Adaptive = inflight.New(floor, ceiling)
		trajectory.start(r.mgr.Targets[0].Adaptive)
		autoSuspended, autoReads := leave()
		trajectory.stop()
		progress("labplane's reaper pass, auto", autoSuspended)
		fmt.Print(&trajectory)
		autoResumed, _ := comeBack()
		progress("labplane's launch-or-get, auto", autoResumed)

		// Heat may not get through a burst at all (its engine's RPCs time out): 10 minutes at most
		bctx, cancel := context.WithTimeout(ctx, burstBound)
		burst, errs := shellLoop(bctx, sc, "suspend", sts, n)
		cancel()

		b.ReportMetric(suspended.Seconds()/shellSuspended.Seconds(), "ratio_suspend_to_shell_loop")
		b.ReportMetric(suspendReads, "reads_per_suspend")
		b.ReportMetric(launched.Seconds()/shellCreated.Seconds(), "ratio_launch_to_shell_loop")
		b.ReportMetric(resumed.Seconds()/shellResumed.Seconds(), "ratio_resume_to_shell_loop")
		b.ReportMetric(autoSuspended.Seconds()/burst.Seconds(), "ratio_auto_suspend_to_burst")
		fmt.Printf("local Heat, a class of %d, production poll interval 1 s; the shell loop keeps %d in flight and reads every 100 ms:\n", n, bound)
		row := func(what string, took time.Duration, base time.Duration, goal string, extra string) {
			fmt.Printf("  %-62s %7.2fs", what, took.Seconds())
			if base > 0 {
				fmt.Printf("  ratio %.2f", took.Seconds()/base.Seconds())
			}
			if goal != "" {
				fmt.Printf(" (goal %s)", goal)
			}
			fmt.Printf("%s\n", extra)
		}
		row("arrives: shell loop creating the stacks", shellCreated, 0, "", "")
		row("         labplane launching at once, max_in_flight 8", launched, shellCreated, "<= 1.2", fmt.Sprintf(", %.2f reads per create", launchReads))
		row("leaves:  shell loop suspending", shellSuspended, 0, "", "")
		row("         labplane's reaper pass, max_in_flight 8", suspended, shellSuspended, "<= 1.1",
			fmt.Sprintf(", %.2f reads per suspend (goal <= 3), mean suspend %s", suspendReads, meanSuspend.Round(time.Millisecond)))
		fmt.Printf("    where the pass's time went: observing the registry and Heat (a plan alone) %.2fs; the %d suspends held a slot %.1fs in all,\n"+
			"    %.2fs over %d slots, so the slots were busy %.0f%% of the pass (the rest: the re-read before each action, recording, the last round's idle slots)\n",
			planned.Seconds(), n, inHeat.Seconds(), inHeat.Seconds()/bound, bound, 100*inHeat.Seconds()/bound/suspended.Seconds())
		row("returns: shell loop resuming", shellResumed, 0, "", "")
		row("         labplane's launch-or-get at once, max_in_flight 8", resumed, shellResumed, "<= 1.2", fmt.Sprintf(", %.2f reads per resume", resumeReads))
		burstNote := fmt.Sprintf(", %d of %d refused or failed", len(errs), n)
		if burst >= burstBound {
			burstNote = fmt.Sprintf(", not all done after %s: %d of %d refused, failed or not done", burstBound, len(errs), n)
		}
		row(fmt.Sprintf("leaves:  shell loop, all %d suspends at once", n), burst, 0, "", burstNote)
		row(fmt.Sprintf("         labplane's reaper pass, max_in_flight auto (%d-%d)", floor, ceiling), autoSuspended, burst, "<= 1.3",
			fmt.Sprintf(", %.2f reads per suspend", autoReads))
		row("returns: labplane's launch-or-get at once, max_in_flight auto", autoResumed, shellResumed, "<= 1.2", "")
		fmt.Printf("  the auto bound during its pass (every 5th suspend: time into the pass, bound, that suspend's time):\n%s", &trajectory)
		r.cleanup()
		b.StartTimer()
	}
}

// returnMany brings back, all at once, the n learners launchMany launched, as the API's
// launch-or-get does for each (a heartbeat, then a resume of the suspended lab), and checks
// that every lab is active.
func returnMany(b *testing.B, mgr *lifecycle.Manager, st *store.Store, course string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			ctx := context.Background()
			p, err := mgr.Start(ctx, lifecycle.LaunchRequest{Learner: fmt.Sprintf("learner%04d", i), Course: course, Actor: "bench"})
			if !errors.Is(err, labs.ErrExists) {
				errs <- fmt.Errorf("learner%04d came back to no lab: %v", i, err)
				return
			}
			lab, err := mgr.Heartbeat(ctx, p.Lab.ID)
			if err == nil && lab.Resumable() {
				_, err = mgr.Do(ctx, lifecycle.OpResume, lab.ID, "bench", false)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	allActive(b, st, n, errs)
}

// burstBound is how long BenchmarkPaceHeat lets the unbounded burst go on.
const burstBound = 10 * time.Minute

// failOn fails the benchmark with the first of errs.
func failOn(b *testing.B, errs []error) {
	b.Helper()
	if len(errs) > 0 {
		b.Fatalf("%d failed, the first: %v", len(errs), errs[0])
	}
}

// boundTrajectory records an adaptive bound after each suspend, with the suspend's time.
type boundTrajectory struct {
	mu     sync.Mutex
	limit  *inflight.Limit
	began  time.Time
	points []string
	count  int
}

func (t *boundTrajectory) start(l *inflight.Limit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.limit, t.began = l, time.Now()
}

func (t *boundTrajectory) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.limit = nil
}

func (t *boundTrajectory) observe(op string, took time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.limit == nil || op != "suspend" || err != nil {
		return
	}
	if t.count%5 == 0 {
		t.points = append(t.points, fmt.Sprintf("    %6.2fs  bound %2d  suspend %s\n", time.Since(t.began).Seconds(), t.limit.Bound(), took.Round(time.Millisecond)))
	}
	t.count++
}

func (t *boundTrajectory) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.points, "")
}
