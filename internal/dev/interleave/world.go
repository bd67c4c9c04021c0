// Package interleave is a deterministic simulation of labplane under concurrency, in the
// spirit of FoundationDB's simulation testing and TigerBeetle's VOPR. It runs the real code
// (policy, lifecycle, reaper passes under the scheduler's lock, the HTTP API's handlers, the
// SQLite registry) in a testing/synctest bubble, whose clock is virtual, against fake clouds
// at the edges that inject latency, errors, hangs, lost answers and engine restarts. The
// workload is drawn from a seed: learners arriving, heartbeating, leaving, coming back,
// resetting their labs through the LMS, on a course with a warm pool (which each replica's
// fill job and every take fill up) and a course with a time budget they spend; several `serve`
// replicas and a cron `reap --once`; replicas killed and restarted at any step; the registry
// down for a while.
//
// Only one simulated goroutine runs at a time: each one waits for its turn before it touches
// anything shared (turns.go), and the seed picks whose turn it is. So a seed replays exactly,
// and a failure prints the seed and the last steps. After every step the invariants are
// checked (invariants.go); at the end the system must have settled.
package interleave

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/labplane/labplane/internal/api"
	"github.com/labplane/labplane/internal/auth"
	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/store"
)

// Config is one simulation.
type Config struct {
	Seed uint64
	// Replicas is how many `serve` processes share the registry.
	Replicas int
	// Learners is how many learners use labs, on the two courses in turn (courses).
	Learners int
	// Workload is how long learners come and go, and faults happen; Settle is the quiet time
	// after it, with no faults and no learners, by the end of which every lab must be at rest.
	Workload, Settle time.Duration
	// Cron runs `labplane reap --once` every CronEvery beside the replicas (0: no cron).
	CronEvery time.Duration
	// Faults: cloud errors, hangs, lost answers, engine restarts, registry outages, replicas
	// killed. Without them the run only interleaves.
	Faults bool
	// Trace is how many of the last steps a failure shows.
	Trace int
	// Postgres, if set, is the DSN of an empty PostgreSQL database the registry is kept in
	// (its locks then PostgreSQL's advisory locks); otherwise SQLite in memory.
	Postgres string
}

// DefaultConfig is a seed's simulation: two replicas, a cron reaper, six learners, half an
// hour of workload with faults, then enough quiet for orphans to be reaped and abandoned
// claims taken over (orphan_grace and stuck_after, 10 minutes each, and a pass or two).
func DefaultConfig(seed uint64) Config {
	return Config{Seed: seed, Replicas: 2, Learners: 6, Workload: 30 * time.Minute, Settle: 25 * time.Minute,
		CronEvery: 5 * time.Minute, Faults: true, Trace: 80}
}

// The rules and intervals the simulated labplane runs with: the defaults, but for an orphan
// grace short enough to see orphans reaped within the run.
var (
	rules = func() policy.Rules {
		r := config.DefaultRules
		r.OrphanGrace = 10 * time.Minute
		r.StuckAfter = 10 * time.Minute // an abandoned claim is taken over within the quiet time
		r.LeaveGrace = 30 * time.Second // under idle_suspend_after: a leave suspends the lab sooner
		return r
	}()
	jobs = []struct {
		name  string
		every time.Duration
		keep  func(policy.Action) bool
		due   bool // plans the labs due only (reaper.RunDue), as serve's suspend-idle does
	}{
		{"suspend-idle", config.DefaultSuspendEvery, reaper.SuspendIdle, true},
		{"reap", config.DefaultReapEvery, reaper.All, false},
		{"reconcile", config.DefaultReconcileEvery, reaper.Reconcile, false},
		{"launch-timeouts", config.DefaultLaunchTimeoutsEvery, reaper.LaunchTimeouts, false},
	}
	hookTimeout = config.DefaultHookTimeout
	// poolsEvery is pools_every: twice the default, as a take fills the pool up at once (a
	// tick of the job finding the pool full costs a seed six steps)
	poolsEvery = 2 * config.DefaultPoolsEvery
	// ruleSet is rules for every course, but for budgetCourse's usage_limit.
	ruleSet = policy.Set{Default: rules, Courses: map[string]policy.Rules{budgetCourse: func() policy.Rules {
		r := rules
		r.UsageLimit = usageLimit
		return r
	}()}}
)

// The simulated courses, the learners' in turn: pooledCourse has a warm pool (of a size the
// seed draws), budgetCourse a time budget (usage_limit) that learners spend within the run.
const (
	pooledCourse = "course-a"
	budgetCourse = "course-b"
	usageLimit   = 6 * time.Minute
)

var courses = []string{pooledCourse, budgetCourse}

// site is the simulated installation's name.
const site = "sim"

// Result is what a simulation found.
type Result struct {
	Seed  uint64
	Steps int
	// Violations are the invariants broken, in order (a few of each kind at most).
	Violations []Violation
	// Digest hashes every step: two runs of a seed that took the same steps have the same.
	Digest uint64
	// LeftSuspends counts the suspends sent for labs whose learner had been answered about
	// within idle_suspend_after but had left leave_grace before: the leave's doing.
	LeftSuspends int
	// PoolTakes counts the launches that took a lab of a warm pool; BudgetClaims the
	// suspends claimed by a spent time budget.
	PoolTakes, BudgetClaims int
}

// Failed reports whether an invariant was broken.
func (r Result) Failed() bool { return len(r.Violations) > 0 }

// Broke reports whether an invariant of that kind was broken.
func (r Result) Broke(k Kind) bool {
	return slices.ContainsFunc(r.Violations, func(v Violation) bool { return v.Kind == k })
}

func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d steps", r.Seed, r.Steps)
	if !r.Failed() {
		return b.String()
	}
	fmt.Fprintf(&b, ", %d violations:\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	b.WriteString(r.Explain(r.Violations[0].Kind))
	fmt.Fprintf(&b, "replay: go test ./internal/dev/interleave -run TestSeeds -v -seed %d [-kind KIND]", r.Seed)
	return b.String()
}

// Explain shows the steps that led to the first violation of kind.
func (r Result) Explain(kind Kind) string {
	var b strings.Builder
	for _, v := range r.Violations {
		if v.Kind == kind && v.Trace != nil {
			fmt.Fprintf(&b, "the last %d steps before %s:\n", len(v.Trace), v)
			for _, l := range v.Trace {
				fmt.Fprintf(&b, "  %s\n", l)
			}
		}
	}
	return b.String()
}

// Run simulates c in a synctest bubble of t's and returns what it found.
func Run(t *testing.T, c Config) Result {
	var res Result
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(c, filepath.Join(dir, "registry.db"))
		res = w.run(t)
	})
	return res
}

// world is everything a simulation holds.
type world struct {
	cfg    Config
	driver string // store.SQLite or store.Postgres
	dsn    string
	turns  *turns
	start  time.Time
	clouds []*simCloud
	pools  map[string]lifecycle.Pool // the courses' warm pools, by course
	log    *slog.Logger

	checker *store.Store // the invariants' own connection, taking no turns

	mu           sync.Mutex
	procs        map[string]*process // live processes by name
	gens         map[string]int      // generations of each replica
	dbDown       bool
	lastFault    time.Time
	ids          int
	truth        truth
	violated     []Violation
	leftSuspends int // see Result.LeftSuspends
	poolTakes    int // see Result.PoolTakes
	budgetClaims int // see Result.BudgetClaims
	kinds        map[Kind]int
	passes       map[string]time.Time // a reaper pass running: since when, by process/job
	lastWide     time.Time            // when the invariants last read the whole registry
	work         *workload
	closing      bool // the run is over: no replica starts again
}

func newWorld(c Config, path string) *world {
	// one SQLite database in memory, shared by every simulated process's Store (and their
	// locks, process-local for it: the processes are goroutines of this one): twice as fast
	// as a file, whose locks and writes were most of a seed's system calls
	w := &world{cfg: c, driver: store.SQLite, dsn: "file:" + path + "?mode=memory&cache=shared", turns: newTurns(c.Seed, c.Trace), start: time.Now(),
		log: slog.New(slog.DiscardHandler), procs: map[string]*process{}, gens: map[string]int{},
		passes: map[string]time.Time{}, truth: newTruth(), kinds: map[Kind]int{}}
	if c.Postgres != "" {
		w.driver, w.dsn = store.Postgres, c.Postgres
	}
	for i, name := range []string{"east", "west"} {
		// each cloud its own speed: the seed draws it
		lat := func(lo, hi time.Duration) time.Duration { return w.turns.between(lo, hi) }
		fake := fakecloud.NewWith(fakecloud.Options{Name: name, Latencies: map[string]time.Duration{
			"create": lat(5*time.Second, 90*time.Second), "suspend": lat(2*time.Second, 40*time.Second),
			"resume": lat(2*time.Second, 40*time.Second), "delete": lat(3*time.Second, 60*time.Second)}})
		// room for a lab per learner and a full pool, and not always more
		w.clouds = append(w.clouds, &simCloud{name: name, fake: fake, capacity: 5 - i, maxInFlight: 2})
	}
	w.pools = map[string]lifecycle.Pool{pooledCourse: {Size: 2 + w.turns.intn(2), Template: "lab"}}
	return w
}

// run starts the processes and the workload and drives the turns to the end.
func (w *world) run(t *testing.T) Result {
	ctx := context.Background()
	var err error
	if w.checker, err = store.Open(ctx, w.driver, w.dsn); err != nil {
		t.Fatalf("open the registry: %v", err)
	}
	defer w.checker.Close()
	for i := range w.cfg.Replicas {
		w.startReplica(fmt.Sprintf("r%d", i+1))
	}
	end := w.start.Add(w.cfg.Workload)
	w.startWorkload(ctx, end)

	settled := end.Add(w.cfg.Settle)
	lastCheck := time.Now()
	for time.Now().Before(settled) {
		if !w.turns.step() {
			w.turns.idle(settled.Sub(time.Now()))
		}
		if now := time.Now(); now.After(lastCheck) {
			lastCheck = now
			w.checkOverTime(ctx, now.After(end))
		}
	}
	w.checkSettled(ctx)
	// end every process and the workload: their goroutines end at their next turn, or when
	// what they wait for times out (an hour covers every wait of the simulation)
	w.mu.Lock()
	w.closing = true
	for _, p := range w.procs {
		w.turns.kill(p.name)
		p.stop()
	}
	w.mu.Unlock()
	w.work.cancel()
	for quiet := time.Now().Add(time.Hour); time.Now().Before(quiet); {
		if !w.turns.step() {
			w.turns.idle(time.Until(quiet))
		}
	}
	w.stopWorkload()

	res := Result{Seed: w.cfg.Seed, Steps: w.turns.steps, Digest: w.turns.digest.Sum64()}
	w.mu.Lock()
	res.Violations, res.LeftSuspends, res.PoolTakes, res.BudgetClaims = slices.Clone(w.violated), w.leftSuspends, w.poolTakes, w.budgetClaims
	w.mu.Unlock()
	return res
}

// process is one labplane process: a `serve` replica or a cron `reap --once`, with its own
// connection to the registry and its own view of each cloud.
type process struct {
	name    string
	store   *store.Store
	reg     *registry
	clouds  []*processCloud
	manager *lifecycle.Manager
	reaper  *reaper.Reaper
	api     *api.Server
	handler http.Handler // the API; nil for cron
	cancel  context.CancelFunc
}

// open opens a process's registry and builds its lifecycle, reaper and API on it.
func (w *world) open(name, actor string) *process {
	st, err := store.Open(context.Background(), w.driver, w.dsn)
	if err != nil {
		panic(fmt.Sprintf("open the registry for %s: %v", name, err))
	}
	p := &process{name: name, store: st}
	p.reg = &registry{Store: st, w: w, who: name}
	var targets []lifecycle.Target
	var rclouds []reaper.Cloud
	for _, c := range w.clouds {
		pc := &processCloud{c: c, w: w, who: name}
		p.clouds = append(p.clouds, pc)
		targets = append(targets, lifecycle.Target{Cloud: pc, Capacity: c.capacity, MaxInFlight: c.maxInFlight})
		rclouds = append(rclouds, pc)
	}
	// the bounds on the store, each try taking its turn. Not the CLI's NewWaiter: its queue
	// hands a slot over on a channel, outside the turns, and a run would not replay (the
	// queue is store's TestTakeSlotsQueued's; the bound itself is the registry's, here)
	locks := store.Waiter{Locks: p.reg}
	p.manager = &lifecycle.Manager{Site: site, Registry: p.reg, Locks: locks, Self: strings.ReplaceAll(name, "#", "-"), Slots: locks, Targets: targets,
		Template: func(string) (string, error) { return "lab.yaml", nil }, DefaultTemplate: "lab", Rules: ruleSet, Pools: w.pools,
		Hooks: lifecycle.Hooks{BeforeSuspend: "before_suspend", AfterResume: "after_resume", BeforeDelete: "before_delete",
			Timeout: hookTimeout, Run: w.hook(name)},
		Now: time.Now, NewID: w.newID, Log: w.log}
	p.reaper = &reaper.Reaper{Site: site, Registry: p.reg, Clouds: rclouds, Applier: p.manager, Rules: ruleSet,
		Now: time.Now, Log: w.log, Actor: actor, MostInFlight: p.manager.MostInFlight}
	p.api = &api.Server{Labs: p.manager, Registry: p.reg, Auth: lmsAuth{}, Log: w.log, Policy: ruleSet, Now: time.Now}
	return p
}

// stop closes the process's registry (its locks go with it, as with a process that exits).
func (p *process) stop() {
	if p.cancel != nil {
		p.cancel()
	}
	_ = p.store.Close()
}

// startReplica starts the next generation of a `serve` replica: its API and its jobs.
func (w *world) startReplica(replica string) {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return
	}
	w.gens[replica]++
	name := fmt.Sprintf("%s#%d", replica, w.gens[replica])
	w.mu.Unlock()
	p := w.open(name, "scheduler@"+name)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.handler = p.api.Handler()
	for _, c := range w.clouds { // each cloud's jobs under its own lock, taking turns on the replica
		turn := make(chan struct{}, 1)
		r := p.reaper.ForCloud(c.name)
		for _, j := range jobs {
			job := j.name + ":" + c.name
			go w.runJob(ctx, p, job, j.every, reaper.LockKey(c.name), turn, func(ctx context.Context) {
				key := p.name + " " + job
				w.passStarts(key)
				defer w.passEnds(key)
				if j.due {
					_, _ = r.RunDue(ctx, j.keep)
				} else {
					_, _ = r.RunOnly(ctx, j.keep)
				}
			})
		}
	}
	// serve's fill-pools job: every pool in turn, under the job's lock
	go w.runJob(ctx, p, "fill-pools", poolsEvery, "pools", make(chan struct{}, 1), func(ctx context.Context) {
		for _, course := range slices.Sorted(maps.Keys(w.pools)) {
			_, _ = p.manager.Fill(ctx, course)
		}
	})
	w.mu.Lock()
	w.procs[name] = p
	w.mu.Unlock()
	w.turns.note("start %s", name)
}

// kill kills a process where it stands: its goroutines end at their next turn, and its
// registry connection closes (its locks are released, as the kernel or PostgreSQL would).
func (w *world) kill(name string) {
	w.mu.Lock()
	p, ok := w.procs[name]
	delete(w.procs, name)
	w.lastFault = time.Now()
	w.mu.Unlock()
	if !ok {
		return
	}
	w.turns.kill(name)
	w.turns.note("kill %s", name)
	p.stop()
}

// runJob is one of a replica's scheduler jobs: at each multiple of every (as the scheduler
// aligns them), it waits for the replica's other jobs sharing the lock (turn), takes the
// registry lock if no other replica has it, and runs.
func (w *world) runJob(ctx context.Context, p *process, job string, every time.Duration, lock string, turn chan struct{}, run func(context.Context)) {
	ctx = withActor(ctx, job)
	first := true
	for {
		if !first {
			if clock.Sleep(ctx, time.Until(time.Now().Truncate(every).Add(every))) != nil {
				return
			}
		}
		first = false
		w.turns.wait(p.name, "tick "+job)
		select {
		case turn <- struct{}{}:
		case <-ctx.Done():
			return
		}
		func() {
			defer func() { <-turn }()
			unlock, ok, err := p.reg.TryLock(ctx, lock)
			if err != nil || !ok {
				return
			}
			defer unlock(context.Background())
			run(ctx)
		}()
	}
}

// newID names labs in the order they are launched.
func (w *world) newID() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ids++
	return fmt.Sprintf("lab%03d", w.ids)
}

// hook is a process's hook runner: it takes its turn, is recorded, and takes a while (up to
// the hooks' timeout, drawn by the seed).
func (w *world) hook(who string) func(ctx context.Context, command string, env []string) ([]byte, error) {
	return func(ctx context.Context, command string, env []string) ([]byte, error) {
		lab := hookEnv(env, "LABPLANE_LAB_ID")
		w.turns.wait(who+actorOf(ctx), "hook "+command+" "+lab)
		w.hookRuns(command, lab)
		return nil, clock.Sleep(ctx, w.turns.between(0, hookTimeout+hookTimeout/4)) // some run past the timeout
	}
}

// registryDown reports whether the simulated database is down.
func (w *world) registryDown() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dbDown
}

// drawFault draws what becomes of a cloud call (by the goroutine that has the turn).
func (w *world) drawFault(op string) fault {
	if !w.cfg.Faults || w.quiet() {
		return faultNone
	}
	switch n := w.turns.intn(1000); {
	case n < 20:
		return faultBefore
	case n < 30:
		return faultLost
	case n < 33:
		return faultHang
	}
	return faultNone
}

// quiet reports whether the workload is over: no more faults.
func (w *world) quiet() bool { return !time.Now().Before(w.start.Add(w.cfg.Workload)) }

// lmsAuth lets the simulated LMS in.
type lmsAuth struct{}

func (lmsAuth) Verify(_ context.Context, header string) (auth.Client, error) {
	if header != "Bearer lms" {
		return auth.Client{}, auth.ErrUnauthorized
	}
	return auth.Client{Name: "lms", Scope: auth.ScopeLMS}, nil
}
