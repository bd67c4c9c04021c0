// Package cost turns the registry's history into hours: from each lab's audit trail, the hours
// its stack existed, ran and was suspended, and what the cloud bills for them; from the
// learner's heartbeats, the hours the learner was active; grouped by course, learner, cloud or
// lab, with the waste called out (labs running while nobody used them, suspends that failed).
// Compute is pure: histories in, a report out. Load reads the histories from the registry.
//
// How a lab's hours are counted:
//   - The audit trail is replayed in the order it was recorded. Each event that changes the
//     lab's status starts a new stretch in the status it moved to. The lifecycle records an
//     action once the cloud reports it complete (labplane waits for it), so a suspend ends the
//     running time when the stack is suspended, and a launch starts it when it was asked for.
//   - Billed hours are running hours: every status but suspended and deleted, launching,
//     resuming and failed included (a failed or stuck stack may well be running), plus
//     suspended hours times the cloud's suspended_cost_factor. A suspend or delete claimed or
//     under way (suspending, deleting) leaves the stack as it was, running or suspended, until
//     its outcome: a class deleted at once, waiting for the cloud's slots, is not billed as
//     running meanwhile.
//   - An event timed before the one recorded before it (the clocks of two labplane processes
//     disagree) is taken as happening at the earlier one's time: time never runs backwards
//     within a lab, and the report says so in its notes.
//   - Where events are missing (an event's "from" is not the status the one before it left, or
//     the trail starts in the middle of a lab's life), the stretch in between is counted as
//     running if either side says so: the report errs towards cost, and notes it.
//   - Used hours are the spans of the learner's heartbeats (see labs.ActivityGap).
package cost

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// History is what the registry knows of one lab.
type History struct {
	Lab labs.Lab
	// Events is the lab's audit trail in the order it was recorded.
	Events []labs.Event
	// Activity is the learner's activity in the lab, in any order.
	Activity []labs.Activity
}

// Grouping is what a report groups labs by.
type Grouping string

// The groupings.
const (
	ByCourse  Grouping = "course"
	ByLearner Grouping = "learner"
	ByCloud   Grouping = "cloud"
	ByLab     Grouping = "lab"
)

// Groupings lists every grouping.
var Groupings = []Grouping{ByCourse, ByLearner, ByCloud, ByLab}

// Options select the period and the grouping of a report.
type Options struct {
	// Since and Until bound the period, [Since, Until). A zero Since starts at the first
	// record; Until is required.
	Since, Until time.Time
	// By groups the labs; the default is ByCourse.
	By Grouping
	// SuspendedCostFactor is each cloud's suspended_cost_factor; a cloud not in it bills
	// nothing for suspended labs.
	SuspendedCostFactor map[string]float64
	// Top bounds each list of waste (default 10).
	Top int
}

// Hours are a lab's or a group's hours in the period.
type Hours struct {
	// Existed is the hours the stack existed: Running + Suspended.
	Existed   float64 `json:"existed_hours"`
	Running   float64 `json:"running_hours"`
	Suspended float64 `json:"suspended_hours"`
	// Billed is Running plus Suspended times the cloud's suspended_cost_factor.
	Billed float64 `json:"billed_hours"`
	// Used is the hours the learner was active.
	Used float64 `json:"used_hours"`
	// IdleRunning is the running hours in which the learner was not active.
	IdleRunning float64 `json:"idle_running_hours"`
}

func (h *Hours) add(o Hours) {
	h.Existed += o.Existed
	h.Running += o.Running
	h.Suspended += o.Suspended
	h.Billed += o.Billed
	h.Used += o.Used
	h.IdleRunning += o.IdleRunning
}

// Ratio is billed hours per used hour, and false when nothing was used.
func (h Hours) Ratio() (float64, bool) {
	if h.Used <= 0 {
		return 0, false
	}
	return h.Billed / h.Used, true
}

// LabCost is one lab's hours.
type LabCost struct {
	ID      string `json:"id"`
	Learner string `json:"learner"`
	Course  string `json:"course"`
	Cloud   string `json:"cloud"`
	Hours
	// FailedSuspends counts the suspends of the lab that failed in the period.
	FailedSuspends int `json:"failed_suspends,omitempty"`
}

// Group is the hours of the labs that share a course, a learner, a cloud or an id.
type Group struct {
	Key  string `json:"key"`
	Labs int    `json:"labs"`
	Hours
	// BilledPerUsed is Billed / Used; absent when nothing was used.
	BilledPerUsed *float64 `json:"billed_per_used,omitempty"`
}

// Stretch is a time a lab ran while its learner was not active.
type Stretch struct {
	LabID   string    `json:"lab_id"`
	Learner string    `json:"learner"`
	Course  string    `json:"course"`
	Cloud   string    `json:"cloud"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Hours   float64   `json:"hours"`
}

// FailedSuspend is a lab whose suspends failed in the period: it kept billing.
type FailedSuspend struct {
	LabID     string    `json:"lab_id"`
	Course    string    `json:"course"`
	Cloud     string    `json:"cloud"`
	Count     int       `json:"count"`
	Last      time.Time `json:"last"`
	LastError string    `json:"last_error"`
}

// Waste is what ran for nothing.
type Waste struct {
	// NoActivity are labs that ran in the period while their learner was never active,
	// most running hours first.
	NoActivity []LabCost `json:"running_without_activity"`
	// LongestIdle are the longest stretches a lab ran with its learner inactive, longest first.
	LongestIdle []Stretch `json:"longest_idle_running"`
	// FailedSuspends are the labs a suspend failed on, most failures first.
	FailedSuspends []FailedSuspend `json:"failed_suspends"`
}

// Report is the hours of a period.
type Report struct {
	// Since is the period's start (the first record when no start was asked for), Until its end.
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	By     Grouping  `json:"by"`
	Groups []Group   `json:"groups"`
	Total  Group     `json:"total"`
	Labs   []LabCost `json:"labs"`
	Waste  Waste     `json:"waste"`
	// Notes say where a lab's history was incomplete or out of order, and what the report
	// made of it.
	Notes []string `json:"notes"`

	stretches []labStretches // for Series
}

// state is what a stretch of a lab's life bills as.
type state int

const (
	absent state = iota
	suspended
	running
)

func stateOf(s labs.Status) state {
	switch s {
	case "", labs.Deleted:
		return absent
	case labs.Suspended:
		return suspended
	}
	return running // launching, active, suspending, resuming, deleting, failed, needs-operator
}

func (s state) String() string { return [...]string{"gone", "suspended", "running"}[s] }

// BillsAs is what a lab in status bills as: "running" (launching, active, suspending,
// resuming, deleting, failed, needs-operator), "suspended", or "gone" (deleted).
func BillsAs(s labs.Status) string { return stateOf(s).String() }

// span is a stretch of time; for a lab's life, in one state.
type span struct {
	from, to time.Time
	st       state
}

func (s span) hours() float64 { return s.to.Sub(s.from).Hours() }

// labStretches is a lab's life and its learner's activity, clipped to the period.
type labStretches struct {
	lab    labs.Lab
	life   []span // running and suspended stretches, in order
	active []span // merged spans of activity, in order
}

// Compute reports the hours of histories in the period o selects.
func Compute(hs []History, o Options) Report {
	if o.By == "" {
		o.By = ByCourse
	}
	if o.Top <= 0 {
		o.Top = 10
	}
	r := Report{Since: o.Since, Until: o.Until, By: o.By, Groups: []Group{}, Labs: []LabCost{}, Notes: []string{},
		Waste: Waste{NoActivity: []LabCost{}, LongestIdle: []Stretch{}, FailedSuspends: []FailedSuspend{}}}
	if r.Since.IsZero() {
		r.Since = o.Until
	}
	groups := map[string]*Group{}
	for _, h := range hs {
		life, notes := lifeOf(h, o.Until)
		r.Notes = append(r.Notes, notes...)
		active := merge(h.Activity, o.Until)
		if !o.Since.IsZero() {
			life, active = clip(life, o.Since, o.Until), clip(active, o.Since, o.Until)
		}
		for _, s := range append(slices.Clone(life), active...) {
			if s.from.Before(r.Since) {
				r.Since = s.from
			}
		}
		if len(life) == 0 && len(active) == 0 {
			continue
		}
		parts := poolParts(labStretches{lab: h.Lab, life: life, active: active}, h.Events, o.Until)
		for i, ls := range parts {
			last := i == len(parts)-1
			r.stretches = append(r.stretches, ls)
			lc, idle := costOf(ls, o.SuspendedCostFactor[h.Lab.Cloud])
			if fs, ok := failedSuspends(h, o.Since, o.Until); ok && last {
				lc.FailedSuspends = fs.Count
				r.Waste.FailedSuspends = append(r.Waste.FailedSuspends, fs)
			}
			r.Labs = append(r.Labs, lc)
			// a pool's lab runs for nobody until it is suspended: the pool's own line, not waste
			if lc.Running > 0 && lc.Used == 0 && !ls.lab.Pooled() {
				r.Waste.NoActivity = append(r.Waste.NoActivity, lc)
			}
			if idle.LabID != "" && !ls.lab.Pooled() {
				r.Waste.LongestIdle = append(r.Waste.LongestIdle, idle)
			}
			key := groupKey(lc, o.By)
			g := groups[key]
			if g == nil {
				g = &Group{Key: key}
				groups[key] = g
			}
			g.Labs++
			g.add(lc.Hours)
			if last {
				r.Total.Labs++
			}
			r.Total.add(lc.Hours)
		}
	}
	for _, g := range groups {
		r.Groups = append(r.Groups, withRatio(*g))
	}
	slices.SortFunc(r.Groups, func(a, b Group) int { return cmp.Compare(a.Key, b.Key) })
	r.Total = withRatio(r.Total)
	r.Total.Key = "total"
	slices.SortFunc(r.Labs, func(a, b LabCost) int {
		return cmp.Or(cmp.Compare(a.Course, b.Course), cmp.Compare(a.Learner, b.Learner), cmp.Compare(a.ID, b.ID))
	})
	slices.SortStableFunc(r.Waste.NoActivity, func(a, b LabCost) int { return cmp.Compare(b.Running, a.Running) })
	slices.SortStableFunc(r.Waste.LongestIdle, func(a, b Stretch) int { return cmp.Compare(b.Hours, a.Hours) })
	slices.SortStableFunc(r.Waste.FailedSuspends, func(a, b FailedSuspend) int { return cmp.Compare(b.Count, a.Count) })
	r.Waste.NoActivity = r.Waste.NoActivity[:min(o.Top, len(r.Waste.NoActivity))]
	r.Waste.LongestIdle = r.Waste.LongestIdle[:min(o.Top, len(r.Waste.LongestIdle))]
	r.Waste.FailedSuspends = r.Waste.FailedSuspends[:min(o.Top, len(r.Waste.FailedSuspends))]
	return r
}

func withRatio(g Group) Group {
	if ratio, ok := g.Ratio(); ok {
		g.BilledPerUsed = &ratio
	}
	return g
}

// poolSuffix marks the group of a course's warm pool: its labs' hours before a learner
// took them, a line of their own in every grouping.
const poolSuffix = "(warm pool)"

func groupKey(lc LabCost, by Grouping) string {
	key := lc.Course
	switch by {
	case ByLearner:
		key = lc.Learner
	case ByCloud:
		key = lc.Cloud
	case ByLab:
		key = lc.ID
	}
	if lc.Learner == "" {
		return strings.TrimSpace(key + " " + poolSuffix)
	}
	return key
}

// poolParts splits the life of a lab of a warm pool that a learner took (its pool-taken
// event) in two: the pool's before, with no learner, and the learner's after. Any other lab is
// one part.
func poolParts(ls labStretches, events []labs.Event, until time.Time) []labStretches {
	i := slices.IndexFunc(events, func(ev labs.Event) bool { return ev.Action == "pool-taken" })
	if i < 0 {
		return []labStretches{ls}
	}
	taken := events[i].At
	pool, learner := ls, ls
	pool.lab.Learner = ""
	pool.life, pool.active = clip(ls.life, time.Time{}, taken), clip(ls.active, time.Time{}, taken)
	learner.life, learner.active = clip(ls.life, taken, until), clip(ls.active, taken, until)
	var parts []labStretches
	for _, p := range []labStretches{pool, learner} {
		if len(p.life) > 0 || len(p.active) > 0 {
			parts = append(parts, p)
		}
	}
	return parts
}

// lifeOf replays a lab's audit trail into its running and suspended stretches up to until.
func lifeOf(h History, until time.Time) ([]span, []string) {
	lab := h.Lab
	var (
		life    []span
		notes   []string
		cur     labs.Status // before the first event: not there yet
		billed  state       // what the stack bills as now
		t       = lab.CreatedAt
		started bool
	)
	note := func(format string, args ...any) {
		notes = append(notes, fmt.Sprintf("lab %s: ", lab.ID)+fmt.Sprintf(format, args...))
	}
	add := func(to time.Time, st state) {
		to = earliest(to, until)
		if st != absent && to.After(t) {
			life = append(life, span{t, to, st})
		}
	}
	for _, ev := range h.Events {
		if ev.To == "" {
			continue // changes no status (a stray stack deleted, a hook that failed)
		}
		at := ev.At
		if at.Before(t) {
			what := "the event recorded before it"
			if !started {
				what = "the lab's creation"
			}
			note("%s at %s is %s before %s (the clocks of the processes that recorded them disagree): taken as at %s",
				ev.Action, stamp(at), t.Sub(at).Round(time.Second), what, stamp(t))
			at = t
		}
		switch {
		case !started && ev.From != "":
			note("the audit trail starts with %s from %s at %s: taken as %s since its creation at %s",
				ev.Action, ev.From, stamp(at), stateOf(ev.From), stamp(lab.CreatedAt))
			billed = stateOf(ev.From)
			add(at, billed)
		case started && ev.From != "" && ev.From != cur:
			billed = max(billed, stateOf(ev.From))
			note("events are missing between %s (%s) and %s at %s (from %s): taken as %s", stamp(t), cur, ev.Action, stamp(at), ev.From, billed)
			add(at, billed)
		default:
			add(at, billed)
		}
		cur, t, started = ev.To, at, true
		if (cur != labs.Suspending && cur != labs.Deleting) || billed == absent {
			// a suspend or delete claimed, or under way, leaves the stack as it was (running,
			// or suspended) until its outcome: the cloud bills what the stack is
			billed = stateOf(cur)
		}
	}
	end, st := until, billed
	switch {
	case !started && lab.Status == labs.Deleted:
		note("no audit trail: taken as running from its creation at %s to its deletion at %s", stamp(lab.CreatedAt), stamp(lab.DeletedAt))
		end, st = latest(lab.DeletedAt, t), running
	case !started:
		note("no audit trail: taken as %s (its status, %s) since its creation at %s", stateOf(lab.Status), lab.Status, stamp(lab.CreatedAt))
		st = stateOf(lab.Status)
	case st != absent && lab.Status == labs.Deleted:
		note("deleted at %s by the registry, with no event: its last status, %s, taken to last until then", stamp(lab.DeletedAt), cur)
		end = latest(lab.DeletedAt, t)
	}
	add(end, st)
	return life, notes
}

// merge sorts activity and merges overlapping spans, up to until.
func merge(as []labs.Activity, until time.Time) []span {
	spans := make([]span, 0, len(as))
	for _, a := range as {
		if a.To.After(a.From) && a.From.Before(until) {
			spans = append(spans, span{a.From, earliest(a.To, until), running})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
	out := spans[:0]
	for _, s := range spans {
		if n := len(out); n > 0 && !s.from.After(out[n-1].to) {
			out[n-1].to = latest(out[n-1].to, s.to)
			continue
		}
		out = append(out, s)
	}
	return out
}

// clip keeps the parts of spans within [since, until).
func clip(spans []span, since, until time.Time) []span {
	out := make([]span, 0, len(spans))
	for _, s := range spans {
		s.from, s.to = latest(s.from, since), earliest(s.to, until)
		if s.to.After(s.from) {
			out = append(out, s)
		}
	}
	return out
}

// costOf adds up a lab's hours, and finds its longest stretch running while its learner was
// not active.
func costOf(ls labStretches, factor float64) (LabCost, Stretch) {
	lab := ls.lab
	lc := LabCost{ID: lab.ID, Learner: lab.Learner, Course: lab.Course, Cloud: lab.Cloud}
	for _, s := range ls.life {
		if s.st == running {
			lc.Running += s.hours()
		} else {
			lc.Suspended += s.hours()
		}
	}
	for _, a := range ls.active {
		lc.Used += a.hours()
	}
	lc.Existed = lc.Running + lc.Suspended
	lc.Billed = lc.Running + factor*lc.Suspended
	var longest Stretch
	for _, s := range idle(ls.life, ls.active) {
		lc.IdleRunning += s.hours()
		if h := s.hours(); h > longest.Hours {
			longest = Stretch{LabID: lab.ID, Learner: lab.Learner, Course: lab.Course, Cloud: lab.Cloud, From: s.from, To: s.to, Hours: h}
		}
	}
	return lc, longest
}

// idle is the running time of life not covered by active: running stretches that follow each
// other are one.
func idle(life, active []span) []span {
	var run []span
	for _, s := range life {
		if s.st != running {
			continue
		}
		if n := len(run); n > 0 && s.from.Equal(run[n-1].to) {
			run[n-1].to = s.to
			continue
		}
		run = append(run, s)
	}
	var out []span
	for _, r := range run {
		from := r.from
		for _, a := range active {
			if !a.to.After(from) || !a.from.Before(r.to) {
				continue
			}
			if a.from.After(from) {
				out = append(out, span{from, a.from, running})
			}
			from = latest(from, a.to)
		}
		if r.to.After(from) {
			out = append(out, span{from, r.to, running})
		}
	}
	return out
}

// failedSuspends counts the lab's failed suspends in [since, until).
func failedSuspends(h History, since, until time.Time) (FailedSuspend, bool) {
	fs := FailedSuspend{LabID: h.Lab.ID, Course: h.Lab.Course, Cloud: h.Lab.Cloud}
	for _, ev := range h.Events {
		if ev.Action == "suspend" && ev.Error != "" && !ev.At.Before(since) && ev.At.Before(until) {
			fs.Count++
			if !ev.At.Before(fs.Last) {
				fs.Last, fs.LastError = ev.At, ev.Error
			}
		}
	}
	return fs, fs.Count > 0
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
