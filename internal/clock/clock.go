// Package clock has the clocks that tests and simulations inject where labplane asks for
// `func() time.Time`: a manual one that moves only when told, and a virtual one (virtual.go)
// on which a simulation's goroutines sleep and wait while it jumps from event to event.
package clock

import (
	"sync"
	"time"
)

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
