package provision

import (
	"log/slog"

	"github.com/hashicorp/terraform-exec/tfexec"
)

// The terraform commands a workspace builds, for the tests to check without running them.

func (w *Workspace) InitOptions() []tfexec.InitOption               { return w.initOptions() }
func (w *Workspace) PlanOptions(destroy bool) []tfexec.PlanOption   { return w.planOptions(destroy) }
func (w *Workspace) ApplyOptions(destroy bool) []tfexec.ApplyOption { return w.applyOptions(destroy) }
func (w *Workspace) ChildEnv() map[string]string                    { return w.childEnv() }
func (w *Workspace) RootModule() ([]byte, error)                    { return w.rootModule() }
func (w *Workspace) Explain(op string, d []Diagnostic) ([]Diagnostic, bool) {
	return w.explain(op, d)
}

// UIStream feeds Terraform's machine-readable UI to a stream in pieces of chunk bytes, as a
// pipe may deliver it, and returns what the stream collected, and the changes it told of
// ("ADDRESS done" or "ADDRESS failed").
func UIStream(ui []byte, chunk int) (planned []Change, counts Counts, diags []Diagnostic, applied []Change, unfinished, told []string) {
	s := newUIStream(slog.New(slog.DiscardHandler), nil)
	s.onApplied = func(c Change, failed bool) {
		told = append(told, map[bool]string{false: c.Address + " done", true: c.Address + " failed"}[failed])
	}
	for len(ui) > 0 {
		n := min(chunk, len(ui))
		_, _ = s.Write(ui[:n])
		ui = ui[n:]
	}
	s.flush()
	return s.planned, s.counts, s.diagnostics, s.applied, s.unfinished, told
}
