package reaper_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stacks"
	"github.com/gophercloud/utils/v2/openstack/clientconfig"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
)

// shellLoop does what an operator's shell loop does straight on Heat's API, the baseline of
// BenchmarkPaceHeat: workers at a time, send an action (suspend or resume) to the next stack
// and read it every 100 ms until it is <ACTION>_COMPLETE. It returns how long the whole list
// took.
func shellLoop(ctx context.Context, b *testing.B, sc *gophercloud.ServiceClient, action string, sts []labs.Stack, workers int) time.Duration {
	b.Helper()
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
	for err := range errs {
		b.Fatal(err)
	}
	return took
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
		case err != nil:
			// a loaded Heat answers 500 at times: read again
		case got.Status == action+"_COMPLETE":
			return nil
		case got.Status == action+"_FAILED":
			return fmt.Errorf("%s %s: %s", strings.ToLower(action), name, got.StatusReason)
		}
	}
}

// BenchmarkPaceHeat: a class of 100 leaves at once on the real local Heat (local-a),
// max_in_flight 8, the production poll interval (1 s). First a class arrives: a shell loop
// straight on Heat's API creates 100 stacks of the example lab, 8 in flight, reading each every
// 100 ms (then deletes them), and labplane launches 100 labs at once. Then the class leaves: the
// shell loop suspends the 100 labs' stacks (and resumes them), and labplane's reaper suspends
// them in one pass (what `labplane reap --once --yes` runs). The ratios to the shell loop are
// printed, with the reads of a stack labplane made per suspend. (All 100 at once, with no
// bound, is not measured: this machine's one Heat engine times out its RPCs under it.)
//
//	go test ./internal/reaper -run '^$' -bench PaceHeat -benchtime 1x
func BenchmarkPaceHeat(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local cloud")
	}
	const n, bound = 100, 8
	ctx := context.Background()
	sc, err := clientconfig.NewServiceClient(ctx, "orchestration", &clientconfig.ClientOpts{Cloud: "local-a"})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		var lat latencies
		r := newHeatRig(b, policy.Set{Default: classRules()}, target{name: "local-a", maxInFlight: bound, observe: lat.observe, poll: time.Second})
		// a class arrives: 100 stacks created by the shell loop, then 100 labs launched at once
		shellCreated := shellCreate(ctx, b, sc, r.course, n, bound)
		start := time.Now()
		launchMany(b, r.mgr, r.store, n, n)
		launched := time.Since(start)
		sts, err := r.heat["local-a"].List(ctx, labs.SiteTag(r.course))
		if err != nil || len(sts) != n {
			b.Fatalf("the class's stacks: %d, %v", len(sts), err)
		}
		shell := shellLoop(ctx, b, sc, "suspend", sts, bound)
		shellLoop(ctx, b, sc, "resume", sts, bound)

		r.clock.Add(10 * time.Minute)
		waits0, reads0 := r.heat["local-a"].Reads()
		b.StartTimer()
		start = time.Now()
		res, err := r.reaper.Run(ctx)
		took := time.Since(start)
		b.StopTimer()
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
		waits, reads := r.heat["local-a"].Reads()
		perOp := float64(reads-reads0) / float64(max(1, waits-waits0))
		ratio := took.Seconds() / shell.Seconds()
		b.ReportMetric(shell.Seconds(), "s_shell_loop")
		b.ReportMetric(took.Seconds(), "s_labplane")
		b.ReportMetric(ratio, "ratio_to_shell_loop")
		b.ReportMetric(perOp, "reads_per_suspend")
		b.ReportMetric(shellCreated.Seconds(), "s_shell_loop_create")
		b.ReportMetric(launched.Seconds(), "s_labplane_launch")
		b.ReportMetric(launched.Seconds()/shellCreated.Seconds(), "ratio_launch_to_shell_loop")
		fmt.Printf("local Heat, %d idle labs, max_in_flight %d (the shell loop and labplane), production poll interval 1 s:\n", n, bound)
		fmt.Printf("  a class of %d arrives: shell loop creating the lab's stacks, %d in flight, read every 100 ms: %7.2fs\n", n, bound, shellCreated.Seconds())
		fmt.Printf("                         labplane launching the %d labs at once (launch-or-get):        %7.2fs  ratio %.2f (goal <= 1.2)\n",
			n, launched.Seconds(), launched.Seconds()/shellCreated.Seconds())
		fmt.Printf("  the class leaves: shell loop on Heat's API, %d in flight, read every 100 ms: %7.2fs\n", bound, shell.Seconds())
		fmt.Printf("  labplane's reaper pass (reap --once):                       %7.2fs  ratio %.2f to the shell loop (goal <= 1.1), %.2f reads of a stack per suspend (goal <= 3), mean suspend %s\n",
			took.Seconds(), ratio, perOp, lat.mean().Round(time.Millisecond))
		r.cleanup()
		b.StartTimer()
	}
}
