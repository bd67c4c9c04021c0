package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/inflight"
	"github.com/labplane/labplane/internal/labs"
)

// Locks are the registry's locks (the store's), shared by every process using it: TryLock
// takes one if it is free, Lock waits for it while ctx allows. A lock ends with its holder.
// TryHold is TryLock with a context that is done once the lock is released or lost (on
// PostgreSQL, when its connection drops).
type Locks interface {
	TryLock(ctx context.Context, key string) (unlock func(context.Context) error, ok bool, err error)
	TryHold(ctx context.Context, key string) (held context.Context, unlock func(context.Context) error, ok bool, err error)
	Lock(ctx context.Context, key string) (unlock func(context.Context) error, err error)
}

// Slots bound the actions in flight on each cloud across every process using the registry
// (the store's Waiter): Take waits while none of the cloud's bound() slots is free and vacant.
type Slots interface {
	Take(ctx context.Context, cloud string, bound func() int, vacant func(ctx context.Context, slot int) (bool, error)) (slot int, release func(), err error)
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

// slot takes one of c's slots for an operation (op) on a stack, waiting while all are taken,
// and records the operation in it before the caller sends it: Target.MaxInFlight bounds the
// cloud's operations across every process, those its sender stopped waiting for included.
// Without Slots, or for a cloud with no MaxInFlight, it takes nothing.
func (m *Manager) slot(ctx context.Context, c Cloud, op, stack, id string) (*heldSlot, error) {
	var target Target
	for _, t := range m.Targets {
		if t.Cloud.Name() == c.Name() {
			target = t
		}
	}
	if m.Slots == nil || target.Bound() <= 0 {
		return &heldSlot{}, nil
	}
	busy := func(err error) error {
		// not the stack's failure: the cloud was busy (or the registry failed) until ctx ended
		return &cloud.Error{Cloud: c.Name(), Op: op, Stack: stack, Kind: cloud.ErrTransient,
			Message: "no free slot for work on this cloud", Err: err}
	}
	i, release, err := m.Slots.Take(ctx, c.Name(), target.Bound, func(ctx context.Context, i int) (bool, error) {
		return m.vacant(ctx, c, i)
	})
	if err != nil {
		return nil, busy(err)
	}
	h := &heldSlot{m: m, release: release, op: labs.Operation{Cloud: c.Name(), Slot: i, Op: op, StackName: stack, StackID: id, SentAt: m.Now()}}
	if err := m.Registry.StartOperation(ctx, h.op); err != nil {
		release()
		return nil, busy(err)
	}
	if h.adaptive = target.Adaptive; h.adaptive != nil {
		h.sentWith = h.adaptive.Start()
	}
	return h, nil
}

// vacant reports whether slot i of c is free of an operation the cloud may still be at work
// on: one recorded there whose sender stopped before seeing it end (it died, or its wait
// timed out), and whose stack the cloud still shows in progress. A cloud that cannot be
// asked leaves the slot taken. A slot found taken so is not asked about again, by this
// process, for leftRecheck: a class waiting for slots would otherwise ask the cloud at every
// try.
func (m *Manager) vacant(ctx context.Context, c Cloud, i int) (bool, error) {
	key := c.Name() + "/" + strconv.Itoa(i)
	if until, ok := m.leftSlots.Load(key); ok && time.Now().Before(until.(time.Time)) {
		return false, nil
	}
	op, ok, err := m.Registry.Operation(ctx, c.Name(), i)
	if err != nil || !ok {
		return err == nil, err
	}
	st, err := c.Get(ctx, op.StackName, op.StackID)
	switch {
	case errors.Is(err, cloud.ErrNotFound):
		return true, nil
	case err != nil:
		m.Log.Warn("a slot's last operation could not be checked: the slot stays taken", "cloud", c.Name(), "slot", i,
			"op", op.Op, "stack", op.StackName, "err", err)
	default:
		if _, state := st.Phase(); state != "IN_PROGRESS" {
			return true, nil
		}
	}
	m.leftSlots.Store(key, time.Now().Add(leftRecheck))
	return false, nil
}

// leftRecheck is how long a process leaves a slot it found taken by an operation still at
// work before it asks the cloud again (vacant).
const leftRecheck = 5 * time.Second

// A heldSlot is a cloud slot taken for an operation, which is recorded in it.
type heldSlot struct {
	m       *Manager
	release func()
	op      labs.Operation

	adaptive *inflight.Limit // the cloud's adaptive bound, told how the operation went
	sentWith int
	unsent   bool // let go before anything was sent: nothing for the adaptive bound to learn
}

// endUnsent lets the slot go without having sent its operation: over, and no sample of the
// cloud (a near-zero time would pass for the cloud's best).
func (h *heldSlot) endUnsent(ctx context.Context) {
	h.unsent = true
	h.end(ctx, nil)
}

// end lets the slot go once the operation returned err. The record is cleared only if the
// operation is known to be over; otherwise (a timeout, a lost answer, a stop) the cloud may
// still be at work on it, and the slot stays taken until it is seen done (vacant).
func (h *heldSlot) end(ctx context.Context, err error) {
	if h.release == nil {
		return
	}
	if h.adaptive != nil {
		h.adaptive.Done(h.sentWith, h.sample(err))
	}
	if over(err) {
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		if eerr := h.m.Registry.EndOperation(ectx, h.op); eerr != nil {
			// left recorded: the slot's next taker asks the cloud, which is done with it
			h.m.Log.Warn("clear a finished operation from its slot", "cloud", h.op.Cloud, "slot", h.op.Slot, "err", eerr)
		}
		cancel()
	}
	h.release()
	h.release = nil
}

// sample is how the operation went, for the cloud's adaptive bound: how long it took if it
// completed, whether the cloud pushed back (a transient failure, an answer too late).
func (h *heldSlot) sample(err error) inflight.Sample {
	s := inflight.Sample{Action: h.op.Op}
	switch {
	case h.unsent:
	case err == nil:
		s.Took = h.m.Now().Sub(h.op.SentAt)
	case errors.Is(err, cloud.ErrTransient), errors.Is(err, context.DeadlineExceeded):
		s.PushedBack = true
	}
	return s
}

// over reports whether an operation that returned err is known to be over on the cloud: it
// completed, or the cloud failed or refused it. After a timeout, a transient failure or a
// stop, the cloud may still be at work on it.
func over(err error) bool {
	var ce *cloud.Error
	switch {
	case err == nil:
		return true
	case errors.Is(err, cloud.ErrTransient), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return errors.As(err, &ce)
}

// deleteStack deletes a stack, holding one of its cloud's slots.
func (m *Manager) deleteStack(ctx context.Context, c Cloud, name, id string) (labs.Stack, error) {
	held, err := m.slot(ctx, c, "delete", name, id)
	if err != nil {
		return labs.Stack{}, err
	}
	st, err := c.Delete(ctx, name, id)
	held.end(ctx, err)
	return st, err
}

// self returns the lock key this process's claims name (ClaimedBy), taking the lock the first
// time: held for as long as the process lives (its Store, in the simulation), it tells every
// other process that the claims naming it are alive. A lock lost while the process lives (on
// PostgreSQL, its connection dropped) has made its claims look dead to the others, which may
// have taken them over: the claims from then on name a new lock, so that none is taken
// under a lock that no longer vouches for it.
func (m *Manager) self(ctx context.Context) (string, error) {
	m.selfOnce.Do(func() { m.selfTurn = make(chan struct{}, 1) })
	select {
	case m.selfTurn <- struct{}{}:
		defer func() { <-m.selfTurn }()
	case <-ctx.Done():
		return "", fmt.Errorf("take this process's lock: %w", ctx.Err())
	}
	if m.selfHeld != "" && m.selfLost.Err() == nil {
		return m.selfHeld, nil
	}
	name := m.Self
	if name == "" {
		name = newID()
	}
	if m.selfHeld != "" {
		m.Log.Warn("this process's lock was lost: its claims under way may be taken over; new ones name a new lock",
			"lock", m.selfHeld, "cause", context.Cause(m.selfLost))
		name += "-" + newID()
	}
	key := "proc." + name
	held, _, ok, err := m.Locks.TryHold(ctx, key)
	switch {
	case err != nil:
		return "", fmt.Errorf("take this process's lock %q: %w", key, err)
	case !ok:
		return "", fmt.Errorf("%w: this process's lock %q is held by another (two processes named %q?)", ErrBusy, key, name)
	}
	m.selfHeld, m.selfLost = key, held
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
