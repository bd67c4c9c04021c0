package lifecycle_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/store"
)

// spendingRegistry reports a learner's time as unused until spent is set, then as the whole
// usage_limit; it signals each read of it on read.
type spendingRegistry struct {
	*store.Store
	limit time.Duration
	spent atomic.Bool
	read  chan string
}

func (r *spendingRegistry) Usage(_ context.Context, learner, _ string) (time.Duration, time.Duration, error) {
	select {
	case r.read <- learner:
	default:
	}
	if r.spent.Load() {
		return r.limit, 0, nil
	}
	return 0, 0, nil
}

// A resume waits for a cloud slot with the learner's budget unspent; a heartbeat spends it
// meanwhile (and has the lab suspended): the resume is not sent when it gets the slot
// (found by internal/dev/interleave, launch-after-budget: the lab resumed after its budget's
// suspend was claimed).
func TestAResumeWaitingForASlotMeetsASpentBudget(t *testing.T) {
	c := fakecloud.NewWith(fakecloud.Options{Name: "a", Latency: 20 * time.Millisecond,
		Latencies: map[string]time.Duration{"suspend": 500 * time.Millisecond}})
	m := replicas(t, 1, []lifecycle.Target{{Cloud: c, MaxInFlight: 1}})[0]
	launched := launchAll(t, []*lifecycle.Manager{m}, 2)
	waiting, busy := launched[0], launched[1]
	if _, err := m.Do(t.Context(), lifecycle.OpSuspend, waiting.ID, "test", true); err != nil {
		t.Fatal(err)
	}
	reg := &spendingRegistry{Store: m.Registry.(*store.Store), limit: time.Hour, read: make(chan string)}
	rules := testRules
	rules.UsageLimit = reg.limit
	m.Registry, m.Rules.Default = reg, rules

	suspended := holdTheSlot(t, m, c, busy)
	resumed := make(chan error, 1)
	go func() {
		_, err := m.Do(t.Context(), lifecycle.OpResume, waiting.ID, "test", false)
		resumed <- err
	}()
	if learner := <-reg.read; learner != waiting.Learner { // the resume's claim checked the budget
		t.Fatalf("the budget of %s was read, want %s's", learner, waiting.Learner)
	}
	reg.spent.Store(true)
	if err := <-suspended; err != nil {
		t.Fatalf("suspend of %s: %v", busy.ID, err)
	}
	if err := <-resumed; !errors.Is(err, lifecycle.ErrBudgetExhausted) {
		t.Fatalf("the resume that waited for the slot: %v, want %v", err, lifecycle.ErrBudgetExhausted)
	}
	if got := stackStatus(c, waiting.StackName); got != "SUSPEND_COMPLETE" {
		t.Errorf("stack %s is %s after its learner's budget was spent, want SUSPEND_COMPLETE", waiting.StackName, got)
	}
	if got := c.MaxInFlightSeen(); got != 1 {
		t.Errorf("actions in flight at once: up to %d, want 1: the resume did not wait for the slot", got)
	}
}
