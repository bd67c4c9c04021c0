package fakecloud_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
)

func TestFailNextNamedStackOnly(t *testing.T) {
	ctx := context.Background()
	c := fakecloud.New("a", 2, time.Millisecond)
	c.FailNext("create", "lab-x", 1)
	if _, err := c.Create(ctx, cloud.CreateRequest{Name: "lab-y"}); err != nil {
		t.Fatalf("another stack's create failed: %v", err)
	}
	st, err := c.Create(ctx, cloud.CreateRequest{Name: "lab-x"})
	if !errors.Is(err, cloud.ErrFailed) || st.Status != "CREATE_FAILED" || st.ID == "" {
		t.Fatalf("want CREATE_FAILED with an id, got %+v, %v", st, err)
	}
	if _, err := c.Create(ctx, cloud.CreateRequest{Name: "lab-x"}); err != nil {
		t.Fatalf("only one failure was asked for: %v", err)
	}
}

func TestFailNextAnyStack(t *testing.T) {
	ctx := context.Background()
	c := fakecloud.New("a", 2, time.Millisecond)
	c.FailNext("create", "", 2)
	for _, name := range []string{"lab-1", "lab-2"} {
		st, err := c.Create(ctx, cloud.CreateRequest{Name: name})
		if !errors.Is(err, cloud.ErrFailed) || st.Status != "CREATE_FAILED" {
			t.Fatalf("%s: want CREATE_FAILED, got %+v, %v", name, st, err)
		}
	}
	ok, err := c.Create(ctx, cloud.CreateRequest{Name: "lab-3"})
	if err != nil || ok.Status != "CREATE_COMPLETE" {
		t.Fatalf("the third create must succeed: %+v, %v", ok, err)
	}
	// "" counts only for the operation it names
	c.FailNext("suspend", "", 1)
	if _, err := c.Resume(ctx, ok.Name, ok.ID); err != nil {
		t.Fatalf("resume is not suspend: %v", err)
	}
	if _, err := c.Suspend(ctx, ok.Name, ok.ID); !errors.Is(err, cloud.ErrFailed) {
		t.Fatalf("want the suspend to fail, got %v", err)
	}
	// a failure named for the stack is used before one for any stack
	c.FailNext("delete", "", 1)
	c.FailNext("delete", ok.Name, 1)
	if _, err := c.Delete(ctx, ok.Name, ok.ID); !errors.Is(err, cloud.ErrFailed) {
		t.Fatalf("first delete: want failed, got %v", err)
	}
	if _, err := c.Delete(ctx, ok.Name, ok.ID); !errors.Is(err, cloud.ErrFailed) {
		t.Fatalf("second delete: want failed (the any-stack fault), got %v", err)
	}
	if _, err := c.Delete(ctx, ok.Name, ok.ID); err != nil {
		t.Fatalf("third delete: %v", err)
	}
}

// TestVirtualTimeAndMeter: on a virtual clock, each operation takes its own latency in
// simulated time, slots are waited for on the clock, and the meter bills every moment a stack
// is not suspended.
func TestVirtualTimeAndMeter(t *testing.T) {
	start := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	v := clock.NewVirtual(start)
	c := fakecloud.NewWith(fakecloud.Options{Name: "sim", MaxInFlight: 1, Clock: v,
		Latencies: map[string]time.Duration{"create": 6 * time.Second, "suspend": 3 * time.Second, "resume": 4 * time.Second, "delete": 7 * time.Second}})
	var mu sync.Mutex
	took := map[string]time.Duration{}
	c.Observe(func(op string, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		took[op] += d
	})
	ctx := context.Background()
	var second time.Time
	v.Go(func() {
		st, err := c.Create(ctx, cloud.CreateRequest{Name: "lab-a"})
		if err != nil {
			t.Error(err)
			return
		}
		steps := []struct {
			wait time.Duration
			op   func(context.Context, string, string) (labs.Stack, error)
		}{{time.Hour, c.Suspend}, {2 * time.Hour, c.Resume}, {30 * time.Minute, c.Delete}}
		for _, s := range steps {
			if err := v.Sleep(ctx, s.wait); err != nil {
				t.Error(err)
			}
			if _, err := s.op(ctx, st.Name, st.ID); err != nil {
				t.Error(err)
			}
		}
	})
	v.Go(func() { // asks a moment later, and waits for the first create's slot
		_ = v.Sleep(ctx, time.Millisecond)
		if _, err := c.Create(ctx, cloud.CreateRequest{Name: "lab-b"}); err != nil {
			t.Error(err)
		}
		second = v.Now()
	})
	v.Run()
	if want := start.Add(12 * time.Second); !second.Equal(want) {
		t.Errorf("the second create finished at %v, want %v (after the first, one slot)", second, want)
	}
	// lab-a: 6 s creating, 1 h running, 3 s suspending, 2 h suspended (free), 4 s resuming,
	// 30 min running, 7 s deleting; lab-b: from its slot (at 6 s) creating, then running until now
	wantA := 6*time.Second + time.Hour + 3*time.Second + 4*time.Second + 30*time.Minute + 7*time.Second
	wantB := v.Now().Sub(start.Add(6 * time.Second))
	if got := c.Billed(); got != wantA+wantB {
		t.Errorf("billed %s, want %s + %s", got, wantA, wantB)
	}
	if took["create"] != 12*time.Second || took["suspend"] != 3*time.Second || took["delete"] != 7*time.Second {
		t.Errorf("observed %v: want the simulated latencies (the second create held its slot 6 s)", took)
	}
}
