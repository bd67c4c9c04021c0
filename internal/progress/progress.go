// Package progress shows work under way at a terminal: one line for each part of it (a cloud,
// a host) with how much is done of how much, what failed and how long it has taken, updated
// in place (vbauerster/mpb). Where the output is not a terminal, nothing is shown: the
// command's own lines are the log.
package progress

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Board is a block of lines, one per part of the work. Its methods are safe for concurrent use.
type Board struct {
	p     *mpb.Progress
	what  string
	mu    sync.Mutex
	lines map[string]*line
}

type line struct {
	bar    *mpb.Bar
	failed atomic.Int64
}

// New draws a board on w (a terminal) until ctx is done or Wait; what names the work's units
// ("actions", "tasks"). What else goes to the terminal meanwhile should go through Write.
func New(ctx context.Context, w io.Writer, what string) *Board {
	return &Board{p: mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(30), mpb.WithRefreshRate(150*time.Millisecond)),
		what: what, lines: map[string]*line{}}
}

// Write prints p above the block (a log line while the board is drawn).
func (b *Board) Write(p []byte) (int, error) { return b.p.Write(p) }

// Add adds a line for part (a cloud's name) with total units of work.
func (b *Board) Add(part string, total int) {
	l := &line{}
	l.bar = b.p.AddBar(int64(total),
		mpb.PrependDecorators(decor.Name(part, decor.WCSyncSpaceR), decor.Name(b.what+" ", decor.WC{}), decor.CountersNoUnit("%d/%d", decor.WCSyncSpace)),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string {
				if n := l.failed.Load(); n > 0 {
					return fmt.Sprintf("%d failed", n)
				}
				return ""
			}, decor.WCSyncSpace),
			decor.Elapsed(decor.ET_STYLE_GO, decor.WCSyncSpace)),
	)
	b.mu.Lock()
	b.lines[part] = l
	b.mu.Unlock()
}

// Done counts one unit of part's work done, failed or not.
func (b *Board) Done(part string, failed bool) {
	b.mu.Lock()
	l := b.lines[part]
	b.mu.Unlock()
	if l == nil {
		return
	}
	if failed {
		l.failed.Add(1)
	}
	l.bar.Increment()
}

// Wait draws the block a last time, every line complete or not, and stops.
func (b *Board) Wait() {
	b.mu.Lock()
	for _, l := range b.lines {
		if !l.bar.Completed() {
			l.bar.Abort(false)
		}
	}
	b.mu.Unlock()
	b.p.Wait()
}
