package lifecycle_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/fakecloud"
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
