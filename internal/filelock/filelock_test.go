package filelock

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// helperEnv makes the test binary a lock holder (see TestMain): it locks the path in the
// variable, prints "locked" and waits until its stdin closes or it is killed.
const helperEnv = "FILELOCK_TEST_HOLD"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		unlock, err := Lock(context.Background(), path)
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
		if err := unlock(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func lockPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "x.lock")
}

// mustLock takes the lock on path with lock (Lock or LockShared), failing t if it cannot.
func mustLock(t *testing.T, lock func(context.Context, string) (func() error, error), path string) (unlock func() error) {
	t.Helper()
	unlock, err := lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return unlock
}

// mustTry reports whether TryLock on path succeeds, releasing the lock if it did.
func mustTry(t *testing.T, path string) bool {
	t.Helper()
	unlock, ok, err := TryLock(path)
	if err != nil {
		t.Fatalf("TryLock: %v", err)
	}
	if ok {
		if err := unlock(); err != nil {
			t.Fatalf("unlock: %v", err)
		}
	}
	return ok
}

// lockLater calls lock on path in a goroutine; the channel gets its error, nil once it has taken
// the lock and released it.
func lockLater(lock func(context.Context, string) (func() error, error), path string) <-chan error {
	got := make(chan error, 1)
	go func() {
		unlock, err := lock(context.Background(), path)
		if err == nil {
			err = unlock()
		}
		got <- err
	}()
	return got
}

// stillWaiting fails t if the lock of lockLater is taken within d.
func stillWaiting(t *testing.T, got <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-got:
		t.Fatalf("lock returned (%v) while a conflicting lock is held", err)
	case <-time.After(d):
	}
}

// getsLock fails t unless the lock of lockLater is taken (and released) within d.
func getsLock(t *testing.T, got <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatal("the waiting lock was not taken after the holder released it")
	}
}

func TestLockCreatesFile0600(t *testing.T) {
	path := lockPath(t)
	unlock := mustLock(t, Lock, path)
	defer unlock()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
}

func TestLockMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "x.lock")
	if _, err := Lock(context.Background(), path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lock: %v, want ErrNotExist", err)
	}
	if _, _, err := TryLock(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("TryLock: %v, want ErrNotExist", err)
	}
}

func TestTryLock(t *testing.T) {
	path := lockPath(t)
	unlock, ok, err := TryLock(path)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	u2, ok, err := TryLock(path)
	if err != nil || ok || u2 != nil {
		t.Fatalf("second TryLock while held = %v, %v (unlock nil: %v); want false, nil", ok, err, u2 == nil)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil { // only the first call acts
		t.Fatalf("second unlock: %v", err)
	}
	if !mustTry(t, path) {
		t.Fatal("TryLock after unlock failed")
	}
}

// Two goroutines contend: the second waits until the first unlocks.
func TestLockWaitsForHolder(t *testing.T) {
	path := lockPath(t)
	unlock := mustLock(t, Lock, path)
	got := lockLater(Lock, path)
	stillWaiting(t, got, 300*time.Millisecond)
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	getsLock(t, got, 5*time.Second)
}

// Many goroutines: never two inside at once, and every one gets in.
func TestLockMutualExclusion(t *testing.T) {
	path := lockPath(t)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		inside int
		done   int
	)
	const n = 8
	errs := make(chan error, 2*n) // at most two a goroutine
	for range n {
		wg.Go(func() {
			unlock, err := Lock(context.Background(), path)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			inside++
			if inside != 1 {
				errs <- errors.New("two holders at once")
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			inside--
			done++
			mu.Unlock()
			if err := unlock(); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if done != n {
		t.Errorf("%d of %d got the lock", done, n)
	}
}

func TestLockContextCancelWhileWaiting(t *testing.T) {
	path := lockPath(t)
	unlock := mustLock(t, Lock, path)
	defer unlock()

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := Lock(ctx, path); err != context.Canceled {
		t.Errorf("Lock = %v, want exactly context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Lock returned %v after cancel", d)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := LockShared(ctx, path); err != context.DeadlineExceeded {
		t.Errorf("LockShared = %v, want exactly context.DeadlineExceeded", err)
	}
}

// A free lock is taken even if ctx is already done (as documented).
func TestLockFreeWithDoneContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	unlock, err := Lock(ctx, lockPath(t))
	if err != nil {
		t.Fatal(err)
	}
	_ = unlock()
}

func TestShared(t *testing.T) {
	path := lockPath(t)
	u1 := mustLock(t, LockShared, path)
	u2 := mustLock(t, LockShared, path) // shared holders do not exclude each other
	if mustTry(t, path) {
		t.Fatal("exclusive TryLock succeeded while shared locks are held")
	}
	_ = u1()
	if mustTry(t, path) {
		t.Fatal("exclusive TryLock succeeded while one shared lock is held")
	}
	_ = u2()
	if !mustTry(t, path) {
		t.Fatal("exclusive TryLock failed after the shared locks were released")
	}

	// a shared lock waits for an exclusive holder
	ux := mustLock(t, Lock, path)
	got := lockLater(LockShared, path)
	stillWaiting(t, got, 200*time.Millisecond)
	_ = ux()
	getsLock(t, got, 5*time.Second)
}

// startHolder runs this test binary as a lock holder of path and waits until it has the lock.
// Closing stdin makes it unlock and exit.
func startHolder(t *testing.T, path string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("holder: %q, %v", line, err)
	}
	return cmd, stdin
}

// Two processes contend: the lock holds across processes; the waiter gets it when the holder
// unlocks.
func TestLockAcrossProcesses(t *testing.T) {
	path := lockPath(t)
	cmd, stdin := startHolder(t, path)
	if mustTry(t, path) {
		t.Fatal("TryLock succeeded while another process holds the lock")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, path); err != context.DeadlineExceeded {
		t.Fatalf("Lock while another process holds it = %v, want DeadlineExceeded", err)
	}
	got := lockLater(Lock, path)
	stillWaiting(t, got, 200*time.Millisecond)
	_ = stdin.Close() // the holder unlocks and exits
	getsLock(t, got, 10*time.Second)
	if err := cmd.Wait(); err != nil {
		t.Errorf("holder: %v", err)
	}
}

// The lock goes with the holder's file: a holder that dies without unlocking releases it.
func TestLockReleasedWhenHolderDies(t *testing.T) {
	path := lockPath(t)
	cmd, _ := startHolder(t, path)
	if mustTry(t, path) {
		t.Fatal("TryLock succeeded while another process holds the lock")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock, err := Lock(ctx, path)
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	_ = unlock()
}

// A child process started while the lock is held does not inherit it (close-on-exec).
func TestLockNotInherited(t *testing.T) {
	path := lockPath(t)
	unlock := mustLock(t, Lock, path)
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skipf("no sleep: %v", err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if !mustTry(t, path) {
		t.Fatal("lock still held after unlock: the child inherited it")
	}
}
