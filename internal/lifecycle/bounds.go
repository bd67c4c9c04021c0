package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/labs"
)

// Locks are the registry's locks (the store's), shared by every process using it: TryLock
// takes one if it is free, Lock waits for it while ctx allows. A lock ends with its holder.
type Locks interface {
	TryLock(ctx context.Context, key string) (unlock func(context.Context) error, ok bool, err error)
	Lock(ctx context.Context, key string) (unlock func(context.Context) error, err error)
}

// Slots bound the actions in flight on each cloud across every process using the registry
// (the store's Waiter): Take waits while all max of the cloud's slots are taken.
type Slots interface {
	Take(ctx context.Context, cloud string, max int) (release func(), err error)
}

// placementLock is the placement lock's key: one placement at a time, in all processes, so
// that two of them never both see the last free room on a cloud.
const placementLock = "placement"

// unlockTimeout bounds the release of the placement lock.
const unlockTimeout = 30 * time.Second

// lockPlacement takes the placement lock.
func (m *Manager) lockPlacement(ctx context.Context) (unlock func(), err error) {
	u, err := m.Locks.Lock(ctx, placementLock)
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

// self returns the lock key this process's claims name (ClaimedBy), taking the lock the first
// time: held for as long as the process lives (its Store, in the simulation), it tells every
// other process that the claims naming it are alive.
func (m *Manager) self(ctx context.Context) (string, error) {
	m.selfOnce.Do(func() { m.selfTurn = make(chan struct{}, 1) })
	select {
	case m.selfTurn <- struct{}{}:
		defer func() { <-m.selfTurn }()
	case <-ctx.Done():
		return "", fmt.Errorf("take this process's lock: %w", ctx.Err())
	}
	if m.selfHeld != "" {
		return m.selfHeld, nil
	}
	name := m.Self
	if name == "" {
		name = newID()
	}
	key := "proc." + name
	_, ok, err := m.Locks.TryLock(ctx, key)
	switch {
	case err != nil:
		return "", fmt.Errorf("take this process's lock %q: %w", key, err)
	case !ok:
		return "", fmt.Errorf("%w: this process's lock %q is held by another (two processes named %q?)", ErrBusy, key, name)
	}
	m.selfHeld = key
	return key, nil
}

// ClaimAlive reports whether the process a lab's claim names is alive: whether its lock is
// held (by it: a process that died has let it go). A lab with no claim has none alive.
func ClaimAlive(ctx context.Context, locks interface {
	TryLock(ctx context.Context, key string) (func(context.Context) error, bool, error)
}, lab labs.Lab) (bool, error) {
	if lab.ClaimedBy == "" {
		return false, nil
	}
	unlock, ok, err := locks.TryLock(ctx, lab.ClaimedBy)
	if err != nil {
		return false, err
	}
	if ok {
		_ = unlock(context.WithoutCancel(ctx)) // free: its process is gone
	}
	return !ok, nil
}
