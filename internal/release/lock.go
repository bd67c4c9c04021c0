package release

import (
	"fmt"
	"time"
)

// Lock says who holds an environment: one deploy or promotion at a time changes it.
type Lock struct {
	Environment string `json:"environment"`
	// Kind is what holds it (deploy, promote, rollback); Holder its id (a promotion's).
	Kind   string    `json:"kind"`
	Holder string    `json:"holder,omitempty"`
	Actor  string    `json:"actor"`
	PID    int       `json:"pid"`
	Host   string    `json:"host"`
	Since  time.Time `json:"since"`
}

// LockedError: the environment is held by another deploy or promotion.
type LockedError struct {
	Environment string
	// Held is who holds it (zero when the holder has not recorded itself yet).
	Held Lock
}

func (e *LockedError) Error() string {
	h := e.Held
	if h.Kind == "" {
		return fmt.Sprintf("environment %s is busy: another deploy or promotion is in progress", e.Environment)
	}
	what := h.Kind
	if h.Holder != "" {
		what += " " + h.Holder
	}
	return fmt.Sprintf("environment %s is busy: %s by %s (pid %d on %s) in progress since %s; wait for it to end",
		e.Environment, what, h.Actor, h.PID, h.Host, h.Since.Local().Format(time.RFC3339))
}
