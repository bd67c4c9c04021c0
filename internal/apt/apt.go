// Package apt is the one installer of Debian packages the project has: the local cloud, the
// test hosts, the registry's test server and `labplane doctor --install` all go through it.
//
// Ensure checks with dpkg-query first and does nothing when every package is installed, so it
// is cheap to call before every use. When something is missing it takes one machine-wide lock
// (so that test packages run in parallel by go test, the demo and doctor install one at a
// time and never undo each other's policy-rc.d), checks again, and installs with apt-get while
// a policy-rc.d forbids the packages' maintainer scripts to start any service (keystone,
// nginx, postgresql and rabbitmq must not start on the machine's default ports).
package apt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/labplane/labplane/internal/filelock"
	"github.com/labplane/labplane/internal/outputtail"
)

// LockPath is the machine-wide lock every install of the project's takes.
const LockPath = "/run/lock/labplane-apt.lock"

// policyRC is installed as /usr/sbin/policy-rc.d while packages are installed, so that their
// maintainer scripts start no service on the machine.
const policyRC = "#!/bin/sh\n# labplane: installing packages, start no service (removed after)\nexit 101\n"

const policyRCPath = "/usr/sbin/policy-rc.d"

// Missing returns the packages of pkgs that dpkg does not report installed, in pkgs' order.
func Missing(ctx context.Context, pkgs ...string) ([]string, error) {
	if len(pkgs) == 0 {
		return nil, nil
	}
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		return nil, fmt.Errorf("apt: no dpkg-query: this is not a Debian machine (%w)", err)
	}
	args := append([]string{"-W", "-f=${Package} ${db:Status-Status}\n"}, pkgs...)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "dpkg-query", args...)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) { // exit 1 only means some package is unknown to dpkg
			return nil, fmt.Errorf("apt: dpkg-query: %w", err)
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
		if !installed[p] && !slices.Contains(missing, p) {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// Ensure installs the packages of pkgs that are missing (see the package comment). It needs root
// when something is missing. progress receives a line per step and apt-get's output (nil:
// discarded); on failure the error carries the end of apt-get's output.
func Ensure(ctx context.Context, progress io.Writer, pkgs ...string) error {
	missing, err := Missing(ctx, pkgs...)
	if err != nil || len(missing) == 0 {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("apt: installing %s needs root", strings.Join(missing, " "))
	}
	if progress == nil {
		progress = io.Discard
	}
	if err := os.MkdirAll(filepath.Dir(LockPath), 0o755); err != nil {
		return fmt.Errorf("apt: %w", err)
	}
	fmt.Fprintf(progress, "apt: waiting for %s\n", LockPath)
	unlock, err := filelock.Lock(ctx, LockPath)
	if err != nil {
		return fmt.Errorf("apt: lock %s: %w", LockPath, err)
	}
	defer func() { _ = unlock() }()
	// another process may have installed them while this one waited for the lock
	if missing, err = Missing(ctx, pkgs...); err != nil || len(missing) == 0 {
		return err
	}
	removePolicy, err := installPolicyRC()
	if err != nil {
		return err
	}
	defer removePolicy()
	start := time.Now()
	fmt.Fprintf(progress, "apt: installing %s\n", strings.Join(missing, " "))
	install := append([]string{"-y", "--no-install-recommends"}, missing...)
	if !haveLists() {
		// a fresh machine has no package lists yet
		if err := aptGet(ctx, progress, "update"); err != nil {
			return err
		}
	} else if err := aptGet(ctx, progress, "install", install...); err == nil {
		fmt.Fprintf(progress, "apt: installed in %s\n", time.Since(start).Round(time.Second))
		return nil
	} else if err := aptGet(ctx, progress, "update"); err != nil { // the lists may be stale
		return err
	}
	if err := aptGet(ctx, progress, "install", install...); err != nil {
		return err
	}
	fmt.Fprintf(progress, "apt: installed in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// haveLists reports whether apt has package lists at all.
func haveLists() bool {
	m, _ := filepath.Glob("/var/lib/apt/lists/*_Packages*")
	return len(m) > 0
}

// installPolicyRC puts policyRC in place unless another policy-rc.d is there (left alone: it is
// the machine's own); the returned function removes ours again. The caller holds the lock, so
// a policyRC found in place was left by an install that died: it is taken over.
func installPolicyRC() (remove func(), err error) {
	if b, err := os.ReadFile(policyRCPath); err == nil && string(b) != policyRC {
		return func() {}, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("apt: %w", err)
	}
	if err := os.WriteFile(policyRCPath, []byte(policyRC), 0o755); err != nil {
		return nil, fmt.Errorf("apt: %w", err)
	}
	return func() { _ = os.Remove(policyRCPath) }, nil
}

// aptGet runs apt-get verb args, waiting up to 15 minutes for dpkg's own lock (an unattended
// upgrade, or an apt-get run by hand).
func aptGet(ctx context.Context, progress io.Writer, verb string, args ...string) error {
	args = append([]string{"-q", "-o", "DPkg::Lock::Timeout=900", "-o", "Dpkg::Options::=--force-confdef",
		"-o", "Dpkg::Options::=--force-confold", verb}, args...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "DEBCONF_NONINTERACTIVE_SEEN=true")
	out := &outputtail.Buffer{Max: 4096}
	cmd.Stdout = io.MultiWriter(progress, out)
	cmd.Stderr = cmd.Stdout
	// its own process group: an interrupt of ours is not delivered to dpkg half-way
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt: apt-get %s: %w\n%s", verb, err, strings.TrimSpace(out.String()))
	}
	return nil
}
