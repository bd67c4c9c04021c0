package cost

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// Meter counts the hours labs bill as they pass, for a live graph of billed hours beside used
// ones (labplane_lab_hours_total{cloud,course,state}): each Tick of a cloud adds, per course,
// the time since that cloud's last Tick times its labs running, suspended, and used (a
// heartbeat or a resume within labs.ActivityGap). serve ticks a cloud after each suspend-idle
// run, under the cloud's lock: one process at a time meters a cloud, and the sum of every
// process's counters is the whole.
type Meter struct {
	Registry interface {
		CourseCounts(ctx context.Context, cloud string, usedSince time.Time) ([]labs.CourseCount, error)
	}
	// Add adds hours to the counter of cloud, course and state ("running", "suspended",
	// "used").
	Add func(cloud, course, state string, hours float64)
	Now func() time.Time
	// MaxStep is the most one Tick counts: a longer time since this process's last Tick of
	// the cloud was metered by another process (it held the cloud's lock meanwhile).
	MaxStep time.Duration

	mu   sync.Mutex
	last map[string]time.Time // cloud -> its last Tick here
}

// Tick meters the cloud's labs over the time since its last Tick (none on the first).
func (m *Meter) Tick(ctx context.Context, cloud string) error {
	now := m.Now()
	m.mu.Lock()
	last, ok := m.last[cloud]
	if m.last == nil {
		m.last = map[string]time.Time{}
	}
	m.last[cloud] = now
	m.mu.Unlock()
	step := min(now.Sub(last), m.MaxStep)
	if !ok || step <= 0 {
		return nil
	}
	counts, err := m.Registry.CourseCounts(ctx, cloud, now.Add(-labs.ActivityGap))
	if err != nil {
		return fmt.Errorf("meter the lab hours of cloud %s: %w", cloud, err)
	}
	for _, c := range counts {
		if state := BillsAs(c.Status); state != "gone" {
			m.Add(cloud, c.Course, state, float64(c.Labs)*step.Hours())
		}
		if c.Used > 0 {
			m.Add(cloud, c.Course, "used", float64(c.Used)*step.Hours())
		}
	}
	return nil
}
