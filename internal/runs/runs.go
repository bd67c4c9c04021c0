// Package runs is the domain of platform runs: a deploy (or a rollback, or a promotion's
// batch) of a release to an environment, who ran it, how each host did, and how it ended.
// The registry keeps them; `labplane runs list|show` read them.
package runs

import (
	"errors"
	"fmt"
	"time"
)

// Kind is what a run does.
type Kind string

// Run kinds.
const (
	Deploy   Kind = "deploy"
	Rollback Kind = "rollback"
	// Promote is a promotion's batch: the release deployed to some of the target's hosts.
	Promote Kind = "promote"
	// Backup is the backup a promotion makes before its first batch (--tags backup).
	Backup Kind = "backup"
)

// Status is where a run is.
type Status string

// Run statuses. Running is the only one that changes.
const (
	Running   Status = "running"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
)

// Run is one run of the playbooks against an environment.
type Run struct {
	ID          string    `json:"id"`
	Kind        Kind      `json:"kind"`
	Environment string    `json:"environment"`
	Release     string    `json:"release"`
	Actor       string    `json:"actor"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"` // zero while running
	Status      Status    `json:"status"`
	Options     Options   `json:"options"`
	// Recap is the play recap per host.
	Recap map[string]HostRecap `json:"recap"`
	// Failures are the hosts that failed or could not be reached, each with the task and
	// Ansible's message.
	Failures []Failure `json:"failures,omitempty"`
	// Error says why the run did not succeed (empty when it did).
	Error string `json:"error,omitempty"`
	// LogPath is the full log of the run: every event Ansible reported, one JSON per line.
	LogPath string `json:"log_path"`
}

// Duration is how long the run took (so far, while it runs).
func (r Run) Duration(now time.Time) time.Duration {
	if r.FinishedAt.IsZero() {
		return now.Sub(r.StartedAt)
	}
	return r.FinishedAt.Sub(r.StartedAt)
}

// Options are how the run was asked for.
type Options struct {
	Check bool   `json:"check,omitempty"`
	Diff  bool   `json:"diff,omitempty"`
	Limit string `json:"limit,omitempty"`
	Tags  string `json:"tags,omitempty"`
}

// HostRecap is a host's line in the play recap.
type HostRecap struct {
	OK          int `json:"ok"`
	Changed     int `json:"changed"`
	Failed      int `json:"failed"`
	Unreachable int `json:"unreachable"`
	Skipped     int `json:"skipped"`
	Rescued     int `json:"rescued"`
	Ignored     int `json:"ignored"`
	// Release is what the host was found running after a run that did not succeed (the
	// release its current link points to, read back: a host Ansible stopped part-way may run
	// either); empty when not read (a run that succeeded, a guacd host, a host not reached).
	Release string `json:"release,omitempty"`
}

// Failure is a host that failed or could not be reached, with the task and Ansible's message.
type Failure struct {
	Host        string `json:"host"`
	Task        string `json:"task"`
	Msg         string `json:"msg"`
	Unreachable bool   `json:"unreachable,omitempty"`
}

func (f Failure) String() string {
	what := "failed"
	if f.Unreachable {
		what = "unreachable"
	}
	return fmt.Sprintf("%s %s at task %q: %s", f.Host, what, f.Task, f.Msg)
}

// Filter selects runs in a listing; zero fields match everything.
type Filter struct {
	Environment string
	Kind        Kind
	// Status, if set, keeps only the runs with it.
	Status Status
	// Limit keeps the newest Limit runs (0: all).
	Limit int
}

// Errors of the registry's runs.
var (
	ErrNotFound = errors.New("no such run")
	// ErrFinished: a finished run cannot be finished again.
	ErrFinished = errors.New("the run is already finished")
)
