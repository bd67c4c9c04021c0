// Package platform is the domain of the platform's deploy side, as labs is of the labs: its
// hosts and services, the targets a health check reaches, a promotion of a release from one
// environment to the next (its batches, its checks, how far it went) and the lock that keeps
// one deploy or promotion at a time on an environment. No dependencies: the environment spec's
// loader (config), the rules of a promotion (release), the registry (store) and the command
// line use these types.
package platform

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Services are the platform's services, in deploy order. Each is a group in the inventory.
var Services = []string{"lms", "cms", "guacd"}

// Host is one machine of a service.
type Host struct {
	Name string `yaml:"name" json:"name"`
	// Address is where Ansible and the health checks reach the host.
	Address string `yaml:"address" json:"address"`
	// PrivateAddress is the host's address on the platform's private network, where guacd
	// listens and where the LMS hosts reach it from; empty when it is Address.
	PrivateAddress string `yaml:"private_address" json:"private_address,omitempty"`
}

// Private is the host's address on the platform's private network.
func (h Host) Private() string {
	if h.PrivateAddress != "" {
		return h.PrivateAddress
	}
	return h.Address
}

// Target is one service on one host, as a health check reaches it.
type Target struct {
	Host    string `json:"host"`
	Service string `json:"service"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	// SiteName is the name clients ask the service for (the Host header); none for guacd.
	SiteName string `json:"site_name,omitempty"`
	// HTTPS: the service answers over TLS, with a certificate for SiteName that CAFile's
	// certificates (the system's when empty) verify.
	HTTPS  bool   `json:"https,omitempty"`
	CAFile string `json:"ca_file,omitempty"`
}

// URL is where an LMS or CMS target answers: http(s)://address:port.
func (t Target) URL() string {
	scheme := "http"
	if t.HTTPS {
		scheme = "https"
	}
	host := t.Address
	if strings.Contains(host, ":") { // an IPv6 address
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + strconv.Itoa(t.Port)
}

// Endpoint is where a service answers on each of its hosts: its port, and the name its
// clients ask for (none for guacd).
type Endpoint struct {
	Port     int
	SiteName string
	// HTTPS and CAFile: as Target's.
	HTTPS  bool
	CAFile string
}

// Batch is hosts deployed together, and the services on them to check afterwards.
type Batch struct {
	Hosts   []string `json:"hosts"`
	Targets []Target `json:"targets"`
}

// Limit is the batch as Ansible's --limit pattern.
func (b Batch) Limit() string { return strings.Join(b.Hosts, ",") }

// Check is a health check of one service on one host: what its /heartbeat reported (lms, cms)
// or whether it answered the handshake (guacd).
type Check struct {
	Target
	// Release is the release /heartbeat reported (lms, cms).
	Release string `json:"release,omitempty"`
	// Error says why the check failed; empty when the service answered.
	Error string `json:"error,omitempty"`
}

// Healthy reports whether the check passed and, for lms and cms, reported release.
func (c Check) Healthy(release string) bool {
	return c.Error == "" && (c.Service == "guacd" || c.Release == release)
}

// Problem says what is wrong with the check, for release ("" when it is healthy).
func (c Check) Problem(release string) string {
	switch {
	case c.Error != "":
		return fmt.Sprintf("%s on %s: %s", c.Service, c.Host, c.Error)
	case !c.Healthy(release):
		return fmt.Sprintf("%s on %s reports release %q, not %s", c.Service, c.Host, c.Release, release)
	}
	return ""
}

// PromotionStatus is where a promotion is.
type PromotionStatus string

// Promotion statuses. Promoting is the only one that changes on its own; Interrupted is resumed
// by `labplane promote --resume`.
const (
	Promoting       PromotionStatus = "running"
	Promoted        PromotionStatus = "promoted"
	RolledBack      PromotionStatus = "rolled_back"
	PromotionFailed PromotionStatus = "failed"
	Interrupted     PromotionStatus = "interrupted"
)

// Phase is the step a promotion is at.
type Phase string

// Promotion phases, in order; Rollback only after a failed batch.
const (
	PhaseBackup   Phase = "backup"
	PhaseRolling  Phase = "rolling"
	PhaseRollback Phase = "rollback"
	PhaseDone     Phase = "done"
)

// Promotion is one promotion of a release from an environment to the next, as recorded: its
// plan, how far it went, and the runs it made.
type Promotion struct {
	ID      string `json:"id"`
	From    string `json:"from"`
	To      string `json:"to"`
	Release string `json:"release"`
	// Previous is the release the target ran before: what a failed batch is rolled back to.
	Previous  string    `json:"previous"`
	Actor     string    `json:"actor"`
	StartedAt time.Time `json:"started_at"`
	// FinishedAt is zero while it runs (and when it was interrupted).
	FinishedAt        time.Time       `json:"finished_at"`
	Status            PromotionStatus `json:"status"`
	Phase             Phase           `json:"phase"`
	Serial            string          `json:"serial"`
	MaxFailPercentage int             `json:"max_fail_percentage"`
	Batches           []Batch         `json:"batches"`
	// Done is how many batches were deployed and found healthy.
	Done int `json:"done"`
	// FailedBatch is the index of the batch that failed (-1: none).
	FailedBatch int `json:"failed_batch"`
	// Runs are the runs the promotion made: the backup, each batch's, the rollback.
	Runs []string `json:"runs"`
	// Health are the last health checks made (of the last batch, or of the rollback).
	Health []Check `json:"health,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// ChangedHosts are the hosts the promotion may have changed: those of the batches done, and
// of the failed one.
func (p Promotion) ChangedHosts() []string {
	n := p.Done
	if p.FailedBatch >= 0 {
		n = p.FailedBatch + 1
	} else if p.Phase == PhaseRolling && n < len(p.Batches) {
		n++ // the batch it was deploying when it stopped
	}
	var hosts []string
	for _, b := range p.Batches[:min(n, len(p.Batches))] {
		hosts = append(hosts, b.Hosts...)
	}
	return hosts
}

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
