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
	total  int64 // under Board.mu
	failed atomic.Int64
	note   atomic.Pointer[string]
}

// New draws a board on w (a terminal) until ctx is done or Wait; what names the work's units
// ("actions", "tasks"). What else goes to the terminal meanwhile should go through Write.
func New(ctx context.Context, w io.Writer, what string) *Board {
	return &Board{p: mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithAutoRefresh(), mpb.WithWidth(30), mpb.WithRefreshRate(150*time.Millisecond)),
		what: what, lines: map[string]*line{}}
}

// Write prints p above the block (a log line while the board is drawn).
func (b *Board) Write(p []byte) (int, error) { return b.p.Write(p) }

// Add adds total units of work to part's line (a cloud's, a host's), drawn from the first
// call on. A line is complete when Wait draws it last: more work may still be added to it.
func (b *Board) Add(part string, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l := b.lines[part]; l != nil {
		l.total += int64(total)
		l.bar.SetTotal(l.total, false)
		return
	}
	l := &line{total: int64(total)}
	// a total of 0 for mpb: the bar never completes itself when its count reaches the total
	l.bar = b.p.AddBar(0,
		mpb.PrependDecorators(decor.Name(part, decor.WCSyncSpaceR), decor.Name(b.what+" ", decor.WC{}), decor.CountersNoUnit("%d/%d", decor.WCSyncSpace)),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string {
				if n := l.failed.Load(); n > 0 {
					return fmt.Sprintf("%d failed", n)
				}
				return ""
			}, decor.WCSyncSpace),
			decor.Elapsed(decor.ET_STYLE_GO, decor.WCSyncSpace),
			decor.Any(func(decor.Statistics) string {
				if n := l.note.Load(); n != nil {
					return " " + *n
				}
				return ""
			}, decor.WC{C: decor.DindentRight})),
	)
	l.bar.SetTotal(l.total, false)
	b.lines[part] = l
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

// Note shows text at the end of part's line (what it did last), cut to noteWidth, until the
// next note.
func (b *Board) Note(part, text string) {
	b.mu.Lock()
	l := b.lines[part]
	b.mu.Unlock()
	if r := []rune(text); len(r) > noteWidth {
		text = string(r[:noteWidth-1]) + "…"
	}
	if l != nil {
		l.note.Store(&text)
	}
}

// noteWidth keeps a line within a terminal's width: a line that wraps is not redrawn in place.
const noteWidth = 40

// Wait draws the block a last time, each line complete (its work all done) or not, and stops.
func (b *Board) Wait() {
	b.mu.Lock()
	for _, l := range b.lines {
		if l.bar.Current() >= l.total {
			l.bar.SetTotal(l.total, true)
		} else {
			l.bar.Abort(false)
		}
	}
	b.mu.Unlock()
	b.p.Wait()
}
