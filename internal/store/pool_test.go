package store_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/labplane/labplane/internal/labs"
)

// TestPool: a course's warm pool is its labs with no learner; a launch takes the oldest one
// ready (suspended, unclaimed), and a lab is taken once however many launches race for it; a
// learner with a live lab for the course takes none.
func TestPool(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		const course = "course-v1:hastexo+hx212+201907"
		for i, st := range []labs.Status{labs.Suspended, labs.Suspended, labs.Launching, labs.Suspended, labs.Suspended} {
			mustCreate(t, e.s, newLab(fmt.Sprint("p", i), "", course, "east", st, at(i)))
		}
		claimed := mustGet(t, e.s, "p3")
		claimed.Status, claimed.ClaimedAt, claimed.ClaimedBy = labs.Deleting, at(10), "other"
		if _, err := e.s.UpdateLab(ctx, claimed, event("delete-claimed", at(10))); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, e.s, newLab("other", "", "net101", "east", labs.Suspended, at(0)))
		if n, err := e.s.PoolSize(ctx, course); err != nil || n != 5 {
			t.Errorf("PoolSize = %d, %v; want 5, the launching and the claimed included", n, err)
		}

		take := func(learner string) (labs.Lab, error) {
			return e.s.TakePooled(ctx, course, learner, labs.Event{At: at(20), Actor: "api:lms", Action: "pool-taken"})
		}
		got, err := take("ann")
		if err != nil || got.ID != "p0" || got.Learner != "ann" || got.Status != labs.Suspended {
			t.Fatalf("the first take: %+v, %v; want p0, the oldest ready, now ann's", got, err)
		}
		// ann's launch is her activity: the reaper leaves the lab alone for idle_suspend_after
		// from the take, not from the pool's launch (interleave's suspended-in-use, when the
		// replica resuming it died before recording the resume)
		if !got.LastUsed().Equal(norm(at(20))) || !mustGet(t, e.s, "p0").LastUsed().Equal(norm(at(20))) {
			t.Errorf("p0 taken at %s was last used at %s", at(20), got.LastUsed())
		}
		if live, err := e.s.FindLive(ctx, "ann", course); err != nil || live.ID != "p0" {
			t.Errorf("FindLive(ann) after the take = %s, %v", live.ID, err)
		}
		if _, err := take("ann"); !errors.Is(err, labs.ErrExists) {
			t.Errorf("ann takes a second: %v; want ErrExists", err)
		}

		// p1 and p4 are ready: eight learners at once take them once each
		var mu sync.Mutex
		var wg sync.WaitGroup
		taken := map[string]string{}
		for i := range 8 {
			wg.Go(func() {
				learner := fmt.Sprint("l", i)
				lab, err := take(learner)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					if prev, dup := taken[lab.ID]; dup {
						t.Errorf("%s taken by %s and %s", lab.ID, prev, learner)
					}
					taken[lab.ID] = learner
				case !errors.Is(err, labs.ErrNotFound) && !errors.Is(err, labs.ErrStale):
					t.Errorf("take by %s: %v", learner, err)
				}
			})
		}
		wg.Wait()
		if len(taken) != 2 || taken["p1"] == "" || taken["p4"] == "" {
			t.Errorf("taken at once: %v; want p1 and p4, once each", taken)
		}
		if n, _ := e.s.PoolSize(ctx, course); n != 2 {
			t.Errorf("PoolSize after three takes = %d; want 2 (launching, claimed)", n)
		}
		if evs, err := e.s.Events(ctx, "p1", 0); err != nil || evs[len(evs)-1].Action != "pool-taken" {
			t.Errorf("p1's events: %+v, %v", evs, err)
		}
		if _, err := e.s.TakePooled(ctx, course, "", labs.Event{At: at(20)}); err == nil || errors.Is(err, labs.ErrNotFound) {
			t.Errorf("a take for no learner: %v", err)
		}
	})
}
