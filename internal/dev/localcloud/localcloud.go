// Package localcloud runs labplane's own local OpenStack cloud: a real Keystone + Heat (Debian 12
// packages) with RabbitMQ and PostgreSQL, all on 127.0.0.1, for the demo, the tests and CI.
//
// Each named instance ("local-a", "local-b", "local-quota", "local-servers") has a fixed set of
// ports, so the clouds can run side by side (and beside a developer's own); local-quota's Heat
// refuses a create in a project that holds QuotaStacks stacks; local-servers alone also runs
// compute (Nova with the fake virt driver, Placement, Glance: real servers, no VMs), which costs
// about 45 s more to start and 1.2 GiB more memory. The work is done by embedded bash scripts
// adapted from the team's tested recipe. Up first installs the missing Packages through
// the project's one installer (internal/apt); up.sh then configures and starts the services and
// writes a clouds.yaml; down.sh stops exactly the processes up.sh recorded (each PID is checked
// against its command line or environment first; nothing is ever killed by name). Up and Down
// need root (apt-get, setpriv, the postgres user switch).
//
// Test suites in several packages, which go test runs at the same time, share the instances
// through Acquire and Release (see lease.go).
package localcloud

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/filelock"
	"github.com/labplane/labplane/internal/outputtail"
)

//go:embed scripts/up.sh
var upScript []byte

//go:embed scripts/down.sh
var downScript []byte

//go:embed scripts/compute-up.sh
var computeUpScript []byte

// libScript and restPy hold the helpers up.sh and compute-up.sh share (in bash, and in Python
// for their REST calls); they are written beside them.
var (
	//go:embed scripts/lib.sh
	libScript []byte
	//go:embed scripts/rest.py
	restPy []byte
)

// Packages are the Debian packages a local cloud runs on (Zed's Keystone and Heat, their
// PostgreSQL and RabbitMQ, uWSGI) and the tools up.sh uses; up installs the missing ones.
var Packages = []string{"keystone", "heat-api", "heat-engine", "rabbitmq-server", "postgresql", "uwsgi-core",
	"uwsgi-plugin-python3", "python3-psycopg2", "python3-openstackclient", "python3-heatclient", "jq", "curl"}

// ComputePackages are the Debian packages an instance with compute runs on besides Packages
// (about 106 with their dependencies, 50 s to install): Zed's Nova (nova-compute is run from
// python3-nova, so neither libvirt nor qemu is installed), Placement and Glance. Up installs
// them for those instances only.
var ComputePackages = []string{"python3-nova", "nova-api", "nova-conductor", "nova-scheduler", "placement-api", "glance-api"}

// Flavor and Image are what an instance with compute offers its servers: a flavor of 1 vCPU,
// 64 MiB and a 1 GB disk (Zed lets only admins boot a 0 GB disk from an image), and a public
// 1 KiB image (the fake driver boots nothing). There is no Neutron: servers are created with
// networks: [{allocate_network: none}].
const (
	Flavor = "lab.tiny"
	Image  = "lab-fake-image"
)

// Host is the only address the local clouds listen on.
const Host = "127.0.0.1"

// Instance is one named local cloud: where its state lives and the ports it uses.
type Instance struct {
	// Name is the instance name and the clouds.yaml entry of its learner user ("local-a").
	Name string
	// Dir holds everything of the instance: state/ (databases, logs, pid files), clouds.yaml,
	// the scripts last run and the lock files.
	Dir    string
	Region string

	KeystonePort   int
	HeatPort       int
	PostgresPort   int
	RabbitPort     int
	RabbitDistPort int
	EpmdPort       int

	// MaxStacksPerTenant, if not 0, is Heat's max_stacks_per_tenant (heat.conf [DEFAULT]):
	// a create in a project that already holds that many stacks (nested and deleted ones not
	// counted) is refused with HTTP 400 RequestLimitExceeded. Heat checks it for every
	// non-admin context, the learner user's included (an admin-role user, Name+"-admin", is
	// exempt). It is one value for the whole Heat, so it gets an instance of its own. 0 leaves
	// Heat's default, 512.
	MaxStacksPerTenant int

	// Compute, when its ports are set, adds Nova (fake virt driver), Placement and Glance to
	// the instance, in the catalog of its Keystone, so that its Heat creates OS::Nova::Server.
	Compute Compute
}

// Compute are the ports of an instance's compute services (all 0: the instance has none).
type Compute struct {
	NovaPort      int
	PlacementPort int
	GlancePort    int
	// NeutronPort is a stub Nova alone calls (Heat does not see it: it is not in the catalog);
	// it answers every list of ports with an empty one, since servers have no network.
	NeutronPort int
}

// Enabled reports whether the instance runs compute.
func (c Compute) Enabled() bool { return c.NovaPort != 0 }

// instances are the known instances, in Names order. Every port is distinct across instances
// and from the team's shared dev cloud (5000, 8004, 55432, 55672, 55673, 54369).
var instances = []Instance{
	{Name: "local-a", Region: "RegionOne", KeystonePort: 25000, HeatPort: 28004, PostgresPort: 25432,
		RabbitPort: 25672, RabbitDistPort: 25673, EpmdPort: 24369},
	{Name: "local-b", Region: "RegionTwo", KeystonePort: 25010, HeatPort: 28014, PostgresPort: 25442,
		RabbitPort: 25682, RabbitDistPort: 25683, EpmdPort: 24379},
	// its learner project is full at QuotaStacks stacks: for the tests of a quota refusal
	// (only the suites that name it start it)
	{Name: "local-quota", Region: "RegionQuota", KeystonePort: 25020, HeatPort: 28024, PostgresPort: 25452,
		RabbitPort: 25692, RabbitDistPort: 25693, EpmdPort: 24389, MaxStacksPerTenant: QuotaStacks},
	// with Nova, Placement and Glance: for the labs of real servers (only the suites that name
	// it start it: about 45 s and 1.2 GiB more than the others)
	{Name: "local-servers", Region: "RegionServers", KeystonePort: 25030, HeatPort: 28034, PostgresPort: 25462,
		RabbitPort: 25702, RabbitDistPort: 25703, EpmdPort: 24399,
		Compute: Compute{NovaPort: 28774, PlacementPort: 28778, GlancePort: 29292, NeutronPort: 29696}},
}

// QuotaStacks is local-quota's max_stacks_per_tenant.
const QuotaStacks = 2

// Names lists the known instance names.
func Names() []string {
	names := make([]string, len(instances))
	for i, in := range instances {
		names[i] = in.Name
	}
	return names
}

// Root is the directory under which every instance keeps its state.
func Root() string { return filepath.Join(os.TempDir(), "labplane-localcloud") }

// Named returns the instance called name, or an error listing the known names.
func Named(name string) (Instance, error) {
	for _, in := range instances {
		if in.Name == name {
			in.Dir = filepath.Join(Root(), in.Name)
			return in, nil
		}
	}
	return Instance{}, fmt.Errorf("localcloud: unknown instance %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Ports returns the instance's ports by service name.
func (i Instance) Ports() map[string]int {
	p := map[string]int{"keystone": i.KeystonePort, "heat": i.HeatPort, "postgres": i.PostgresPort,
		"rabbitmq": i.RabbitPort, "rabbitmq-dist": i.RabbitDistPort, "epmd": i.EpmdPort}
	if i.Compute.Enabled() {
		p["nova"], p["placement"], p["glance"], p["neutron-stub"] = i.Compute.NovaPort, i.Compute.PlacementPort,
			i.Compute.GlancePort, i.Compute.NeutronPort
	}
	return p
}

// KeystoneURL is the identity endpoint (the clouds.yaml auth_url).
func (i Instance) KeystoneURL() string { return fmt.Sprintf("http://%s:%d/v3", Host, i.KeystonePort) }

// HeatURL is the root of the orchestration API (the catalog has HeatURL + "/v1/%(tenant_id)s").
func (i Instance) HeatURL() string { return fmt.Sprintf("http://%s:%d", Host, i.HeatPort) }

// NovaURL is the compute API (as in the catalog), "" for an instance without compute.
func (i Instance) NovaURL() string {
	if !i.Compute.Enabled() {
		return ""
	}
	return fmt.Sprintf("http://%s:%d/v2.1", Host, i.Compute.NovaPort)
}

// Packages are the Debian packages the instance runs on: Packages, and ComputePackages for an
// instance with compute.
func (i Instance) Packages() []string {
	if i.Compute.Enabled() {
		return append(slices.Clone(Packages), ComputePackages...)
	}
	return Packages
}

// CloudsYAML is the path of the instance's clouds.yaml, written by Up. It has two entries:
// Name (the learner-lab project user with the member role: the one labplane uses) and
// Name+"-admin" (the cloud admin).
func (i Instance) CloudsYAML() string { return filepath.Join(i.Dir, "clouds.yaml") }

// LogDir is where the services of the instance write their logs.
func (i Instance) LogDir() string { return filepath.Join(i.state(), "log") }

func (i Instance) state() string      { return filepath.Join(i.Dir, "state") }
func (i Instance) lockPath() string   { return filepath.Join(i.Dir, "instance.lock") }
func (i Instance) usersPath() string  { return filepath.Join(i.Dir, "users.lock") }
func (i Instance) markerPath() string { return filepath.Join(i.Dir, "started-by-acquire") }

// Up brings the instance up, installing the Debian packages if they are missing (the first time
// on a machine: about 100 s, 50 s more for compute) and starting what is not running. It is idempotent and fast (well
// under a second) when the instance is already up. The output of the script goes to progress
// (which may be nil). Up by hand (not through Acquire) claims the instance: a test suite's
// Release will not stop it.
func (i Instance) Up(ctx context.Context, progress io.Writer) error {
	unlock, err := i.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ops.up(ctx, i, progress); err != nil {
		return err
	}
	if err := os.Remove(i.markerPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("localcloud %s: %w", i.Name, err)
	}
	return nil
}

// Down stops exactly the processes Up recorded (after checking each one's command line), and
// with purge also deletes the state (databases, keys) and the clouds.yaml, so that the next Up
// starts from scratch. Packages stay installed.
func (i Instance) Down(ctx context.Context, purge bool) error {
	unlock, err := i.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ops.down(ctx, i, purge, io.Discard); err != nil {
		return err
	}
	if err := os.Remove(i.markerPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("localcloud %s: %w", i.Name, err)
	}
	return nil
}

// Running reports whether every service of the instance is running (its recorded PID is alive
// and is the process the scripts started) and Keystone and heat-api (and nova-api, on an instance
// with compute) answer.
func (i Instance) Running(ctx context.Context) bool {
	for _, s := range i.services() {
		if !s.alive() {
			return false
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return httpStatus(ctx, i.KeystoneURL()) == http.StatusOK &&
		httpStatus(ctx, i.HeatURL()+"/") == http.StatusMultipleChoices &&
		(!i.Compute.Enabled() || httpStatus(ctx, i.NovaURL()+"/") == http.StatusOK)
}

// service is one process up.sh records, with the marker its command line or environment must
// contain (the same markers as the scripts use: they guard against PID reuse).
type service struct {
	pidFile, marker string
}

func (i Instance) services() []service {
	st := i.state()
	run := filepath.Join(st, "run")
	etc := filepath.Join(st, "etc")
	s := []service{
		{filepath.Join(run, "postgres.pid"), filepath.Join(st, "pg", "data")},
		{filepath.Join(run, "epmd.pid"), fmt.Sprintf("-port %d ", i.EpmdPort)},
		{filepath.Join(run, "rabbitmq.pid"), filepath.Join(st, "rabbit")},
		{filepath.Join(run, "keystone.pid"), filepath.Join(etc, "keystone-uwsgi.ini")},
		{filepath.Join(run, "heat-engine.pid"), filepath.Join(etc, "heat.conf")},
		{filepath.Join(run, "heat-api.pid"), filepath.Join(etc, "heat.conf")},
	}
	if i.Compute.Enabled() {
		nova := filepath.Join(etc, "nova.conf")
		s = append(s,
			service{filepath.Join(run, "fake-neutron.pid"), filepath.Join(etc, "fake-neutron.py")},
			service{filepath.Join(run, "placement.pid"), filepath.Join(etc, "placement-uwsgi.ini")},
			service{filepath.Join(run, "glance-api.pid"), filepath.Join(etc, "glance-api.conf")},
			service{filepath.Join(run, "nova-conductor.pid"), "nova-conductor --config-file " + nova},
			service{filepath.Join(run, "nova-scheduler.pid"), "nova-scheduler --config-file " + nova},
			service{filepath.Join(run, "nova-api.pid"), "nova-api --config-file " + nova},
			service{filepath.Join(run, "nova-compute.pid"), filepath.Join(etc, "nova-compute.conf")})
	}
	return s
}

// alive: the pid file names a live (not zombie) process whose command line or environment
// contains the marker.
func (s service) alive() bool {
	b, err := os.ReadFile(s.pidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses, so cut at the last ')'
	rest := stat[bytes.LastIndexByte(stat, ')')+1:]
	fields := strings.Fields(string(rest))
	if len(fields) == 0 || fields[0] == "Z" || fields[0] == "X" {
		return false
	}
	var id []byte
	for _, f := range []string{"cmdline", "environ"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		id = append(id, b...)
		id = append(id, 0)
	}
	return bytes.Contains(bytes.ReplaceAll(id, []byte{0}, []byte{' '}), []byte(s.marker))
}

// anyAlive reports whether any recorded process of the instance is running.
func (i Instance) anyAlive() bool {
	for _, s := range i.services() {
		if s.alive() {
			return true
		}
	}
	return false
}

func httpStatus(ctx context.Context, url string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// lock takes the instance lock (exclusive flock on instance.lock): Up, Down, Acquire and Release
// of one instance never run at the same time, in this process or another. The descriptor is
// close-on-exec, so the services the scripts start never inherit the lock.
func (i Instance) lock(ctx context.Context) (unlock func(), err error) {
	if err := i.ensureDir(); err != nil {
		return nil, err
	}
	unlockFile, err := filelock.Lock(ctx, i.lockPath())
	if err != nil {
		return nil, fmt.Errorf("localcloud %s: instance lock: %w", i.Name, err)
	}
	return func() { _ = unlockFile() }, nil
}

func (i Instance) ensureDir() error {
	// the postgres user must be able to reach state/pg: every directory on the way is 0755
	for _, d := range []string{Root(), i.Dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("localcloud %s: %w", i.Name, err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("localcloud %s: %w", i.Name, err)
		}
	}
	return nil
}

// up runs up.sh; the caller holds the instance lock.
func (i Instance) up(ctx context.Context, progress io.Writer) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("localcloud %s: up needs root (apt-get, setpriv, the postgres user switch)", i.Name)
	}
	// the postgres unix socket lives in state/pg: keep its path under the kernel's 108 bytes
	if sock := filepath.Join(i.state(), "pg", fmt.Sprintf(".s.PGSQL.%d.lock", i.PostgresPort)); len(sock) > 100 {
		return fmt.Errorf("localcloud %s: state directory %s is too deep for a unix socket path (set TMPDIR to a shorter directory)", i.Name, i.Dir)
	}
	if err := i.ensureDir(); err != nil {
		return err
	}
	if err := apt.Ensure(ctx, progress, i.Packages()...); err != nil {
		return fmt.Errorf("localcloud %s: %w", i.Name, err)
	}
	if err := i.run(ctx, "up.sh", upScript, nil, progress); err != nil {
		return err
	}
	if !i.Compute.Enabled() {
		return nil
	}
	return i.run(ctx, "compute-up.sh", computeUpScript, nil, progress)
}

// down runs down.sh; the caller holds the instance lock.
func (i Instance) down(ctx context.Context, purge bool, progress io.Writer) error {
	if _, err := os.Stat(i.state()); errors.Is(err, os.ErrNotExist) {
		return nil // never started: nothing recorded, nothing to stop
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("localcloud %s: down needs root (the services run as root and postgres)", i.Name)
	}
	var args []string
	if purge {
		args = append(args, "--purge")
	}
	return i.run(ctx, "down.sh", downScript, args, progress)
}

// run writes the embedded script (and lib.sh and rest.py, which it may use) into Dir/bin (so
// that a person can see what ran) and runs it with bash, its output going to progress. On failure the
// error carries the last lines of output.
func (i Instance) run(ctx context.Context, name string, script []byte, args []string, progress io.Writer) error {
	bin := filepath.Join(i.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("localcloud %s: %w", i.Name, err)
	}
	path := filepath.Join(bin, name)
	for file, content := range map[string][]byte{path: script, filepath.Join(bin, "lib.sh"): libScript, filepath.Join(bin, "rest.py"): restPy} {
		if old, err := os.ReadFile(file); err != nil || !bytes.Equal(old, content) {
			if err := os.WriteFile(file, content, 0o755); err != nil {
				return fmt.Errorf("localcloud %s: %w", i.Name, err)
			}
		}
	}
	if progress == nil {
		progress = io.Discard
	}
	tail := &outputtail.Buffer{Max: 4096}
	out := io.MultiWriter(progress, tail)
	cmd := exec.CommandContext(ctx, "/bin/bash", append([]string{path}, args...)...)
	cmd.Dir = i.Dir
	cmd.Env = append(os.Environ(), i.env()...)
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = out
	// its own process group: on cancel, kill the script and its helpers (curl, keystone-manage);
	// the services it started run in their own sessions (setsid) and stay recorded for down.sh
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("localcloud %s: %s interrupted: %w", i.Name, name, ctx.Err())
		}
		return fmt.Errorf("localcloud %s: %s failed: %w (logs: %s)\n%s", i.Name, name, err, i.LogDir(), tail.String())
	}
	return nil
}

func (i Instance) env() []string {
	return []string{
		"LC_NAME=" + i.Name,
		"LC_DIR=" + i.Dir,
		"LC_CLOUDS_YAML=" + i.CloudsYAML(),
		"LC_PACKAGES=" + strings.Join(Packages, " "),
		"LC_REGION=" + i.Region,
		"LC_KEYSTONE_PORT=" + strconv.Itoa(i.KeystonePort),
		"LC_HEAT_PORT=" + strconv.Itoa(i.HeatPort),
		"LC_PG_PORT=" + strconv.Itoa(i.PostgresPort),
		"LC_RABBIT_PORT=" + strconv.Itoa(i.RabbitPort),
		"LC_RABBIT_DIST_PORT=" + strconv.Itoa(i.RabbitDistPort),
		"LC_EPMD_PORT=" + strconv.Itoa(i.EpmdPort),
		"LC_MAX_STACKS_PER_TENANT=" + strconv.Itoa(i.MaxStacksPerTenant),
		// compute-up.sh's (run for an instance with compute only)
		"LC_COMPUTE_PACKAGES=" + strings.Join(ComputePackages, " "),
		"LC_NOVA_PORT=" + strconv.Itoa(i.Compute.NovaPort),
		"LC_PLACEMENT_PORT=" + strconv.Itoa(i.Compute.PlacementPort),
		"LC_GLANCE_PORT=" + strconv.Itoa(i.Compute.GlancePort),
		"LC_NEUTRON_PORT=" + strconv.Itoa(i.Compute.NeutronPort),
	}
}
