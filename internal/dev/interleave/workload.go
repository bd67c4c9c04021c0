package interleave

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/clock"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/store"
)

// workload is the simulation's own goroutines: learners through the LMS, the chaos that
// kills replicas and takes things down, the cron reaper.
type workload struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWorkload starts the learners, the cron reaper and, with faults, the chaos, until end.
func (w *world) startWorkload(ctx context.Context, end time.Time) {
	ctx, cancel := context.WithCancel(ctx)
	w.work = &workload{cancel: cancel}
	for i := range w.cfg.Learners {
		w.work.wg.Go(func() { w.learner(ctx, i, end) })
	}
	if w.cfg.CronEvery > 0 {
		w.work.wg.Go(func() { w.cron(ctx) })
	}
	if w.cfg.Faults {
		w.work.wg.Go(func() { w.chaos(ctx, end) })
	}
}

func (w *world) stopWorkload() {
	w.work.cancel()
	w.work.wg.Wait()
}

// The LMS's pace: how often it beats for a learner at work, and how long sessions and the
// gaps between them are.
const (
	beatEvery              = 30 * time.Second
	sessionMin, sessionMax = 2 * time.Minute, 12 * time.Minute
	gapMin, gapMax         = 0, 8 * time.Minute
	// lmsGrain rounds the LMS's waits, so that its calls often come at the instant of a
	// reaper's tick (multiples of 15 s), where the interleavings worth trying are.
	lmsGrain = 5 * time.Second
)

// learner comes and goes until end: each session asks the LMS for the lab (launch-or-get),
// then the LMS beats every half minute and looks at the lab, asking again when it finds it
// suspended or gone; now and then the learner resets the lab (a delete, then a new one).
func (w *world) learner(ctx context.Context, i int, end time.Time) {
	name := fmt.Sprintf("learner%d", i)
	course := courses[i%len(courses)]
	who := "lms/" + name
	for {
		w.turns.wait(who, "plan")
		gap := w.turns.between(gapMin, gapMax).Truncate(lmsGrain)
		if !time.Now().Add(gap).Before(end) || clock.Sleep(ctx, gap) != nil {
			return
		}
		w.turns.wait(who, "arrive")
		leave := time.Now().Add(w.turns.between(sessionMin, sessionMax))
		lab := w.launchOrGet(name, course)
		w.present(name, lab)
		for time.Now().Before(leave) {
			if clock.Sleep(ctx, w.turns.between(beatEvery/2, beatEvery).Truncate(lmsGrain)) != nil {
				return
			}
			w.turns.wait(who, "beat")
			switch {
			case lab == "":
				lab = w.launchOrGet(name, course)
			case w.cfg.Faults && w.turns.chance(0.02):
				if code, _ := w.request(name, "DELETE", "/v1/labs/"+lab, ""); code == http.StatusAccepted {
					w.reset(lab)
					lab = w.launchOrGet(name, course)
				}
			default:
				lab = w.beat(name, course, lab)
			}
			w.present(name, lab)
		}
		if lab != "" && w.turns.chance(0.5) {
			w.leave(name, lab)
		}
		w.leaves(name)
	}
}

// leave is the LMS telling labplane that the learner closed the lab's page.
func (w *world) leave(name, lab string) {
	if code, _ := w.request(name, "POST", "/v1/labs/"+lab+"/leave", ""); code == http.StatusOK {
		w.left(lab)
	}
}

// beat sends a heartbeat and reads the lab as the LMS shows it; a lab found suspended or gone
// is asked for again. It returns the lab the learner has now.
func (w *world) beat(name, course, lab string) string {
	code, body := w.request(name, "POST", "/v1/labs/"+lab+"/heartbeat", "")
	switch code {
	case http.StatusOK:
		var v struct{ Status labs.Status }
		_ = json.Unmarshal(body, &v)
		w.answered(lab, v.Status)
	case http.StatusNotFound, http.StatusUnprocessableEntity:
		return w.launchOrGet(name, course)
	}
	code, body = w.request(name, "GET", "/v1/labs/"+lab, "")
	if code != http.StatusOK {
		return lab
	}
	var v struct{ Status labs.Status }
	_ = json.Unmarshal(body, &v)
	switch v.Status {
	case labs.Suspended, labs.Suspending, labs.Deleting, labs.Deleted, labs.Failed:
		return w.launchOrGet(name, course)
	}
	return lab
}

// launchOrGet is POST /v1/labs: the learner's lab, new or back. "" when it failed.
func (w *world) launchOrGet(name, course string) string {
	code, body := w.request(name, "POST", "/v1/labs", fmt.Sprintf(`{"learner": %q, "course": %q}`, name, course))
	if code != http.StatusOK && code != http.StatusAccepted {
		return ""
	}
	var v struct {
		ID     string
		Status labs.Status
	}
	_ = json.Unmarshal(body, &v)
	w.launchAnswered(name, course, v.ID)
	w.answered(v.ID, v.Status)
	return v.ID
}

// request is the LMS calling a replica's API, one drawn from those alive; 0 when none is,
// or when the replica died before answering.
func (w *world) request(learner, method, path, body string) (int, []byte) {
	w.mu.Lock()
	var live []*process
	for _, p := range w.procs {
		if p.handler != nil {
			live = append(live, p)
		}
	}
	w.mu.Unlock()
	if len(live) == 0 {
		return 0, nil
	}
	slices.SortFunc(live, func(a, b *process) int { return strings.Compare(a.name, b.name) })
	p := live[w.turns.intn(len(live))]
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(withActor(context.Background(), "lms/"+learner), method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer lms")
	answered := false
	done := make(chan struct{})
	go func() { // the replica's goroutine: it ends with the replica, the learner does not
		defer close(done)
		p.handler.ServeHTTP(rec, req)
		answered = true
	}()
	<-done
	if !answered {
		return 0, nil
	}
	return rec.Code, rec.Body.Bytes()
}

// cron runs `labplane reap --once --yes` as a process of its own every CronEvery, half an
// interval after the replicas' aligned ticks: as the CLI does, it waits for the reaper's
// lock (up to reapWait, --wait's default, then gives up), then plans and executes.
func (w *world) cron(ctx context.Context) {
	const reapWait = 10 * time.Minute
	every := w.cfg.CronEvery
	for n := 1; ; n++ {
		next := time.Now().Truncate(every).Add(every + every/2)
		if clock.Sleep(ctx, time.Until(next)) != nil {
			return
		}
		w.turns.wait("cron", "start")
		name := fmt.Sprintf("cron#%d", n)
		p := w.open(name, "reaper")
		w.mu.Lock()
		w.procs[name] = p
		w.mu.Unlock()
		done := make(chan struct{})
		go func() { // the process: it may be killed half-way
			defer close(done)
			ctx := withActor(ctx, "reap")
			wctx, cancel := context.WithTimeout(ctx, reapWait)
			defer cancel()
			for _, c := range w.clouds { // every cloud's lock, in order, as reap --once takes them
				unlock, err := store.Waiter{Locks: p.reg}.Lock(wctx, reaper.LockKey(c.name))
				if err != nil {
					return
				}
				defer unlock(context.WithoutCancel(ctx))
			}
			cancel()
			key := name + " reap"
			w.passStarts(key)
			defer w.passEnds(key)
			plan, err := p.reaper.Plan(ctx)
			if err == nil {
				_, _ = p.reaper.Execute(ctx, plan)
			}
		}()
		<-done
		w.mu.Lock()
		_, alive := w.procs[name]
		delete(w.procs, name)
		w.mu.Unlock()
		if alive {
			p.stop()
		}
	}
}

// chaos, with faults, strikes every few minutes until end: kills a replica (restarted a
// little later) or the cron run, takes the registry or a cloud down for a while, restarts a
// cloud's engine.
func (w *world) chaos(ctx context.Context, end time.Time) {
	for {
		if clock.Sleep(ctx, w.turns.between(time.Minute, 6*time.Minute)) != nil || !time.Now().Before(end) {
			return
		}
		w.turns.wait("chaos", "strike")
		w.mu.Lock()
		w.lastFault = time.Now()
		var names []string
		for n := range w.procs {
			names = append(names, n)
		}
		w.mu.Unlock()
		slices.Sort(names)
		switch w.turns.intn(4) {
		case 0:
			if len(names) == 0 {
				continue
			}
			victim := names[w.turns.intn(len(names))]
			w.kill(victim)
			if replica, _, _ := strings.Cut(victim, "#"); !strings.HasPrefix(replica, "cron") {
				after := w.turns.between(10*time.Second, 3*time.Minute)
				w.work.wg.Go(func() {
					_ = clock.Sleep(context.Background(), after) // restarted even after the workload
					w.turns.wait("chaos", "restart "+replica)
					w.startReplica(replica)
				})
			}
		case 1:
			d := w.turns.between(10*time.Second, 2*time.Minute)
			w.turns.note("fault: the registry is down for %s", d)
			w.setDown(func() { w.dbDown = true }, func() { w.dbDown = false }, d)
		case 2:
			c := w.clouds[w.turns.intn(len(w.clouds))]
			d := w.turns.between(30*time.Second, 4*time.Minute)
			w.turns.note("fault: cloud %s is down for %s", c.name, d)
			w.setDown(func() { c.down = true }, func() { c.down = false }, d)
		case 3:
			c := w.clouds[w.turns.intn(len(w.clouds))]
			w.turns.note("fault: cloud %s's engine restarts", c.name)
			c.fake.Restart()
		}
	}
}

// setDown applies a fault now and lifts it after d.
func (w *world) setDown(apply, lift func(), d time.Duration) {
	w.mu.Lock()
	apply()
	w.mu.Unlock()
	w.work.wg.Go(func() {
		_ = clock.Sleep(context.Background(), d)
		w.turns.wait("chaos", "heal")
		w.mu.Lock()
		lift()
		w.lastFault = time.Now()
		w.mu.Unlock()
	})
}
