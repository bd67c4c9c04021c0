package sim_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cost"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/sim"
	"github.com/labplane/labplane/internal/store"
)

func TestMain(m *testing.M) {
	debug.SetGCPercent(400) // as `labplane sim` does: a month of garbage, collected less often
	os.Exit(m.Run())
}

// TestSimulation runs the month (1,000 steady learners, a class of 300; labplane's
// defaults, hastexo-xblock's, always-on) and checks the goal: labplane bills at most 1.05
// lab-hours per hour used on both traces, always-on many times that; the cost report over
// the registry the simulation leaves behind agrees with it.
func TestSimulation(t *testing.T) {
	if testing.Short() {
		t.Skip("a simulated month of 1,300 learners under three policies takes about a minute and a half")
	}
	c := sim.Default()
	c.DB = filepath.Join(t.TempDir(), "sim.db")
	res, err := sim.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("simulated in %s", res.Elapsed.Round(time.Second))
	rows := map[string]sim.Row{}
	for _, r := range res.Rows {
		rows[r.Policy+"/"+r.Trace] = r
		t.Logf("%-9s %-6s billed %9.1f h  used %8.1f h  ratio %6.3f  (report: billed %9.1f h)  resume wait p50 %.2f s p99 %.2f s max %.2f s",
			r.Policy, r.Trace, r.BilledHours, r.UsedHours, r.Ratio, r.ReportBilledHours, r.ResumeWaitP50, r.ResumeWaitP99, r.ResumeWaitMax)
		if r.FailedActions != 0 {
			t.Errorf("%s/%s: %d actions failed", r.Policy, r.Trace, r.FailedActions)
		}
		// the report, from the audit trail, leaves out only the seconds each resume takes
		if gap := r.BilledHours - r.ReportBilledHours; gap < -1e-6 || gap > 0.01*r.BilledHours {
			t.Errorf("%s/%s: the report bills %.1f h, the cloud metered %.1f h", r.Policy, r.Trace, r.ReportBilledHours, r.BilledHours)
		}
	}
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6", len(rows))
	}
	for _, trace := range []string{"steady", "class"} {
		lp, ao := rows["labplane/"+trace], rows["always-on/"+trace]
		if lp.Ratio > 1.05 || lp.Ratio < 1 {
			t.Errorf("labplane on %s: billed/used %.3f, the goal is at most 1.05", trace, lp.Ratio)
		}
		if ao.Ratio < 20 {
			t.Errorf("always-on on %s: billed/used %.1f, want it far above labplane's", trace, ao.Ratio)
		}
		if math.Abs(lp.UsedHours-ao.UsedHours) > 0.001*ao.UsedHours {
			t.Errorf("%s: the same learners used %.1f h under labplane, %.1f h always on", trace, lp.UsedHours, ao.UsedHours)
		}
		if lp.Returns == 0 || lp.ResumeWaitP50 < sim.LabStack.Resume.Seconds() || lp.ResumeWaitP99 > 60 {
			t.Errorf("labplane on %s: %d returns, resume wait p50 %.2f s, p99 %.2f s", trace, lp.Returns, lp.ResumeWaitP50, lp.ResumeWaitP99)
		}
	}
	if h := rows["hastexo/class"]; h.Ratio < rows["labplane/class"].Ratio+0.2 {
		t.Errorf("a class leaving at once under hastexo-xblock's 4 suspends a minute: ratio %.3f, want well above labplane's", h.Ratio)
	}
	checkLeftBehind(t, c.DB, res)
}

// checkLeftBehind reads the registry the simulation left, as `labplane cost report` does.
func checkLeftBehind(t *testing.T, path string, res sim.Result) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.SQLite, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	live, err := st.ListLabs(ctx, labs.Filter{Statuses: labs.LiveStatuses()})
	if err != nil || len(live) != 0 {
		t.Errorf("%d labs still live after the month (%v): the simulation deletes them", len(live), err)
	}
	hs, err := cost.Load(ctx, st, res.Start, res.End)
	if err != nil {
		t.Fatal(err)
	}
	report := cost.Compute(hs, cost.Options{Since: res.Start, Until: res.End, By: cost.ByCourse})
	if len(report.Notes) != 0 {
		t.Errorf("the simulation's audit trails should be complete and in order: %q", report.Notes[:min(5, len(report.Notes))])
	}
	for _, r := range res.Rows {
		var g *cost.Group
		for i := range report.Groups {
			if report.Groups[i].Key == sim.Course(r.Trace, r.Policy) {
				g = &report.Groups[i]
			}
		}
		if g == nil || math.Abs(g.Used-r.UsedHours) > 1e-6 || math.Abs(g.Billed-r.ReportBilledHours) > 1e-6 || g.Labs != r.Labs {
			t.Errorf("%s/%s: the report over the registry left behind says %+v; the simulation %+v", r.Policy, r.Trace, g, r)
		}
	}
	if _, err := sim.Run(ctx, sim.Config{DB: path}); err == nil {
		t.Error("a simulation must not write into an existing file")
	}
}

// TestHastexoDeletesUnusedLabs: under hastexo-xblock's defaults a lab unused for 14 days is
// deleted, and the learner coming back waits for a new one; under labplane's, for a resume.
// The waits are the latencies the simulation is given: the lab of stand-ins' by default, the
// lab of servers' when asked.
func TestHastexoDeletesUnusedLabs(t *testing.T) {
	for name, lat := range map[string]sim.Latencies{"default": {}, "servers": sim.ServersStack} {
		t.Run(name, func(t *testing.T) {
			want := lat
			if want == (sim.Latencies{}) {
				want = sim.LabStack
			}
			hastexoDeletesUnusedLabs(t, lat, want)
		})
	}
}

func hastexoDeletesUnusedLabs(t *testing.T, given, lat sim.Latencies) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	day := func(d int, h int) time.Time { return start.Add(time.Duration(d*24+h) * time.Hour) }
	tr := sim.Trace{Name: "gap", Learners: []sim.Learner{{Name: "ann", Sessions: []sim.Session{
		{Arrive: day(0, 9), Leave: day(0, 10)},
		{Arrive: day(1, 9), Leave: day(1, 10)},
		{Arrive: day(20, 9), Leave: day(20, 10)},
	}}}}
	path := filepath.Join(t.TempDir(), "gap.db")
	res, err := sim.Run(context.Background(), sim.Config{Start: start, Days: 30, Traces: []sim.Trace{tr},
		Policies: []sim.Policy{sim.Hastexo(), sim.Labplane()}, DB: path, Latencies: given})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.SQLite, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, r := range res.Rows {
		ls, err := st.ListLabs(ctx, labs.Filter{Course: sim.Course(r.Trace, r.Policy)})
		if err != nil {
			t.Fatal(err)
		}
		want, wait := 1, lat.Resume // labplane keeps the lab suspended
		if r.Policy == "hastexo" {
			want, wait = 2, lat.Create // deleted 14 days after day 1, launched again on day 20
		}
		if len(ls) != want || r.Returns != 2 || r.ResumeWaitMax != wait.Seconds() {
			t.Errorf("%s: %d labs, %d returns, longest wait %.2f s; want %d labs, a longest wait of %.2f s",
				r.Policy, len(ls), r.Returns, r.ResumeWaitMax, want, wait.Seconds())
		}
		if r.Policy == "hastexo" && len(ls) == 2 {
			if d := ls[0].DeletedAt.Sub(day(1, 10)); d < 14*24*time.Hour || d > 14*24*time.Hour+2*time.Minute {
				t.Errorf("the first lab was deleted %s after its last use, want 14 days", d)
			}
		}
	}
}

// TestTraces: the traces.
func TestTraces(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 0, 30)
	steady := sim.Steady(start, 30, 1000, 1)
	daily, other := 0, 0
	for _, l := range steady.Learners {
		switch n := len(l.Sessions); {
		case n >= 29:
			daily++
		case n >= 14 && n <= 15:
			other++
		default:
			t.Errorf("%s has %d sessions in 30 days: want one a day or every other day", l.Name, n)
		}
		for i, s := range l.Sessions {
			if w := s.Leave.Sub(s.Arrive); w < 30*time.Minute || w > 45*time.Minute || s.Arrive.Before(start) || s.Leave.After(end) {
				t.Errorf("%s session %d: %s to %s", l.Name, i, s.Arrive, s.Leave)
			}
		}
	}
	if len(steady.Learners) != 1000 || daily != 500 || other != 500 {
		t.Errorf("steady: %d learners, %d daily, %d every other day", len(steady.Learners), daily, other)
	}
	class := sim.Class(start, 30, 300, 1)
	if len(class.Learners) != 300 || class.Sessions() != 300*22 {
		t.Errorf("class: %d learners, %d sessions; want 300 on each of 22 weekdays", len(class.Learners), class.Sessions())
	}
	stops := map[string]bool{}
	for _, l := range class.Learners {
		for _, s := range l.Sessions {
			stops[s.Leave.Truncate(time.Minute).Format(time.DateTime)] = true
			if wd := s.Arrive.Weekday(); wd == time.Saturday || wd == time.Sunday {
				t.Errorf("%s works on a %s", l.Name, wd)
			}
		}
	}
	if len(stops) != 22 {
		t.Errorf("the class stops in %d different minutes over 22 days; want the same minute each day", len(stops))
	}
	if fmt.Sprint(sim.Steady(start, 30, 1000, 1)) != fmt.Sprint(steady) {
		t.Error("a trace is the same for the same seed")
	}
}

// The learner's leave, sent at the end of 80% of sessions, suspends those labs leave_grace (3
// min) after instead of idle_suspend_after (15 min) after: fewer hours billed for the same
// hours used, by about the 12 minutes saved per session that sends it.
func TestLeaveSaves(t *testing.T) {
	start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	c := sim.Config{Start: start, Days: 3, Traces: []sim.Trace{sim.Steady(start, 3, 100, 1)},
		Policies: []sim.Policy{sim.LabplaneIdle(15*time.Minute, 0), sim.LabplaneIdle(15*time.Minute, 0.8)}}
	res, err := sim.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	without, with := res.Rows[0], res.Rows[1]
	t.Logf("%s: billed %.1f h; %s: billed %.1f h; used %.1f h", without.Policy, without.BilledHours, with.Policy, with.BilledHours, with.UsedHours)
	sessions := float64(without.Returns + 100) // every session but each learner's first is a return
	saved := without.BilledHours - with.BilledHours
	if want := 0.8 * sessions * 12 / 60; saved < 0.9*want || saved > 1.1*want || with.UsedHours != without.UsedHours {
		t.Errorf("the leave saved %.1f h over %.0f sessions, want about %.1f h (12 min on 80%% of them); used %.1f h and %.1f h",
			saved, sessions, want, without.UsedHours, with.UsedHours)
	}
}

// TestWarmPoolSim: a class of 60 for three days with and without a warm pool the size of the
// class: with it every learner's first visit is a resume of a pool's lab, so the first-launch
// wait is the resume's, not the create's; the pool's price is its labs' launches and suspends
// before the class (each pool lab runs a create and a suspend long), and the learners' use is
// the same but for the first visits' waits (within 0.1%).
func TestWarmPoolSim(t *testing.T) {
	start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	const n = 60
	c := sim.Config{Start: start, Days: 3, Traces: []sim.Trace{sim.Class(start, 3, n, 1)},
		Policies: []sim.Policy{sim.Labplane(), sim.LabplanePool()}}
	res, err := sim.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	without, with := res.Rows[0], res.Rows[1]
	t.Logf("first launch wait p50/p99: %.2f/%.2f s without a pool, %.2f/%.2f s with; billed %.2f h and %.2f h",
		without.LaunchWaitP50, without.LaunchWaitP99, with.LaunchWaitP50, with.LaunchWaitP99, without.BilledHours, with.BilledHours)
	if with.LaunchWaitMax > sim.LabStack.Resume.Seconds()*float64(n)/4 || with.LaunchWaitP50 != sim.LabStack.Resume.Seconds() ||
		without.LaunchWaitP50 < sim.LabStack.Create.Seconds() {
		t.Errorf("first launch waits: p50 %.2f s with a pool (want the resume's %s), %.2f s without (want the create's %s or more)",
			with.LaunchWaitP50, sim.LabStack.Resume, without.LaunchWaitP50, sim.LabStack.Create)
	}
	price := float64(n) * (sim.LabStack.Create + sim.LabStack.Suspend).Hours()
	if extra := with.BilledHours - without.BilledHours; extra < 0.5*price || extra > 1.5*price || math.Abs(with.UsedHours-without.UsedHours) > 0.001*without.UsedHours {
		t.Errorf("the pool's price: %.3f h more billed (want about %.3f h: a create and a suspend per pool lab); used %.2f h and %.2f h",
			extra, price, with.UsedHours, without.UsedHours)
	}
}
