package cost_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cost"
	"github.com/labplane/labplane/internal/labs"
)

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// h is t0 plus hours.
func h(hours float64) time.Time { return t0.Add(time.Duration(hours * float64(time.Hour))) }

// ev is an event at t0 + hours.
func ev(action string, from, to labs.Status, hours float64) labs.Event {
	return labs.Event{At: h(hours), Actor: "test", Action: action, From: from, To: to}
}

func act(from, to float64) labs.Activity { return labs.Activity{From: h(from), To: h(to)} }

func lab(id string, status labs.Status, created float64) labs.Lab {
	return labs.Lab{ID: id, Learner: "ann", Course: "os101", Cloud: "east", Status: status, CreatedAt: h(created)}
}

func deleted(l labs.Lab, at float64) labs.Lab {
	l.Status, l.DeletedAt = labs.Deleted, h(at)
	return l
}

// history numbers the events as the registry would, in the order given.
func history(l labs.Lab, activity []labs.Activity, evs ...labs.Event) cost.History {
	for i := range evs {
		evs[i].ID, evs[i].LabID = int64(i+1), l.ID
	}
	for i := range activity {
		activity[i].LabID = l.ID
	}
	return cost.History{Lab: l, Events: evs, Activity: activity}
}

// a usual life: launched, worked 0.1-1.9, suspended at 2, back at 5, worked until 5.9,
// suspended at 6; two events that change no status (a failed hook, a stray's deletion).
func usual() cost.History {
	return history(lab("u", labs.Suspended, 0), []labs.Activity{act(0.1, 1.9), act(5, 5.9)},
		ev("launch", "", labs.Launching, 0),
		ev("launched", labs.Launching, labs.Active, 0.1),
		ev("hook-failed", labs.Active, labs.Active, 1.95),
		ev("suspend", labs.Active, labs.Suspended, 2),
		ev("delete-zombie", "", "", 3),
		ev("resume", labs.Suspended, labs.Active, 5),
		ev("suspend", labs.Active, labs.Suspended, 6))
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func sameHours(got, want cost.Hours) bool {
	return near(got.Existed, want.Existed) && near(got.Running, want.Running) && near(got.Suspended, want.Suspended) &&
		near(got.Billed, want.Billed) && near(got.Used, want.Used) && near(got.IdleRunning, want.IdleRunning)
}

// TestLabHours: the hours of one lab from hand-made histories, exactly.
func TestLabHours(t *testing.T) {
	cases := []struct {
		name         string
		h            cost.History
		since, until float64 // hours after t0; since < 0: no start
		factor       float64
		want         cost.Hours
		notes        []string // fragments, one note each, in order
	}{
		{name: "a usual life", h: usual(), since: -1, until: 10,
			want: cost.Hours{Existed: 10, Running: 3, Suspended: 7, Billed: 3, Used: 2.7, IdleRunning: 0.3}},
		{name: "suspended hours billed in part", h: usual(), since: -1, until: 10, factor: 0.5,
			want: cost.Hours{Existed: 10, Running: 3, Suspended: 7, Billed: 6.5, Used: 2.7, IdleRunning: 0.3}},
		{name: "the period cuts it", h: usual(), since: 1.5, until: 5.5,
			want: cost.Hours{Existed: 4, Running: 1, Suspended: 3, Billed: 1, Used: 0.9, IdleRunning: 0.1}},
		{name: "deleted while suspended", since: -1, until: 10,
			h: history(deleted(lab("d", "", 0), 5), nil,
				ev("launch", "", labs.Launching, 0),
				ev("launched", labs.Launching, labs.Active, 0.5),
				ev("suspend", labs.Active, labs.Suspended, 2),
				ev("delete", labs.Suspended, labs.Deleted, 5)),
			want: cost.Hours{Existed: 5, Running: 2, Suspended: 3, Billed: 2, IdleRunning: 2}},
		{name: "suspend before create: the trail starts with a suspend", since: -1, until: 6,
			h: history(lab("s", labs.Suspended, 0), nil,
				ev("suspend", labs.Active, labs.Suspended, 1),
				ev("resume", labs.Suspended, labs.Active, 3),
				ev("suspend", labs.Active, labs.Suspended, 4)),
			want:  cost.Hours{Existed: 6, Running: 2, Suspended: 4, Billed: 2, IdleRunning: 2},
			notes: []string{"lab s: the audit trail starts with suspend from active at 2026-11-02T10:00:00Z: taken as running since its creation at 2026-11-02T09:00:00Z"}},
		{name: "suspend before create: a suspend timed before the launch", since: -1, until: 3,
			h: history(lab("b", labs.Suspended, 1), nil,
				ev("launch", "", labs.Launching, 1),
				ev("launched", labs.Launching, labs.Active, 1.5),
				ev("suspend", labs.Active, labs.Suspended, 0.5)),
			want:  cost.Hours{Existed: 2, Running: 0.5, Suspended: 1.5, Billed: 0.5, IdleRunning: 0.5},
			notes: []string{"lab b: suspend at 2026-11-02T09:30:00Z is 1h0m0s before the event recorded before it (the clocks of the processes that recorded them disagree): taken as at 2026-11-02T10:30:00Z"}},
		{name: "clock skew: a resume by a replica whose clock is 5 minutes behind", since: -1, until: 4,
			h: history(lab("k", labs.Suspended, 0), []labs.Activity{act(1, 1.4)},
				ev("launch", "", labs.Launching, 0),
				ev("launched", labs.Launching, labs.Active, 0),
				ev("suspend", labs.Active, labs.Suspended, 1),
				ev("resume", labs.Suspended, labs.Active, 1-5.0/60),
				ev("suspend", labs.Active, labs.Suspended, 1.5)),
			want:  cost.Hours{Existed: 4, Running: 1.5, Suspended: 2.5, Billed: 1.5, Used: 0.4, IdleRunning: 1.1},
			notes: []string{"lab k: resume at 2026-11-02T09:55:00Z is 5m0s before the event recorded before it"}},
		{name: "an event timed before the lab's creation", since: -1, until: 2,
			h: history(lab("c", labs.Active, 1), nil,
				ev("launch", "", labs.Launching, 0.75),
				ev("launched", labs.Launching, labs.Active, 1.25)),
			want:  cost.Hours{Existed: 1, Running: 1, Billed: 1, IdleRunning: 1},
			notes: []string{"lab c: launch at 2026-11-02T09:45:00Z is 15m0s before the lab's creation"}},
		{name: "missing events: a suspend was never recorded", since: -1, until: 8,
			h: history(lab("m", labs.Suspended, 0), nil,
				ev("launch", "", labs.Launching, 0),
				ev("launched", labs.Launching, labs.Active, 1),
				ev("resume", labs.Suspended, labs.Active, 5),
				ev("suspend", labs.Active, labs.Suspended, 6)),
			want:  cost.Hours{Existed: 8, Running: 6, Suspended: 2, Billed: 6, IdleRunning: 6},
			notes: []string{"lab m: events are missing between 2026-11-02T10:00:00Z (active) and resume at 2026-11-02T14:00:00Z (from suspended): taken as running"}},
		{name: "missing events: deleted by the registry, no delete event", since: -1, until: 10,
			h: history(deleted(lab("r", "", 0), 3), nil,
				ev("launch", "", labs.Launching, 0),
				ev("launched", labs.Launching, labs.Active, 1)),
			want:  cost.Hours{Existed: 3, Running: 3, Billed: 3, IdleRunning: 3},
			notes: []string{"lab r: deleted at 2026-11-02T12:00:00Z by the registry, with no event"}},
		{name: "missing events: no audit trail at all", since: -1, until: 5,
			h:     history(lab("n", labs.Active, 2), nil),
			want:  cost.Hours{Existed: 3, Running: 3, Billed: 3, IdleRunning: 3},
			notes: []string{"lab n: no audit trail: taken as running (its status, active) since its creation"}},
		{name: "a failed suspend keeps billing", since: -1, until: 4,
			h: history(lab("f", labs.Suspended, 0), nil,
				ev("launch", "", labs.Launching, 0),
				ev("launched", labs.Launching, labs.Active, 0.1),
				labs.Event{At: h(2), Action: "suspend", From: labs.Active, To: labs.Failed, Error: "SUSPEND_FAILED"},
				ev("suspend", labs.Failed, labs.Suspended, 3)),
			want: cost.Hours{Existed: 4, Running: 3, Suspended: 1, Billed: 3, IdleRunning: 3}},
		{name: "still running at the end of the period", since: -1, until: 2,
			h: history(lab("o", labs.Active, 0), []labs.Activity{act(1, 3)},
				ev("launch", "", labs.Launching, 0),
				ev("launched", labs.Launching, labs.Active, 0.25)),
			want: cost.Hours{Existed: 2, Running: 2, Billed: 2, Used: 1, IdleRunning: 1}},
		{name: "created after the period", since: -1, until: 2, h: history(lab("late", labs.Active, 3), nil,
			ev("launch", "", labs.Launching, 3))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := cost.Options{Until: h(c.until), SuspendedCostFactor: map[string]float64{"east": c.factor}}
			if c.since >= 0 {
				o.Since = h(c.since)
			}
			r := cost.Compute([]cost.History{c.h}, o)
			var got cost.Hours
			if len(r.Labs) > 0 {
				got = r.Labs[0].Hours
			}
			if !sameHours(got, c.want) || !sameHours(r.Total.Hours, c.want) {
				t.Errorf("hours:\n got %+v\nwant %+v\ntotal %+v", got, c.want, r.Total.Hours)
			}
			if len(r.Notes) != len(c.notes) {
				t.Fatalf("notes = %q, want %d", r.Notes, len(c.notes))
			}
			for i, n := range c.notes {
				if !strings.Contains(r.Notes[i], n) {
					t.Errorf("note %d = %q, want it to contain %q", i, r.Notes[i], n)
				}
			}
		})
	}
}

// TestGroups: labs grouped each way, with each cloud's suspended_cost_factor.
func TestGroups(t *testing.T) {
	a := usual() // os101, ann, east: running 3, suspended 7, used 2.7
	bLab := lab("v", labs.Active, 0)
	bLab.Learner, bLab.Course, bLab.Cloud = "bob", "k8s", "west"
	b := history(bLab, []labs.Activity{act(0, 4)}, ev("launch", "", labs.Launching, 0), ev("launched", labs.Launching, labs.Active, 0),
		ev("suspend", labs.Active, labs.Suspended, 4)) // running 4, suspended 6, used 4
	cLab := lab("w", labs.Active, 0)
	cLab.Cloud = "west" // ann, os101 again: running 10, never used
	c := history(cLab, nil, ev("launch", "", labs.Launching, 0), ev("launched", labs.Launching, labs.Active, 0))
	factors := map[string]float64{"east": 0, "west": 0.1}
	type row struct {
		key              string
		labs             int
		running, billed  float64
		suspended, ratio float64
	}
	cases := []struct {
		by   cost.Grouping
		want []row
	}{
		{cost.ByCourse, []row{{"k8s", 1, 4, 4.6, 6, 4.6 / 4}, {"os101", 2, 13, 13, 7, 13 / 2.7}}},
		{cost.ByLearner, []row{{"ann", 2, 13, 13, 7, 13 / 2.7}, {"bob", 1, 4, 4.6, 6, 4.6 / 4}}},
		{cost.ByCloud, []row{{"east", 1, 3, 3, 7, 3 / 2.7}, {"west", 2, 14, 14.6, 6, 14.6 / 4}}},
		{cost.ByLab, []row{{"u", 1, 3, 3, 7, 3 / 2.7}, {"v", 1, 4, 4.6, 6, 4.6 / 4}, {"w", 1, 10, 10, 0, 0}}},
	}
	for _, tc := range cases {
		r := cost.Compute([]cost.History{a, b, c}, cost.Options{Until: h(10), By: tc.by, SuspendedCostFactor: factors})
		if len(r.Groups) != len(tc.want) {
			t.Fatalf("by %s: %d groups, want %d: %+v", tc.by, len(r.Groups), len(tc.want), r.Groups)
		}
		for i, w := range tc.want {
			g := r.Groups[i]
			ratio := 0.0
			if g.BilledPerUsed != nil {
				ratio = *g.BilledPerUsed
			}
			if g.Key != w.key || g.Labs != w.labs || !near(g.Running, w.running) || !near(g.Billed, w.billed) ||
				!near(g.Suspended, w.suspended) || !near(ratio, w.ratio) {
				t.Errorf("by %s, group %d = %s: %d labs, running %g, billed %g, suspended %g, ratio %g; want %+v",
					tc.by, i, g.Key, g.Labs, g.Running, g.Billed, g.Suspended, ratio, w)
			}
		}
		if r.Total.Labs != 3 || !near(r.Total.Running, 17) || !near(r.Total.Billed, 17.6) || !near(r.Total.Used, 6.7) {
			t.Errorf("by %s: total %+v", tc.by, r.Total)
		}
		if !r.Since.Equal(t0) {
			t.Errorf("since = %v, want the first record, %v", r.Since, t0)
		}
	}
}

// TestWaste: labs that ran for nobody, the longest idle stretches, failed suspends.
func TestWaste(t *testing.T) {
	idleLab := lab("idle", labs.Active, 0) // runs 8 h, never used
	idle := history(idleLab, nil, ev("launch", "", labs.Launching, 0), ev("launched", labs.Launching, labs.Active, 0.5))
	busyLab := lab("busy", labs.Active, 0) // used 1-7, idle 0-1 and 7-8
	busy := history(busyLab, []labs.Activity{act(1, 4), act(3, 7)}, ev("launch", "", labs.Launching, 0))
	failLab := lab("fail", labs.Failed, 0) // two failed suspends
	fail := history(failLab, []labs.Activity{act(0, 2)}, ev("launch", "", labs.Launching, 0),
		labs.Event{At: h(3), Action: "suspend", From: labs.Launching, To: labs.Failed, Error: "first"},
		labs.Event{At: h(5), Action: "suspend", From: labs.Failed, To: labs.Failed, Error: "second"})
	r := cost.Compute([]cost.History{busy, fail, idle}, cost.Options{Until: h(8), Top: 2})
	if len(r.Waste.NoActivity) != 1 || r.Waste.NoActivity[0].ID != "idle" || !near(r.Waste.NoActivity[0].Running, 8) {
		t.Errorf("running without activity = %+v, want just idle, 8 h", r.Waste.NoActivity)
	}
	want := []cost.Stretch{
		{LabID: "idle", Learner: "ann", Course: "os101", Cloud: "east", From: h(0), To: h(8), Hours: 8},
		{LabID: "fail", Learner: "ann", Course: "os101", Cloud: "east", From: h(2), To: h(8), Hours: 6},
	}
	if !reflect.DeepEqual(r.Waste.LongestIdle, want) {
		t.Errorf("longest idle (top 2) =\n %+v\nwant\n %+v", r.Waste.LongestIdle, want)
	}
	if fs := r.Waste.FailedSuspends; len(fs) != 1 || fs[0].LabID != "fail" || fs[0].Count != 2 || fs[0].LastError != "second" || !fs[0].Last.Equal(h(5)) {
		t.Errorf("failed suspends = %+v", fs)
	}
	for _, l := range r.Labs {
		if l.ID == "busy" && (!near(l.Used, 6) || !near(l.IdleRunning, 2)) {
			t.Errorf("busy: overlapping activity spans count once: %+v", l.Hours)
		}
	}
}

// TestSeries: hours per step, split at step boundaries.
func TestSeries(t *testing.T) {
	l := lab("x", labs.Suspended, 0.5)
	x := history(l, []labs.Activity{act(1, 1.5)}, ev("launch", "", labs.Launching, 0.5), ev("suspend", labs.Launching, labs.Suspended, 2))
	r := cost.Compute([]cost.History{x}, cost.Options{Since: h(0), Until: h(3)})
	got := r.Series(time.Hour)
	want := []cost.Series{{Course: "os101", Points: []cost.Point{
		{At: h(0), Running: 0.5}, {At: h(1), Running: 1, Used: 0.5}, {At: h(2)}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("series =\n %+v\nwant\n %+v", got, want)
	}
	if cost.Step(h(0), h(72)) != time.Hour || cost.Step(h(0), h(73)) != 24*time.Hour || cost.Step(h(0), h(24*400)) != 7*24*time.Hour {
		t.Error("Step: an hour up to three days, a day up to a year, a week beyond")
	}
}

// TestSVG: the chart is well-formed XML, an <svg>, with a panel per course and names escaped.
func TestSVG(t *testing.T) {
	odd := lab("y", labs.Active, 0)
	odd.Course = `a<b & "c"`
	hs := []cost.History{usual(), history(odd, nil, ev("launch", "", labs.Launching, 0))}
	for _, until := range []float64{10, 24 * 20} {
		var buf bytes.Buffer
		r := cost.Compute(hs, cost.Options{Until: h(until)})
		if err := r.WriteSVG(&buf); err != nil {
			t.Fatal(err)
		}
		root, texts := parseXML(t, buf.Bytes())
		if root != "svg" {
			t.Errorf("root element %q, want svg", root)
		}
		for _, want := range []string{"os101", `a<b & "c"`, "running (billed)", "used (learner active)"} {
			if !strings.Contains(texts, want) {
				t.Errorf("the chart does not say %q", want)
			}
		}
	}
	var buf bytes.Buffer
	if err := cost.Compute(nil, cost.Options{Until: h(1)}).WriteSVG(&buf); err != nil {
		t.Fatal(err)
	}
	if _, texts := parseXML(t, buf.Bytes()); !strings.Contains(texts, "no lab existed") {
		t.Errorf("an empty chart should say so: %s", buf.String())
	}
}

// parseXML decodes a whole document, returning its root element's name and its text.
func parseXML(t *testing.T, doc []byte) (root string, text string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	var b strings.Builder
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
		case xml.CharData:
			b.Write(tok)
			b.WriteByte('\n')
		}
	}
	return root, b.String()
}

// source is a registry in memory for Load.
type source struct {
	labs   []labs.Lab
	events []labs.Event
	act    []labs.Activity
	err    error
}

func (s source) LabsExisting(context.Context, time.Time, time.Time) ([]labs.Lab, error) {
	return s.labs, s.err
}
func (s source) EventsOfLabsExisting(context.Context, time.Time, time.Time) ([]labs.Event, error) {
	return s.events, nil
}
func (s source) Activity(context.Context, time.Time, time.Time) ([]labs.Activity, error) {
	return s.act, nil
}

func TestLoad(t *testing.T) {
	src := source{
		labs:   []labs.Lab{lab("a", labs.Active, 0), lab("b", labs.Active, 0)},
		events: []labs.Event{{LabID: "a", Action: "1"}, {LabID: "a", Action: "2"}, {LabID: "b", Action: "3"}, {LabID: "gone", Action: "4"}},
		act:    []labs.Activity{{LabID: "b", From: h(1)}, {LabID: "gone"}},
	}
	hs, err := cost.Load(context.Background(), src, time.Time{}, h(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || len(hs[0].Events) != 2 || hs[0].Events[1].Action != "2" || len(hs[1].Events) != 1 ||
		len(hs[0].Activity) != 0 || len(hs[1].Activity) != 1 {
		t.Errorf("histories = %+v", hs)
	}
	src.err = errors.New("down")
	if _, err := cost.Load(context.Background(), src, time.Time{}, h(1)); err == nil || !strings.Contains(err.Error(), "read the labs: down") {
		t.Errorf("Load with a failing registry: %v", err)
	}
}

// A lab of a course's warm pool bills to the pool until a learner takes it (its pool-taken
// event), then to the learner: the pool's hours are a line of their own in every grouping,
// and its running before the learner is not counted as waste.
func TestWarmPoolLine(t *testing.T) {
	pooled := lab("p", labs.Suspended, 0) // the registry's row: ann's since the take
	hs := []cost.History{usual(), history(pooled, []labs.Activity{act(10.5, 11.5)},
		ev("launch", "", labs.Launching, 0),
		ev("launched", labs.Launching, labs.Active, 0.1),
		ev("suspend", labs.Active, labs.Suspended, 0.2),
		ev("pool-taken", "", "", 10),
		ev("resume", labs.Suspended, labs.Active, 10.5),
		ev("suspend", labs.Active, labs.Suspended, 12),
	)}
	for _, tc := range []struct {
		by        cost.Grouping
		pool, own string
	}{{cost.ByCourse, "os101 (warm pool)", "os101"}, {cost.ByLearner, "(warm pool)", "ann"}, {cost.ByCloud, "east (warm pool)", "east"}} {
		r := cost.Compute(hs, cost.Options{Until: h(20), By: tc.by})
		groups := map[string]cost.Group{}
		for _, g := range r.Groups {
			groups[g.Key] = g
		}
		pool := groups[tc.pool]
		if pool.Labs != 1 || !near(pool.Running, 0.2) || !near(pool.Suspended, 9.8) || pool.Used != 0 {
			t.Errorf("by %s: the pool's line %+v; want 0.2 h running, 9.8 h suspended, nothing used", tc.by, pool)
		}
		// the learner's: usual's hours, and p's from the take: 0.5 h suspended, 1.5 running, 1 used
		if own := groups[tc.own]; own.Labs != 2 || !near(own.Used, 1.8+0.9+1) {
			t.Errorf("by %s: the learner's line %+v", tc.by, own)
		}
		if r.Total.Labs != 2 || !near(r.Total.Running+r.Total.Suspended, groups[tc.pool].Existed+groups[tc.own].Existed) {
			t.Errorf("by %s: total %+v", tc.by, r.Total)
		}
		for _, w := range r.Waste.NoActivity {
			if w.Learner == "" {
				t.Errorf("by %s: the pool's running counted as waste: %+v", tc.by, w)
			}
		}
	}
}
