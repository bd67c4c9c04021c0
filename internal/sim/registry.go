package sim

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

// registry is the real store with the rows of one run's labs also kept in memory: every
// write returns the row as stored, which the copy takes, and ListLabs (the reaper reads every
// live lab at each of its passes, tens of thousands of times a simulated month) is answered
// from the copy. Everything is written to the store, and every other read goes to it. check
// compares the copy with the store at the end.
type registry struct {
	*store.Store
	course string

	mu    sync.Mutex
	rows  []labs.Lab     // in the store's order: by creation time, then id
	index map[string]int // id -> place in rows
}

func newRegistry(st *store.Store, course string) *registry {
	return &registry{Store: st, course: course, index: map[string]int{}}
}

// keep takes a stored row, unless the copy has a newer version (two writers' answers may
// come back in either order).
func (r *registry) keep(l labs.Lab, err error) (labs.Lab, error) {
	if err != nil {
		return l, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.index[l.ID]; ok {
		if r.rows[i].Version <= l.Version {
			r.rows[i] = l
		}
		return l, nil
	}
	i, _ := slices.BinarySearchFunc(r.rows, l, byCreation) // new labs come last, but for ties
	r.rows = slices.Insert(r.rows, i, l)
	for j := i; j < len(r.rows); j++ {
		r.index[r.rows[j].ID] = j
	}
	return l, nil
}

func byCreation(a, b labs.Lab) int {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
}

func (r *registry) CreateLab(ctx context.Context, l labs.Lab, ev labs.Event) (labs.Lab, error) {
	return r.keep(r.Store.CreateLab(ctx, l, ev))
}

func (r *registry) UpdateLab(ctx context.Context, l labs.Lab, ev labs.Event) (labs.Lab, error) {
	return r.keep(r.Store.UpdateLab(ctx, l, ev))
}

func (r *registry) GetLab(ctx context.Context, id string) (labs.Lab, error) {
	return r.keep(r.Store.GetLab(ctx, id))
}

func (r *registry) Heartbeat(ctx context.Context, id string, at time.Time) (labs.Lab, error) {
	return r.keep(r.Store.Heartbeat(ctx, id, at))
}

func (r *registry) Leave(ctx context.Context, id string, at time.Time) (labs.Lab, error) {
	return r.keep(r.Store.Leave(ctx, id, at))
}

func (r *registry) TakePooled(ctx context.Context, course, learner string, ev labs.Event) (labs.Lab, error) {
	return r.keep(r.Store.TakePooled(ctx, course, learner, ev))
}

// ListLabs answers from the copy, in the store's order; a page (the API's) from the store.
func (r *registry) ListLabs(ctx context.Context, f labs.Filter) ([]labs.Lab, error) {
	if f.After != "" || f.Limit > 0 {
		return r.Store.ListLabs(ctx, f)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]labs.Lab, 0, len(r.rows))
	for _, l := range r.rows {
		if (f.Cloud == "" || l.Cloud == f.Cloud) && (f.Course == "" || l.Course == f.Course) &&
			(f.Learner == "" || l.Learner == f.Learner) && (len(f.Statuses) == 0 || slices.Contains(f.Statuses, l.Status)) {
			out = append(out, l)
		}
	}
	return out, nil
}

// check compares the copy with the store's rows of the run's course.
func (r *registry) check(ctx context.Context) error {
	stored, err := r.Store.ListLabs(ctx, labs.Filter{Course: r.course})
	if err != nil {
		return err
	}
	kept, _ := r.ListLabs(ctx, labs.Filter{})
	if !reflect.DeepEqual(kept, stored) {
		return fmt.Errorf("the registry's copy of %s's labs differs from the store (%d rows kept, %d stored)", r.course, len(kept), len(stored))
	}
	return nil
}
