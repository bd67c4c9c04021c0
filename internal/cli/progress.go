package cli

import (
	"context"
	"io"
	"sync"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/progress"
	"github.com/labplane/labplane/internal/provision"
)

// playbookProgress shows Ansible's runs (a deploy, a promotion's) as they go. At a terminal
// (stderr) it draws a line per host: its planned tasks done of all (ansible.List), how many
// failed, how long, the task it did last; above it go the plays, the hosts that fail and the
// log. Elsewhere it prints a line per task and host result (progressPrinter), as CI logs had.
type playbookProgress struct {
	ctx     context.Context
	stdio   IO
	logs    *logOutput
	printer *progressPrinter

	mu      sync.Mutex
	board   *progress.Board // drawn from the first plan on, at a terminal
	tracker *ansible.Tracker
}

func newPlaybookProgress(ctx context.Context, stdio IO, out string, logs *logOutput) *playbookProgress {
	return &playbookProgress{ctx: ctx, stdio: stdio, logs: logs, printer: progressTo(stdio, out)}
}

// planned is deploy.Request.Planned: set only at a terminal, where a board is drawn.
func (p *playbookProgress) planned() func(ansible.Plan) {
	if !p.stdio.ErrTerminal {
		return nil
	}
	return func(plan ansible.Plan) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.board == nil {
			p.board = progress.New(p.ctx, p.stdio.Err, "tasks")
			p.printer.mu.Lock()
			p.printer.w = p.board
			p.printer.mu.Unlock()
			p.logs.to(p.board)
		}
		for _, h := range plan.Hosts() {
			p.board.Add(h, plan.Tasks(h))
		}
		p.tracker = ansible.NewTracker(plan)
	}
}

// event is deploy.Request.Progress.
func (p *playbookProgress) event(e ansible.Event) {
	p.mu.Lock()
	board, tracker := p.board, p.tracker
	p.mu.Unlock()
	failed := e.Kind == ansible.Failed || e.Kind == ansible.Unreachable
	if board == nil || e.Kind == ansible.PlayStart || failed {
		p.printer.event(e)
	}
	if tracker == nil {
		return
	}
	host, n := tracker.Done(e)
	if n > 0 && e.Task != "" {
		board.Note(host, e.Task)
	}
	for range n {
		board.Done(host, failed)
	}
}

// stop draws the board a last time, if there is one, and gives the log its place back.
func (p *playbookProgress) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.board != nil {
		p.logs.to(p.stdio.Err)
		p.board.Wait()
		p.board = nil
	}
}

// applyProgress shows a Terraform apply as it goes: at a terminal (stderr), a line with the
// changes done of the plan's and how many failed, with Terraform's lines and the log above
// it; elsewhere Terraform's lines only.
type applyProgress struct {
	stdio IO
	logs  *logOutput

	mu    sync.Mutex
	board *progress.Board
	part  string
}

// Write takes Terraform's progress lines (provision.Options.Progress).
func (a *applyProgress) Write(b []byte) (int, error) {
	a.mu.Lock()
	var w io.Writer = a.stdio.Err
	if a.board != nil {
		w = a.board
	}
	a.mu.Unlock()
	return w.Write(b)
}

// applied is provision.Options.Applied.
func (a *applyProgress) applied(c provision.Change, failed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.board != nil {
		a.board.Note(a.part, c.Address)
		a.board.Done(a.part, failed)
	}
}

// start draws, at a terminal, a line named part for an apply of total changes; stop ends it.
func (a *applyProgress) start(ctx context.Context, part string, total int) {
	if !a.stdio.ErrTerminal || total == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.board, a.part = progress.New(ctx, a.stdio.Err, "changes"), part
	a.board.Add(part, total)
	a.logs.to(a.board)
}

func (a *applyProgress) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.board != nil {
		a.logs.to(a.stdio.Err)
		a.board.Wait()
		a.board = nil
	}
}
