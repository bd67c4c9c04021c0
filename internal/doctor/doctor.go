// Package doctor says, for each of labplane's jobs, what this machine has and what it lacks,
// each lack with the command that fixes it (`labplane doctor`).
//
// The decisions are pure: which jobs a setup configures (Setup), which checks a job has
// (checks.go) and whether the report fails (Summarize). What they ask of the machine goes
// through Probes, so that tests give fakes; MachineProbes are the real ones, built on the
// packages that do the jobs (apt, ansible, cloud, store, terraformbin, testhosts).
package doctor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/terraformbin"
)

// Job is one of labplane's jobs, as doctor names it.
type Job string

// The jobs, in the order they are reported.
const (
	Labs       Job = "labs"       // labs on the clouds: labplane labs, labplane reap
	Serve      Job = "serve"      // labplane serve
	Deploy     Job = "deploy"     // labplane deploy
	Promote    Job = "promote"    // labplane promote
	Provision  Job = "provision"  // labplane provision
	LocalCloud Job = "localcloud" // labplane dev cloud (a developer tool)
	TestHosts  Job = "testhosts"  // labplane dev hosts (a developer tool)
)

// Jobs returns every job, in the order they are reported.
func Jobs() []Job { return []Job{Labs, Serve, Deploy, Promote, Provision, LocalCloud, TestHosts} }

// ErrUnknownJob is a job name doctor does not know.
var ErrUnknownJob = errors.New("no job")

// ParseJobs reads the jobs named on the command line (none: every job), in report order.
func ParseJobs(names []string) ([]Job, error) {
	var jobs []Job
	for _, n := range names {
		if !slices.Contains(Jobs(), Job(n)) {
			known := make([]string, 0, len(Jobs()))
			for _, j := range Jobs() {
				known = append(known, string(j))
			}
			return nil, fmt.Errorf("%w %q: the jobs are %s", ErrUnknownJob, n, strings.Join(known, ", "))
		}
		if !slices.Contains(jobs, Job(n)) {
			jobs = append(jobs, Job(n))
		}
	}
	slices.SortFunc(jobs, func(a, b Job) int { return slices.Index(Jobs(), a) - slices.Index(Jobs(), b) })
	return jobs, nil
}

// Check is one thing a job needs, and whether the machine has it.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Required: when it fails, its job lacks something. A check that is not required (the test
	// hosts' guard route, which they add themselves; Debian packages when the tools they bring
	// are found anyway) is reported only.
	Required bool   `json:"required"`
	Detail   string `json:"detail"`
	// Fix is the command (or the change) that gives the machine what the check found missing;
	// empty when OK.
	Fix string `json:"fix"`
}

// JobReport is one job's checks.
type JobReport struct {
	Job Job `json:"job"`
	// Configured: this machine's setup has the job (or it was named on the command line), so
	// what it lacks makes the report fail.
	Configured bool   `json:"configured"`
	Reason     string `json:"reason"` // why it is configured or not
	// OK: none of its required checks failed.
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Report is what doctor found.
type Report struct {
	// OK: nothing a configured job needs is missing (exit 0; 1 otherwise).
	OK   bool        `json:"ok"`
	Jobs []JobReport `json:"jobs"`
}

// Summarize decides: a job is OK when none of its required checks failed, and the report is
// OK when every configured job is.
func Summarize(jobs []JobReport) Report {
	r := Report{OK: true, Jobs: jobs}
	for i := range r.Jobs {
		j := &r.Jobs[i]
		if j.Checks == nil {
			j.Checks = []Check{}
		}
		j.OK = true
		for _, c := range j.Checks {
			if c.Required && !c.OK {
				j.OK = false
			}
		}
		if j.Configured && !j.OK {
			r.OK = false
		}
	}
	if r.Jobs == nil {
		r.Jobs = []JobReport{}
	}
	return r
}

// Lacking lists the configured jobs that lack something.
func (r Report) Lacking() []Job {
	var out []Job
	for _, j := range r.Jobs {
		if j.Configured && !j.OK {
			out = append(out, j.Job)
		}
	}
	return out
}

// Setup is what this machine is set up to do: labplane.yaml, the environments, the project,
// and the jobs named on the command line. Load reads it.
type Setup struct {
	// ConfigFile is labplane.yaml's path as given (--config); Config what it holds, nil when
	// there is no such file.
	ConfigFile string
	Config     *config.Config
	// LabsConfig: Config was validated in full (config.Load: clouds, templates, policy), as the
	// labs commands and serve load it. Otherwise only its store was (config.LoadRegistry, as
	// deploy loads it).
	LabsConfig bool
	// Project holds playbooks/ (--project); Inventories the environments (--inventories).
	Project     string
	Inventories string
	// Environments are the specs under Inventories, by name.
	Environments []*envspec.Environment
	// Named are the jobs named on the command line: only they are checked, and they are
	// required. None: every job is checked.
	Named []Job
}

// Configured says whether the setup has the job, and why.
func (s Setup) Configured(j Job) (bool, string) {
	switch {
	case slices.Contains(s.Named, j):
		return true, "named on the command line"
	case len(s.Named) > 0:
		return false, "not named on the command line"
	}
	switch j {
	case Labs, Serve:
		switch {
		case s.Config == nil:
			return false, "no " + s.ConfigFile
		case !s.LabsConfig:
			return false, s.ConfigFile + " has no clouds or templates: it serves deploys only"
		}
		return true, fmt.Sprintf("%s has %s", s.ConfigFile, plural(len(s.Config.Clouds), "cloud"))
	case Deploy:
		if len(s.Environments) == 0 {
			return false, "no " + s.Inventories + "/*/" + envspec.File
		}
		return true, "environments: " + strings.Join(s.environmentNames(), ", ")
	case Promote:
		if len(s.Environments) < 2 {
			return false, "it needs a source and a target environment; " + s.Inventories + " has " + plural(len(s.Environments), "environment")
		}
		return true, "environments: " + strings.Join(s.environmentNames(), ", ")
	case Provision:
		var names []string
		for _, e := range s.provisioned() {
			names = append(names, e.Name)
		}
		if len(names) == 0 {
			return false, "no environment has a provision: section"
		}
		return true, "provision: in " + strings.Join(names, ", ")
	}
	return false, "a developer tool: reported, required only when named: labplane doctor " + string(j)
}

func (s Setup) environmentNames() []string {
	names := make([]string, len(s.Environments))
	for i, e := range s.Environments {
		names[i] = e.Name
	}
	return names
}

// provisioned are the environments whose hosts Terraform makes.
func (s Setup) provisioned() []*envspec.Environment {
	var out []*envspec.Environment
	for _, e := range s.Environments {
		if e.Provision != nil {
			out = append(out, e)
		}
	}
	return out
}

// Probes are what doctor asks the machine. MachineProbes are the real ones.
type Probes struct {
	// Missing returns the Debian packages of pkgs that are not installed (apt.Missing).
	Missing func(ctx context.Context, pkgs ...string) ([]string, error)
	// LookPath finds an executable on PATH.
	LookPath func(file string) (string, error)
	// Callback checks that the Ansible of the ansible-playbook at path has labplane's stdout
	// callback (ansible.CheckCallback).
	Callback func(ctx context.Context, playbook string) error
	// Cloud authenticates as a labs cloud and asks its Heat for a stack (heat.Open and Check).
	Cloud func(ctx context.Context, c config.Cloud) error
	// CloudEntry reads a clouds.yaml entry without connecting (heat.Entry).
	CloudEntry func(entry string) error
	// Registry opens the configuration's registry and pings it.
	Registry func(ctx context.Context, cfg *config.Config) error
	// Terraform finds terraform and the provider without building (terraformbin.Find).
	Terraform func(ctx context.Context) (terraformbin.Toolchain, error)
	// Root reports whether doctor runs as root.
	Root func() bool
	// Namespaces checks that network namespaces can be made (testhosts.CheckNamespaces).
	Namespaces func(ctx context.Context) error
	// GuardRoute reports whether the test hosts' guard route is in place (testhosts.GuardRouted).
	GuardRoute func(ctx context.Context) (bool, error)
	// Stat reports whether a file exists (nil) or why not.
	Stat func(path string) error
}

// Run checks the setup's jobs (the named ones, or every job) on the machine behind p. The jobs
// are checked at once; what several of them share (the registry, the clouds, Ansible) is asked
// once.
func Run(ctx context.Context, s Setup, p Probes) Report {
	jobs := s.Named
	if len(jobs) == 0 {
		jobs = Jobs()
	}
	c := &checker{s: s, p: p, memo: map[string]*memoized{}}
	reports := make([]JobReport, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		configured, reason := s.Configured(j)
		reports[i] = JobReport{Job: j, Configured: configured, Reason: reason}
		wg.Go(func() { reports[i].Checks = c.job(ctx, j) })
	}
	wg.Wait()
	return Summarize(reports)
}

// memoized is one shared answer, computed once.
type memoized struct {
	once   sync.Once
	checks []Check
}

// once returns what f returns, computing it once per key for the whole run.
func (c *checker) once(key string, f func() []Check) []Check {
	c.mu.Lock()
	m, ok := c.memo[key]
	if !ok {
		m = &memoized{}
		c.memo[key] = m
	}
	c.mu.Unlock()
	m.once.Do(func() { m.checks = f() })
	return slices.Clone(m.checks)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
