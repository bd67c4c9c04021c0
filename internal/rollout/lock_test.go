package rollout

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/runs"
	"github.com/labplane/labplane/internal/store"
)

// A run left "running" by a labplane that died is closed when the environment's lock is next
// taken; a check run (which takes no lock) and another environment's run are left alone.
func TestLockClosesRunsLeftRunning(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(ctx, store.SQLite, filepath.Join(t.TempDir(), "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	started := time.Now().Add(-time.Hour)
	for _, r := range []runs.Run{
		{ID: "dead", Kind: runs.Deploy, Environment: "production", Release: "r2", StartedAt: started},
		{ID: "check", Kind: runs.Deploy, Environment: "production", Release: "r2", StartedAt: started, Options: runs.Options{Check: true}},
		{ID: "other", Kind: runs.Deploy, Environment: "staging", Release: "r2", StartedAt: started},
	} {
		if err := st.CreateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	pl := &Platform{Registry: st, Actor: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	_, unlock, err := pl.lock(ctx, clock.Wall{}, "production", "deploy", "")
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	want := map[string]runs.Status{"dead": runs.Failed, "check": runs.Running, "other": runs.Running}
	for id, status := range want {
		r, err := st.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != status || (status == runs.Failed && (r.FinishedAt.IsZero() || r.Error == "")) {
			t.Errorf("run %s: %s at %v (%q), want %s", id, r.Status, r.FinishedAt, r.Error, status)
		}
	}
}

// losingRegistry is the store, with an environment lock the test can make lost.
type losingRegistry struct {
	*store.Store
	lose context.CancelCauseFunc
}

func (r *losingRegistry) LockEnvironment(ctx context.Context, l platform.Lock) (context.Context, func(context.Context) error, error) {
	held, unlock, err := r.Store.LockEnvironment(ctx, l)
	if err != nil {
		return nil, nil, err
	}
	lost, lose := context.WithCancelCause(held)
	r.lose = lose
	return lost, unlock, nil
}

// Work under an environment's lock stops when the lock is lost, and says why.
func TestLockLostStopsTheWork(t *testing.T) {
	st, err := store.Open(t.Context(), store.SQLite, filepath.Join(t.TempDir(), "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := &losingRegistry{Store: st}
	pl := &Platform{Registry: reg, Actor: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	locked, unlock, err := pl.lock(t.Context(), clock.Wall{}, "production", "promote", "p1")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if locked.Err() != nil {
		t.Fatal("the work's context is done while the lock is held")
	}
	reg.lose(errors.New("connection reset"))
	select {
	case <-locked.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the work goes on after the lock was lost")
	}
	err = lockLost(locked, ErrInterrupted)
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, ErrLockLost) || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("error %v: want the interruption, the lost lock and why", err)
	}
}

// skewedRegistry is a registry whose clock is ahead of this machine's.
type skewedRegistry struct {
	*store.Store
	skew time.Duration
}

func (r skewedRegistry) Now(context.Context) (time.Time, error) { return time.Now().Add(r.skew), nil }

// What labplane records takes the registry's clock, not the machine's: runs and soak times
// order alike whichever machine records them.
func TestRecordsTakeTheRegistrysClock(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(ctx, store.SQLite, filepath.Join(t.TempDir(), "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateRun(ctx, runs.Run{ID: "dead", Kind: runs.Deploy, Environment: "production", Release: "r2", StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	pl := &Platform{Registry: skewedRegistry{st, time.Hour}, Actor: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	clk, err := pl.registryClock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := clk.Now().Sub(time.Now()); d < time.Hour-time.Second || d > time.Hour+time.Second {
		t.Errorf("the registry's clock is %v ahead, want 1h", d)
	}
	_, unlock, err := pl.lock(ctx, clk, "production", "deploy", "")
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	r, err := st.GetRun(ctx, "dead")
	if err != nil {
		t.Fatal(err)
	}
	if d := r.FinishedAt.Sub(time.Now()); d < time.Hour-5*time.Second {
		t.Errorf("the abandoned run was closed at %v, %v from the machine's clock: want the registry's, 1h ahead", r.FinishedAt, d)
	}
}
