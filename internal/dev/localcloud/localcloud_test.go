package localcloud

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("LOCALCLOUD_TEST_HELPER") == "hold" {
		os.Exit(helperHold())
	}
	os.Exit(m.Run())
}

func TestNamedPortSets(t *testing.T) {
	want := map[string]Instance{
		"local-a": {Name: "local-a", Region: "RegionOne", KeystonePort: 25000, HeatPort: 28004, PostgresPort: 25432,
			RabbitPort: 25672, RabbitDistPort: 25673, EpmdPort: 24369},
		"local-b": {Name: "local-b", Region: "RegionTwo", KeystonePort: 25010, HeatPort: 28014, PostgresPort: 25442,
			RabbitPort: 25682, RabbitDistPort: 25683, EpmdPort: 24379},
		"local-quota": {Name: "local-quota", Region: "RegionQuota", KeystonePort: 25020, HeatPort: 28024, PostgresPort: 25452,
			RabbitPort: 25692, RabbitDistPort: 25693, EpmdPort: 24389, MaxStacksPerTenant: QuotaStacks},
		"local-servers": {Name: "local-servers", Region: "RegionServers", KeystonePort: 25030, HeatPort: 28034, PostgresPort: 25462,
			RabbitPort: 25702, RabbitDistPort: 25703, EpmdPort: 24399,
			Compute: Compute{NovaPort: 28774, PlacementPort: 28778, GlancePort: 29292, NeutronPort: 29696}},
	}
	// the team's shared dev cloud uses these: a local cloud must never collide with it
	used := map[int]string{5000: "dev keystone", 8004: "dev heat", 55432: "dev pg", 55672: "dev rabbit",
		55673: "dev rabbit dist", 54369: "dev epmd", 8774: "dev nova", 8778: "dev placement", 9292: "dev glance",
		9696: "dev neutron stub"}
	if got := Names(); strings.Join(got, " ") != "local-a local-b local-quota local-servers" {
		t.Errorf("Names() = %v", got)
	}
	for name, w := range want {
		in, err := Named(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Dir = filepath.Join(os.TempDir(), "labplane-localcloud", name)
		if in != w {
			t.Errorf("Named(%q) = %+v\nwant %+v", name, in, w)
		}
		for svc, p := range in.Ports() {
			if other, dup := used[p]; dup {
				t.Errorf("%s %s port %d collides with %s", name, svc, p, other)
			}
			used[p] = name + " " + svc
		}
		if in.CloudsYAML() != filepath.Join(w.Dir, "clouds.yaml") {
			t.Errorf("CloudsYAML() = %s", in.CloudsYAML())
		}
		if in.KeystoneURL() != fmt.Sprintf("http://127.0.0.1:%d/v3", w.KeystonePort) || in.HeatURL() != fmt.Sprintf("http://127.0.0.1:%d", w.HeatPort) {
			t.Errorf("urls %s %s", in.KeystoneURL(), in.HeatURL())
		}
		// compute (its packages, its processes, its API) on local-servers alone
		compute := name == "local-servers"
		if got := len(in.Packages()) > len(Packages); got != compute {
			t.Errorf("%s: packages %v", name, in.Packages())
		}
		if got := len(in.Ports()) > 6; got != compute {
			t.Errorf("%s: ports %v", name, in.Ports())
		}
		if got := len(in.services()) > 6; got != compute {
			t.Errorf("%s: %d services", name, len(in.services()))
		}
		if wantNova := fmt.Sprintf("http://127.0.0.1:%d/v2.1", w.Compute.NovaPort); compute && in.NovaURL() != wantNova || !compute && in.NovaURL() != "" {
			t.Errorf("%s: NovaURL() = %q", name, in.NovaURL())
		}
	}
}

func TestNamedUnknown(t *testing.T) {
	_, err := Named("local-c")
	if err == nil || !strings.Contains(err.Error(), `"local-c"`) || !strings.Contains(err.Error(), "local-a, local-b") {
		t.Errorf("err = %v, want one naming local-c and listing local-a, local-b", err)
	}
}

// The embedded scripts parse, take every setting from the Go side and keep the recipe's guard
// rails: nothing killed by name, loopback only.
func TestScripts(t *testing.T) {
	for name, s := range map[string][]byte{"up.sh": upScript, "down.sh": downScript, "compute-up.sh": computeUpScript, "lib.sh": libScript} {
		if out, err := exec.Command("bash", "-n", "-c", string(s)).CombinedOutput(); err != nil {
			t.Errorf("%s: bash -n: %v\n%s", name, err, out)
		}
		var code []string // the script without its comments
		for _, line := range strings.Split(string(s), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				code = append(code, line)
			}
		}
		for _, bad := range []string{"pkill", "killall", "0.0.0.0", "HEAT_LAB_", "NOVA_LAB_", "/tmp/heat-lab", "/tmp/nova-lab", "/work/shared"} {
			if strings.Contains(strings.Join(code, "\n"), bad) {
				t.Errorf("%s uses %q", name, bad)
			}
		}
	}
	py := exec.Command("python3", "-c", "import ast, sys; ast.parse(sys.stdin.read())")
	py.Stdin = bytes.NewReader(restPy)
	if out, err := py.CombinedOutput(); err != nil {
		t.Errorf("rest.py: %v\n%s", err, out)
	}
	for _, v := range (Instance{}).env() {
		k, _, _ := strings.Cut(v, "=")
		if !bytes.Contains(upScript, []byte(k)) && !bytes.Contains(computeUpScript, []byte(k)) {
			t.Errorf("neither up.sh nor compute-up.sh reads %s", k)
		}
	}
	// every process the scripts start is one down.sh stops and the Go side checks, by the same
	// pid file and marker
	in, _ := Named("local-servers")
	for _, svc := range in.services() {
		name := strings.TrimSuffix(filepath.Base(svc.pidFile), ".pid")
		marker := strings.ReplaceAll(svc.marker, filepath.Join(in.Dir, "state"), "$STATE")
		marker = strings.ReplaceAll(marker, "$STATE/etc/nova.conf", "$NOVA_CONF")
		marker = strings.ReplaceAll(marker, fmt.Sprint(in.EpmdPort), "$EPMD_PORT")
		if !bytes.Contains(downScript, []byte("stop "+name+" ")) {
			t.Errorf("down.sh does not stop %s", name)
		}
		if !bytes.Contains(downScript, []byte(marker)) {
			t.Errorf("down.sh does not know %s's marker %q", name, marker)
		}
		if !bytes.Contains(upScript, []byte(marker)) && !bytes.Contains(computeUpScript, []byte(strings.TrimPrefix(marker, name+" "))) {
			t.Errorf("no script starts %s with the marker %q", name, marker)
		}
	}
}

func TestServiceAlive(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "x.pid")
	cmd := exec.Command("sleep", "30")
	cmd.Env = append(os.Environ(), "LC_TEST_MARKER=marker-"+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Start returns once the child is forked: until it has exec'd sleep, /proc shows the
	// test's own command line and environment
	for deadline := time.Now().Add(10 * time.Second); ; {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
		if strings.HasPrefix(string(cmdline), "sleep\x00") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child never ran sleep: %q", cmdline)
		}
		time.Sleep(time.Millisecond)
	}
	_ = os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o644)
	if !(service{pidFile, "marker-" + dir}).alive() {
		t.Error("marker in the environment: not alive")
	}
	if !(service{pidFile, "sleep 30 "}).alive() {
		t.Error("marker in the command line: not alive")
	}
	if (service{pidFile, "some-other-marker"}).alive() {
		t.Error("a process without the marker counts as alive (PID reuse guard)")
	}
	_ = os.WriteFile(pidFile, []byte("999999999\n"), 0o644)
	if (service{pidFile, "sleep"}).alive() {
		t.Error("a dead pid is alive")
	}
}

// --- lease logic, with fake instance operations (no servers) ---

// fakeOps replaces the instance operations: "running" is a file in the instance dir, so that
// helper processes share it. It returns the calls made, in order.
func fakeOps(t *testing.T) *[]string {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir())
	calls := &[]string{}
	saved := ops
	t.Cleanup(func() { ops = saved })
	setFakeOps(func(s string) { *calls = append(*calls, s) }, nil)
	return calls
}

func setFakeOps(record func(string), upErr error) {
	running := func(in Instance) string { return filepath.Join(in.Dir, "fake-running") }
	ops.up = func(_ context.Context, in Instance, _ io.Writer) error {
		record("up " + in.Name)
		if err := in.ensureDir(); err != nil {
			return err
		}
		_ = os.WriteFile(running(in), nil, 0o644) // a failed start leaves something running
		if upErr != nil {
			return upErr
		}
		return os.WriteFile(in.CloudsYAML(), []byte(fmt.Sprintf("clouds:\n  %s:\n    region_name: %s\n  %s-admin:\n    region_name: %s\n",
			in.Name, in.Region, in.Name, in.Region)), 0o600)
	}
	ops.down = func(_ context.Context, in Instance, _ bool, _ io.Writer) error {
		record("down " + in.Name)
		return os.Remove(running(in))
	}
	ops.anyAlive = func(in Instance) bool {
		_, err := os.Stat(running(in))
		return err == nil
	}
}

func fakeRunning(name string) bool {
	in, _ := Named(name)
	return ops.anyAlive(in)
}

func TestLeaseRefcount(t *testing.T) {
	calls := fakeOps(t)
	ctx := context.Background()
	l1, err := Acquire(ctx, nil, "local-a", "local-b")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(ctx, nil, "local-a")
	if err != nil {
		t.Fatal(err)
	}
	if !l1.Started("local-a") || !l1.Started("local-b") || l2.Started("local-a") {
		t.Errorf("started: l1 %v %v, l2 %v", l1.Started("local-a"), l1.Started("local-b"), l2.Started("local-a"))
	}
	merged, err := os.ReadFile(l1.CloudsYAML())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"local-a:", "local-a-admin:", "local-b:", "local-b-admin:", "RegionTwo"} {
		if !bytes.Contains(merged, []byte(e)) {
			t.Errorf("merged clouds.yaml lacks %s:\n%s", e, merged)
		}
	}
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if l1.lastRelease["local-a"] != releaseInUse || l1.lastRelease["local-b"] != releaseStopped {
		t.Errorf("first release: %v", l1.lastRelease)
	}
	if !fakeRunning("local-a") || fakeRunning("local-b") {
		t.Errorf("after the first release: local-a running %v (want true), local-b %v (want false)", fakeRunning("local-a"), fakeRunning("local-b"))
	}
	if _, err := os.Stat(l1.CloudsYAML()); !errors.Is(err, os.ErrNotExist) {
		t.Error("merged clouds.yaml not removed")
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if l2.lastRelease["local-a"] != releaseStopped || fakeRunning("local-a") {
		t.Errorf("second release: %v, running %v", l2.lastRelease, fakeRunning("local-a"))
	}
	if err := l2.Release(ctx); err != nil {
		t.Errorf("second Release of the same lease: %v", err)
	}
	want := "up local-a,up local-b,up local-a,down local-b,down local-a"
	if got := strings.Join(*calls, ","); got != want {
		t.Errorf("calls = %s\nwant    %s", got, want)
	}
}

// An instance that was running before (a developer's) is never stopped by a Release; nor one
// claimed with Up while leased.
func TestLeaseLeavesOthersInstanceRunning(t *testing.T) {
	fakeOps(t)
	ctx := context.Background()
	in, _ := Named("local-a")
	if err := in.Up(ctx, nil); err != nil { // by hand: claims it
		t.Fatal(err)
	}
	l, err := Acquire(ctx, nil, "local-a")
	if err != nil {
		t.Fatal(err)
	}
	if l.Started("local-a") {
		t.Error("Started for an instance that was running")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if l.lastRelease["local-a"] != releaseNotOurs || !fakeRunning("local-a") {
		t.Errorf("release: %v, running %v", l.lastRelease, fakeRunning("local-a"))
	}

	// started by a lease, then claimed by hand: the release leaves it too
	in2, _ := Named("local-b")
	l, err = Acquire(ctx, nil, "local-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := in2.Up(ctx, nil); err != nil {
		t.Fatal(err)
	}
	_ = l.Release(ctx)
	if !fakeRunning("local-b") {
		t.Error("a claimed instance was stopped")
	}
}

// Stop/Start for outage tests; a developer's instance that a lease stopped is brought back.
func TestLeaseStopStart(t *testing.T) {
	calls := fakeOps(t)
	ctx := context.Background()
	l, err := Acquire(ctx, nil, "local-a")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(ctx, "local-a"); err != nil || fakeRunning("local-a") {
		t.Fatalf("stop: %v, running %v", err, fakeRunning("local-a"))
	}
	if err := l.Start(ctx, "local-a", nil); err != nil || !fakeRunning("local-a") {
		t.Fatalf("start: %v", err)
	}
	if err := l.Stop(ctx, "local-b"); err == nil {
		t.Error("Stop of an instance not in the lease")
	}
	_ = l.Release(ctx)
	if fakeRunning("local-a") {
		t.Error("still running after release")
	}

	in, _ := Named("local-b")
	_ = in.Up(ctx, nil) // a developer's
	l, _ = Acquire(ctx, nil, "local-b")
	_ = l.Stop(ctx, "local-b")
	*calls = nil
	_ = l.Release(ctx)
	if !fakeRunning("local-b") || strings.Join(*calls, ",") != "up local-b" {
		t.Errorf("developer's instance after stop+release: running %v, calls %v", fakeRunning("local-b"), *calls)
	}
}

// A failed start is cleaned up: what it started is stopped and no lease remains.
func TestAcquireFailureStopsWhatItStarted(t *testing.T) {
	calls := fakeOps(t)
	setFakeOps(func(s string) { *calls = append(*calls, s) }, errors.New("boom"))
	_, err := Acquire(context.Background(), nil, "local-a")
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v", err)
	}
	if fakeRunning("local-a") || strings.Join(*calls, ",") != "up local-a,down local-a" {
		t.Errorf("running %v, calls %v", fakeRunning("local-a"), *calls)
	}
	in, _ := Named("local-a")
	if _, err := os.Stat(in.markerPath()); !errors.Is(err, os.ErrNotExist) {
		t.Error("marker left behind")
	}
	if _, err := Acquire(context.Background(), nil, "local-z"); err == nil || !strings.Contains(err.Error(), "local-a, local-b") {
		t.Errorf("unknown name: %v", err)
	}
}

// Leases in two processes (as go test runs two packages' tests at once): the first to release
// leaves the instance to the other, the last stops it.
func TestLeaseAcrossProcesses(t *testing.T) {
	fakeOps(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOCALCLOUD_TEST_HELPER=hold")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	next := func() string {
		if !lines.Scan() {
			t.Fatalf("helper: %v", lines.Err())
		}
		return lines.Text()
	}
	if got := next(); got != "acquired started=true" {
		t.Fatalf("helper: %q", got)
	}
	ctx := context.Background()
	l, err := Acquire(ctx, nil, "local-a")
	if err != nil {
		t.Fatal(err)
	}
	if l.Started("local-a") {
		t.Error("started twice")
	}
	_ = stdin.Close() // the helper releases: another process (us) still holds it
	if got := next(); got != "released "+releaseInUse {
		t.Fatalf("helper: %q", got)
	}
	if !fakeRunning("local-a") {
		t.Fatal("stopped while leased")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if l.lastRelease["local-a"] != releaseStopped || fakeRunning("local-a") {
		t.Errorf("last release: %v, running %v", l.lastRelease, fakeRunning("local-a"))
	}
}

// helperHold runs in a child process: acquire local-a (fake), say so, release at EOF on stdin.
func helperHold() int {
	setFakeOps(func(string) {}, nil)
	ctx := context.Background()
	l, err := Acquire(ctx, nil, "local-a")
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	fmt.Printf("acquired started=%v\n", l.Started("local-a"))
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := l.Release(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	fmt.Printf("released %s\n", l.lastRelease["local-a"])
	return 0
}

// --- the real local cloud ---

// Two leases on the real local-a: the first release leaves it running (the second lease holds
// it); the second stops it if it was started by an Acquire and no other process (another
// package's tests, running at the same time) holds it.
func TestRealAcquireReleaseTwoLeases(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real local cloud; -short skips it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	l1, err := Acquire(ctx, newTestWriter(t), "local-a")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first Acquire: %.1fs (started here: %v)", time.Since(start).Seconds(), l1.Started("local-a"))
	defer func() { _ = l1.Release(context.Background()) }()
	start = time.Now()
	l2, err := Acquire(ctx, newTestWriter(t), "local-a")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l2.Release(context.Background()) }()
	t.Logf("second Acquire: %.2fs", time.Since(start).Seconds())
	in, _ := Named("local-a")
	if !in.Running(ctx) {
		t.Fatal("not running while leased")
	}
	b, err := os.ReadFile(l2.CloudsYAML())
	if err != nil || !bytes.Contains(b, []byte("local-a:")) || !bytes.Contains(b, []byte("local-a-admin:")) ||
		!bytes.Contains(b, []byte("http://127.0.0.1:25000/v3")) {
		t.Errorf("merged clouds.yaml (%v):\n%s", err, b)
	}
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got := l1.lastRelease["local-a"]; got != releaseInUse || !in.Running(ctx) {
		t.Fatalf("first release: %s, running %v; want in-use and running", got, in.Running(ctx))
	}
	start = time.Now()
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	got := l2.lastRelease["local-a"]
	t.Logf("second release: %s in %.1fs", got, time.Since(start).Seconds())
	switch got {
	case releaseStopped:
		if in.Running(ctx) || in.anyAlive() {
			t.Error("released as stopped, but something still runs")
		}
	case releaseInUse:
		// another package's tests hold it: they stop it (or leave it) when they release
	case releaseNotOurs:
		if l1.Started("local-a") {
			t.Error("started by our Acquire, yet not stopped (was it claimed by an Up meanwhile?)")
		}
		if !in.Running(ctx) {
			t.Error("a developer's instance was stopped")
		}
	default:
		t.Errorf("second release: %q", got)
	}
}

// testWriter logs whole lines of a script's output.
type testWriter struct {
	t   *testing.T
	buf *bytes.Buffer
}

func newTestWriter(t *testing.T) testWriter { return testWriter{t, &bytes.Buffer{}} }

func (w testWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line) // incomplete: keep it for later
			return len(p), nil
		}
		w.t.Log(strings.TrimRight(line, "\n"))
	}
}

// Both instances side by side (and beside a developer's shared dev cloud, whose ports differ).
// Starting a second cloud costs about 15 s and 700 MiB: opt in with LABPLANE_TEST_LOCAL_B=1.
func TestRealTwoInstances(t *testing.T) {
	if testing.Short() || os.Getenv("LABPLANE_TEST_LOCAL_B") != "1" {
		t.Skip("set LABPLANE_TEST_LOCAL_B=1 to start local-b as well")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	l, err := Acquire(ctx, newTestWriter(t), "local-a", "local-b")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Release(context.Background()) }()
	t.Logf("Acquire(local-a, local-b): %.1fs (started here: a %v, b %v)", time.Since(start).Seconds(), l.Started("local-a"), l.Started("local-b"))
	for _, in := range l.Instances() {
		if !in.Running(ctx) {
			t.Errorf("%s not running", in.Name)
		}
	}
	b, _ := os.ReadFile(l.CloudsYAML())
	for _, want := range []string{"local-a:", "local-a-admin:", "local-b:", "local-b-admin:", "RegionOne", "RegionTwo", ":25010/v3"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("merged clouds.yaml lacks %q", want)
		}
	}
	start = time.Now()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Release: %.1fs: %v", time.Since(start).Seconds(), l.lastRelease)
	if l.Started("local-b") && l.lastRelease["local-b"] == releaseStopped {
		if in, _ := Named("local-b"); in.anyAlive() {
			t.Error("local-b still running after its release")
		}
	}
}
