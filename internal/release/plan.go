package release

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/labplane/labplane/internal/platform"
)

// Targets are the services of an environment's hosts, in deploy order (lms, cms, guacd), each
// at its service's endpoint (envspec.Environment.Endpoints): lms and cms at the host's address,
// guacd at its private one (the only one it listens on).
func Targets(hosts map[string][]platform.Host, endpoints map[string]platform.Endpoint) []platform.Target {
	var out []platform.Target
	for _, svc := range platform.Services {
		e := endpoints[svc]
		for _, h := range hosts[svc] {
			addr := h.Address
			if svc == "guacd" {
				addr = h.Private()
			}
			out = append(out, platform.Target{Host: h.Name, Service: svc, Address: addr, Port: e.Port, SiteName: e.SiteName,
				HTTPS: e.HTTPS, CAFile: e.CAFile})
		}
	}
	return out
}

// HostNames are the distinct hosts of targets, in order.
func HostNames(targets []platform.Target) []string {
	var names []string
	seen := map[string]bool{}
	for _, t := range targets {
		if !seen[t.Host] {
			seen[t.Host] = true
			names = append(names, t.Host)
		}
	}
	return names
}

// BatchSize is how many of n hosts serial ("2" or "50%") takes at once: at least 1, at most n.
func BatchSize(serial string, n int) (int, error) {
	num, pct := strings.CutSuffix(strings.TrimSpace(serial), "%")
	v, err := strconv.Atoi(num)
	if err != nil || v < 1 || (pct && v > 100) {
		return 0, fmt.Errorf("serial %q is neither a count of hosts (such as 2) nor a percentage (such as 50%%)", serial)
	}
	if pct {
		v = (n*v + 99) / 100
	}
	return max(1, min(v, n)), nil
}

// Plan splits targets into batches: service by service (lms, cms, guacd, as the plays go),
// serial of each service's hosts at a time. A host serving several services is deployed
// (for all of them) in the first batch it falls in.
func Plan(targets []platform.Target, serial string) ([]platform.Batch, error) {
	byHost := map[string][]platform.Target{}
	for _, t := range targets {
		byHost[t.Host] = append(byHost[t.Host], t)
	}
	planned := map[string]bool{}
	var batches []platform.Batch
	for _, svc := range platform.Services {
		var hosts []string
		for _, t := range targets {
			if t.Service == svc {
				hosts = append(hosts, t.Host)
			}
		}
		if len(hosts) == 0 {
			continue
		}
		size, err := BatchSize(serial, len(hosts))
		if err != nil {
			return nil, err
		}
		for start := 0; start < len(hosts); start += size {
			var b platform.Batch
			for _, h := range hosts[start:min(start+size, len(hosts))] {
				if !planned[h] {
					planned[h] = true
					b.Hosts = append(b.Hosts, h)
					b.Targets = append(b.Targets, byHost[h]...)
				}
			}
			if len(b.Hosts) > 0 {
				batches = append(batches, b)
			}
		}
	}
	return batches, nil
}
