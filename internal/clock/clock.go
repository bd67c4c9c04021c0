// Package clock has the clocks that tests and simulations inject where labplane asks for
// `func() time.Time`: a manual one that moves only when told, and a virtual one (virtual.go)
// on which a simulation's goroutines sleep and wait while it jumps from event to event; and the
// machine's own, Wall, where a clock must also sleep.
package clock

import (
	"context"
	"sync"
	"time"
)

// Sleep waits d, or until ctx is done (and returns its error). In a testing/synctest bubble the
// wait is on the bubble's clock.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Clock tells the time and waits: Wall, or a Virtual clock in a simulation.
type Clock interface {
	Now() time.Time
	Sleep(ctx context.Context, d time.Duration) error
}

// Wall is the machine's clock, for what asks for Now and Sleep.
type Wall struct{}

// Now is the time.
func (Wall) Now() time.Time { return time.Now() }

// Sleep is the package's Sleep.
func (Wall) Sleep(ctx context.Context, d time.Duration) error { return Sleep(ctx, d) }

// Shifted is the machine's clock moved by By: another machine's clock (the registry's), read
// once and followed with the machine's own.
type Shifted struct{ By time.Duration }

// Now is the machine's time moved by By.
func (s Shifted) Now() time.Time { return time.Now().Add(s.By) }

// Sleep is the package's Sleep.
func (Shifted) Sleep(ctx context.Context, d time.Duration) error { return Sleep(ctx, d) }

// Manual is a clock that stands still until Add moves it. Safe for concurrent use.
type Manual struct {
	mu sync.Mutex
	t  time.Time
}

// NewManual returns a clock showing t.
func NewManual(t time.Time) *Manual { return &Manual{t: t} }

// Now is the clock's time.
func (c *Manual) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock forward by d.
func (c *Manual) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
