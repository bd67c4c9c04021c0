// Package sim replays a month of learners' sessions through labplane's real policy, reaper
// and lifecycle, on the real registry (SQLite), with the fake of labplane's cloud interface
// (internal/fakecloud) taking the latencies measured on the local Heat, everything on a
// virtual clock (clock.Virtual): nothing sleeps, the clock jumps from one thing that can
// happen to the next, and a month passes in seconds. For each policy and trace it reports the
// lab-hours the cloud bills against the lab-hours learners used, and how long a returning
// learner waits for the lab.
//
// The simulated LMS acts as the LMS does through labplane's API: a learner arriving asks for
// the lab (launch-or-get: a new lab is launched; a returning learner's counts as a heartbeat,
// and a suspended one is resumed), waits until it runs, then works, the LMS sending
// heartbeats until the learner leaves. Those heartbeats are written when the lab is ready,
// each stamped with the time the LMS sends it (one every labs.ActivityGap, the last when the
// learner leaves): the registry keeps the latest heartbeat, so every pass of the policy during
// the session sees the lab in use, as with an LMS beating every minute, and after the session
// it sees the last one; the activity spans come out the same. Waking up for each heartbeat
// would take most of the run.
package sim

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/cost"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/store"
)

// Latencies are how long the cloud takes to create, suspend, resume and delete a lab's stack,
// one action at a time, as labplane waits for them (polling its status every second).
type Latencies struct {
	Create, Suspend, Resume, Delete time.Duration
}

// The latencies measured on the project's local clouds, the medians of five rounds of
//
//	go test ./internal/heat -run '^$' -bench Latencies -benchtime 1x
//
// on the project's 2-core machine. Under load Heat takes longer (see the reaper's
// ClassLeavesHeat benchmark); the simulation does not model that.
var (
	// LabStack is the example lab of stand-in resources (examples/templates/lab.yaml) on
	// local-a (ranges: create 3.55-6.95 s, suspend 3.20-3.24 s, resume 3.21-3.25 s, delete
	// 6.30-7.35 s). The default.
	LabStack = Latencies{Create: 6410 * time.Millisecond, Suspend: 3240 * time.Millisecond,
		Resume: 3240 * time.Millisecond, Delete: 7290 * time.Millisecond}
	// ServersStack is the example lab of two servers (examples/templates/servers.yaml) on
	// local-servers, Nova with the fake virt driver (BenchmarkLatenciesServers on a quiet
	// machine; ranges: create 4.28-6.73 s, suspend 1.88-2.03 s, resume 1.87-2.05 s, delete
	// 2.88-3.22 s). lab.yaml took 5.12, 3.04, 3.05 and 6.02 s in the same run: a fake server's
	// suspend is Nova's bookkeeping, quicker than the stand-ins' waits.
	ServersStack = Latencies{Create: 4340 * time.Millisecond, Suspend: 1920 * time.Millisecond,
		Resume: 1910 * time.Millisecond, Delete: 2880 * time.Millisecond}
)

// The simulated LMS.
const (
	// lmsActor is the LMS's name in the audit trail.
	lmsActor = "api:lms"
	// lmsPoll is how often the LMS looks at a lab that is not ready yet.
	lmsPoll = 5 * time.Second
	// lmsGiveUp is how long a learner waits for a lab before the simulation calls it a failure.
	lmsGiveUp = 2 * time.Hour
	// beatEvery spaces the heartbeats the simulation writes: the activity gap, so a session
	// is one span.
	beatEvery = labs.ActivityGap
)

// Policy is a way of keeping labs affordable that the simulation compares.
type Policy struct {
	// Name names the policy; the simulated cloud is named after it.
	Name string
	// Rules are the rules labplane's lifecycle and reaper apply.
	Rules policy.Set
	// MaxInFlight bounds the cloud's operations in flight; 0: no bound.
	MaxInFlight int
	// Every is how often the suspender runs (aligned on multiples of it); 0: never, the labs
	// stay on.
	Every time.Duration
	// Pick chooses what a run of the suspender carries out, and whether it left due work for
	// the next run.
	Pick func(context.Context, Round) (do []policy.Action, more bool, err error)
	// DeleteUnusedAfter: a run of the suspender also deletes labs unused for this long; 0: never.
	DeleteUnusedAfter time.Duration
	// LeaveShare is the share of sessions whose end the LMS reports (POST /leave: the learner
	// closed the lab's page); the others just stop sending heartbeats.
	LeaveShare float64
	// Pool: the course has a warm pool the size of the trace's learners, filled as the month
	// begins (one lab after another). It is not filled again: every learner of a trace takes
	// one lab on their first visit and keeps it, and no learner comes new later.
	Pool bool
}

// Round is what a run of a policy's suspender has to go on.
type Round struct {
	Now time.Time
	// Plan is labplane's suspend-idle plan (reaper.PlanDue): the labs due and their stacks.
	Plan func(context.Context) (reaper.Plan, error)
	// Live lists the registry's live labs.
	Live func(context.Context) ([]labs.Lab, error)
}

// Labplane is labplane's defaults: the suspend-idle job of `labplane serve` every 15 s, with
// the default rules (a lab 90 s without a heartbeat is suspended), every due suspend started
// at once, max_in_flight 4 on the cloud. (The scheduler's other jobs, the full reap every
// 5 min, reconcile and launch-timeouts, have nothing to do here: no delete_after, no failures,
// no strays.)
func Labplane() Policy {
	return Policy{Name: "labplane", Rules: policy.Set{Default: config.DefaultRules}, MaxInFlight: config.DefaultMaxInFlight,
		Every: config.DefaultSuspendEvery, Pick: func(ctx context.Context, rd Round) ([]policy.Action, bool, error) {
			p, err := rd.Plan(ctx)
			return slices.DeleteFunc(p.Actions, func(a policy.Action) bool { return !reaper.SuspendIdle(a) }), false, err
		}}
}

// hastexo-xblock's defaults (hastexo/jobs.py, management/commands/suspender.py).
const (
	hastexoSuspendTimeout = 120 * time.Second
	hastexoSuspendEvery   = 60 * time.Second
	hastexoConcurrency    = 4
	hastexoDeleteAge      = 14 * 24 * time.Hour
)

// Hastexo models hastexo-xblock's defaults; it is not labplane's policy. Its suspender runs
// every 60 s and, as hastexo's does with a query of its own table, takes the running stacks
// whose last heartbeat (or launch, or resume) is 120 s old or more, oldest first, at most 4,
// and suspends them; its reaper deletes stacks unused for 14 days. The suspends go through
// labplane's reaper and lifecycle, with 120 s as idle_suspend_after, so each re-reads its lab
// first. Its cloud operations are not bounded otherwise.
func Hastexo() Policy {
	rules := config.DefaultRules
	rules.IdleSuspendAfter = hastexoSuspendTimeout
	return Policy{Name: "hastexo", Rules: policy.Set{Default: rules}, Every: hastexoSuspendEvery, DeleteUnusedAfter: hastexoDeleteAge,
		Pick: func(ctx context.Context, rd Round) ([]policy.Action, bool, error) {
			live, err := rd.Live(ctx)
			if err != nil {
				return nil, false, err
			}
			var idle []labs.Lab
			for _, l := range live {
				if l.Status == labs.Active && rd.Now.Sub(l.LastActivity()) >= hastexoSuspendTimeout {
					idle = append(idle, l)
				}
			}
			slices.SortStableFunc(idle, func(a, b labs.Lab) int { return a.LastActivity().Compare(b.LastActivity()) })
			do := make([]policy.Action, 0, hastexoConcurrency)
			for _, l := range idle[:min(hastexoConcurrency, len(idle))] {
				do = append(do, policy.Action{Kind: policy.Suspend, Lab: l, Reason: "hastexo-xblock's suspender: no heartbeat for 120 s"})
			}
			return do, len(idle) > len(do), nil
		}}
}

// LabplaneIdle is labplane's defaults for a course whose LMS sends heartbeats only while the
// learner acts (not while the lab's page is merely open): idle_suspend_after idle, as Gitpod's
// 30-minute timeout; with leaveShare, the LMS reports the end of that share of sessions, and
// the lab is suspended leave_grace (3 min) after, as Gitpod cuts its timeout when the tab
// closes.
func LabplaneIdle(idle time.Duration, leaveShare float64) Policy {
	p := Labplane()
	p.Name = "labplane-idle" + strings.TrimSuffix(idle.String(), "0s")
	if leaveShare > 0 {
		p.Name += fmt.Sprintf("-leave%.0f", 100*leaveShare)
	}
	rules := config.DefaultRules
	rules.IdleSuspendAfter = idle
	p.Rules, p.LeaveShare = policy.Set{Default: rules}, leaveShare
	return p
}

// LabplanePool is labplane's defaults with a warm pool the size of the class: a learner's
// first visit resumes a lab of the pool instead of creating one.
func LabplanePool() Policy {
	p := Labplane()
	p.Name, p.Pool = "labplane-pool", true
	return p
}

// AlwaysOn never suspends: a lab runs from its launch to the end of the month.
func AlwaysOn() Policy {
	return Policy{Name: "always-on", Rules: policy.Set{Default: config.DefaultRules}}
}

// Config is a simulation: every trace under every policy.
type Config struct {
	// Start is when the month starts (UTC), Days how long it is.
	Start time.Time
	Days  int
	// Traces are built with Start and Days.
	Traces   []Trace
	Policies []Policy
	// DB is the SQLite file the registry is written to and left in; empty: a temporary file.
	DB  string
	Log *slog.Logger
	// Latencies are the simulated cloud's; zero: LabStack.
	Latencies Latencies
}

// Default is the simulation: 30 days from Monday 1 June 2026 (a month in the past, so
// that a cost report up to now covers it), a steady load of 1,000 learners and a class of 300,
// under labplane's defaults, hastexo-xblock's and always-on.
func Default() Config {
	start, days := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), 30
	return Config{Start: start, Days: days,
		Traces:   []Trace{Steady(start, days, 1000, 1), Class(start, days, 300, 1)},
		Policies: []Policy{Labplane(), Hastexo(), AlwaysOn()}}
}

// Policies are the policies a simulation may compare: Default's, labplane with heartbeats
// that say the learner acts, 15 minutes idle_suspend_after, without and with leaves on 80% of
// sessions, and labplane with a warm pool.
func Policies() []Policy {
	return append(Default().Policies, LabplaneIdle(15*time.Minute, 0), LabplaneIdle(15*time.Minute, 0.8), LabplanePool())
}

// Row is one trace under one policy.
type Row struct {
	Policy string `json:"policy"`
	Trace  string `json:"trace"`
	// BilledHours is what the simulated cloud metered: every moment a stack was not
	// suspended (launching, resuming, suspending and deleting included).
	BilledHours float64 `json:"billed_hours"`
	// UsedHours is the learners' activity, from their heartbeats in the registry.
	UsedHours float64 `json:"used_hours"`
	// Ratio is BilledHours / UsedHours.
	Ratio float64 `json:"ratio"`
	// ReportBilledHours is what `labplane cost report` makes of the registry's audit trail
	// for the month (a resume is recorded once done, so its few seconds are left out).
	ReportBilledHours float64 `json:"report_billed_hours"`
	Labs              int     `json:"labs"`
	Sessions          int     `json:"sessions"`
	// Returns are the sessions of learners who had a lab already; ResumeWait* is how long
	// they waited for it to run, in seconds.
	Returns          int     `json:"returns"`
	ResumeWaitP50    float64 `json:"resume_wait_p50_s"`
	ResumeWaitP99    float64 `json:"resume_wait_p99_s"`
	ResumeWaitMax    float64 `json:"resume_wait_max_s"`
	ReturnsMidAction int     `json:"returns_during_a_suspend"`
	// LaunchWait* is how long learners waited for their first lab (a create, or with a warm
	// pool a resume of one of its labs), in seconds.
	LaunchWaitP50 float64 `json:"launch_wait_p50_s"`
	LaunchWaitP99 float64 `json:"launch_wait_p99_s"`
	LaunchWaitMax float64 `json:"launch_wait_max_s"`
	FailedActions int     `json:"failed_actions"`
}

// Course is the course a trace runs as under a policy in the registry.
func Course(trace, policy string) string { return trace + "-" + policy }

// Result is a simulation's outcome.
type Result struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// DB is the registry the simulation left behind (empty if it was temporary).
	DB      string        `json:"db,omitempty"`
	Rows    []Row         `json:"rows"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Run runs every trace under every policy, each in a registry of its own, at once; reads
// each run's hours from its registry as `labplane cost report` does; and, with c.DB, leaves
// them all in that file (which must not exist yet).
func Run(ctx context.Context, c Config) (Result, error) {
	began := time.Now()
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	res := Result{Start: c.Start, End: c.Start.AddDate(0, 0, c.Days), DB: c.DB}
	if c.DB != "" {
		if _, err := os.Stat(c.DB); !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("%s exists: the simulation leaves its registry in a new file", c.DB)
		}
	}
	dir, err := os.MkdirTemp("", "labplane-sim-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)

	var runs []*run
	for _, tr := range c.Traces {
		for _, p := range c.Policies {
			runs = append(runs, newRun(tr, p, res.Start, res.End, c.Latencies, c.Log))
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(runs))
	for i, r := range runs {
		wg.Go(func() { errs[i] = r.simulate(ctx, filepath.Join(dir, r.course+".db")) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	for _, r := range runs {
		res.Rows = append(res.Rows, r.row)
	}
	if c.DB != "" {
		st, err := store.Open(ctx, store.SQLite, c.DB)
		if err != nil {
			return res, fmt.Errorf("open %s: %w", c.DB, err)
		}
		defer st.Close()
		for _, r := range runs {
			if err := st.Import(ctx, filepath.Join(dir, r.course+".db")); err != nil {
				return res, err
			}
		}
	}
	res.Elapsed = time.Since(began)
	return res, nil
}

// run is one trace under one policy: its own virtual clock, registry, cloud, lifecycle and
// reaper.
type run struct {
	trace      Trace
	pol        Policy
	course     string
	start, end time.Time
	v          *clock.Virtual
	log        *slog.Logger
	reg        *registry
	cloud      *fakecloud.Cloud
	mgr        *lifecycle.Manager
	rp         *reaper.Reaper
	executes   sync.WaitGroup // the reaper's Execute calls in flight

	mu       sync.Mutex
	err      error
	arrivals arrivalHeap     // every learner's next session
	launched []bool          // every learner's: has had a lab
	dues     timeHeap        // when a lab may be due for the suspender
	lastTick time.Time       // the suspender's last run
	pending  int             // its actions not done yet (it is running while > 0)
	waits    []time.Duration // returning learners'
	// first visits'
	launchWaits []time.Duration
	row         Row
}

func newRun(tr Trace, p Policy, start, end time.Time, lat Latencies, log *slog.Logger) *run {
	r := &run{trace: tr, pol: p, course: Course(tr.Name, p.Name), start: start, end: end, v: clock.NewVirtual(start),
		log: log.With("policy", p.Name, "trace", tr.Name), launched: make([]bool, len(tr.Learners)),
		row: Row{Policy: p.Name, Trace: tr.Name, Sessions: tr.Sessions()}}
	for i := range tr.Learners {
		r.arrive(i, 0)
	}
	inFlight := p.MaxInFlight
	if inFlight == 0 {
		inFlight = len(tr.Learners) // every learner's lab at once: no bound
	}
	if lat == (Latencies{}) {
		lat = LabStack
	}
	r.cloud = fakecloud.NewWith(fakecloud.Options{Name: p.Name, MaxInFlight: inFlight, Clock: r.v, Latencies: map[string]time.Duration{
		"create": lat.Create, "suspend": lat.Suspend, "resume": lat.Resume, "delete": lat.Delete}})
	return r
}

// open opens the run's registry and the lifecycle and reaper on it.
func (r *run) open(ctx context.Context, path string) (*store.Store, error) {
	// the simulation's registry need not survive a power cut: no fsync
	st, err := store.Open(ctx, store.SQLite, path+"?_pragma=synchronous(OFF)&_pragma=locking_mode(EXCLUSIVE)")
	if err != nil {
		return nil, fmt.Errorf("open the registry of %s: %w", r.course, err)
	}
	r.reg = newRegistry(st, r.course)
	r.mgr = &lifecycle.Manager{Site: "sim", Registry: r.reg, Locks: st, Targets: []lifecycle.Target{{Cloud: r.cloud}},
		Template: func(string) (string, error) { return "lab.yaml", nil }, DefaultTemplate: "lab",
		Rules: r.pol.Rules, Now: r.v.Now, Log: r.log,
		// a pool is filled one lab after another, in the counted goroutine that fills it
		Go: func(fn func()) { fn() }}
	if r.pol.Pool {
		r.mgr.Pools = map[string]lifecycle.Pool{r.course: {Size: len(r.trace.Learners), Template: "lab"}}
	}
	r.rp = &reaper.Reaper{Site: "sim", Registry: r.reg, Clouds: []reaper.Cloud{r.cloud}, Applier: counted{r},
		Rules: r.pol.Rules, Now: r.v.Now, Log: r.log, Actor: "scheduler"}
	return st, nil
}

// simulate runs the month in a registry at path, reads the cloud's meter at its end, then
// deletes every lab (the course is over: the registry's history ends), checks the registry's
// copy, and reads the month's hours from the registry.
func (r *run) simulate(ctx context.Context, path string) error {
	st, err := r.open(ctx, path)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.pol.Pool {
		r.v.Go(func() {
			if _, err := r.mgr.Fill(ctx, r.course); err != nil {
				r.fail(fmt.Errorf("%s: fill the warm pool: %w", r.course, err))
			}
		})
	}
	r.drive(ctx)
	if err := r.failed(); err != nil {
		cancel()
		r.v.Wait()
		r.executes.Wait()
		return err
	}
	r.v.AdvanceTo(r.end)
	r.row.BilledHours = r.cloud.Billed().Hours()
	r.summarize()

	live, _ := r.reg.ListLabs(ctx, labs.Filter{Statuses: labs.LiveStatuses()})
	for _, l := range live {
		r.v.Go(func() {
			if _, err := r.mgr.Do(ctx, lifecycle.OpDelete, l.ID, "sim", true); err != nil {
				r.fail(fmt.Errorf("delete lab %s at the end: %w", l.ID, err))
			}
		})
	}
	r.v.Run()
	r.executes.Wait()
	if err := r.failed(); err != nil {
		return err
	}
	if err := r.reg.check(ctx); err != nil {
		return err
	}
	hs, err := cost.Load(ctx, st, r.start, r.end)
	if err != nil {
		return err
	}
	month := cost.Compute(hs, cost.Options{Since: r.start, Until: r.end}).Total
	r.row.UsedHours, r.row.ReportBilledHours, r.row.Labs = month.Used, month.Billed, month.Labs
	if month.Used > 0 {
		r.row.Ratio = r.row.BilledHours / month.Used
	}
	return nil
}

// drive moves the clock from one thing that can happen to the next (a goroutine's wake-up,
// a learner arriving, a run of the suspender) until nothing can before the month ends.
func (r *run) drive(ctx context.Context) {
	for {
		r.v.Wait()
		if r.failed() != nil {
			return
		}
		next, ok := r.v.Next()
		sooner := func(t time.Time, due bool) {
			if due && (!ok || t.Before(next)) {
				next, ok = t, true
			}
		}
		sooner(r.nextArrival())
		sooner(r.nextTick())
		if !ok || next.After(r.end) {
			return
		}
		r.v.AdvanceTo(next)
		r.v.Wait() // whoever woke goes first
		r.startArrivals(ctx, next)
		if t, due := r.nextTick(); due && t.Equal(next) {
			r.v.Wait()
			r.tick(ctx)
		}
	}
}

// arrive schedules a learner's session (if it has one).
func (r *run) arrive(learner, session int) {
	if session >= len(r.trace.Learners[learner].Sessions) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	heap.Push(&r.arrivals, arrival{at: r.trace.Learners[learner].Sessions[session].Arrive, learner: learner, session: session})
}

func (r *run) nextArrival() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.arrivals) == 0 {
		return time.Time{}, false
	}
	return r.arrivals[0].at, true
}

// startArrivals starts the sessions that begin at t.
func (r *run) startArrivals(ctx context.Context, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.arrivals) > 0 && !r.arrivals[0].at.After(t) {
		a := heap.Pop(&r.arrivals).(arrival)
		r.v.Go(func() { r.session(ctx, a.learner, a.session) })
	}
}

// session plays one session of a learner: arrive, wait for the lab, work (the LMS sending
// heartbeats), leave; then the learner's next session is scheduled.
func (r *run) session(ctx context.Context, learner, session int) {
	l := r.trace.Learners[learner]
	s := l.Sessions[session]
	id, ready, err := r.visit(ctx, l.Name)
	if err != nil {
		r.fail(fmt.Errorf("%s: learner %s arriving at %s: %w", r.course, l.Name, s.Arrive.Format(time.RFC3339), err))
		return
	}
	first := ready // the LMS's first heartbeat in the lab
	r.mu.Lock()
	if r.launched[learner] {
		r.waits = append(r.waits, ready.Sub(s.Arrive))
		first = latest(ready, s.Arrive.Add(beatEvery)) // arriving was one
	} else {
		r.launchWaits = append(r.launchWaits, ready.Sub(s.Arrive))
	}
	r.launched[learner] = true
	r.mu.Unlock()
	for t := first; ; t = t.Add(beatEvery) {
		if t.After(s.Leave) {
			t = s.Leave
		}
		if _, err := r.reg.Heartbeat(ctx, id, t); err != nil {
			r.fail(fmt.Errorf("%s: heartbeat of %s: %w", r.course, l.Name, err))
			return
		}
		if !t.Before(s.Leave) {
			break
		}
	}
	if leaves(learner, session, r.pol.LeaveShare) {
		if _, err := r.reg.Leave(ctx, id, s.Leave); err != nil {
			r.fail(fmt.Errorf("%s: leave of %s: %w", r.course, l.Name, err))
			return
		}
		r.due(s.Leave.Add(r.pol.Rules.Default.LeaveGrace))
	}
	r.due(s.Leave.Add(r.pol.Rules.Default.IdleSuspendAfter))
	if r.pol.DeleteUnusedAfter > 0 {
		r.due(s.Leave.Add(r.pol.DeleteUnusedAfter))
	}
	r.arrive(learner, session+1)
}

// leaves reports whether the LMS reports the end of a learner's session: for share of them,
// spread evenly over learners and sessions, the same in every run.
func leaves(learner, session int, share float64) bool {
	return float64((learner*7919+session*104729)%1000) < 1000*share
}

// visit is a learner arriving, as the LMS does it through the API: launch-or-get, then wait
// until the lab runs. It returns the lab and when it was ready.
func (r *run) visit(ctx context.Context, learner string) (string, time.Time, error) {
	p, err := r.mgr.Start(ctx, lifecycle.LaunchRequest{Learner: learner, Course: r.course, Actor: lmsActor})
	switch {
	case errors.Is(err, labs.ErrExists):
		// the learner is back: that is activity, and a suspended lab is resumed
		if _, err := r.mgr.Heartbeat(ctx, p.Lab.ID); err != nil {
			return "", time.Time{}, err
		}
		ready, err := r.untilReady(ctx, p.Lab.ID)
		return p.Lab.ID, ready, err
	case err != nil:
		return "", time.Time{}, err
	}
	lab, err := r.mgr.Provision(ctx, p)
	return lab.ID, r.v.Now(), err
}

// untilReady resumes the lab if it is suspended and waits until its stack runs.
func (r *run) untilReady(ctx context.Context, id string) (time.Time, error) {
	giveUp, raced := r.v.Now().Add(lmsGiveUp), false
	for r.v.Now().Before(giveUp) {
		lab, err := r.reg.GetLab(ctx, id)
		if err != nil {
			return time.Time{}, err
		}
		switch lab.Status {
		case labs.Suspended:
			if _, err := r.mgr.Do(ctx, lifecycle.OpResume, id, lmsActor, false); err != nil && !errors.Is(err, cloud.ErrConflict) {
				return time.Time{}, err
			}
			continue
		case labs.Active:
			st, err := r.cloud.Get(ctx, lab.StackName, lab.StackID)
			if err != nil {
				return time.Time{}, err
			}
			if !strings.HasSuffix(st.Status, "_IN_PROGRESS") {
				return r.v.Now(), nil
			}
			// the registry says active, the cloud is suspending it: the suspend started
			// just before the learner came back; they wait for it, then for a resume
			if !raced {
				raced = true
				r.mu.Lock()
				r.row.ReturnsMidAction++
				r.mu.Unlock()
			}
		case labs.Launching, labs.Resuming, labs.Suspending:
		default:
			return time.Time{}, fmt.Errorf("lab %s is %s", id, lab.Status)
		}
		if err := r.v.Sleep(ctx, lmsPoll); err != nil {
			return time.Time{}, err
		}
	}
	return time.Time{}, fmt.Errorf("lab %s not running after %s", id, lmsGiveUp)
}

// due notes that a lab may be due for the suspender at t.
func (r *run) due(t time.Time) {
	if r.pol.Every == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	heap.Push(&r.dues, t)
}

// nextTick is the suspender's next run that can find something to do: the first multiple
// of its interval at or after the earliest due time (never before now, never twice at once).
func (r *run) nextTick() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.dues) == 0 {
		return time.Time{}, false
	}
	t := r.dues[0]
	if now := r.v.Now(); t.Before(now) {
		t = now
	}
	if c := t.Truncate(r.pol.Every); c.Before(t) {
		t = c.Add(r.pol.Every)
	}
	if !t.After(r.lastTick) {
		t = r.lastTick.Add(r.pol.Every)
	}
	return t, true
}

// tick is a run of the suspender: the reaper plans, the policy picks, the reaper executes
// (each action re-reads its lab first); every action is counted on the clock until done.
// A run that comes due while the previous one is still going is skipped, as the scheduler
// does.
func (r *run) tick(ctx context.Context) {
	now := r.v.Now()
	r.mu.Lock()
	r.lastTick = now
	for len(r.dues) > 0 && !r.dues[0].After(now) {
		heap.Pop(&r.dues)
	}
	busy := r.pending > 0
	r.mu.Unlock()
	if busy {
		r.due(now.Add(r.pol.Every))
		return
	}
	live := func(ctx context.Context) ([]labs.Lab, error) {
		return r.reg.ListLabs(ctx, labs.Filter{Statuses: labs.LiveStatuses()})
	}
	picked, more, err := r.pol.Pick(ctx, Round{Now: now, Plan: r.rp.PlanDue, Live: live})
	if err != nil {
		r.fail(err)
		return
	}
	if more {
		r.due(now.Add(r.pol.Every)) // the rest next time
	}
	r.deleteUnused(ctx, now)
	if len(picked) == 0 {
		return
	}
	plan := reaper.Plan{At: now, Actions: picked}
	r.mu.Lock()
	r.pending = len(picked)
	r.mu.Unlock()
	r.v.Add(len(picked)) // counted before Execute starts them: the clock waits for every one
	r.executes.Go(func() {
		if _, err := r.rp.Execute(ctx, plan); err != nil {
			r.fail(err)
			for range picked { // none was started
				r.applied(nil)
			}
		}
	})
}

// deleteUnused deletes the labs unused for DeleteUnusedAfter (hastexo's reaper).
func (r *run) deleteUnused(ctx context.Context, now time.Time) {
	if r.pol.DeleteUnusedAfter == 0 {
		return
	}
	live, _ := r.reg.ListLabs(ctx, labs.Filter{Statuses: []labs.Status{labs.Active, labs.Suspended}})
	for _, l := range live {
		if now.Sub(l.LastActivity()) >= r.pol.DeleteUnusedAfter {
			r.v.Go(func() {
				if _, err := r.mgr.Do(ctx, lifecycle.OpDelete, l.ID, "hastexo-reaper", true); err != nil {
					r.fail(fmt.Errorf("delete unused lab %s: %w", l.ID, err))
				}
			})
		}
	}
}

// counted is the reaper's Applier: the lifecycle's, counting each action off the clock when
// it is done.
type counted struct{ r *run }

func (c counted) Apply(ctx context.Context, a policy.Action, actor string) (bool, error) {
	done, err := c.r.mgr.Apply(ctx, a, actor)
	c.r.applied(err)
	return done, err
}

// applied counts an action of the suspender's run done.
func (r *run) applied(err error) {
	r.mu.Lock()
	r.pending--
	if err != nil {
		r.row.FailedActions++
	}
	r.mu.Unlock()
	r.v.Done()
}

// summarize fills the row's resume and launch waits.
func (r *run) summarize() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.row.Returns = len(r.waits)
	r.row.ResumeWaitP50, r.row.ResumeWaitP99, r.row.ResumeWaitMax = quantiles(r.waits)
	r.row.LaunchWaitP50, r.row.LaunchWaitP99, r.row.LaunchWaitMax = quantiles(r.launchWaits)
}

// quantiles are the median, the 99th percentile and the most of waits (sorted here), in
// seconds; zero for none.
func quantiles(waits []time.Duration) (p50, p99, most float64) {
	n := len(waits)
	if n == 0 {
		return 0, 0, 0
	}
	slices.Sort(waits)
	at := func(q float64) float64 { return waits[min(n-1, int(q*float64(n)))].Seconds() }
	return at(0.50), at(0.99), waits[n-1].Seconds()
}

func (r *run) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

func (r *run) failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// arrival is a learner's session to start.
type arrival struct {
	at               time.Time
	learner, session int
}

// arrivalHeap is a min-heap of arrivals, by time.
type arrivalHeap []arrival

func (h arrivalHeap) Len() int           { return len(h) }
func (h arrivalHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h arrivalHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *arrivalHeap) Push(x any)        { *h = append(*h, x.(arrival)) }
func (h *arrivalHeap) Pop() any {
	old := *h
	a := old[len(old)-1]
	*h = old[:len(old)-1]
	return a
}

// timeHeap is a min-heap of times.
type timeHeap []time.Time

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *timeHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
