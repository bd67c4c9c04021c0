package release

import (
	"fmt"
	"sort"
	"time"

	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/runs"
)

// GateInput is what the gate judges.
type GateInput struct {
	// Source is the environment the release is promoted from; Hosts are its hosts.
	Source string
	Hosts  []string
	// Release is the release asked for; empty means the one the source runs.
	Release string
	// Runs are the source's runs (any order).
	Runs []runs.Run
	// Health are the source's health checks, made now.
	Health []platform.Check
	Now    time.Time
	// Soak is how long the release must have run on the source.
	Soak time.Duration
}

// Verdict is the gate's answer.
type Verdict struct {
	Source  string `json:"source"`
	Release string `json:"release"`
	Pass    bool   `json:"pass"`
	// Since is when every host of the source has run the release (zero if they do not).
	Since time.Time `json:"since"`
	Soak  string    `json:"soak"`
	// Reasons say why the gate refused (empty when it passed).
	Reasons []string         `json:"reasons"`
	Hosts   []HostState      `json:"hosts"`
	Health  []platform.Check `json:"health"`
}

// Gate lets a release through when it is what every host of the source runs, the last
// deploy there succeeded, every health check passes now and it has run there for Soak.
func Gate(in GateInput) Verdict {
	v := Verdict{Source: in.Source, Release: in.Release, Soak: in.Soak.String(), Reasons: []string{}, Health: in.Health}
	states := HostStates(in.Runs)
	for _, h := range in.Hosts {
		st, ok := states[h]
		if !ok {
			st = HostState{Host: h}
		}
		v.Hosts = append(v.Hosts, st)
	}
	deployed, since, uniform := Deployed(states, in.Hosts)
	if v.Release == "" {
		v.Release = deployed
	}
	switch {
	case v.Release == "":
		v.Reasons = append(v.Reasons, fmt.Sprintf("no release is deployed on every host of %s: %s", in.Source, describe(v.Hosts)))
	case !uniform:
		v.Reasons = append(v.Reasons, fmt.Sprintf("%s is not deployed on every host of %s: %s", v.Release, in.Source, describe(v.Hosts)))
	case deployed != v.Release:
		v.Reasons = append(v.Reasons, fmt.Sprintf("%s runs %s, not %s", in.Source, deployed, v.Release))
	default:
		v.Since = since
	}
	if last, ok := lastRun(in.Runs); !ok {
		v.Reasons = append(v.Reasons, fmt.Sprintf("no deploy of %s is recorded", in.Source))
	} else if last.Status != runs.Succeeded || last.Release != v.Release {
		v.Reasons = append(v.Reasons, fmt.Sprintf("the last %s of %s (run %s, release %s) %s", last.Kind, in.Source, last.ID, last.Release, last.Status))
	}
	if len(in.Health) == 0 {
		v.Reasons = append(v.Reasons, fmt.Sprintf("no health check of %s was made", in.Source))
	}
	for _, c := range in.Health {
		if p := c.Problem(v.Release); p != "" {
			v.Reasons = append(v.Reasons, "unhealthy: "+p)
		}
	}
	if !v.Since.IsZero() {
		if soaked := in.Now.Sub(v.Since); soaked < in.Soak {
			v.Reasons = append(v.Reasons, fmt.Sprintf("%s has run on %s for %s, less than the soak time %s (it may be promoted from %s)",
				v.Release, in.Source, soaked.Round(time.Second), in.Soak, v.Since.Add(in.Soak).Format(time.RFC3339)))
		}
	}
	v.Pass = len(v.Reasons) == 0
	return v
}

// lastRun is the newest run that changed the environment.
func lastRun(rs []runs.Run) (runs.Run, bool) {
	var last runs.Run
	found := false
	for _, r := range rs {
		if counts(r) && (!found || r.StartedAt.After(last.StartedAt)) {
			last, found = r, true
		}
	}
	return last, found
}

// describe prints hosts' releases: "lms1=r2, cms1=r1 (failed), guacd1=none".
func describe(states []HostState) string {
	s := append([]HostState(nil), states...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Host < s[j].Host })
	out := ""
	for i, st := range s {
		if i > 0 {
			out += ", "
		}
		rel := st.Release
		if rel == "" {
			rel = "none"
		}
		out += st.Host + "=" + rel
		if st.Failed {
			out += " (failed)"
		}
	}
	return out
}
