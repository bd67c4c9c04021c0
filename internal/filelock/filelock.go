// Package filelock takes advisory flock(2) locks on files, between goroutines and between
// processes on one machine.
//
// A lock belongs to an open file description: every Lock call opens the file anew, so two
// goroutines of one process exclude each other just as two processes do. The lock is released
// by the unlock function, and in any case when the process exits (the kernel closes the file).
// The descriptor is close-on-exec, so child processes never inherit a lock.
//
// The lock file is created (mode 0600) if missing and never removed: removing it would let a
// later caller lock a new file while another still holds the old one. Its directory must exist.
package filelock

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// Polling bounds while another holder has the lock: a blocking flock(2) cannot be cancelled,
// so Lock tries without blocking and sleeps in between, from minWait doubling up to maxWait.
const (
	minWait = 5 * time.Millisecond
	maxWait = 100 * time.Millisecond
)

// Lock takes an exclusive lock on path, waiting while another holder has it (exclusive or
// shared) and ctx allows. If ctx ends first it returns ctx.Err(); if the lock is free it is
// taken even when ctx is already done. unlock releases the lock (by closing the file); it may be
// called more than once, and only the first call acts.
func Lock(ctx context.Context, path string) (unlock func() error, err error) {
	return lock(ctx, path, syscall.LOCK_EX)
}

// LockShared takes a shared lock on path: any number of holders may share it, and it excludes
// (and waits for) exclusive holders only. Otherwise it is like Lock.
func LockShared(ctx context.Context, path string) (unlock func() error, err error) {
	return lock(ctx, path, syscall.LOCK_SH)
}

// TryLock takes an exclusive lock on path without waiting: ok is false (with a nil error and
// unlock) if another holder has a lock on it.
func TryLock(path string) (unlock func() error, ok bool, err error) {
	f, err := open(path)
	if err != nil {
		return nil, false, err
	}
	ok, err = try(f, syscall.LOCK_EX)
	if !ok {
		_ = f.Close()
		return nil, false, err
	}
	return sync.OnceValue(f.Close), true, nil
}

func lock(ctx context.Context, path string, how int) (func() error, error) {
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	wait := minWait
	for {
		ok, err := try(f, how)
		if ok {
			return sync.OnceValue(f.Close), nil
		}
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

func open(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}

// try takes the lock on f without blocking: ok is false with a nil error if it is held.
func try(f *os.File, how int) (ok bool, err error) {
	for {
		err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return false, nil
	default:
		return false, &os.PathError{Op: "flock", Path: f.Name(), Err: err}
	}
}
