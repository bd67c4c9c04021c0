package testhosts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/labplane/labplane/internal/filelock"
)

// RunDir holds the machine-wide claims on test networks (one /24 each under 10.251.0.0/16) and
// the lock that serialises package installs.
const RunDir = "/run/labplane-testhosts"

// Networks 1 to maxNetwork are handed out (10.251.0.0/24 is left to the team's shared script).
const maxNetwork = 250

// A claim on network n is two files in RunDir:
//   - net-<n>.lock is flocked by the process that owns the set, for as long as it does;
//   - net-<n> holds the set's directory, and exists from allocation until Down.
//
// A claim whose lock is free belongs to no process: it is taken over (its leftovers cleaned by the
// new owner) unless its set was detached and its hosts are still running.
type claim struct {
	n      int
	unlock func() error // releases the lock on net-<n>.lock
	// stale is the directory of a dead owner's set on this network, to clean before use.
	stale string
}

func claimPath(n int) string     { return filepath.Join(RunDir, "net-"+strconv.Itoa(n)) }
func claimLockPath(n int) string { return claimPath(n) + ".lock" }

// allocate claims the first free network for the set in dir.
func allocate(ctx context.Context, dir string) (*claim, error) {
	unlock, err := lockFile(ctx, filepath.Join(RunDir, "alloc.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	for n := 1; n <= maxNetwork; n++ {
		release, ok, err := filelock.TryLock(claimLockPath(n))
		if err != nil {
			return nil, fmt.Errorf("testhosts: %w", err)
		}
		if !ok {
			continue // its owner is alive
		}
		c := &claim{n: n, unlock: release}
		if prev, err := os.ReadFile(claimPath(n)); err == nil {
			prevDir := strings.TrimSpace(string(prev))
			if prevDir != dir && detachedAndRunning(prevDir) {
				_ = release()
				continue
			}
			c.stale = prevDir
		}
		if err := os.WriteFile(claimPath(n), []byte(dir+"\n"), 0o644); err != nil {
			_ = release()
			return nil, fmt.Errorf("testhosts: claim network %d: %w", n, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("testhosts: all %d test networks are in use (claims in %s)", maxNetwork, RunDir)
}

// reclaim takes over the claim of a detached set (Open); it fails while its owner is alive.
func reclaim(n int, dir string) (*claim, error) {
	unlock, ok, err := filelock.TryLock(claimLockPath(n))
	if errors.Is(err, os.ErrNotExist) { // no RunDir (emptied by a reboot): no claim either
		return nil, fmt.Errorf("testhosts: network %d is not claimed by %s", n, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("testhosts: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("testhosts: the set in %s is owned by a running process", dir)
	}
	if prev, err := os.ReadFile(claimPath(n)); err != nil || strings.TrimSpace(string(prev)) != dir {
		_ = unlock()
		return nil, fmt.Errorf("testhosts: network %d is not claimed by %s", n, dir)
	}
	return &claim{n: n, unlock: unlock}, nil
}

// release drops the claim: the claim file goes (unless keep) and the lock is unlocked.
func (c *claim) release(keep bool) error {
	var err error
	if !keep {
		if rmErr := os.Remove(claimPath(c.n)); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			err = fmt.Errorf("testhosts: %w", rmErr)
		}
	}
	if c.unlock != nil {
		_ = c.unlock()
		c.unlock = nil
	}
	return err
}

// lockFile takes an exclusive flock on path, a file in RunDir (both created if missing),
// waiting while ctx allows.
func lockFile(ctx context.Context, path string) (unlock func() error, err error) {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("testhosts: %w", err)
	}
	if unlock, err = filelock.Lock(ctx, path); err != nil {
		return nil, fmt.Errorf("testhosts: waiting for %s: %w", path, err)
	}
	return unlock, nil
}
