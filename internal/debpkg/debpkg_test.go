package debpkg_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/dev/testhosts/testhoststest"
)

const version = "0.1.0~test"

// The package, built by cmd/labplane-deb, installed with dpkg on a test host (a
// Debian 12 root of its own): the binary runs and says its version; the service's user and
// 0700 state directory are made, the configuration is its group's only; the unit passes
// systemd-analyze verify; labplane doctor runs as the service's user on the packaged
// configuration and its registry is made 0600 in the state directory; the man page and the
// bash completion work; removed, the configuration stays.
func TestPackageOnATestHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds labplane and installs it on a test host: not with -short")
	}
	ctx := t.Context()
	// what the host (a root over this machine's) needs for dpkg -i, and what the checks run
	if err := apt.Ensure(ctx, os.Stderr, "adduser", "systemd", "man-db", "openssh-client"); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	// built as an operator builds it
	build := exec.CommandContext(ctx, "go", "run", "./cmd/labplane-deb", "-version", version, "-out", t.TempDir())
	build.Dir = root
	var stderr strings.Builder
	build.Stderr = &stderr
	built, err := build.Output()
	if err != nil {
		t.Fatalf("go run ./cmd/labplane-deb: %v\n%s", err, stderr.String())
	}
	deb := strings.TrimSpace(string(built))
	if filepath.Base(deb) != "labplane_0.1.0~test_amd64.deb" {
		t.Errorf("package file %s", deb)
	}
	fields, err := exec.CommandContext(ctx, "dpkg-deb", "--field", deb, "Package", "Version", "Architecture", "Depends").Output()
	if err != nil || string(fields) != "Package: labplane\nVersion: "+version+"\nArchitecture: amd64\nDepends: adduser\n" {
		t.Errorf("dpkg-deb --field: %v\n%s", err, fields)
	}

	s := testhoststest.New(t, testhosts.Options{Names: []string{"pkg1"}})
	h, _ := s.Host("pkg1")
	scp := exec.CommandContext(ctx, "scp", "-i", s.KeyFile, "-o", "UserKnownHostsFile="+s.KnownHostsFile,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", deb, "root@"+h.Address+":/root/labplane.deb")
	if out, err := scp.CombinedOutput(); err != nil {
		t.Fatalf("scp: %v\n%s", err, out)
	}
	run := func(command string) string {
		t.Helper()
		out, err := s.SSH(ctx, "pkg1", command)
		if err != nil {
			t.Fatalf("pkg1: %s: %v\n%s", command, err, out)
		}
		return out
	}
	check := func(command, want string) {
		t.Helper()
		if out := run(command); !strings.Contains(out, want) {
			t.Errorf("pkg1: %s:\n%s\nwant %q in it", command, out, want)
		}
	}
	run("dpkg -i /root/labplane.deb")
	check("labplane --version", "labplane version "+version+" (go")
	check("id labplane", "(labplane)")
	check("stat -c '%a %U:%G' /var/lib/labplane /etc/labplane/labplane.yaml", "700 labplane:labplane\n640 root:labplane")
	// verify reports the machine's own units too (their lines name them): labplane's has none
	verify, err := s.SSH(ctx, "pkg1", "systemd-analyze verify /usr/lib/systemd/system/labplane.service")
	t.Logf("systemd-analyze verify: %v\n%s", err, verify)
	if strings.Contains(verify, "labplane.service") || strings.Contains(verify, "labplane(1)") {
		t.Errorf("systemd-analyze verify labplane.service: %v\n%s", err, verify)
	}

	// doctor as the service runs: the registry is made, 0600 in the 0700 state directory; no
	// cloud answers on this host, so the labs job lacks its cloud (exit 1) and says how to fix it
	out, err := s.SSH(ctx, "pkg1", "cd /var/lib/labplane && runuser -u labplane -- labplane --config /etc/labplane/labplane.yaml doctor labs")
	if !strings.Contains(out, "sqlite /var/lib/labplane/labplane.db answers") || !strings.Contains(out, "cloud main") || err == nil {
		t.Errorf("doctor labs as the service's user: %v\n%s", err, out)
	}
	check("stat -c '%a %U' /var/lib/labplane/labplane.db", "600 labplane")
	check("MANPAGER=cat man -l /usr/share/man/man1/labplane.1.gz 2>/dev/null | head -20", "labplane")
	check(`bash -c 'source /usr/share/bash-completion/completions/labplane; COMP_WORDS=(labplane co); COMP_CWORD=1; _labplane; echo "${COMPREPLY[@]}"'`,
		"config cost")

	run("dpkg -r labplane")
	check("test -e /usr/bin/labplane || echo gone; test -e /etc/labplane/labplane.yaml && echo kept", "gone\nkept")
}
