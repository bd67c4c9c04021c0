package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/dev/syncbuffer"
)

// memLocker is an honest in-memory Locker: mutual exclusion over a map. Like a database
// call, an unlock with a cancelled context fails and releases nothing. lose takes a lock
// from its holder, as a dropped database connection does.
type memLocker struct {
	mu     sync.Mutex
	held   map[string]context.CancelCauseFunc // the held lock's end
	denied atomic.Int64
	fail   error // TryHold's error, when set
}

func newMemLocker() *memLocker { return &memLocker{held: map[string]context.CancelCauseFunc{}} }

// errLost is the cause memLocker gives a lost lock's held context.
var errLost = errors.New("lock lost")

func (m *memLocker) TryHold(ctx context.Context, key string) (context.Context, func(context.Context) error, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, nil, false, m.fail
	}
	if m.held[key] != nil {
		m.denied.Add(1)
		return nil, nil, false, nil
	}
	held, end := context.WithCancelCause(context.Background())
	m.held[key] = end
	var once sync.Once
	return held, func(ctx context.Context) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		once.Do(func() {
			m.mu.Lock()
			if held.Err() == nil { // not lost (and maybe taken by another) meanwhile
				delete(m.held, key)
			}
			m.mu.Unlock()
			end(nil)
		})
		return nil
	}, true, nil
}

// lose takes key's lock from its holder and leaves it free.
func (m *memLocker) lose(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := m.held[key]; end != nil {
		end(errLost)
		delete(m.held, key)
	}
}

func (m *memLocker) isHeld(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held[key] != nil
}

func testLogger(t *testing.T) (*slog.Logger, *syncbuffer.Buffer) {
	buf := &syncbuffer.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// concurrency counts runs in progress and remembers the most seen at once.
type concurrency struct {
	cur, max atomic.Int32
}

func (c *concurrency) enter() {
	n := c.cur.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (c *concurrency) leave() { c.cur.Add(-1) }

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv waits up to 5 s for ch.
func recv(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func start(t *testing.T, o Options) *Scheduler {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

func shutdown(t *testing.T, s *Scheduler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestJobRunsRepeatedlyAndNeverOverlapsItself(t *testing.T) {
	log, _ := testLogger(t)
	var c concurrency
	var runs atomic.Int32
	s := start(t, Options{Logger: log, Jobs: []Job{{
		Name:  "slow",
		Every: 10 * time.Millisecond,
		Run: func(context.Context) error {
			c.enter()
			defer c.leave()
			time.Sleep(40 * time.Millisecond) // four intervals
			runs.Add(1)
			return nil
		},
	}}})
	waitFor(t, "5 runs", func() bool { return runs.Load() >= 5 })
	shutdown(t, s)
	if m := c.max.Load(); m != 1 {
		t.Errorf("up to %d runs of the job at once, want 1", m)
	}

	// Shut down: nothing runs any more.
	after := runs.Load()
	time.Sleep(100 * time.Millisecond)
	if n := runs.Load(); n != after {
		t.Errorf("%d runs after Shutdown returned", n-after)
	}
}

func TestFirstRunComesRightAfterStart(t *testing.T) {
	log, _ := testLogger(t)
	ran := make(chan struct{}, 1)
	start(t, Options{Logger: log, Jobs: []Job{{
		Name:  "hourly",
		Every: time.Hour,
		Run:   signal(ran),
	}}})
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("an hourly job did not run after Start")
	}
}

// signal is a job that tells ran it ran (without waiting for anyone to listen).
func signal(ran chan<- struct{}) func(context.Context) error {
	return func(context.Context) error {
		select {
		case ran <- struct{}{}:
		default:
		}
		return nil
	}
}

func TestReplicasSharingALockerNeverRunAJobAtOnceAndTakeOver(t *testing.T) {
	locker := newMemLocker()
	var c concurrency
	var runs [2]atomic.Int32
	replica := func(i int, name string) *Scheduler {
		log, _ := testLogger(t)
		return start(t, Options{Logger: log, Locker: locker, Replica: name, Jobs: []Job{{
			Name:  "reap",
			Every: 20 * time.Millisecond,
			Run: func(context.Context) error {
				c.enter()
				defer c.leave()
				time.Sleep(30 * time.Millisecond) // longer than the interval
				runs[i].Add(1)
				return nil
			},
		}}})
	}
	a := replica(0, "a")
	replica(1, "b")

	waitFor(t, "10 runs", func() bool { return runs[0].Load()+runs[1].Load() >= 10 })
	if locker.denied.Load() == 0 {
		t.Fatal("the replicas never competed for the lock")
	}

	shutdown(t, a)
	b0 := runs[1].Load()
	waitFor(t, "b to run the job 5 more times", func() bool { return runs[1].Load() >= b0+5 })

	if m := c.max.Load(); m != 1 {
		t.Errorf("up to %d runs of the job at once across replicas, want 1", m)
	}
	t.Logf("runs: a %d, b %d; denied locks %d", runs[0].Load(), runs[1].Load(), locker.denied.Load())
}

func TestShutdownMidRunReleasesTheLockForAnotherReplica(t *testing.T) {
	locker := newMemLocker()
	log, _ := testLogger(t)
	started := make(chan struct{})
	var cancelledEarly atomic.Bool
	a := start(t, Options{Logger: log, Locker: locker, Replica: "a", Jobs: []Job{{
		Name:  "reap",
		Every: time.Hour,
		Run: func(ctx context.Context) error {
			close(started)
			time.Sleep(150 * time.Millisecond)
			cancelledEarly.Store(ctx.Err() != nil)
			return nil
		},
	}}})
	recv(t, "the run", started)
	if !locker.isHeld("reap") {
		t.Fatal("the lock is not held during the run")
	}
	// gocron cancels the job's own context at Shutdown and releases the lock with it: the
	// release must still happen, before Shutdown returns.
	shutdown(t, a)
	if locker.isHeld("reap") {
		t.Fatal("the lock is still held after Shutdown returned")
	}
	if cancelledEarly.Load() {
		t.Error("the run's context was cancelled during a graceful shutdown")
	}

	log2, _ := testLogger(t)
	ran := make(chan struct{}, 1)
	start(t, Options{Logger: log2, Locker: locker, Replica: "b", Jobs: []Job{{
		Name:  "reap",
		Every: 20 * time.Millisecond,
		Run:   signal(ran),
	}}})
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("replica b never ran the job after a shut down")
	}
}

func TestARunThatCannotTakeTheLockIsSkipped(t *testing.T) {
	locker := newMemLocker()
	_, unlock, ok, err := locker.TryHold(context.Background(), "reap") // another replica has it
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	log, _ := testLogger(t)
	var runs atomic.Int32
	start(t, Options{Logger: log, Locker: locker, Jobs: []Job{{
		Name:  "reap",
		Every: 10 * time.Millisecond,
		Run:   func(context.Context) error { runs.Add(1); return nil },
	}}})
	waitFor(t, "5 denied locks", func() bool { return locker.denied.Load() >= 5 })
	if n := runs.Load(); n != 0 {
		t.Fatalf("%d runs without the lock", n)
	}

	// The other replica lets go: the next tick runs it here.
	if err := unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a run", func() bool { return runs.Load() > 0 })
}

// A run whose lock is lost (its database connection dropped) is cancelled with the loss as
// the cause, and the lock, free again, goes to the next run.
func TestALostLockCancelsTheRun(t *testing.T) {
	locker := newMemLocker()
	log, buf := testLogger(t)
	started := make(chan struct{}, 1)
	causes := make(chan error, 1)
	var runs atomic.Int32
	start(t, Options{Logger: log, Locker: locker, Jobs: []Job{{
		Name:  "reap",
		Every: 20 * time.Millisecond,
		Run: func(ctx context.Context) error {
			if runs.Add(1) > 1 {
				return nil
			}
			started <- struct{}{}
			<-ctx.Done() // a run that acts until told to stop
			causes <- context.Cause(ctx)
			return ctx.Err()
		},
	}}})
	recv(t, "the run", started)
	locker.lose("reap")
	select {
	case cause := <-causes:
		if !errors.Is(cause, errLost) {
			t.Fatalf("the run's context ended with %v, want the lost lock", cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the run went on after its lock was lost")
	}
	waitFor(t, "the next run", func() bool { return runs.Load() > 1 })
	if !strings.Contains(buf.String(), `msg="job lock lost: run cancelled" job=reap`) {
		t.Error("the loss is not logged")
	}
}

func TestALockErrorSkipsTheRunAndIsLogged(t *testing.T) {
	locker := newMemLocker()
	locker.fail = errors.New("connection refused")
	log, buf := testLogger(t)
	var runs atomic.Int32
	start(t, Options{Logger: log, Locker: locker, Jobs: []Job{{
		Name:  "reap",
		Every: 10 * time.Millisecond,
		Run:   func(context.Context) error { runs.Add(1); return nil },
	}}})
	waitFor(t, "the lock failure in the log", func() bool {
		return strings.Contains(buf.String(), `msg="job run skipped: lock failed" job=reap err="scheduler: lock \"reap\": connection refused"`)
	})
	if n := runs.Load(); n != 0 {
		t.Fatalf("%d runs without the lock", n)
	}
}

func TestShutdownWaitsForARunningJob(t *testing.T) {
	log, _ := testLogger(t)
	started := make(chan struct{})
	var finished atomic.Bool
	var cancelledEarly atomic.Bool
	s := start(t, Options{Logger: log, Jobs: []Job{{
		Name:  "reap",
		Every: time.Hour,
		Run: func(ctx context.Context) error {
			close(started)
			time.Sleep(200 * time.Millisecond)
			cancelledEarly.Store(ctx.Err() != nil)
			finished.Store(true)
			return nil
		},
	}}})
	recv(t, "the run", started)
	shutdown(t, s)
	if !finished.Load() {
		t.Fatal("Shutdown returned before the running job finished")
	}
	if cancelledEarly.Load() {
		t.Error("the run's context was cancelled before Shutdown's expired")
	}
}

func TestShutdownCancelsRunsWhenItsContextExpires(t *testing.T) {
	log, buf := testLogger(t)
	started := make(chan struct{})
	cancelled := make(chan struct{})
	s := start(t, Options{Logger: log, Jobs: []Job{{
		Name:  "stuck",
		Every: time.Hour,
		Run: func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			close(cancelled)
			return ctx.Err()
		},
	}}})
	recv(t, "the run", started)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the run's context was not cancelled")
	}
	if !strings.Contains(buf.String(), `jobs=[stuck]`) {
		t.Error("the log does not name the job Shutdown gave up on")
	}
}

// A run's context ends at its job's Timeout.
func TestARunEndsAtItsTimeout(t *testing.T) {
	log, _ := testLogger(t)
	ended := make(chan error, 1)
	begun := time.Now()
	s := start(t, Options{Logger: log, Jobs: []Job{{
		Name: "bounded", Every: time.Hour, Timeout: 50 * time.Millisecond,
		Run: func(ctx context.Context) error {
			<-ctx.Done()
			ended <- ctx.Err()
			return ctx.Err()
		},
	}}})
	select {
	case err := <-ended:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the run's context ended with %v, want its deadline", err)
		}
		if took := time.Since(begun); took < 50*time.Millisecond {
			t.Errorf("the run's context ended after %v, before its timeout", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the run's context did not end at its timeout")
	}
	waitFor(t, "the run to end", func() bool { return s.States()[0].Running == 0 })
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("Check after a run that minded its timeout: %v", err)
	}
}

// A run that ignores its context goes on past its Timeout: once past the grace too, States
// and Check say it is stuck, for how long, and that it holds its lock; once it returns,
// they say so too.
func TestARunIgnoringItsTimeoutIsReportedStuck(t *testing.T) {
	log, _ := testLogger(t)
	locker := newMemLocker()
	started, release := make(chan struct{}), make(chan struct{})
	s := start(t, Options{Logger: log, Locker: locker, Grace: 50 * time.Millisecond, Jobs: []Job{
		{Name: "idle-job", Lock: "reaper", Every: time.Hour, Timeout: time.Hour,
			Run: func(context.Context) error { return nil }},
		{Name: "stubborn", Lock: "reaper", Every: time.Hour, Timeout: 50 * time.Millisecond,
			Run: func(context.Context) error {
				close(started)
				<-release // the context is not looked at: a Heat read with no deadline
				return nil
			}},
	}})
	t.Cleanup(func() { close(release) }) // before start's Shutdown
	recv(t, "the stubborn run", started)
	waitFor(t, "the run to be stuck", func() bool { return s.States()[1].Stuck })

	states := s.States()
	if states[0].Stuck || states[0].Job != "idle-job" {
		t.Errorf("the other job: %+v", states[0])
	}
	if st := states[1]; st.Job != "stubborn" || st.Running <= 100*time.Millisecond || st.Timeout != 50*time.Millisecond {
		t.Errorf("the stuck job: %+v; want running past its timeout and the grace (100ms)", st)
	}
	if !locker.isHeld("reaper") {
		t.Error("the stuck run's lock is not held")
	}
	err := s.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "job stubborn has run for ") ||
		!strings.Contains(err.Error(), "past its bound of 50ms") || strings.Contains(err.Error(), "idle-job") {
		t.Errorf("Check = %v; want the stuck job named, with how long it has run and its bound", err)
	}
}

type observation struct {
	job  string
	took time.Duration
	err  error
}

func TestObserveAndLogEveryRun(t *testing.T) {
	log, buf := testLogger(t)
	errBoom := errors.New("boom")
	var mu sync.Mutex
	got := map[string]observation{}
	start(t, Options{
		Logger:  log,
		Replica: "r1",
		Observe: func(job string, took time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			got[job] = observation{job, took, err}
		},
		Jobs: []Job{
			{Name: "fine", Every: time.Hour, Run: func(context.Context) error { time.Sleep(10 * time.Millisecond); return nil }},
			{Name: "failing", Every: time.Hour, Run: func(context.Context) error { return errBoom }},
			{Name: "panicky", Every: time.Hour, Run: func(context.Context) error { panic("nil map") }},
		},
	})
	waitFor(t, "3 observations", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 })

	mu.Lock()
	defer mu.Unlock()
	if o := got["fine"]; o.err != nil || o.took < 10*time.Millisecond {
		t.Errorf("fine: %+v", o)
	}
	if o := got["failing"]; !errors.Is(o.err, errBoom) {
		t.Errorf("failing: %+v", o)
	}
	if o := got["panicky"]; o.err == nil || !strings.Contains(o.err.Error(), "panicked: nil map") {
		t.Errorf("panicky: %+v", o)
	}
	logs := buf.String()
	for _, want := range []string{
		`level=WARN msg="job failed" replica=r1 job=failing took=`,
		`err=boom`,
		`level=ERROR msg="job panicked" replica=r1 job=panicky panic="nil map" stack=`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	run := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name string
		jobs []Job
		want string
	}{
		{"empty name", []Job{{Every: time.Second, Run: run}}, "job 0: the name is empty"},
		{"bad name", []Job{{Name: "reap all", Every: time.Second, Run: run}}, `job "reap all": a name is`},
		{"same name twice", []Job{{Name: "reap", Every: time.Second, Run: run}, {Name: "reap", Every: time.Minute, Run: run}}, `job "reap": the name is used twice`},
		{"zero interval", []Job{{Name: "reap", Run: run}}, `job "reap": the interval 0s must be more than zero`},
		{"negative interval", []Job{{Name: "reap", Every: -time.Second, Run: run}}, `the interval -1s must be more than zero`},
		{"no Run", []Job{{Name: "reap", Every: time.Second}}, `job "reap": Run is nil`},
		{"negative timeout", []Job{{Name: "reap", Every: time.Second, Timeout: -time.Second, Run: run}}, `job "reap": the timeout -1s is negative`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Options{Jobs: tc.jobs})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, %v; want an error with %q", s, err, tc.want)
			}
		})
	}
}

func TestReplicasCompeteForTheSameTicks(t *testing.T) {
	// Two replicas started half an interval apart run a quick job about once per interval
	// between them (their ticks are aligned), not once per interval each.
	const every = 100 * time.Millisecond
	locker := newMemLocker()
	var counting atomic.Bool
	var runs atomic.Int32
	job := Job{Name: "suspend", Every: every, Run: func(context.Context) error {
		if counting.Load() {
			runs.Add(1)
		}
		time.Sleep(25 * time.Millisecond)
		return nil
	}}
	log, _ := testLogger(t)
	start(t, Options{Logger: log, Locker: locker, Replica: "a", Jobs: []Job{job}})
	time.Sleep(every / 2)
	start(t, Options{Logger: log, Locker: locker, Replica: "b", Jobs: []Job{job}})
	time.Sleep(every / 2)

	counting.Store(true)
	time.Sleep(10 * every)
	counting.Store(false)
	n := runs.Load()
	t.Logf("%d runs in 10 intervals", n)
	// Aligned: about 10 (11 ticks at most in the window). Unaligned: about 20.
	if n < 5 || n > 14 {
		t.Errorf("%d runs in 10 intervals with 2 replicas, want about 10", n)
	}
}

func TestJobsSharingALockNeverRunAtOnce(t *testing.T) {
	log, _ := testLogger(t)
	locker := newMemLocker()
	var c concurrency
	var runs atomic.Int32
	job := func(name string) Job {
		return Job{Name: name, Lock: "reaper", Every: 10 * time.Millisecond, Run: func(context.Context) error {
			c.enter()
			defer c.leave()
			time.Sleep(15 * time.Millisecond)
			runs.Add(1)
			return nil
		}}
	}
	s := start(t, Options{Logger: log, Locker: locker, Jobs: []Job{job("suspend-idle"), job("reap"), job("reconcile")}})
	waitFor(t, "10 runs", func() bool { return runs.Load() >= 10 })
	shutdown(t, s)
	if m := c.max.Load(); m != 1 {
		t.Errorf("up to %d jobs sharing a lock ran at once, want 1", m)
	}
}

// A run cancelled by Shutdown still records its outcome (the caller closes the store right
// after): Shutdown waits for it to return.
func TestShutdownWaitsForCancelledRunsToReturn(t *testing.T) {
	log, _ := testLogger(t)
	started := make(chan struct{})
	var recorded atomic.Bool
	s := start(t, Options{Logger: log, Jobs: []Job{{
		Name:  "stuck",
		Every: time.Hour,
		Run: func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			time.Sleep(200 * time.Millisecond) // writing down what was cancelled
			recorded.Store(true)
			return ctx.Err()
		},
	}}})
	recv(t, "the run", started)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
	}
	if !recorded.Load() {
		t.Error("Shutdown returned before the cancelled run had returned")
	}
}

// Jobs sharing a lock tick at the same instants (their intervals are aligned): on one
// replica, the one that comes second waits for the first rather than skipping its tick, so
// none of them is starved (the reap, every 5 min, used to lose its tick to suspend-idle and
// launch-timeouts two times out of three).
func TestJobsSharingALockOnOneReplicaTakeTurns(t *testing.T) {
	log, _ := testLogger(t)
	locker := newMemLocker()
	var c concurrency
	runs := map[string]*atomic.Int32{}
	job := func(name string) Job {
		runs[name] = &atomic.Int32{}
		return Job{Name: name, Lock: "reaper", Every: 100 * time.Millisecond, Run: func(context.Context) error {
			c.enter()
			defer c.leave()
			time.Sleep(5 * time.Millisecond) // a pass with nothing to do
			runs[name].Add(1)
			return nil
		}}
	}
	s := start(t, Options{Logger: log, Locker: locker, Jobs: []Job{job("suspend-idle"), job("reap"), job("reconcile"), job("launch-timeouts")}})
	time.Sleep(1500 * time.Millisecond) // 15 ticks
	shutdown(t, s)
	for name, n := range runs {
		if n.Load() < 10 {
			t.Errorf("%s ran %d times in 15 ticks of 100 ms, want at least 10 (it lost its tick to the jobs sharing its lock)", name, n.Load())
		}
	}
	if m := c.max.Load(); m != 1 {
		t.Errorf("up to %d jobs sharing a lock ran at once, want 1", m)
	}
}
