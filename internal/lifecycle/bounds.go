package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/labs"
)

// Locker takes a lock shared by every process using the registry (the store's), waiting
// while another holder has it and ctx allows.
type Locker interface {
	Lock(ctx context.Context, key string) (unlock func(context.Context) error, err error)
}

// Slots bound the actions in flight on each cloud across every process using the registry
// (the store's Waiter): Take waits while all max of the cloud's slots are taken.
type Slots interface {
	Take(ctx context.Context, cloud string, max int) (release func(), err error)
}

// placementLock is the Placement lock's key: one placement at a time, in all processes, so
// that two of them never both see the last free room on a cloud.
const placementLock = "placement"

// unlockTimeout bounds the release of the placement lock.
const unlockTimeout = 30 * time.Second

// lockPlacement takes the placement lock.
func (m *Manager) lockPlacement(ctx context.Context) (unlock func(), err error) {
	u, err := m.Placement.Lock(ctx, placementLock)
	if err != nil {
		return nil, fmt.Errorf("place lab: %w", err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		if err := u(uctx); err != nil {
			// the store lets the lock go anyway (its connection is closed)
			m.Log.Warn("release the placement lock", "err", err)
		}
	}, nil
}

// slot takes one of c's slots for an action (op) on a stack, waiting while all are taken:
// Target.MaxInFlight bounds the cloud's actions across every process. Without Slots, or for
// a cloud with no MaxInFlight, it takes nothing.
func (m *Manager) slot(ctx context.Context, c Cloud, op, stack string) (release func(), err error) {
	limit := 0
	for _, t := range m.Targets {
		if t.Cloud.Name() == c.Name() {
			limit = t.MaxInFlight
		}
	}
	if m.Slots == nil || limit <= 0 {
		return func() {}, nil
	}
	release, err = m.Slots.Take(ctx, c.Name(), limit)
	if err != nil {
		// not the stack's failure: the cloud was busy (or the registry failed) until ctx ended
		return nil, &cloud.Error{Cloud: c.Name(), Op: op, Stack: stack, Kind: cloud.ErrTransient,
			Message: "no free slot for work on this cloud", Err: err}
	}
	return release, nil
}

// deleteStack deletes a stack, holding one of its cloud's slots.
func (m *Manager) deleteStack(ctx context.Context, c Cloud, name, id string) (labs.Stack, error) {
	release, err := m.slot(ctx, c, "delete", name)
	if err != nil {
		return labs.Stack{}, err
	}
	defer release()
	return c.Delete(ctx, name, id)
}
