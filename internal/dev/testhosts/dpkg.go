package testhosts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// dpkgDir is the machine's dpkg database. The hosts see it through their overlay, and a test
// that installs a package on the machine (internal/apt) while a host runs apt would show the
// host the machine's install half done: dpkg's journal in updates/ ("dpkg was interrupted,
// you must manually run 'dpkg --configure -a'"), a status listing packages unpacked and not
// yet configured, triggers pending. So each host gets its own copy of the parts dpkg changes
// during a run (dpkgPrivate; its package files, info/, stay the machine's), taken between
// two of the machine's runs.
const dpkgDir = "/var/lib/dpkg"

// dpkgPrivate are the parts of dpkgDir a host has its own copy of: the status file, the
// journal and the pending triggers.
var dpkgPrivate = []string{"status", "updates", "triggers"}

// snapshotDpkg copies dpkgPrivate of the machine into dst (made anew), holding dpkg's locks as
// apt-get and dpkg take them (the front end's, then the database's: fcntl locks), so that no
// run of the machine's is under way. It waits for a run under way (an install of a test's,
// which may take minutes) while ctx allows.
func snapshotDpkg(ctx context.Context, dst string) error {
	for _, name := range []string{"lock-frontend", "lock"} {
		unlock, err := lockDpkg(ctx, filepath.Join(dpkgDir, name))
		if err != nil {
			return err
		}
		defer unlock()
	}
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("testhosts: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("testhosts: %w", err)
	}
	for _, name := range dpkgPrivate {
		src := filepath.Join(dpkgDir, name)
		info, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("testhosts: dpkg's database: %w", err)
		}
		if info.IsDir() {
			err = os.CopyFS(filepath.Join(dst, name), os.DirFS(src))
		} else {
			var b []byte
			if b, err = os.ReadFile(src); err == nil {
				err = os.WriteFile(filepath.Join(dst, name), b, info.Mode().Perm())
			}
		}
		if err != nil {
			return fmt.Errorf("testhosts: copy dpkg's %s: %w", name, err)
		}
	}
	return nil
}

// lockDpkg takes the fcntl write lock dpkg and apt take on path, trying every 100 ms while
// another process holds it and ctx allows. unlock lets it go (closing the file does).
func lockDpkg(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("testhosts: dpkg's lock: %w", err)
	}
	lock := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0}
	for {
		err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lock)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) {
			_ = f.Close()
			return nil, fmt.Errorf("testhosts: dpkg's lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("testhosts: wait for dpkg's lock %s (an install under way on this machine): %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
