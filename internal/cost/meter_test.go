package cost_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cost"
	"github.com/labplane/labplane/internal/labs"
)

type countsFake struct {
	counts    []labs.CourseCount
	err       error
	usedSince time.Time
}

func (f *countsFake) CourseCounts(_ context.Context, _ string, usedSince time.Time) ([]labs.CourseCount, error) {
	f.usedSince = usedSince
	return f.counts, f.err
}

// A cloud's first tick meters nothing; each later one adds the time since the last times the
// labs running, suspended and used, per course, at most MaxStep.
func TestMeter(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	reg := &countsFake{counts: []labs.CourseCount{
		{Course: "os101", Status: labs.Active, Labs: 4, Used: 3},
		{Course: "os101", Status: labs.Suspending, Labs: 2},
		{Course: "os101", Status: labs.Suspended, Labs: 10},
		{Course: "net201", Status: labs.Resuming, Labs: 1, Used: 1},
	}}
	got := map[[3]string]float64{}
	m := &cost.Meter{Registry: reg, Now: func() time.Time { return now }, MaxStep: 30 * time.Second,
		Add: func(cloud, course, state string, hours float64) { got[[3]string{cloud, course, state}] += hours }}
	ctx := context.Background()
	if err := m.Tick(ctx, "a"); err != nil || len(got) != 0 {
		t.Fatalf("first tick: %v, %v; want nothing metered", got, err)
	}
	now = now.Add(18 * time.Second)
	if err := m.Tick(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	h := (18 * time.Second).Hours()
	want := map[[3]string]float64{
		{"a", "os101", "running"}: 6 * h, {"a", "os101", "suspended"}: 10 * h, {"a", "os101", "used"}: 3 * h,
		{"a", "net201", "running"}: h, {"a", "net201", "used"}: h,
	}
	if !equal(got, want) {
		t.Errorf("after 18 s: %v, want %v", got, want)
	}
	if !reg.usedSince.Equal(now.Add(-labs.ActivityGap)) {
		t.Errorf("used since %v, want the activity gap before now", reg.usedSince)
	}
	// another process metered the cloud for an hour: this one counts MaxStep of it
	clear(got)
	now = now.Add(time.Hour)
	if err := m.Tick(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if r := got[[3]string{"a", "os101", "suspended"}]; r != 10*(30*time.Second).Hours() {
		t.Errorf("after an hour elsewhere: %v suspended hours, want MaxStep's", r)
	}
	// a cloud of its own first tick; a registry error says which cloud
	clear(got)
	reg.err = errors.New("database is locked")
	if err := m.Tick(ctx, "b"); err != nil || len(got) != 0 {
		t.Errorf("first tick of b: %v, %v", got, err)
	}
	now = now.Add(time.Second)
	if err := m.Tick(ctx, "b"); err == nil || err.Error() != "meter the lab hours of cloud b: database is locked" {
		t.Errorf("tick with the registry failing: %v", err)
	}
}

func equal(a, b map[[3]string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if d := v - b[k]; d > 1e-12 || d < -1e-12 {
			return false
		}
	}
	return true
}
