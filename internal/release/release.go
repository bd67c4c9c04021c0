// Package release is what labplane knows about releases: which release each host of an
// environment runs (from the recorded runs), the gate a release passes before it is promoted
// from one environment to the next, the batches a promotion rolls out in, and the rolling loop
// itself, with health checks after each batch and rollback of a failed one. It does no I/O of
// its own: deploys, health checks, records and the clock come in through small interfaces.
package release

import (
	"slices"
	"sort"
	"time"

	"github.com/labplane/labplane/internal/runs"
)

// HostState is the release a host runs, as the recorded runs tell it.
type HostState struct {
	Host    string `json:"host"`
	Release string `json:"release"`
	// Since is when the host got Release (the end of the first run of an unbroken series that
	// deployed it there): a redeploy of the same release does not reset it.
	Since time.Time `json:"since"`
	// Run is the newest run that touched the host.
	Run string `json:"run"`
	// Failed: the newest run that touched the host failed on it (its release is uncertain).
	Failed bool `json:"failed,omitempty"`
}

// counts reports whether a run says what a host runs: check runs change nothing, and runs of
// some tags only (a backup) deploy nothing.
func counts(r runs.Run) bool {
	return !r.Options.Check && r.Options.Tags == "" && r.Status != runs.Running
}

// HostStates is what each host of an environment runs, from the environment's runs (in any
// order). A host no run touched is absent.
func HostStates(rs []runs.Run) map[string]HostState {
	ordered := slices.Clone(rs)
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].StartedAt.Before(ordered[j].StartedAt) })
	out := map[string]HostState{}
	for _, r := range ordered {
		if !counts(r) {
			continue
		}
		for host, rc := range r.Recap {
			prev, seen := out[host]
			st := HostState{Host: host, Release: r.Release, Since: r.FinishedAt, Run: r.ID,
				Failed: rc.Failed > 0 || rc.Unreachable > 0}
			switch {
			case r.Status == runs.Succeeded:
			case rc.Release != "": // Ansible may have stopped the host part-way: it runs what was read back
				st.Release = rc.Release
			default: // nothing read back: uncertain
				st.Failed = true
			}
			if seen && !prev.Failed && !st.Failed && prev.Release == st.Release {
				st.Since = prev.Since
			}
			out[host] = st
		}
	}
	return out
}

// Downgrade tells whether deploying rel would take one of hosts back to a release the
// environment ran before the one the host runs now (by the environment's runs, in any order):
// the first such host and what it runs. A release the environment never ran is no downgrade.
func Downgrade(rs []runs.Run, hosts []string, rel string) (host, running string, ok bool) {
	first := map[string]time.Time{} // when the environment first ran each release
	for _, r := range rs {
		if counts(r) && len(r.Recap) > 0 {
			if t, seen := first[r.Release]; !seen || r.StartedAt.Before(t) {
				first[r.Release] = r.StartedAt
			}
		}
	}
	since, seen := first[rel]
	if !seen {
		return "", "", false
	}
	states := HostStates(rs)
	for _, h := range hosts {
		cur := states[h].Release
		if cur != "" && cur != rel && since.Before(first[cur]) {
			return h, cur, true
		}
	}
	return "", "", false
}

// Deployed is the release every one of hosts runs, and since when all of them do; ok is false
// when a host runs another release, failed its last run, or was never deployed to.
func Deployed(states map[string]HostState, hosts []string) (release string, since time.Time, ok bool) {
	for i, h := range hosts {
		st, seen := states[h]
		if !seen || st.Failed || (i > 0 && st.Release != release) {
			return "", time.Time{}, false
		}
		release = st.Release
		if st.Since.After(since) {
			since = st.Since
		}
	}
	return release, since, len(hosts) > 0
}

// Summary is one release on one environment, for `labplane release list`.
type Summary struct {
	Release     string `json:"release"`
	Environment string `json:"environment"`
	// Hosts are the environment's hosts that run the release now (by the records).
	Hosts         []string    `json:"hosts"`
	FirstDeployed time.Time   `json:"first_deployed"`
	LastDeployed  time.Time   `json:"last_deployed"`
	LastRun       string      `json:"last_run"`
	LastStatus    runs.Status `json:"last_status"`
	Runs          int         `json:"runs"`
}

// Summarize lists each release deployed on each environment of rs (deploys, promotion batches
// and rollbacks; check runs and tag-only runs are left out), newest last deploy first.
func Summarize(rs []runs.Run) []Summary {
	byEnv := map[string][]runs.Run{}
	for _, r := range rs {
		byEnv[r.Environment] = append(byEnv[r.Environment], r)
	}
	var out []Summary
	for env, envRuns := range byEnv {
		states := HostStates(envRuns)
		sums := map[string]*Summary{}
		for _, r := range envRuns {
			if r.Options.Check || r.Options.Tags != "" {
				continue
			}
			s := sums[r.Release]
			if s == nil {
				s = &Summary{Release: r.Release, Environment: env, Hosts: []string{}}
				sums[r.Release] = s
			}
			s.Runs++
			if s.FirstDeployed.IsZero() || r.StartedAt.Before(s.FirstDeployed) {
				s.FirstDeployed = r.StartedAt
			}
			if !r.StartedAt.Before(s.LastDeployed) {
				s.LastDeployed, s.LastRun, s.LastStatus = r.StartedAt, r.ID, r.Status
			}
		}
		for _, st := range states {
			if s := sums[st.Release]; s != nil && !st.Failed {
				s.Hosts = append(s.Hosts, st.Host)
			}
		}
		for _, s := range sums {
			sort.Strings(s.Hosts)
			out = append(out, *s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastDeployed.Equal(out[j].LastDeployed) {
			return out[i].LastDeployed.After(out[j].LastDeployed)
		}
		return out[i].Environment+"/"+out[i].Release < out[j].Environment+"/"+out[j].Release
	})
	return out
}
