package testhosts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Packages returns the Debian packages the test hosts and the project's roles need on the
// machine. The hosts see the machine's files through an overlay, so what is installed here is
// installed inside every host too (the roles find nginx, supervisor, Django and gunicorn there
// and install nothing from the network).
func Packages() []string { return slices.Clone(packages) }

var packages = []string{
	// the hosts: namespaces, sshd, the controller's ssh
	"iproute2", "util-linux", "procps", "openssh-server", "openssh-client",
	// the controller: ansible (not only ansible-core: the json/jsonl callbacks are in
	// ansible.posix) and its linter; the apt module's python bindings on the hosts
	"ansible", "ansible-lint", "python3-apt",
	// what the roles run on the hosts
	"supervisor", "nginx", "python3-django", "gunicorn", "python3-yaml", "sqlite3", "ca-certificates",
	// the stand-ins' apt repository (dpkg-deb, dpkg-scanpackages)
	"dpkg-dev",
}

// policyRC is installed as /usr/sbin/policy-rc.d while packages are installed, so that their
// maintainer scripts start no service (nginx, sshd, supervisor) on the machine.
const policyRC = "#!/bin/sh\n# labplane testhosts: installing packages, start no service (removed after)\nexit 101\n"

const policyRCPath = "/usr/sbin/policy-rc.d"

// EnsurePackages installs the missing Packages with apt-get (it checks with dpkg-query first, and
// does nothing when all are installed). It needs root. No service is started: a policy-rc.d that
// refuses every start is in place during the install (one already there is left alone).
func EnsurePackages(ctx context.Context) error {
	missing, err := missingPackages(ctx, packages)
	if err != nil || len(missing) == 0 {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("testhosts: installing %s needs root", strings.Join(missing, " "))
	}
	unlock, err := lockFile(ctx, filepath.Join(RunDir, "packages.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	// another process may have installed them while this one waited for the lock
	if missing, err = missingPackages(ctx, packages); err != nil || len(missing) == 0 {
		return err
	}
	removePolicy, err := installPolicyRC()
	if err != nil {
		return err
	}
	defer removePolicy()
	// apt's own lock serialises with other apt-gets; a fresh machine has no package lists yet
	if err := aptGet(ctx, "update"); err != nil {
		return err
	}
	return aptGet(ctx, "install", append([]string{"-y", "--no-install-recommends"}, missing...)...)
}

// missingPackages returns the packages dpkg does not report installed.
func missingPackages(ctx context.Context, pkgs []string) ([]string, error) {
	args := append([]string{"-W", "-f=${Package} ${db:Status-Status}\n"}, pkgs...)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "dpkg-query", args...)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) { // exit 1 only means some package is unknown to dpkg
			return nil, fmt.Errorf("testhosts: dpkg-query: %w", err)
		}
	}
	installed := map[string]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		if name, status, ok := strings.Cut(line, " "); ok && status == "installed" {
			installed[strings.SplitN(name, ":", 2)[0]] = true
		}
	}
	var missing []string
	for _, p := range pkgs {
		if !installed[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// installPolicyRC puts policyRC in place unless another policy-rc.d is there (left alone); the
// returned function removes it again. The caller holds the packages lock, so a policyRC found
// in place was left by an install that died: it is taken over.
func installPolicyRC() (remove func(), err error) {
	if b, err := os.ReadFile(policyRCPath); err == nil && string(b) != policyRC {
		return func() {}, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("testhosts: %w", err)
	}
	if err := os.WriteFile(policyRCPath, []byte(policyRC), 0o755); err != nil {
		return nil, fmt.Errorf("testhosts: %w", err)
	}
	return func() { _ = os.Remove(policyRCPath) }, nil
}

func aptGet(ctx context.Context, verb string, args ...string) error {
	args = append([]string{"-q", "-o", "DPkg::Lock::Timeout=600", "-o", "Dpkg::Options::=--force-confdef",
		"-o", "Dpkg::Options::=--force-confold", verb}, args...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("testhosts: apt-get %s: %w\n%s", verb, err, lastBytes(out.Bytes(), 4096))
	}
	return nil
}

// lastBytes is the end of a command's output, for an error message.
func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
