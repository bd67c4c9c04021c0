package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Waiting for a lock polls TryLock: from lockPollMin, doubling up to lockPollMax between
// tries. Neither PostgreSQL's advisory locks (a blocking pg_advisory_lock would hold a
// connection and ignore the context) nor flock(2) waits in a way a context can cancel.
const (
	lockPollMin = 20 * time.Millisecond
	lockPollMax = time.Second
)

// slotReleaseTimeout bounds the release of a cloud's slot (Waiter.Take).
const slotReleaseTimeout = 30 * time.Second

// Lock takes the lock named key as TryLock does, waiting while another holder has it and
// ctx allows; when ctx ends first the error wraps ctx.Err().
func (s *Store) Lock(ctx context.Context, key string) (unlock func(context.Context) error, err error) {
	return Waiter{Locks: s}.Lock(ctx, key)
}

// Hold is Lock with TryHold's held context, done once the lock is released or lost.
func (s *Store) Hold(ctx context.Context, key string) (held context.Context, unlock func(context.Context) error, err error) {
	type got struct {
		held   context.Context
		unlock func(context.Context) error
	}
	g, err := poll(ctx, lockName(key), func() (got, bool, error) {
		held, unlock, ok, err := s.TryHold(ctx, key)
		return got{held, unlock}, ok, err
	})
	return g.held, g.unlock, err
}

// TryLocker is what a Waiter waits on: a Store, or a wrapper of one (the simulation's,
// which takes its turn before each try).
type TryLocker interface {
	TryLock(ctx context.Context, key string) (unlock func(context.Context) error, ok bool, err error)
	TryHold(ctx context.Context, key string) (held context.Context, unlock func(context.Context) error, ok bool, err error)
}

// Waiter waits for the locks of Locks: one lock (Lock), or any one of a cloud's slots (Take).
// A Waiter made by NewWaiter also queues the takers of its process (the ones sharing it): see
// Take.
type Waiter struct {
	Locks TryLocker
	queue *slotQueue
}

// NewWaiter returns a Waiter whose takers of a cloud's slots queue in the process.
func NewWaiter(locks TryLocker) Waiter {
	return Waiter{Locks: locks, queue: &slotQueue{clouds: map[string]*cloudLine{}}}
}

// slotQueue lets at most as many of a process's takers as a cloud's bound look for a slot in
// the registry or hold one; the others wait in line, in order. The bound is read at each
// admission, so that when it falls (an adaptive bound cut) no one is let in until fewer than
// it are in, whatever bound they started waiting with.
type slotQueue struct {
	mu     sync.Mutex
	clouds map[string]*cloudLine
}

// cloudLine is one cloud's admissions: the takers let in (looking or holding) and those
// waiting, each with a channel closed when it is let in.
type cloudLine struct {
	in      int
	waiting []chan struct{}
}

// admit lets the caller in once it is first in line and fewer than bound() are in; leave
// (the returned func) lets the next in.
func (q *slotQueue) admit(ctx context.Context, cloud string, bound func() int) (leave func(), err error) {
	q.mu.Lock()
	l, ok := q.clouds[cloud]
	if !ok {
		l = &cloudLine{}
		q.clouds[cloud] = l
	}
	leave = func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		l.in--
		l.letIn(bound)
	}
	if len(l.waiting) == 0 && l.in < max(bound(), 1) {
		l.in++
		q.mu.Unlock()
		return leave, nil
	}
	turn := make(chan struct{})
	l.waiting = append(l.waiting, turn)
	q.mu.Unlock()
	select {
	case <-turn:
		return leave, nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	i := slices.Index(l.waiting, turn)
	if i >= 0 {
		l.waiting = slices.Delete(l.waiting, i, i+1)
	}
	q.mu.Unlock()
	if i < 0 { // let in as ctx ended: the place goes to the next
		leave()
	}
	return nil, ctx.Err()
}

// letIn lets waiting takers in, in order, while fewer than bound() are in.
func (l *cloudLine) letIn(bound func() int) {
	for len(l.waiting) > 0 && l.in < max(bound(), 1) {
		close(l.waiting[0])
		l.waiting = l.waiting[1:]
		l.in++
	}
}

// Lock takes the lock named key, waiting while another holder has it and ctx allows.
func (w Waiter) Lock(ctx context.Context, key string) (unlock func(context.Context) error, err error) {
	return poll(ctx, lockName(key), func() (func(context.Context) error, bool, error) {
		return w.Locks.TryLock(ctx, key)
	})
}

// TryLock is Locks' TryLock: a Waiter serves every lock its Locks serve.
func (w Waiter) TryLock(ctx context.Context, key string) (unlock func(context.Context) error, ok bool, err error) {
	return w.Locks.TryLock(ctx, key)
}

// TryHold is Locks' TryHold.
func (w Waiter) TryHold(ctx context.Context, key string) (held context.Context, unlock func(context.Context) error, ok bool, err error) {
	return w.Locks.TryHold(ctx, key)
}

// Take takes one of a cloud's slots, bound() of them, waiting while every one is held and ctx
// allows: the bound on the operations in flight on the cloud, shared by every process using
// the database. Slot i is the lock "slot.<cloud>.<i>"; a slot whose holder dies is let go with
// it, as every TryLock lock is. A slot is only taken if vacant(i), asked while its lock is
// held, says so: the cloud may still be at work on what its last holder sent (vacant reads
// the operation recorded there). release lets the slot go. bound is read at each try (an
// adaptive bound moves): when it falls, the slots past it are not taken again.
//
// A Waiter from NewWaiter lets at most bound() of its takers look at once, the others waiting
// in line (in order): a slot this process lets go is taken by the next in line at once, instead
// of by whichever poller looks next (polls back off to lockPollMax), and a class of a hundred
// waiting for eight slots does not poll the registry a hundred times over. Slots other
// processes let go are still found by polling.
func (w Waiter) Take(ctx context.Context, cloud string, bound func() int, vacant func(ctx context.Context, slot int) (bool, error)) (slot int, release func(), err error) {
	type taken struct {
		slot   int
		unlock func(context.Context) error
	}
	done := func() {}
	if w.queue != nil {
		leave, err := w.queue.admit(ctx, cloud, bound)
		if err != nil {
			return 0, nil, fmt.Errorf("wait for a slot of cloud %s: %w", cloud, err)
		}
		done = leave
	}
	t, err := poll(ctx, "for a slot of cloud "+cloud, func() (taken, bool, error) {
		for i := range max(bound(), 1) {
			unlock, ok, err := w.Locks.TryLock(ctx, "slot."+cloud+"."+strconv.Itoa(i))
			if err != nil {
				return taken{}, false, err
			}
			if !ok {
				continue
			}
			free, err := vacant(ctx, i)
			if err == nil && free {
				return taken{i, unlock}, true, nil
			}
			_ = unlock(context.WithoutCancel(ctx))
			if err != nil {
				return taken{}, false, err
			}
		}
		return taken{}, false, nil
	})
	if err != nil {
		done()
		return 0, nil, err
	}
	return t.slot, func() {
		// a failed unlock on PostgreSQL closes the lock's connection, which releases it too
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), slotReleaseTimeout)
		defer cancel()
		_ = t.unlock(rctx)
		done()
	}, nil
}

func lockName(key string) string { return "for lock " + strconv.Quote(key) }

// poll calls try until it succeeds or fails, sleeping between tries from lockPollMin,
// doubling up to lockPollMax, until ctx ends.
func poll[T any](ctx context.Context, what string, try func() (T, bool, error)) (T, error) {
	wait := lockPollMin
	for {
		v, ok, err := try()
		if err != nil || ok {
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			var zero T
			return zero, fmt.Errorf("wait %s: %w", what, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, lockPollMax)
	}
}
