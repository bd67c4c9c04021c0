package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/reaper"
)

// reap --once holds every cloud's reaper lock, the ones serve's jobs take: beside a holder it
// waits (up to --wait, then exits 1 naming what holds it), and runs once the holder lets go.
// --dry-run changes nothing and takes no lock.
func TestReapOnceWaitsForTheReaperLock(t *testing.T) {
	t.Parallel()
	s := newSite(t, goodConfig)
	st := s.open()
	ctx := context.Background()
	unlock, ok, err := st.TryLock(ctx, reaper.LockKey("alpha")) // as serve's scheduler does for a job's run on cloud alpha
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}

	res := s.run("reap", "--once", "--yes", "--wait", "300ms")
	if res.code != 1 || !strings.Contains(res.err, "another reaper (labplane serve's scheduler or another reap) holds the lock") {
		t.Fatalf("reap beside a held lock, --wait 300ms: want exit 1 naming the holder, got %s", res)
	}
	if strings.Contains(res.out, "reap at") {
		t.Fatalf("reap ran a pass without the lock: %s", res)
	}

	res = s.run("reap", "--once", "--dry-run")
	if strings.Contains(res.err, "holds the lock") || !strings.Contains(res.out, "dry run") {
		t.Fatalf("reap --dry-run beside a held lock: want a plan, no wait, got %s", res)
	}

	done := make(chan result, 1)
	go func() { done <- s.run("reap", "--once", "--yes") }()
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case res = <-done:
	case <-time.After(time.Minute):
		t.Fatal("reap never ran after the lock was let go")
	}
	// the configuration's only cloud cannot be reached: the pass runs and says so (exit 1)
	if strings.Contains(res.err, "holds the lock") || !strings.Contains(res.out, "reap at") {
		t.Fatalf("reap after the holder let go: want a pass, got %s", res)
	}
	if _, ok, err := st.TryLock(ctx, reaper.LockKey("alpha")); !ok || err != nil {
		t.Errorf("the lock after reap exited: %v, %v; want it free", ok, err)
	}
}
