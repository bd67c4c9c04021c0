package cli

import (
	"context"
	"sync"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/progress"
	"github.com/labplane/labplane/internal/provision"
)

// terminalBoard is a progress board drawn on stderr, with the log above it while it is
// drawn (the caller draws one only at a terminal). Its methods are safe for concurrent use.
type terminalBoard struct {
	stdio IO
	logs  *logOutput

	mu    sync.Mutex
	board *progress.Board // nil: none drawn
}

// drawn returns the board drawn, drawing one first (units named what) if there is none.
func (t *terminalBoard) drawn(ctx context.Context, what string) *progress.Board {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.board == nil {
		t.board = progress.New(ctx, t.stdio.Err, what)
		t.logs.to(t.board)
	}
	return t.board
}

// current is the board drawn, or nil.
func (t *terminalBoard) current() *progress.Board {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.board
}

// stop draws the board a last time, if there is one, and gives the log its place back.
func (t *terminalBoard) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.board != nil {
		t.logs.to(t.stdio.Err)
		t.board.Wait()
		t.board = nil
	}
}

// playbookProgress shows Ansible's runs (a deploy, a promotion's) as they go. At a terminal
// (stderr) it draws a line per host: its planned tasks done of all (ansible.List), how many
// failed, how long, the task it did last; above it go the plays, the hosts that fail and the
// log. Elsewhere it prints a line per task and host result (progressPrinter), as CI logs had.
type playbookProgress struct {
	terminalBoard
	ctx     context.Context
	printer *progressPrinter

	mu      sync.Mutex
	tracker *ansible.Tracker // the run under way's
}

func newPlaybookProgress(ctx context.Context, stdio IO, out string, logs *logOutput) *playbookProgress {
	return &playbookProgress{terminalBoard: terminalBoard{stdio: stdio, logs: logs}, ctx: ctx, printer: progressTo(stdio, out)}
}

// planned is deploy.Request.Planned: set only at a terminal, where a board is drawn.
func (p *playbookProgress) planned() func(ansible.Plan) {
	if !p.stdio.ErrTerminal {
		return nil
	}
	return func(plan ansible.Plan) {
		board := p.drawn(p.ctx, "tasks")
		p.printer.to(board)
		for _, h := range plan.Hosts() {
			board.Add(h, plan.Tasks(h))
		}
		p.mu.Lock()
		p.tracker = ansible.NewTracker(plan)
		p.mu.Unlock()
	}
}

// event is deploy.Request.Progress.
func (p *playbookProgress) event(e ansible.Event) {
	board := p.current()
	failed := e.Kind == ansible.Failed || e.Kind == ansible.Unreachable
	if board == nil || e.Kind == ansible.PlayStart || failed {
		p.printer.event(e)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if board == nil || p.tracker == nil {
		return
	}
	host, n := p.tracker.Done(e)
	if n > 0 && e.Task != "" {
		board.Note(host, e.Task)
	}
	for range n {
		board.Done(host, failed)
	}
}

// applyProgress shows a Terraform apply as it goes: at a terminal (stderr), a line with the
// changes done of the plan's and how many failed, with Terraform's lines and the log above
// it; elsewhere Terraform's lines only.
type applyProgress struct {
	terminalBoard
	part string // the line's name, set before the board is drawn
}

// Write takes Terraform's progress lines (provision.Options.Progress).
func (a *applyProgress) Write(b []byte) (int, error) {
	if board := a.current(); board != nil {
		return board.Write(b)
	}
	return a.stdio.Err.Write(b)
}

// applied is provision.Options.Applied.
func (a *applyProgress) applied(c provision.Change, failed bool) {
	if board := a.current(); board != nil {
		board.Note(a.part, c.Address)
		board.Done(a.part, failed)
	}
}

// start draws, at a terminal, a line named part for an apply of total changes; stop ends it.
func (a *applyProgress) start(ctx context.Context, part string, total int) {
	if !a.stdio.ErrTerminal || total == 0 {
		return
	}
	a.part = part
	a.drawn(ctx, "changes").Add(part, total)
}
