package provision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
)

// Change is one resource a plan changes, or an apply changed.
type Change struct {
	// Address is the resource's address (module.environment.openstack_compute_instance_v2.node["lms-1"]).
	Address string `json:"address"`
	// Type is the resource type (openstack_compute_instance_v2).
	Type string `json:"type"`
	// Action is Terraform's: create, update, delete, replace, read.
	Action string `json:"action"`
}

// Counts are Terraform's change summary.
type Counts struct {
	Add    int `json:"add"`
	Change int `json:"change"`
	Remove int `json:"remove"`
}

// uiMessage is one line of Terraform's machine-readable UI (-json); only the fields labplane reads.
type uiMessage struct {
	Level   string `json:"@level"`
	Message string `json:"@message"`
	Type    string `json:"type"`
	Change  *struct {
		Resource uiResource `json:"resource"`
		Action   string     `json:"action"`
	} `json:"change"`
	Hook *struct {
		Resource uiResource `json:"resource"`
		Action   string     `json:"action"`
	} `json:"hook"`
	Changes    *Counts `json:"changes"`
	Diagnostic *struct {
		Severity string `json:"severity"`
		Summary  string `json:"summary"`
		Detail   string `json:"detail"`
		Address  string `json:"address"`
		Range    *struct {
			Filename string `json:"filename"`
			Start    struct {
				Line int `json:"line"`
			} `json:"start"`
		} `json:"range"`
	} `json:"diagnostic"`
}

// incompleteLockFile is the warning init gives for every provider installed from a mirror: it
// says the lock file has checksums for this platform only, which is all a workspace needs.
const incompleteLockFile = "Incomplete lock file information for providers"

type uiResource struct {
	Addr         string `json:"addr"`
	ResourceType string `json:"resource_type"`
}

// uiStream reads Terraform's machine-readable UI as Terraform writes it: it collects the
// planned changes, the change summary, the diagnostics and the applied changes, logs every
// message at debug level and copies apply progress to progress.
type uiStream struct {
	log       *slog.Logger
	progress  io.Writer
	onApplied func(c Change, failed bool) // nil: no one is told
	partial   []byte

	planned     []Change
	counts      Counts
	diagnostics []Diagnostic
	applied     []Change
	unfinished  []string // changes started and not completed (interrupted, or failed), in order
}

func newUIStream(log *slog.Logger, progress io.Writer) *uiStream {
	if progress == nil {
		progress = io.Discard
	}
	return &uiStream{log: log, progress: progress}
}

// Write takes any part of the stream; each complete line is one message.
func (s *uiStream) Write(p []byte) (int, error) {
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		s.handle(s.partial[:i])
		s.partial = s.partial[i+1:]
	}
}

// flush handles a last line without a newline.
func (s *uiStream) flush() {
	if len(bytes.TrimSpace(s.partial)) > 0 {
		s.handle(s.partial)
	}
	s.partial = nil
}

func (s *uiStream) handle(line []byte) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return
	}
	var m uiMessage
	if err := json.Unmarshal(line, &m); err != nil {
		s.log.Debug("terraform", "line", string(line))
		return
	}
	s.log.Debug("terraform", "type", m.Type, "msg", m.Message)
	switch m.Type {
	case "planned_change":
		if m.Change != nil {
			s.planned = append(s.planned, Change{Address: m.Change.Resource.Addr, Type: m.Change.Resource.ResourceType, Action: m.Change.Action})
		}
	case "change_summary":
		if m.Changes != nil {
			s.counts = *m.Changes
		}
	case "diagnostic":
		if d := m.Diagnostic; d != nil {
			diag := Diagnostic{Severity: d.Severity, Summary: d.Summary, Detail: d.Detail, Address: d.Address}
			if d.Range != nil {
				diag.File, diag.Line = d.Range.Filename, d.Range.Start.Line
			}
			if diag.File == "<empty>" {
				diag.File = ""
			}
			s.diagnostics = append(s.diagnostics, diag)
			if d.Severity == "warning" && d.Summary != incompleteLockFile {
				s.log.Warn("terraform warning", "summary", d.Summary, "detail", d.Detail, "address", d.Address)
			}
		}
	case "apply_start":
		if m.Hook != nil {
			s.unfinished = append(s.unfinished, m.Hook.Resource.Addr)
		}
		fmt.Fprintln(s.progress, m.Message)
	case "apply_progress":
		fmt.Fprintln(s.progress, m.Message)
	case "apply_complete":
		if m.Hook != nil {
			s.unfinished = slices.DeleteFunc(s.unfinished, func(a string) bool { return a == m.Hook.Resource.Addr })
			c := Change{Address: m.Hook.Resource.Addr, Type: m.Hook.Resource.ResourceType, Action: m.Hook.Action}
			s.applied = append(s.applied, c)
			s.tell(c, false)
		}
		fmt.Fprintln(s.progress, m.Message)
	case "apply_errored":
		if m.Hook != nil {
			s.tell(Change{Address: m.Hook.Resource.Addr, Type: m.Hook.Resource.ResourceType, Action: m.Hook.Action}, true)
		}
		fmt.Fprintln(s.progress, m.Message)
	}
}

// tell tells onApplied, if set, of a change completed or failed.
func (s *uiStream) tell(c Change, failed bool) {
	if s.onApplied != nil {
		s.onApplied(c, failed)
	}
}
