// Package testhosts makes SSH test hosts on this machine for the project's Ansible tests and its
// demo: real hosts as far as Ansible can tell (sshd, their own hostname, addresses, processes
// and root filesystem), made in well under a second, as root.
//
// Each host has its own network namespace on a bridge, its own root filesystem (an overlay over
// the machine's / with a private upper dir: packages installed on the machine are installed in
// the hosts, files written in a host stay in it; dpkg's status, journal and triggers are the
// host's own from the start, snapshotDpkg), its own PID, mount, UTS and IPC namespaces,
// tmpfs /tmp, /run and /root (a fresh root home, not the machine's dotfiles), and an sshd as
// its PID 1 that lets root in with the set's key (Set.KeyFile; host keys in
// Set.KnownHostsFile). Its apt lists are the machine's, stamped fresh. There is
// no systemd in a host: ansible.builtin.service falls back to /etc/init.d. There is no DNS and
// no route out: packages come from the machine, or from a repository served on the set's
// network (Set.Serve).
//
// Several sets can run at the same time (go test runs packages in parallel): each gets its own
// network 10.251.N.0/24, namespace names and directory, claimed under RunDir. Before anything
// else, Up adds the guard route `unreachable 10.251.0.0/16` to the machine, and nothing removes
// it: a connection to a test address whose veth is gone can never leave the machine.
//
// The work is done by an embedded bash script (scripts/hosts.sh, written into the set's
// directory), adapted from the team's tried recipe.
package testhosts

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labplane/labplane/internal/outputtail"
)

//go:embed scripts/hosts.sh
var hostsScript []byte

// Options say what set of hosts to make.
type Options struct {
	// Hosts is how many hosts (1 to 100); ignored when Names is given.
	Hosts int
	// Names are the hosts' names (and hostnames), in address order; default h1, h2, ...
	Names []string
	// Dir is the set's directory; default a new temporary directory, removed by Down. Files
	// under the machine's /tmp are not visible inside the hosts.
	Dir string
}

// Host is one test host.
type Host struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Set is a running set of hosts. Its methods may be called from several goroutines.
type Set struct {
	Hosts []Host
	// KeyFile is the private key root logs in to every host with.
	KeyFile string
	// KnownHostsFile lists each host's key by address (for StrictHostKeyChecking).
	KnownHostsFile string
	// Gateway is the machine's own address on the set's network: the hosts reach servers
	// listening on it (Serve).
	Gateway string
	// Network is the set's /24, such as 10.251.7.0/24.
	Network string
	// Dir is the set's directory.
	Dir string

	index    int  // N of 10.251.N.0/24
	tempDir  bool // Dir was made by Up: Down removes it
	mu       sync.Mutex
	detached bool
	claim    *claim
	servers  []*http.Server
	down     bool // Down began: Serve refuses
	gone     bool // Down completed
}

// record is what set.json in the set's directory holds, for Open and for the allocator.
type record struct {
	Hosts    []Host `json:"hosts"`
	Index    int    `json:"index"`
	TempDir  bool   `json:"temp_dir,omitempty"`
	Detached bool   `json:"detached,omitempty"`
}

var hostName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// Up makes a set of hosts and waits until each one's sshd accepts connections. On failure it
// removes whatever it had made.
func Up(ctx context.Context, o Options) (s *Set, err error) {
	names, err := o.names()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("testhosts: making hosts needs root (namespaces, mounts, routes)")
	}
	dir, temp := o.Dir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "labplane-testhosts-"); err != nil {
			return nil, fmt.Errorf("testhosts: %w", err)
		}
		temp = true
	} else if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("testhosts: %w", err)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testhosts: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "set.json")); err == nil {
		return nil, fmt.Errorf("testhosts: %s holds a set already: take it down first", dir)
	}
	c, err := allocate(ctx, dir)
	if err != nil {
		if temp {
			_ = os.RemoveAll(dir)
		}
		return nil, err
	}
	set := newSet(dir, record{Index: c.n, TempDir: temp}, names)
	set.claim = c
	defer func() {
		if err != nil {
			err = errors.Join(err, set.Down(context.WithoutCancel(ctx)))
			s = nil
		}
	}()
	if c.stale != "" { // a dead process's set on this network: clean up what it left
		if err := set.cleanStale(ctx, c.stale); err != nil {
			return nil, err
		}
	}
	if err := set.script(ctx, dir, "down"); err != nil { // leftovers under this set's names
		return nil, err
	}
	if err := snapshotDpkg(ctx, filepath.Join(dir, "dpkg")); err != nil { // hosts.sh copies it into each host
		return nil, err
	}
	if err := set.script(ctx, dir, "up"); err != nil {
		return nil, err
	}
	return set, set.save()
}

// cleanStale takes down the set a dead process left in dir on this set's network.
func (s *Set) cleanStale(ctx context.Context, dir string) error {
	if err := s.script(ctx, dir, "down"); err != nil {
		return fmt.Errorf("testhosts: clean up the dead set in %s: %w", dir, err)
	}
	if old, err := load(dir); err == nil && old.tempDir {
		return os.RemoveAll(dir)
	}
	if err := os.Remove(filepath.Join(dir, "set.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("testhosts: %w", err)
	}
	return nil
}

// newSet describes the set in dir on network rec.Index with hosts named names.
func newSet(dir string, rec record, names []string) *Set {
	s := &Set{Dir: dir, index: rec.Index, tempDir: rec.TempDir, detached: rec.Detached}
	s.Network = fmt.Sprintf("%s.0/24", s.prefix())
	s.Gateway = s.prefix() + ".254"
	s.KeyFile = filepath.Join(s.state(), "id_ed25519")
	s.KnownHostsFile = filepath.Join(s.state(), "known_hosts")
	for i, n := range names {
		s.Hosts = append(s.Hosts, Host{Name: n, Address: fmt.Sprintf("%s.%d", s.prefix(), 11+i)})
	}
	return s
}

func (o Options) names() ([]string, error) {
	names := o.Names
	if len(names) == 0 {
		if o.Hosts < 1 {
			return nil, fmt.Errorf("testhosts: %d hosts: want at least one", o.Hosts)
		}
		for i := 1; i <= o.Hosts; i++ {
			names = append(names, "h"+strconv.Itoa(i))
		}
	}
	if len(names) > 100 {
		return nil, fmt.Errorf("testhosts: %d hosts: at most 100", len(names))
	}
	seen := map[string]bool{}
	for _, n := range names {
		if !hostName.MatchString(n) || seen[n] {
			return nil, fmt.Errorf("testhosts: host name %q: want distinct lower-case names (letters, digits, dashes)", n)
		}
		seen[n] = true
	}
	return names, nil
}

// Open returns the set in dir that a process left running (Detach), to take it down.
func Open(ctx context.Context, dir string) (*Set, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("testhosts: %w", err)
	}
	s, err := load(abs)
	if err != nil {
		return nil, err
	}
	if s.claim, err = reclaim(s.index, abs); err != nil {
		return nil, err
	}
	return s, nil
}

func load(dir string) (*Set, error) {
	path := filepath.Join(dir, "set.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("testhosts: no set in %s: %w", dir, err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("testhosts: %s: %w", path, err)
	}
	if rec.Index < 1 || rec.Index > maxNetwork || len(rec.Hosts) == 0 {
		return nil, fmt.Errorf("testhosts: %s does not describe a set", path)
	}
	names := make([]string, len(rec.Hosts))
	for i, h := range rec.Hosts {
		names[i] = h.Name
	}
	return newSet(dir, rec, names), nil
}

// save writes set.json; the caller holds s.mu or is the only user of s.
func (s *Set) save() error {
	b, err := json.MarshalIndent(record{Hosts: s.Hosts, Index: s.index, TempDir: s.tempDir, Detached: s.detached}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "set.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("testhosts: %w", err)
	}
	return nil
}

// detachedAndRunning reports whether dir holds a detached set with a host still running.
func detachedAndRunning(dir string) bool {
	s, err := load(dir)
	if err != nil || !s.detached {
		return false
	}
	for _, h := range s.Hosts {
		if b, err := os.ReadFile(filepath.Join(s.state(), h.Name, "pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
				return true
			}
		}
	}
	return false
}

// Detach leaves the hosts running when this process exits (for a shell: Open and Down take
// them down later). Servers started by Serve stop with the process.
func (s *Set) Detach() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detached = true
	if err := s.save(); err != nil {
		return err
	}
	if s.claim != nil {
		err := s.claim.release(true)
		s.claim = nil
		return err
	}
	return nil
}

// Host returns the host called name.
func (s *Set) Host(name string) (Host, bool) {
	for _, h := range s.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// UpperDir is where the files a host has written or changed are, seen from the machine (its
// overlay's upper directory): /edx/var/backups/x in host h is UpperDir(h) + "/edx/var/backups/x".

// SSH runs a shell command on host name as root, with the set's key and its known host key,
// and returns its output (stdout and stderr) trimmed of trailing space.
func (s *Set) SSH(ctx context.Context, name, command string) (string, error) {
	h, ok := s.Host(name)
	if !ok {
		return "", fmt.Errorf("no test host %q", name)
	}
	cmd := exec.CommandContext(ctx, "ssh", "-i", s.KeyFile, "-o", "UserKnownHostsFile="+s.KnownHostsFile,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@"+h.Address, command)
	out, err := cmd.CombinedOutput()
	return strings.TrimRight(string(out), " \n"), err
}

// Files under the host's /tmp, /run and /root (tmpfs) are not there.
func (s *Set) UpperDir(name string) string { return filepath.Join(s.state(), name, "upper") }

// ControlPathDir is where Ansible keeps its SSH master connections to the set's hosts (the
// spec's ssh.control_path_dir): Down closes them, so no ssh master outlives the set.
func (s *Set) ControlPathDir() string { return filepath.Join(s.state(), "cp") }

// Stop kills one host (its sshd and every process in it): its address then refuses
// connections, as a host that is down does.
func (s *Set) Stop(ctx context.Context, name string) error {
	if _, ok := s.Host(name); !ok {
		return fmt.Errorf("testhosts: no host %q in the set", name)
	}
	return s.script(ctx, s.Dir, "stop", name)
}

// Serve serves dir over HTTP on the Gateway address (a port of its own), for the hosts to
// download from; Down stops the server. It returns the base URL ("http://10.251.7.254:PORT").
func (s *Set) Serve(dir string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return "", errors.New("testhosts: the set is down")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.Gateway, "0"))
	if err != nil {
		return "", fmt.Errorf("testhosts: serve %s: %w", dir, err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	s.servers = append(s.servers, srv)
	return "http://" + ln.Addr().String(), nil
}

// Down stops everything the set started (servers, hosts: every process in them, SSH control
// masters) by PID, removes its namespaces, links and state, and releases its network. The
// guard route stays. Down is idempotent.
func (s *Set) Down(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return nil
	}
	var errs []error
	for _, srv := range s.servers {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := srv.Shutdown(sctx); err != nil {
			errs = append(errs, srv.Close())
		}
		cancel()
	}
	s.servers, s.down = nil, true
	if s.claim == nil {
		c, err := reclaim(s.index, s.Dir)
		if err != nil {
			return err
		}
		s.claim = c
	}
	if err := s.script(ctx, s.Dir, "down"); err != nil {
		// keep the claim: the next set on this network cleans up what is left
		return errors.Join(append(errs, err)...)
	}
	if err := os.Remove(filepath.Join(s.Dir, "set.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if s.tempDir {
		errs = append(errs, os.RemoveAll(s.Dir))
	}
	errs = append(errs, s.claim.release(false))
	s.claim, s.gone = nil, true
	return errors.Join(errs...)
}

func (s *Set) prefix() string { return fmt.Sprintf("10.251.%d", s.index) }
func (s *Set) state() string  { return filepath.Join(s.Dir, "state") }

// script runs the embedded hosts.sh (written into the set's directory) with the given verb,
// for the set whose directory is dir (the set's own, or a dead one to clean on its network).
func (s *Set) script(ctx context.Context, dir string, args ...string) error {
	path := filepath.Join(s.Dir, "hosts.sh")
	if old, err := os.ReadFile(path); err != nil || !bytes.Equal(old, hostsScript) {
		if err := os.WriteFile(path, hostsScript, 0o755); err != nil {
			return fmt.Errorf("testhosts: %w", err)
		}
	}
	names := make([]string, len(s.Hosts))
	for i, h := range s.Hosts {
		names[i] = h.Name
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "/bin/bash", append([]string{path}, args...)...)
	cmd.Env = append(os.Environ(), "TH_DIR="+dir, "TH_NET="+s.prefix(),
		"TH_NS=lpth"+strconv.Itoa(s.index), "TH_NAMES="+strings.Join(names, " "))
	cmd.Stdout, cmd.Stderr = &out, &out
	// its own process group, killed on cancel; the hosts it starts run in their own sessions
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("testhosts: hosts.sh %s (network %s): %w\n%s", strings.Join(args, " "), s.Network, err, outputtail.Of(out.Bytes(), 4096))
	}
	return nil
}
