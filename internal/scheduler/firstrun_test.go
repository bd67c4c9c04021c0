package scheduler

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// A job's first run (Start's RunNow) and its first tick, arriving together, do not run it
// twice at once. gocron v2.21.2 alone does, now and then: two singleton runners for one job
// (16 runs of 300 overlapped with GOMAXPROCS 4 before the scheduler checked it itself).
func TestFirstRunAndFirstTickNeverOverlap(t *testing.T) {
	overlaps := 0
	for range 300 {
		var c concurrency
		var runs atomic.Int32
		s, err := New(Options{Logger: slog.New(slog.DiscardHandler), Jobs: []Job{{Name: "slow", Every: time.Millisecond, Run: func(context.Context) error {
			c.enter()
			defer c.leave()
			time.Sleep(3 * time.Millisecond)
			runs.Add(1)
			return nil
		}}}})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		waitFor(t, "2 runs", func() bool { return runs.Load() >= 2 })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.Shutdown(ctx)
		cancel()
		if c.max.Load() > 1 {
			overlaps++
		}
	}
	if overlaps > 0 {
		t.Errorf("the job overlapped itself in %d schedulers of 300", overlaps)
	}
}
