package testhosts

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"github.com/labplane/labplane/internal/outputtail"
)

// GuardNetwork holds every set's network (10.251.N.0/24). Up routes it unreachable before
// anything else (hosts.sh's GUARD) and nothing removes the route: a connection to a test address
// whose veth is gone never leaves the machine.
const GuardNetwork = "10.251.0.0/16"

// GuardRouted reports whether the machine has the guard route `unreachable GuardNetwork`.
func GuardRouted(ctx context.Context) (bool, error) {
	out, err := exec.CommandContext(ctx, "ip", "route", "show", "type", "unreachable").Output()
	if err != nil {
		return false, fmt.Errorf("ip route show type unreachable: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if slices.Contains(strings.Fields(line), GuardNetwork) {
			return true, nil
		}
	}
	return false, nil
}

// CheckNamespaces checks what Up needs of the machine besides root and Packages: `ip netns`,
// and a kernel that lets this process make a network namespace (`unshare --net`, which makes a
// throwaway one: nothing is left behind).
func CheckNamespaces(ctx context.Context) error {
	for _, argv := range [][]string{{"ip", "netns", "list"}, {"unshare", "--net", "true"}} {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			msg := strings.TrimSpace(outputtail.Of(out, 512))
			if msg != "" {
				return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, msg)
			}
			return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
	}
	return nil
}
