package store_test

import (
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/labplane/labplane/internal/runs"
)

func newRun(id, env string, sec int) runs.Run {
	return runs.Run{ID: id, Kind: runs.Deploy, Environment: env, Release: "olive.1", Actor: "cli:ann",
		StartedAt: at(sec), Options: runs.Options{Check: true, Limit: "lms-1"}, LogPath: "/state/runs/" + id + ".jsonl"}
}

func TestRuns(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		r := newRun("0193a1b2-run-one", "staging", 0)
		if err := e.s.CreateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, err := e.s.GetRun(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != runs.Running || !got.FinishedAt.IsZero() || got.Options != r.Options || got.StartedAt != norm(r.StartedAt) {
			t.Errorf("created run = %+v", got)
		}

		r.Status, r.FinishedAt = runs.Failed, at(90)
		r.Recap = map[string]runs.HostRecap{"lms-1": {OK: 10, Changed: 2, Failed: 1}, "cms-1": {OK: 12}}
		r.Failures = []runs.Failure{{Host: "lms-1", Task: "Run migrations", Msg: "no such table"}}
		r.Error = "lms-1 failed"
		if err := e.s.FinishRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, err = e.s.GetRun(ctx, "0193a1b2") // a prefix finds it
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != runs.Failed || got.FinishedAt != norm(at(90)) || !reflect.DeepEqual(got.Recap, r.Recap) ||
			!slices.Equal(got.Failures, r.Failures) || got.Error != r.Error || got.LogPath != r.LogPath {
			t.Errorf("finished run = %+v", got)
		}
		// finished once: a second finish changes nothing
		r2 := r
		r2.Status, r2.Error = runs.Succeeded, ""
		if err := e.s.FinishRun(ctx, r2); !errors.Is(err, runs.ErrFinished) {
			t.Errorf("second FinishRun: %v, want ErrFinished", err)
		}
		if got, _ := e.s.GetRun(ctx, r.ID); got.Status != runs.Failed {
			t.Errorf("a second finish changed the run: %+v", got)
		}
		if err := e.s.FinishRun(ctx, runs.Run{ID: "nope", Status: runs.Failed, FinishedAt: at(1)}); !errors.Is(err, runs.ErrNotFound) {
			t.Errorf("FinishRun(unknown): %v, want ErrNotFound", err)
		}
		for _, id := range []string{"", "nope", "%", "0193a1b2-run-one-x"} {
			if _, err := e.s.GetRun(ctx, id); !errors.Is(err, runs.ErrNotFound) {
				t.Errorf("GetRun(%q): %v, want ErrNotFound", id, err)
			}
		}
	})
}

func TestListRuns(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		for i, r := range []runs.Run{newRun("a1", "staging", 0), newRun("b2", "production", 10), newRun("c3", "staging", 20)} {
			if i == 1 {
				r.Kind = runs.Rollback
			}
			if err := e.s.CreateRun(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		ids := func(f runs.Filter) []string {
			t.Helper()
			rs, err := e.s.ListRuns(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range rs {
				out = append(out, r.ID)
			}
			return out
		}
		for _, c := range []struct {
			f    runs.Filter
			want []string
		}{
			{runs.Filter{}, []string{"c3", "b2", "a1"}},
			{runs.Filter{Environment: "staging"}, []string{"c3", "a1"}},
			{runs.Filter{Kind: runs.Rollback}, []string{"b2"}},
			{runs.Filter{Limit: 1}, []string{"c3"}},
			{runs.Filter{Environment: "nowhere"}, nil},
		} {
			if got := ids(c.f); !slices.Equal(got, c.want) {
				t.Errorf("ListRuns(%+v) = %v, want %v", c.f, got, c.want)
			}
		}
	})
}

// Two processes finishing the same run: exactly one wins.
func TestFinishRunOnce(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		r := newRun("race", "staging", 0)
		if err := e.s.CreateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		other := e.open(t)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, st := range []runs.Status{runs.Succeeded, runs.Cancelled} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fin := r
				fin.Status, fin.FinishedAt = st, at(5)
				s := e.s
				if i == 1 {
					s = other
				}
				errs[i] = s.FinishRun(ctx, fin)
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, runs.ErrFinished):
				t.Errorf("FinishRun: %v", err)
			}
		}
		if won != 1 {
			t.Errorf("%d finishes won, want exactly 1 (%v)", won, errs)
		}
	})
}
