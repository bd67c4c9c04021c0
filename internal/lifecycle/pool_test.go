package lifecycle_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
)

// TestWarmPool: Fill launches what the course's pool lacks and suspends it; a launch for the
// course takes a ready pool lab and resumes it (no create), tagged as the pool's; learners
// racing for the pool each get their own lab, the pool's or a new one; the pool counts against
// the cloud's capacity; another course, or another template, never takes from it.
func TestWarmPool(t *testing.T) {
	r := newRig(t, "a")
	ctx := t.Context()
	const course = "course-v1:hastexo+hx212+201907"
	r.mgr.Pools = map[string]lifecycle.Pool{course: {Size: 3, Template: "lab"}}
	r.mgr.Targets[0].Capacity = 6

	// two processes fill it at once: one does, the other finds it being filled
	other := &lifecycle.Manager{Site: r.mgr.Site, Registry: r.store, Locks: r.store, Targets: r.mgr.Targets, Template: r.mgr.Template,
		DefaultTemplate: "lab", Rules: r.mgr.Rules, Pools: r.mgr.Pools, Now: r.mgr.Now, Log: r.mgr.Log}
	var fills sync.WaitGroup
	launched := make([]int, 2)
	for i, m := range []*lifecycle.Manager{r.mgr, other} {
		fills.Go(func() {
			var err error
			if launched[i], err = m.Fill(ctx, course); err != nil {
				t.Errorf("Fill %d: %v", i, err)
			}
		})
	}
	fills.Wait()
	if launched[0]+launched[1] != 3 {
		t.Fatalf("two fills at once of an empty pool of 3 launched %v", launched)
	}
	pool, err := r.store.ListLabs(ctx, labs.Filter{Course: course, Statuses: labs.LiveStatuses()})
	if err != nil || len(pool) != 3 {
		t.Fatalf("the pool: %d labs, %v", len(pool), err)
	}
	for _, l := range pool {
		st, err := r.clouds["a"].Get(ctx, l.StackName, l.StackID)
		if !l.Pooled() || l.Status != labs.Suspended || err != nil || st.Status != "SUSPEND_COMPLETE" || !st.HasTag(labs.TagPool) {
			t.Errorf("pool lab %s: learner %q, %s; stack %s %v tags %v (%v)", l.ID, l.Learner, l.Status, st.Status, err, st.Tags, st.Tags)
		}
	}
	if n, err := r.mgr.Fill(ctx, course); err != nil || n != 0 {
		t.Errorf("Fill of a full pool: %d, %v; want nothing launched", n, err)
	}
	creates := len(r.clouds["a"].Stacks())

	// four learners at once: three take the pool's labs, one gets a new lab
	var wg sync.WaitGroup
	got := make([]labs.Lab, 4)
	pooled := make([]bool, 4)
	for i := range 4 {
		wg.Go(func() {
			p, err := r.mgr.Start(ctx, lifecycle.LaunchRequest{Learner: fmt.Sprint("learner", i), Course: course, Actor: "api:lms"})
			if err != nil {
				t.Errorf("launch %d: %v", i, err)
				return
			}
			pooled[i] = p.Pooled()
			if got[i], err = r.mgr.Provision(ctx, p); err != nil {
				t.Errorf("provision %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	seen, fromPool := map[string]bool{}, 0
	for i, l := range got {
		if l.Status != labs.Active || l.Learner != fmt.Sprint("learner", i) || seen[l.ID] {
			t.Errorf("learner%d's lab: %s %s of %q (twice: %t)", i, l.ID, l.Status, l.Learner, seen[l.ID])
		}
		seen[l.ID] = true
		if pooled[i] {
			fromPool++
			if l.LastResumedAt.IsZero() {
				t.Errorf("learner%d's lab from the pool was not resumed: %+v", i, l)
			}
		}
	}
	if fromPool != 3 || len(r.clouds["a"].Stacks()) != creates+1 {
		t.Errorf("%d launches took from the pool of 3, %d stacks created for 4 launches; want 3 and 1", fromPool, len(r.clouds["a"].Stacks())-creates)
	}

	// the pool lacks three; the cloud has room for two more (4 learners' labs of 6)
	n, err := r.mgr.Fill(ctx, course)
	if n != 3 || !errors.Is(err, lifecycle.ErrNoRoom) {
		t.Errorf("Fill with room for 2 of 3: %d, %v; want 3 tried, ErrNoRoom", n, err)
	}
	if size, _ := r.store.PoolSize(ctx, course); size != 2 {
		t.Errorf("the pool after a fill with room for 2: %d", size)
	}

	// another course, or another template, does not take from it
	r.mgr.Targets[0].Capacity = 0
	elsewhere, err := r.mgr.Start(ctx, lifecycle.LaunchRequest{Learner: "ann", Course: "os101", Actor: "test"})
	if err != nil || elsewhere.Pooled() || elsewhere.Lab.Status != labs.Launching {
		t.Errorf("a launch in a course with no pool: %+v, pooled %t, %v", elsewhere.Lab, elsewhere.Pooled(), err)
	}
	r.mgr.Pools[course] = lifecycle.Pool{Size: 2, Template: "other"}
	if p, err := r.mgr.Start(ctx, lifecycle.LaunchRequest{Learner: "bob", Course: course, Actor: "test"}); err != nil || p.Pooled() {
		t.Errorf("a launch of another template than the pool's: pooled %t, %v", p.Pooled(), err)
	}
}
