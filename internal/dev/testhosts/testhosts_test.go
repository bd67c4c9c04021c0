package testhosts_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/dev/testhosts/testhoststest"
)

func TestHostsServeStopDown(t *testing.T) {
	t.Parallel()
	s := testhoststest.New(t, testhosts.Options{Names: []string{"alpha", "beta"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if len(s.Hosts) != 2 || s.Hosts[0].Name != "alpha" || !strings.HasPrefix(s.Network, "10.251.") {
		t.Fatalf("set: %+v", s)
	}
	for _, h := range s.Hosts {
		out, err := s.SSH(ctx, h.Name, "hostname; echo written-in-"+h.Name+" > /root/mark; cat /proc/1/comm")
		if err != nil {
			t.Fatalf("ssh %s: %v: %s", h.Name, err, out)
		}
		if want := h.Name + "\nsshd"; out != want {
			t.Errorf("%s: got %q, want %q", h.Name, out, want)
		}
	}
	// a file one host writes is in its own root filesystem only
	if out, _ := s.SSH(ctx, s.Hosts[1].Name, "cat /root/mark"); out != "written-in-beta" {
		t.Errorf("beta sees %q in /root/mark", out)
	}
	if _, err := os.Stat("/root/mark"); err == nil {
		t.Errorf("a host's file is on the machine")
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from the machine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base, err := s.Serve(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.SSH(ctx, s.Hosts[0].Name, "python3 -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' "+base+"/hello.txt")
	if err != nil || out != "hello from the machine" {
		t.Fatalf("download from %s inside alpha: %v: %q", base, err, out)
	}

	if err := s.Stop(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := s.SSH(ctx, s.Hosts[1].Name, "true"); err == nil {
		t.Errorf("beta answers after Stop: %s", out)
	} else if !strings.Contains(out, "refused") {
		t.Errorf("ssh to a stopped host: %s", out)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ssh to a stopped host took %s: it should be refused at once", d)
	}
	if out, err := s.SSH(ctx, s.Hosts[0].Name, "true"); err != nil {
		t.Errorf("alpha after beta stopped: %v: %s", err, out)
	}
	if err := s.Stop(ctx, "gamma"); err == nil {
		t.Errorf("Stop of an unknown host: no error")
	}

	if err := s.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertGone(t, s)
	if err := s.Down(ctx); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if _, err := s.Serve(dir); err == nil {
		t.Errorf("Serve after Down: no error")
	}
}

// assertGone checks that nothing of the set is left: processes, namespaces, link, server,
// directory; and that the guard route is there.
func assertGone(t *testing.T, s *testhosts.Set) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s.Dir) {
			t.Errorf("process %s still runs: %q", p, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	ns := "lpth" + strings.Split(s.Network, ".")[2] + "-"
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, ns) {
			t.Errorf("namespace left: %s", line)
		}
	}
	if _, err := net.InterfaceByName(strings.TrimSuffix(ns, "-")); err == nil {
		t.Errorf("link %s left", strings.TrimSuffix(ns, "-"))
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("set directory %s left (%v)", s.Dir, err)
	}
	routes, _ := exec.Command("ip", "route", "show", "type", "unreachable").Output()
	if !strings.Contains(string(routes), "10.251.0.0/16") {
		t.Errorf("guard route missing: %s", routes)
	}
	c, err := net.DialTimeout("tcp", s.Hosts[0].Address+":22", 2*time.Second)
	if err == nil {
		c.Close()
		t.Errorf("%s still answers", s.Hosts[0].Address)
	}
}

// setup skips the test with -short, runs it in parallel and installs the packages; the
// context ends with the test.
func setup(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root, namespaces and Debian packages: not with -short")
	}
	t.Parallel()
	// the install takes as long as it takes on a busy machine: the test's own deadline only
	if err := testhosts.EnsurePackages(t.Context(), os.Stderr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func TestSetsSideBySide(t *testing.T) {
	ctx := setup(t, 2*time.Minute)
	sets := make([]*testhosts.Set, 3)
	errs := make([]error, len(sets))
	var wg sync.WaitGroup
	for i := range sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sets[i], errs[i] = testhosts.Up(ctx, testhosts.Options{Hosts: 1})
		}()
	}
	wg.Wait()
	for i, s := range sets {
		if s != nil {
			t.Cleanup(func() {
				if err := s.Down(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	seen := map[string]bool{}
	for _, s := range sets {
		if seen[s.Network] {
			t.Errorf("network %s handed out twice", s.Network)
		}
		seen[s.Network] = true
		if out, err := s.SSH(ctx, s.Hosts[0].Name, "hostname"); err != nil || out != "h1" {
			t.Errorf("%s: %v %q", s.Network, err, out)
		}
	}
}

func TestDetachOpen(t *testing.T) {
	ctx := setup(t, 2*time.Minute)
	dir := filepath.Join(t.TempDir(), "set")
	s, err := testhosts.Up(ctx, testhosts.Options{Hosts: 1, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Down(context.Background()) })
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	// another process (here: another Open) takes it down
	o, err := testhosts.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testhosts.Open(ctx, dir); err == nil {
		t.Errorf("a second Open of an owned set: no error")
	}
	if out, err := o.SSH(ctx, o.Hosts[0].Name, "hostname"); err != nil || out != "h1" {
		t.Errorf("detached host: %v %q", err, out)
	}
	if err := o.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "set.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("set.json left after Down")
	}
}

// A host's dpkg database is its own where dpkg changes it during a run (its status, journal
// and pending triggers): an install on the machine, by a test of another package, while a
// host's apt runs, showed the host the machine's run half done ("dpkg was interrupted", seen
// in a deploy). Up copies them between two of the machine's runs: while another process holds
// dpkg's lock (here a Python one, as an apt-get run would), it waits.
func TestDpkgOfItsOwn(t *testing.T) {
	ctx := setup(t, 2*time.Minute)
	holder := exec.CommandContext(ctx, "python3", "-c", `import fcntl, sys
f = open("/var/lib/dpkg/lock-frontend", "a")
fcntl.lockf(f, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()`)
	release, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	held, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = release.Close(); _ = holder.Wait() })
	if line, err := bufio.NewReader(held).ReadString('\n'); line != "held\n" {
		t.Fatalf("the lock holder: %q %v", line, err)
	}

	type up struct {
		set *testhosts.Set
		err error
	}
	done := make(chan up, 1)
	go func() {
		s, err := testhosts.Up(ctx, testhosts.Options{Hosts: 1})
		done <- up{s, err}
	}()
	select {
	case u := <-done:
		if u.set != nil {
			_ = u.set.Down(context.Background())
		}
		t.Fatalf("Up returned (%v) while dpkg's lock was held", u.err)
	case <-time.After(2 * time.Second): // a set is up in well under a second here
	}
	_ = release.Close() // the "install" ends
	u := <-done
	if u.err != nil {
		t.Fatal(u.err)
	}
	s := u.set
	t.Cleanup(func() {
		if err := s.Down(context.Background()); err != nil {
			t.Error(err)
		}
	})
	name := s.Hosts[0].Name
	if _, err := os.Stat(filepath.Join(s.UpperDir(name), "var/lib/dpkg/status")); err != nil {
		t.Errorf("the host's dpkg status is not its own: %v", err)
	}
	out, err := s.SSH(ctx, name, "findmnt -n -o TARGET /var/lib/dpkg/updates; findmnt -n -o TARGET /var/lib/dpkg/triggers; dpkg --audit && echo audit-ok")
	if want := "/var/lib/dpkg/updates\n/var/lib/dpkg/triggers\naudit-ok"; err != nil || out != want {
		t.Errorf("in the host: %v\n%s\nwant dpkg's journal and triggers its own, and nothing to audit:\n%s", err, out, want)
	}
}
