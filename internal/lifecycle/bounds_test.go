package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/inflight"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/store"
)

// replicas builds n Managers as n processes would: each on its own Store of one SQLite
// registry, wired as the CLI wires them (the store's placement lock and slots), on the same
// clouds, which bound nothing themselves (fakecloud MaxInFlight 0).
func replicas(t *testing.T, n int, targets []lifecycle.Target) []*lifecycle.Manager {
	t.Helper()
	db := filepath.Join(t.TempDir(), "labplane.db")
	var out []*lifecycle.Manager
	for i := range n {
		st, err := store.Open(context.Background(), store.SQLite, db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		out = append(out, &lifecycle.Manager{Site: "test", Registry: st, Locks: st, Slots: store.Waiter{Locks: st},
			Targets: targets, Template: func(string) (string, error) { return templateFile, nil }, DefaultTemplate: "lab",
			Rules: policy.Set{Default: testRules}, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			NewID: func() string { return fmt.Sprintf("p%d-%d", i, time.Now().UnixNano()) }})
	}
	return out
}

// holdTheSlot has busy suspended, on a cloud with one slot, and returns once the suspend
// holds the slot (the stack is SUSPEND_IN_PROGRESS): as long as c's suspends take. The
// suspend's outcome comes on the channel.
func holdTheSlot(t *testing.T, m *lifecycle.Manager, c *fakecloud.Cloud, busy labs.Lab) <-chan error {
	t.Helper()
	suspended := make(chan error, 1)
	go func() {
		_, err := m.Do(t.Context(), lifecycle.OpSuspend, busy.ID, "test", true)
		suspended <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); stackStatus(c, busy.StackName) != "SUSPEND_IN_PROGRESS"; {
		if time.Now().After(deadline) {
			t.Fatal("the suspend holding the slot never reached the cloud")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return suspended
}

// launchAll launches n labs at once, spread over the managers, and returns them.
func launchAll(t *testing.T, ms []*lifecycle.Manager, n int) []labs.Lab {
	t.Helper()
	placed := make([]labs.Lab, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			placed[i], errs[i] = ms[i%len(ms)].Launch(t.Context(), lifecycle.LaunchRequest{Learner: fmt.Sprintf("l%d", i), Course: "os101"})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("launch %d: %v", i, err)
		}
	}
	return placed
}

// Capacity holds across processes: launches through two replicas at once fill cloud a to
// its capacity and not beyond.
func TestCapacityAcrossProcesses(t *testing.T) {
	a, b := fakecloud.New("a", 0, 20*time.Millisecond), fakecloud.New("b", 0, 20*time.Millisecond)
	ms := replicas(t, 2, []lifecycle.Target{{Cloud: a, Capacity: 2}, {Cloud: b}})
	perCloud := map[string]int{}
	for _, l := range launchAll(t, ms, 8) {
		perCloud[l.Cloud]++
	}
	if perCloud["a"] != 2 || perCloud["b"] != 6 {
		t.Fatalf("placed %v, want 2 on a (its capacity) and 6 on b", perCloud)
	}
	if n := len(a.Stacks()); n != 2 {
		t.Errorf("cloud a has %d stacks, want 2", n)
	}
}

// max_in_flight holds across processes: the creates of two replicas at once never have more
// than MaxInFlight in flight on the cloud, and reach it. So do suspends.
func TestMaxInFlightAcrossProcesses(t *testing.T) {
	c := fakecloud.New("a", 0, 50*time.Millisecond)
	ms := replicas(t, 2, []lifecycle.Target{{Cloud: c, MaxInFlight: 2}})
	launched := launchAll(t, ms, 8)
	if got := c.MaxInFlightSeen(); got != 2 {
		t.Fatalf("creates in flight at once: up to %d, want the bound 2", got)
	}
	var wg sync.WaitGroup
	for i, l := range launched {
		wg.Go(func() {
			if _, err := ms[i%2].Do(t.Context(), lifecycle.OpSuspend, l.ID, "test", true); err != nil {
				t.Errorf("suspend %s: %v", l.ID, err)
			}
		})
	}
	wg.Wait()
	if got := c.MaxInFlightSeen(); got != 2 {
		t.Errorf("actions in flight at once: up to %d, want the bound 2", got)
	}
}

// An operation whose sender stops waiting (its process killed, its wait timed out) goes on
// on the cloud, and keeps its slot until the cloud is done with it: the other replica's
// suspends meanwhile use the one slot left of two, never three at once.
func TestMaxInFlightCountsAnAbandonedOperation(t *testing.T) {
	c := fakecloud.NewWith(fakecloud.Options{Name: "a", Latency: 20 * time.Millisecond,
		Latencies: map[string]time.Duration{"suspend": time.Second}})
	ms := replicas(t, 2, []lifecycle.Target{{Cloud: c, MaxInFlight: 2}})
	launched := launchAll(t, ms, 3)

	stopped, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := ms[0].Do(stopped, lifecycle.OpSuspend, launched[0].ID, "test", true)
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); stackStatus(c, launched[0].StackName) != "SUSPEND_IN_PROGRESS"; {
		if time.Now().After(deadline) {
			t.Fatal("the first suspend never reached the cloud")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-done; err == nil {
		t.Fatal("a suspend whose context ended while the cloud worked on it returned no error")
	}
	if stackStatus(c, launched[0].StackName) != "SUSPEND_IN_PROGRESS" {
		t.Fatal("the cloud is no longer at work on the abandoned suspend: the test proves nothing")
	}

	var wg sync.WaitGroup
	for _, l := range launched[1:] {
		wg.Go(func() {
			if _, err := ms[1].Do(t.Context(), lifecycle.OpSuspend, l.ID, "test", true); err != nil {
				t.Errorf("suspend %s: %v", l.ID, err)
			}
		})
	}
	wg.Wait()
	if got := c.MaxInFlightSeen(); got != 2 {
		t.Errorf("operations in flight at once: up to %d, want the bound 2", got)
	}
	for _, l := range launched[1:] {
		if got := stackStatus(c, l.StackName); got != "SUSPEND_COMPLETE" {
			t.Errorf("stack %s is %s, want SUSPEND_COMPLETE", l.StackName, got)
		}
	}
}

func stackStatus(c *fakecloud.Cloud, name string) string {
	for _, st := range c.Stacks() {
		if st.Name == name {
			return st.Status
		}
	}
	return ""
}

// max_in_flight: auto backs off a cloud past its knee: 200 labs suspended at once on a fake
// cloud that slows down as a whole past 5 operations at once (each takes (n/5)^2 its 100 ms),
// through the production slots. The bound it learns stays near the knee (a saw-tooth from
// about half to twice it: the cost is a moving mean, so a cut comes a few completions late;
// within 3x here) instead of climbing to its ceiling (48), and the class takes little longer than at a fixed bound of 5, the best
// one, measured in the same run. The trajectory (bound against the cloud's latency) is logged.
func TestAdaptiveBoundBacksOffPastTheKnee(t *testing.T) {
	const n, knee, ceiling, latency = 200, 5, 48, 100 * time.Millisecond
	// suspendAll launches n labs on c, then suspends them all at once, telling observe when
	// (since the suspends began) each suspend ended and how long it took.
	suspendAll := func(target lifecycle.Target, c *fakecloud.Cloud, observe func(at, took time.Duration)) time.Duration {
		ms := replicas(t, 1, []lifecycle.Target{target})
		m := ms[0]
		m.Slots = store.NewWaiter(m.Locks.(*store.Store))
		placed := launchAll(t, ms, n)
		start := time.Now()
		c.Observe(func(op string, took time.Duration, err error) {
			if op == "suspend" && err == nil {
				observe(time.Since(start), took)
			}
		})
		var wg sync.WaitGroup
		for _, l := range placed {
			wg.Go(func() {
				if _, err := m.Do(t.Context(), lifecycle.OpSuspend, l.ID, "test", true); err != nil {
					t.Errorf("suspend %s: %v", l.ID, err)
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}

	knee5 := fakecloud.NewWith(fakecloud.Options{Name: "a", Latency: latency, Knee: knee})
	fixed := suspendAll(lifecycle.Target{Cloud: knee5, MaxInFlight: knee}, knee5, func(_, _ time.Duration) {})

	overloaded := fakecloud.NewWith(fakecloud.Options{Name: "a", Latency: latency, Knee: knee})
	adaptive := lifecycle.Target{Cloud: overloaded, Adaptive: inflight.New(2, ceiling)}
	type point struct {
		at    time.Duration
		bound int
		took  time.Duration
	}
	var mu sync.Mutex
	var trajectory []point
	auto := suspendAll(adaptive, overloaded, func(at, took time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		trajectory = append(trajectory, point{at, adaptive.Bound(), took})
	})

	var log []string
	over := 0
	for i, p := range trajectory {
		if i%10 == 0 {
			log = append(log, fmt.Sprintf("%5.2fs bound %2d latency %s", p.at.Seconds(), p.bound, p.took.Round(time.Millisecond)))
		}
		if i >= len(trajectory)/2 && p.bound > 3*knee {
			over++
		}
	}
	t.Logf("%d suspends: %s at a fixed bound of %d (the knee), %s with max_in_flight: auto (floor 2, ceiling %d); the auto bound against the cloud's latency, every 10th suspend:\n  %s",
		n, fixed.Round(time.Millisecond), knee, auto.Round(time.Millisecond), ceiling, strings.Join(log, "\n  "))
	if len(trajectory) != n {
		t.Fatalf("%d suspends observed, want %d", len(trajectory), n)
	}
	if over > 0 {
		t.Errorf("the bound was above three times the knee (%d) at %d of the last %d suspends: it overloads the cloud", 3*knee, over, n-n/2)
	}
	if ratio := auto.Seconds() / fixed.Seconds(); ratio > 1.8 {
		t.Errorf("the class took %.2fx as long with the auto bound as at the knee, want at most 1.8x", ratio)
	}
}

// A launch waits for a cloud slot; its learner deletes the lab meanwhile (the delete, claimed,
// waits for a slot too). When the slot is free, whichever of the two gets it first, no stack
// is created: the launch stops and the lab ends deleted (found by internal/dev/interleave,
// deleted-lab-runs-on: the create was sent after the delete, and the stack ran on for
// minutes as the launch waited for a slot again to delete it).
func TestALaunchWaitingForASlotMeetsADelete(t *testing.T) {
	const busyFor = 2 * time.Second // the suspend holding the slot: time to claim the delete
	c := fakecloud.NewWith(fakecloud.Options{Name: "a", Latency: 20 * time.Millisecond,
		Latencies: map[string]time.Duration{"suspend": busyFor}})
	m := replicas(t, 1, []lifecycle.Target{{Cloud: c, MaxInFlight: 1}})[0]
	busy := launchAll(t, []*lifecycle.Manager{m}, 1)[0]

	suspended := holdTheSlot(t, m, c, busy)
	p, err := m.Start(t.Context(), lifecycle.LaunchRequest{Learner: "late", Course: "os101"})
	if err != nil {
		t.Fatal(err)
	}
	provisioned := make(chan error, 1)
	go func() {
		_, err := m.Provision(t.Context(), p)
		provisioned <- err
	}()
	r, err := m.Claim(t.Context(), lifecycle.OpDelete, p.Lab.ID, "test", true)
	if err != nil {
		t.Fatalf("claim the delete of %s: %v", p.Lab.ID, err)
	}
	if got := stackStatus(c, busy.StackName); got != "SUSPEND_IN_PROGRESS" {
		t.Fatalf("the slot was free (%s is %s) before the delete was claimed: the test proves nothing", busy.StackName, got)
	}
	deleted := make(chan error, 1)
	go func() {
		_, err := m.Carry(t.Context(), r)
		deleted <- err
	}()

	if err := <-suspended; err != nil {
		t.Fatalf("suspend of %s: %v", busy.ID, err)
	}
	if err := <-provisioned; err == nil || !strings.Contains(err.Error(), "deleted during its launch") {
		t.Errorf("the launch of a lab deleted while it waited for the slot: %v, want it stopped", err)
	}
	if err := <-deleted; err != nil && !errors.Is(err, lifecycle.ErrBusy) { // the launch may finish the delete first
		t.Errorf("the delete: %v", err)
	}
	if n := c.Calls("create"); n != 1 {
		t.Errorf("%d creates reached the cloud, want 1 (the busy lab's): the deleted lab's was sent", n)
	}
	if got := stackStatus(c, p.Lab.StackName); got != "" {
		t.Errorf("the deleted lab's stack %s is %s, want none", p.Lab.StackName, got)
	}
	if lab, err := m.Registry.GetLab(t.Context(), p.Lab.ID); err != nil || lab.Status != labs.Deleted {
		t.Errorf("lab %s after its delete: %s (%v), want deleted", p.Lab.ID, lab.Status, err)
	}
}
