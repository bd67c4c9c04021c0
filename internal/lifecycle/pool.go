package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/labplane/labplane/internal/labs"
)

// A course's warm pool: labs launched ahead of any learner (labs.Lab.Pooled) and kept
// suspended, so that a launch for the course is a resume, not a create. A launch takes the
// oldest ready one (the registry gives it to the learner at once: two launches never take the
// same); Fill launches what the pool lacks. Pool labs are live labs: they count against the
// clouds' capacity, and the reaper treats them as any other (delete_after deletes an old one,
// and Fill replaces it). Their stacks are tagged labs.TagPool instead of a learner: the
// registry records who took one.

// Pool is a course's warm pool: Size labs of Template.
type Pool struct {
	Size     int
	Template string
}

// PoolActor is the actor of the pool's own launches and suspends.
const PoolActor = "pool"

// poolLockKey is the registry lock under which a course's pool is filled: one process at a
// time, so that two never both launch what it lacks. (A course key may hold characters, and
// be longer than, a lock's key may.)
func poolLockKey(course string) string { return "pool." + labs.Digest(course) }

// takePooled gives the learner a ready lab of the course's pool, if the course has one for
// the template asked for: ok is false when it has none (the caller launches a new lab).
func (m *Manager) takePooled(ctx context.Context, req LaunchRequest) (Pending, bool, error) {
	pool, ok := m.Pools[req.Course]
	if !ok || pool.Template != req.Template {
		return Pending{}, false, nil
	}
	lab, err := m.Registry.TakePooled(ctx, req.Course, req.Learner, labs.Event{At: m.Now(), Actor: req.Actor, Action: "pool-taken",
		Detail: "taken from the warm pool of " + req.Course + " by learner " + req.Learner})
	switch {
	case errors.Is(err, labs.ErrNotFound), errors.Is(err, labs.ErrStale):
		return Pending{}, false, nil // none ready (or all taken under us): a new lab
	case errors.Is(err, labs.ErrExists):
		// the learner's other launch got there first
		existing, ferr := m.existing(ctx, req.Learner, req.Course)
		if !errors.Is(ferr, labs.ErrExists) {
			return Pending{}, false, errors.Join(err, ferr)
		}
		return Pending{Lab: existing}, false, ferr
	case err != nil:
		return Pending{}, false, err
	}
	return Pending{Lab: lab, actor: req.Actor, pooled: true}, true, nil
}

// Pooled reports whether the launch took a lab from its course's warm pool: Provision resumes
// it, and the pool lacks one.
func (p Pending) Pooled() bool { return p.pooled }

// Fill launches the labs the course's warm pool lacks and suspends each once it is up; with
// a launch failing, the others go on and the error says what failed. It does nothing, and
// returns 0, when another process is filling the pool. It returns how many it launched.
func (m *Manager) Fill(ctx context.Context, course string) (int, error) {
	pool, ok := m.Pools[course]
	if !ok {
		return 0, nil
	}
	unlock, ok, err := m.Locks.TryLock(ctx, poolLockKey(course))
	if err != nil || !ok {
		return 0, err
	}
	defer func() { _ = unlock(context.WithoutCancel(ctx)) }()
	have, err := m.Registry.PoolSize(ctx, course)
	if err != nil {
		return 0, err
	}
	missing := pool.Size - have
	if missing <= 0 {
		return 0, nil
	}
	start := m.Go
	if start == nil {
		start = func(fn func()) { go fn() }
	}
	var wg sync.WaitGroup
	errs := make([]error, missing)
	for i := range missing {
		wg.Add(1)
		start(func() {
			defer wg.Done()
			errs[i] = m.launchPooled(ctx, course, pool.Template)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return missing, fmt.Errorf("fill the warm pool of %s: %w", course, err)
	}
	return missing, nil
}

// launchPooled launches one lab for the course's pool and suspends it.
func (m *Manager) launchPooled(ctx context.Context, course, template string) error {
	file, err := m.Template(template)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	lab, clouds, err := m.place(ctx, LaunchRequest{Course: course, Template: template, Actor: PoolActor})
	if err != nil {
		return err
	}
	lab, err = m.Provision(ctx, Pending{Lab: lab, clouds: clouds, file: file, actor: PoolActor})
	if err != nil {
		return err
	}
	_, err = m.Do(ctx, OpSuspend, lab.ID, PoolActor, true)
	if errors.Is(err, ErrBusy) {
		return nil // the reaper is suspending it already (idle since its launch)
	}
	return err
}
