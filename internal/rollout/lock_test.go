package rollout

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

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
	unlock, err := pl.lock(ctx, "production", "deploy", "")
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
