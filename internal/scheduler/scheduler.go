// Package scheduler runs labplane's periodic jobs (suspend idle labs, reap, reconcile, time
// out launches) with gocron, on any number of replicas sharing one store:
//
//   - Each job is a gocron DurationJob in singleton mode (LimitModeReschedule): a run that
//     comes due while the previous one is still going is skipped, never queued, so a job
//     never overlaps itself on a replica.
//   - With a Locker, gocron's distributed locker takes the lock named after the job before
//     each run, holds it for the run and releases it after. If the lock is lost meanwhile
//     (its database connection failed), the run's context is cancelled. A replica that cannot take it
//     (another replica is running the job, or the store failed) skips that run and tries
//     again at the next tick. So a job runs on one replica at a time, and when a replica
//     goes away the others keep running it. Jobs of one replica sharing a lock key take
//     turns instead: one that comes due while another holds the key here waits for it.
//   - Runs are aligned on multiples of the job's interval (on every replica alike), so the
//     replicas compete for the same ticks instead of each running the job once per
//     interval at its own phase. Each job also runs once right after Start, so a fresh
//     replica does not wait a whole interval.
//   - Each run is bounded: its context ends at the job's Timeout. A run still going past its
//     Timeout and the grace a run gets to return once its context has ended ignores its
//     context; it holds its lock, and so the jobs sharing it, until it returns. It is
//     reported as stuck (States, Check: /readyz and the metrics) rather than left to show
//     only as one skipped tick after another.
//   - Shutdown stops scheduling and waits for the runs in progress (and the release of
//     their locks); their context is cancelled only if Shutdown's context expires first,
//     and then Shutdown still waits, within the grace, for the cancelled runs to return.
package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
)

// Job is one periodic job.
type Job struct {
	// Name identifies the job in logs and metrics.
	Name string
	// Lock is the key of its lock (default: Name). Jobs sharing a key never run at the same
	// time, on any replica: the reaper's jobs share one, so two of them never act on the same
	// lab at once.
	Lock string
	// Every is the interval between runs.
	Every time.Duration
	// Timeout bounds each run: its context ends after it (default DefaultTimeout).
	Timeout time.Duration
	// Run does the work. ctx ends at Timeout, when Shutdown gives up waiting, and when the
	// job's lock is lost during the run (context.Cause says which).
	Run func(ctx context.Context) error
}

// Locker is a lock shared by all replicas (the store implements it on PostgreSQL advisory
// locks and on SQLite file locks). TryHold does not wait: ok is false when another holder
// has the lock. held is done once the lock is released or lost (its PostgreSQL connection
// failed): a run whose lock is lost is cancelled, as another replica may take it.
type Locker interface {
	TryHold(ctx context.Context, key string) (held context.Context, unlock func(context.Context) error, ok bool, err error)
}

// Observer is told of every finished run (for metrics). err is the run's error, a panic
// included.
type Observer func(job string, took time.Duration, err error)

// Options configure a Scheduler.
type Options struct {
	Jobs []Job
	// Locker, if set, makes each job run on one replica at a time. Nil: a single process.
	Locker Locker
	// Observe, if set, is told of every run.
	Observe Observer
	// Logger receives key/value logs. Default: slog.Default().
	Logger *slog.Logger
	// Replica names this process in logs.
	Replica string
	// Grace is how long a run whose context has ended (at its Timeout, or cancelled by
	// Shutdown) may take to return (default DefaultGrace). A run still going after its
	// Timeout and the Grace is stuck; Shutdown stops waiting for a cancelled run after it.
	Grace time.Duration
}

// Defaults of Job.Timeout and Options.Grace.
const (
	// DefaultTimeout bounds a run of a job that sets no Timeout (the reaper's jobs set the
	// reaper's pass timeout).
	DefaultTimeout = 10 * time.Minute
	// DefaultGrace: a cancelled reaper action records its outcome in at most 30 s.
	DefaultGrace = 40 * time.Second
)

// namePattern is what a job name may be: it is the lock key (the store puts it in a file
// name on SQLite) and a metric label.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$`)

const (
	// unlockTimeout bounds the release of a job's lock after its run.
	unlockTimeout = 30 * time.Second
	// gocronStopTimeout is how long gocron's own shutdown waits for runs. gocron polls in a
	// busy loop while it waits, so it is kept short; Shutdown waits for runs itself.
	gocronStopTimeout = 50 * time.Millisecond
)

var (
	// errHeld: another replica holds the job's lock; this replica skips the run.
	errHeld = errors.New("scheduler: the job's lock is held by another replica")
	// errClosed: Shutdown was called; no new run starts.
	errClosed = errors.New("scheduler: shutting down")
)

// Scheduler runs jobs.
type Scheduler struct {
	gc      gocron.Scheduler
	jobs    []gocron.Job
	log     *slog.Logger
	observe Observer
	grace   time.Duration
	order   []string                 // the jobs' names, as given
	timeout map[string]time.Duration // each job's Timeout

	// runCtx is every run's context; cancelRun is called when Shutdown gives up waiting
	// (or after it is done waiting).
	runCtx    context.Context
	cancelRun context.CancelFunc

	// Activity: runs in progress and locks held. Shutdown sets closed (nothing new starts)
	// and waits until busy is empty.
	mu      sync.Mutex
	started bool
	closed  bool
	busy    map[string]int
	idle    chan struct{}        // closed once closed is set and busy is empty
	running map[string]time.Time // the runs in progress: when each started, by job
	// held is, per job running under its lock, the lock's held context (Locker.TryHold).
	held map[string]context.Context
}

// New validates o and sets up the jobs; nothing runs before Start.
func New(o Options) (*Scheduler, error) {
	seen := map[string]bool{}
	for i, j := range o.Jobs {
		switch {
		case j.Name == "":
			return nil, fmt.Errorf("scheduler: job %d: the name is empty", i)
		case !namePattern.MatchString(j.Name):
			return nil, fmt.Errorf("scheduler: job %q: a name is 1 to 100 letters, digits, '.', '_', ':' or '-', starting with a letter or a digit", j.Name)
		case seen[j.Name]:
			return nil, fmt.Errorf("scheduler: job %q: the name is used twice", j.Name)
		case j.Every <= 0:
			return nil, fmt.Errorf("scheduler: job %q: the interval %s must be more than zero", j.Name, j.Every)
		case j.Run == nil:
			return nil, fmt.Errorf("scheduler: job %q: Run is nil", j.Name)
		case j.Lock != "" && !namePattern.MatchString(j.Lock):
			return nil, fmt.Errorf("scheduler: job %q: lock key %q: 1 to 100 letters, digits, '.', '_', ':' or '-'", j.Name, j.Lock)
		case j.Timeout < 0:
			return nil, fmt.Errorf("scheduler: job %q: the timeout %s is negative", j.Name, j.Timeout)
		}
		seen[j.Name] = true
	}

	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.Replica != "" {
		log = log.With("replica", o.Replica)
	}
	s := &Scheduler{log: log, observe: o.Observe, grace: cmp.Or(o.Grace, DefaultGrace), timeout: map[string]time.Duration{},
		busy: map[string]int{}, idle: make(chan struct{}), running: map[string]time.Time{}, held: map[string]context.Context{}}
	for _, j := range o.Jobs {
		s.order = append(s.order, j.Name)
		s.timeout[j.Name] = cmp.Or(j.Timeout, DefaultTimeout)
	}
	s.runCtx, s.cancelRun = context.WithCancel(context.Background())

	opts := []gocron.SchedulerOption{
		gocron.WithLogger(gocronLogger{log}),
		gocron.WithStopTimeout(gocronStopTimeout),
		gocron.WithMonitor(monitor{log}),
	}
	if o.Locker != nil {
		keys := make(map[string]string, len(o.Jobs))
		for _, j := range o.Jobs {
			keys[j.Name] = cmp.Or(j.Lock, j.Name)
		}
		turns := map[string]chan struct{}{}
		for _, k := range keys {
			turns[k] = make(chan struct{}, 1)
		}
		opts = append(opts, gocron.WithDistributedLocker(&distLocker{s: s, l: o.Locker, keys: keys, turns: turns}))
	}
	gc, err := gocron.NewScheduler(opts...)
	if err != nil {
		s.cancelRun()
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	s.gc = gc

	now := time.Now()
	for _, j := range o.Jobs {
		gj, err := gc.NewJob(
			gocron.DurationJob(j.Every),
			gocron.NewTask(s.task(j)),
			gocron.WithName(j.Name),
			gocron.WithSingletonMode(gocron.LimitModeReschedule),
			// Every replica computes the same ticks: multiples of Every. gocron moves a start
			// in the past forward by whole intervals when the scheduler starts.
			gocron.WithStartAt(gocron.WithStartDateTimePast(now.Truncate(j.Every))),
			gocron.WithEventListeners(gocron.AfterLockError(s.lockError)),
		)
		if err != nil {
			_ = gc.Shutdown()
			s.cancelRun()
			return nil, fmt.Errorf("scheduler: job %q: %w", j.Name, err)
		}
		s.jobs = append(s.jobs, gj)
	}
	return s, nil
}

// Start starts scheduling, and runs every job once at once (still through the job's lock
// and its singleton mode). It does nothing after the first call or after Shutdown.
func (s *Scheduler) Start() {
	s.mu.Lock()
	skip := s.started || s.closed
	s.started = true
	s.mu.Unlock()
	if skip {
		return
	}
	s.gc.Start()
	for _, j := range s.jobs {
		if err := j.RunNow(); err != nil {
			s.log.Warn("job first run not started", "job", j.Name(), "err", err)
		}
	}
	s.log.Info("scheduler started", "jobs", len(s.jobs))
}

// Shutdown stops scheduling and waits for the runs in progress to finish and release their
// locks. If ctx expires first, it cancels the runs' context, waits for them to return (at
// most the grace: a cancelled run still records its outcome) and returns ctx's error.
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		if len(s.busy) == 0 {
			close(s.idle)
		}
	}
	s.mu.Unlock()

	gcErr := s.gc.ShutdownWithContext(ctx)
	if errors.Is(gcErr, gocron.ErrStopJobsTimedOut) || errors.Is(gcErr, gocron.ErrStopExecutorTimedOut) ||
		errors.Is(gcErr, ctx.Err()) {
		gcErr = nil // runs still going: waited for below
	}

	select {
	case <-s.idle:
		s.cancelRun()
		if gcErr != nil {
			return fmt.Errorf("scheduler: shutdown: %w", gcErr)
		}
		s.log.Info("scheduler stopped")
		return nil
	case <-ctx.Done():
		s.cancelRun()
		s.log.Warn("scheduler shutdown gave up waiting: runs cancelled", "jobs", s.busyJobs(), "err", ctx.Err())
		// A cancelled run still records what it did (the caller closes the store next): wait
		// for it to return, within a bound, so that a run ignoring its context cannot keep
		// the process from exiting.
		select {
		case <-s.idle:
		case <-time.After(s.grace):
			s.log.Error("scheduler shutdown: cancelled runs did not return", "jobs", s.busyJobs(), "waited", s.grace)
		}
		return ctx.Err()
	}
}

// enter records an activity of job (a run, a lock held) unless Shutdown was called.
func (s *Scheduler) enter(job string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.busy[job]++
	return true
}

// leave ends an activity that enter recorded.
func (s *Scheduler) leave(job string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[job]--; s.busy[job] <= 0 {
		delete(s.busy, job)
	}
	if s.closed && len(s.busy) == 0 {
		close(s.idle)
	}
}

func (s *Scheduler) busyJobs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.busy))
	for n := range s.busy {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// task is what gocron runs for j: the run with the scheduler's context, panics turned into
// errors, timed, logged and observed. A run of j already going in this process makes it a
// skip: gocron's singleton mode alone does not hold (v2.21.2 can start two singleton runners
// for one job when its first run, RunNow, and its first tick arrive together: the executor
// looks the runner up and stores a new one in two steps, from a goroutine per request).
func (s *Scheduler) task(j Job) func() error {
	return func() error {
		if !s.enter(j.Name) {
			return nil // Shutdown was called between the tick and now: not a run
		}
		defer s.leave(j.Name)
		start := time.Now()
		s.mu.Lock()
		_, going := s.running[j.Name]
		if !going {
			s.running[j.Name] = start
		}
		s.mu.Unlock()
		if going {
			s.log.Info("job run skipped: the previous run is still going", "job", j.Name)
			return nil
		}
		err := s.run(j)
		took := time.Since(start)
		s.mu.Lock()
		delete(s.running, j.Name)
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("job failed", "job", j.Name, "took", took, "err", err)
		} else {
			s.log.Debug("job done", "job", j.Name, "took", took)
		}
		if s.observe != nil {
			s.observe(j.Name, took, err)
		}
		return err
	}
}

func (s *Scheduler) run(j Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("job panicked", "job", j.Name, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("job %s panicked: %v", j.Name, p)
		}
	}()
	bounded, cancelBound := context.WithTimeout(s.runCtx, s.timeout[j.Name])
	defer cancelBound()
	ctx, cancel := context.WithCancelCause(bounded)
	defer cancel(nil)
	if held := s.heldBy(j.Name); held != nil {
		// a lost lock stops the run: another replica may be running the job now
		stop := context.AfterFunc(held, func() {
			s.log.Error("job lock lost: run cancelled", "job", j.Name, "err", context.Cause(held))
			cancel(context.Cause(held))
		})
		defer stop()
	}
	return j.Run(ctx)
}

// heldBy is the held context of the lock job runs under, nil without a Locker.
func (s *Scheduler) heldBy(job string) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[job]
}

// setHeld records (or, nil, forgets) the held context of job's lock.
func (s *Scheduler) setHeld(job string, held context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if held == nil {
		delete(s.held, job)
		return
	}
	s.held[job] = held
}

// JobState is what a job is doing on this replica.
type JobState struct {
	Job string
	// Running is how long its run in progress has gone on; 0: no run in progress.
	Running time.Duration
	// Timeout is the job's bound on a run.
	Timeout time.Duration
	// Stuck: the run has gone on past its Timeout and the grace: it ignores its context, and
	// it holds its lock (the reaper's: every suspend, on every cloud) until it returns.
	Stuck bool
}

// States returns every job's state now, in the order the jobs were given.
func (s *Scheduler) States() []JobState {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JobState, len(s.order))
	for i, name := range s.order {
		st := JobState{Job: name, Timeout: s.timeout[name]}
		if since, ok := s.running[name]; ok {
			st.Running = now.Sub(since)
			st.Stuck = st.Running > st.Timeout+s.grace
		}
		out[i] = st
	}
	return out
}

// Check is a readiness check: an error naming every stuck run, how long it has gone on and
// its bound; nil when there is none. It tells nothing of what the run is doing (its error,
// if it ever returns, is logged).
func (s *Scheduler) Check(context.Context) error {
	var stuck []string
	for _, st := range s.States() {
		if st.Stuck {
			stuck = append(stuck, fmt.Sprintf("job %s has run for %s, past its bound of %s", st.Job,
				st.Running.Round(time.Millisecond), st.Timeout))
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	return fmt.Errorf("stuck: %s", strings.Join(stuck, "; "))
}

// lockError is gocron's AfterLockError listener: the run was skipped on this replica.
func (s *Scheduler) lockError(_ uuid.UUID, job string, err error) {
	switch {
	case errors.Is(err, errHeld):
		s.log.Debug("job run skipped: another replica has it", "job", job)
	case errors.Is(err, errClosed), errors.Is(err, context.Canceled):
		s.log.Debug("job run skipped: shutting down", "job", job)
	default:
		s.log.Warn("job run skipped: lock failed", "job", job, "err", err)
	}
}

// distLocker adapts Locker to gocron.Locker. gocron calls Lock with the job's name before
// each run and skips the run if Lock returns an error; it calls Unlock after the run with
// the job's context, which Shutdown has already cancelled: the release must not use it.
//
// The jobs of this replica that share a lock key take turns through a local semaphore
// before trying the shared lock: their intervals are aligned, so they come due at the same
// instants, and the one that comes second must wait for the first, not skip its tick (the
// reap would lose most of its ticks to suspend-idle and launch-timeouts). Only another
// replica holding the lock makes a run skip.
type distLocker struct {
	s     *Scheduler
	l     Locker
	keys  map[string]string        // job name -> lock key
	turns map[string]chan struct{} // lock key -> this replica's turn (a one-slot semaphore)
}

func (d *distLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	if !d.s.enter(key) {
		return nil, errClosed
	}
	turn := d.turns[d.keys[key]]
	select {
	case turn <- struct{}{}:
	case <-ctx.Done(): // Shutdown
		d.s.leave(key)
		return nil, ctx.Err()
	}
	held, unlock, ok, err := d.l.TryHold(ctx, d.keys[key])
	if err != nil || !ok {
		<-turn
		d.s.leave(key)
		if err != nil {
			return nil, fmt.Errorf("scheduler: lock %q: %w", key, err)
		}
		return nil, errHeld
	}
	// gocron runs the job right after Lock, on this goroutine, and one run of a job at a time
	d.s.setHeld(key, held)
	return &jobLock{d: d, key: key, unlock: unlock, turn: turn}, nil
}

type jobLock struct {
	d      *distLocker
	key    string
	unlock func(context.Context) error
	turn   chan struct{}
	once   sync.Once
	err    error
}

func (l *jobLock) Unlock(ctx context.Context) error {
	l.once.Do(func() {
		defer l.d.s.leave(l.key)
		defer func() { <-l.turn }() // after the shared lock is released
		l.d.s.setHeld(l.key, nil)
		if l.unlock == nil {
			return
		}
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		if l.err = l.unlock(uctx); l.err != nil {
			// gocron ignores Unlock's error.
			l.d.s.log.Warn("job unlock failed", "job", l.key, "err", l.err)
		}
	})
	return l.err
}

// monitor is gocron's run counter; the scheduler uses it to log runs skipped because the
// previous one was still going (lock failures are logged by lockError; finished runs by
// task).
type monitor struct{ log *slog.Logger }

func (m monitor) IncrementJob(_ uuid.UUID, name string, _ []string, status gocron.JobStatus) {
	if status == gocron.SingletonRescheduled {
		m.log.Info("job run skipped: the previous run is still going", "job", name)
	}
}

func (monitor) RecordJobTiming(time.Time, time.Time, uuid.UUID, string, []string) {}

// gocronLogger passes gocron's own logs on, its lifecycle chatter at debug level.
type gocronLogger struct{ log *slog.Logger }

func (g gocronLogger) Debug(msg string, args ...any) { g.log.Debug(msg, args...) }
func (g gocronLogger) Info(msg string, args ...any)  { g.log.Debug(msg, args...) }
func (g gocronLogger) Warn(msg string, args ...any)  { g.log.Warn(msg, args...) }
func (g gocronLogger) Error(msg string, args ...any) { g.log.Error(msg, args...) }
