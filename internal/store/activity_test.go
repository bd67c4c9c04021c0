package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

func span(id string, from, to int) labs.Activity {
	return labs.Activity{LabID: id, From: norm(at(from)), To: norm(at(to))}
}

func mustActivity(t *testing.T, s *store.Store, since, until time.Time) []labs.Activity {
	t.Helper()
	got, err := s.Activity(t.Context(), since, until)
	if err != nil {
		t.Fatalf("Activity: %v", err)
	}
	if got == nil {
		got = []labs.Activity{}
	}
	return got
}

// TestHeartbeatActivity: a run of heartbeats less than ActivityGap apart is one span; a longer
// silence closes it (into the activity table) and opens another. Activity returns the closed
// spans and the open one.
func TestHeartbeatActivity(t *testing.T) {
	gap := int(labs.ActivityGap / time.Second)
	cases := []struct {
		name  string
		beats []int // seconds after base
		want  []labs.Activity
	}{
		{"one heartbeat: a span with no length", []int{10}, []labs.Activity{span("l", 10, 10)}},
		{"a minute apart: one span", []int{0, 60, 120, 180}, []labs.Activity{span("l", 0, 180)}},
		{"exactly the gap apart: still one span", []int{0, gap}, []labs.Activity{span("l", 0, gap)}},
		{"more than the gap: two spans", []int{0, 60, 60 + gap + 1, 60 + gap + 30},
			[]labs.Activity{span("l", 0, 60), span("l", 60+gap+1, 60+gap+30)}},
		{"three sessions", []int{0, 100, 1000, 1050, 5000},
			[]labs.Activity{span("l", 0, 100), span("l", 1000, 1050), span("l", 5000, 5000)}},
		{"a late heartbeat inside the span changes nothing", []int{0, 100, 50}, []labs.Activity{span("l", 0, 100)}},
		{"a late heartbeat from before the open span is dropped", []int{0, 1000, 10},
			[]labs.Activity{span("l", 0, 0), span("l", 1000, 1000)}},
	}
	eachDriver(t, func(t *testing.T, e *env) {
		for i, c := range cases {
			id := fmt.Sprintf("a%d", i)
			mustCreate(t, e.s, newLab(id, "ann", fmt.Sprint("c", i), "east", labs.Active, at(0)))
			for _, b := range c.beats {
				if _, err := e.s.Heartbeat(t.Context(), id, at(b)); err != nil {
					t.Fatal(err)
				}
			}
			var got []labs.Activity
			for _, a := range mustActivity(t, e.s, time.Time{}, time.Time{}) {
				if a.LabID == id {
					a.LabID = "l"
					got = append(got, a)
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s: heartbeats %v:\n got %v\nwant %v", c.name, c.beats, got, c.want)
			}
		}
	})
}

// TestActivityPeriod: Activity returns the spans overlapping the period, the open one of a
// deleted lab included (a deleted lab takes no heartbeat, but its last span is kept).
func TestActivityPeriod(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		lab := mustCreate(t, e.s, newLab("p", "ann", "net101", "east", labs.Active, at(0)))
		for _, b := range []int{0, 60, 1000, 1100} {
			if _, err := e.s.Heartbeat(ctx, "p", at(b)); err != nil {
				t.Fatal(err)
			}
		}
		lab = mustGet(t, e.s, "p")
		lab.Status, lab.DeletedAt = labs.Deleted, at(2000)
		if _, err := e.s.UpdateLab(ctx, lab, event("delete", at(2000))); err != nil {
			t.Fatal(err)
		}
		closed, open := span("p", 0, 60), span("p", 1000, 1100)
		cases := []struct {
			since, until time.Time
			want         []labs.Activity
		}{
			{time.Time{}, time.Time{}, []labs.Activity{closed, open}},
			{at(61), time.Time{}, []labs.Activity{open}},
			{at(60), time.Time{}, []labs.Activity{closed, open}},
			{time.Time{}, at(1000), []labs.Activity{closed}},
			{at(60), at(1001), []labs.Activity{closed, open}},
			{at(1101), at(3000), []labs.Activity{}},
		}
		for _, c := range cases {
			if got := mustActivity(t, e.s, c.since, c.until); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Activity(%v, %v) = %v, want %v", c.since, c.until, got, c.want)
			}
		}
	})
}

// TestHeartbeatSpansConcurrent: heartbeats to one lab from many goroutines on two Stores (as
// from several API replicas), in rounds far apart: each round is one span, no span is closed
// twice, none is lost.
func TestHeartbeatSpansConcurrent(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		mustCreate(t, e.s, newLab("cc", "ann", "net101", "east", labs.Active, at(0)))
		stores := []*store.Store{e.s, e.open(t)}
		const rounds, beaters = 5, 8
		for r := range rounds {
			var wg sync.WaitGroup
			errs := make(chan error, beaters)
			for g := range beaters {
				wg.Go(func() {
					if _, err := stores[g%2].Heartbeat(ctx, "cc", at(r*1000+g)); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		}
		got := mustActivity(t, e.s, time.Time{}, time.Time{})
		if len(got) != rounds {
			t.Fatalf("%d spans, want one per round (%d): %v", len(got), rounds, got)
		}
		sort.Slice(got, func(i, j int) bool { return got[i].From.Before(got[j].From) })
		for r, a := range got {
			lo, hi := norm(at(r*1000)), norm(at(r*1000+beaters-1))
			if a.From.Before(lo) || a.To.After(hi) || a.To.Before(a.From) {
				t.Errorf("span %d = %v..%v, want within round %d's heartbeats %v..%v", r, a.From, a.To, r, lo, hi)
			}
		}
	})
}

// TestHeartbeatsAtOnce: many heartbeats at once to many labs (on PostgreSQL they go to the
// database in batches), out of order, some to the same lab, some to a deleted or unknown lab,
// some opening a new span: each answer is its own lab's row, no later than the heartbeat, each
// lab keeps its latest heartbeat, and the deleted and unknown ones fail as one at a time does.
func TestHeartbeatsAtOnce(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		const labsN, beatsN = 10, 400
		for i := range labsN {
			id := fmt.Sprintf("l%d", i)
			mustCreate(t, e.s, newLab(id, "learner"+id, "net101", "east", labs.Active, at(0)))
			if i%2 == 0 { // an open span; the odd labs' first heartbeat opens one
				if _, err := e.s.Heartbeat(ctx, id, at(1)); err != nil {
					t.Fatal(err)
				}
			}
		}
		mustCreate(t, e.s, newLab("gone", "gina", "net101", "east", labs.Deleted, at(0)))
		latest := make([]time.Time, labsN)
		r := rand.New(rand.NewPCG(1, 2))
		type sent struct {
			id string
			at time.Time
		}
		beats := make([]sent, beatsN)
		for i := range beats {
			l := r.IntN(labsN + 2)
			beats[i].at = at(2 + r.IntN(120))
			switch {
			case l == labsN:
				beats[i].id = "gone"
			case l == labsN+1:
				beats[i].id = "none"
			default:
				beats[i].id = fmt.Sprintf("l%d", l)
				if beats[i].at.After(latest[l]) {
					latest[l] = beats[i].at
				}
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, beatsN)
		for _, b := range beats {
			wg.Go(func() {
				got, err := e.s.Heartbeat(ctx, b.id, b.at)
				switch {
				case b.id == "gone":
					if !errors.Is(err, labs.ErrDeleted) {
						errs <- fmt.Errorf("heartbeat of a deleted lab: %v", err)
					}
				case b.id == "none":
					if !errors.Is(err, labs.ErrNotFound) {
						errs <- fmt.Errorf("heartbeat of an unknown lab: %v", err)
					}
				case err != nil:
					errs <- err
				case got.ID != b.id || got.LastHeartbeat.Before(norm(b.at)):
					errs <- fmt.Errorf("heartbeat %s at %v answered lab %s, last heartbeat %v", b.id, b.at, got.ID, got.LastHeartbeat)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for i, want := range latest {
			id := fmt.Sprintf("l%d", i)
			got, err := e.s.GetLab(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !want.IsZero() && !got.LastHeartbeat.Equal(norm(want)) {
				t.Errorf("%s: last heartbeat %v, want the latest sent, %v", id, got.LastHeartbeat, norm(want))
			}
		}
	})
}

// TestLabsExisting: the labs that existed in a period, and every event of theirs in the
// order it was recorded.
func TestLabsExisting(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		gone := func(l labs.Lab, deleted int) labs.Lab {
			l.DeletedAt = at(deleted)
			return l
		}
		mustCreate(t, e.s, gone(newLab("a", "ann", "net101", "east", labs.Deleted, at(0)), 100))
		mustCreate(t, e.s, newLab("b", "bob", "net101", "east", labs.Suspended, at(50)))
		mustCreate(t, e.s, newLab("c", "cat", "net101", "east", labs.Active, at(200)))
		mustCreate(t, e.s, gone(newLab("d", "dan", "net101", "east", labs.Deleted, at(0)), 10))
		// recorded after a's creation event, but timed before it: the recorded order stands
		for _, ev := range []labs.Event{{LabID: "a", At: at(-5), Action: "skewed"}, {LabID: "b", At: at(500), Action: "later"}} {
			if err := e.s.AddEvent(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		cases := []struct {
			since, until time.Time
			labs         []string
			events       []string
		}{
			{at(20), at(150), []string{"a", "b"}, []string{"a:create", "a:skewed", "b:create", "b:later"}},
			{time.Time{}, time.Time{}, []string{"a", "d", "b", "c"},
				[]string{"a:create", "a:skewed", "b:create", "b:later", "c:create", "d:create"}},
			{at(100), time.Time{}, []string{"a", "b", "c"}, []string{"a:create", "a:skewed", "b:create", "b:later", "c:create"}},
			{time.Time{}, at(50), []string{"a", "d"}, []string{"a:create", "a:skewed", "d:create"}},
			{at(101), at(200), []string{"b"}, []string{"b:create", "b:later"}},
		}
		for _, c := range cases {
			ls, err := e.s.LabsExisting(ctx, c.since, c.until)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(ls); !reflect.DeepEqual(got, c.labs) {
				t.Errorf("LabsExisting(%v, %v) = %v, want %v", c.since, c.until, got, c.labs)
			}
			evs, err := e.s.EventsOfLabsExisting(ctx, c.since, c.until)
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, ev := range evs {
				got = append(got, ev.LabID+":"+ev.Action)
			}
			if !reflect.DeepEqual(got, c.events) {
				t.Errorf("EventsOfLabsExisting(%v, %v) = %v, want %v", c.since, c.until, got, c.events)
			}
		}
	})
}

// TestImport: a SQLite registry's labs, audit trail (in order, new ids) and activity copied
// into another; PostgreSQL refuses.
func TestImport(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		srcPath := filepath.Join(t.TempDir(), "run.db")
		run, err := store.Open(ctx, store.SQLite, srcPath)
		if err != nil {
			t.Fatal(err)
		}
		mustCreate(t, run, newLab("i1", "ann", "net101", "east", labs.Active, at(0)))
		for _, b := range []int{10, 20, 1000} {
			if _, err := run.Heartbeat(ctx, "i1", at(b)); err != nil {
				t.Fatal(err)
			}
		}
		if err := run.AddEvent(ctx, labs.Event{LabID: "i1", At: at(-1), Action: "recorded second"}); err != nil {
			t.Fatal(err)
		}
		wantLab := mustGet(t, run, "i1")
		run.Close()

		mustCreate(t, e.s, newLab("mine", "bob", "net101", "east", labs.Active, at(0)))
		err = e.s.Import(ctx, srcPath)
		if e.driver == store.Postgres {
			if err == nil || !strings.Contains(err.Error(), "only into a SQLite registry") {
				t.Errorf("Import on PostgreSQL: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		sameLab(t, "imported lab", mustGet(t, e.s, "i1"), wantLab)
		var got []string
		for _, ev := range mustEvents(t, e.s, "", 0) {
			got = append(got, ev.LabID+":"+ev.Action)
		}
		// Events orders by time, then id: the imported events have new ids, after this registry's
		if want := []string{"i1:recorded second", "mine:create", "i1:create"}; !reflect.DeepEqual(got, want) {
			t.Errorf("events = %v, want %v", got, want)
		}
		evs, err := e.s.EventsOfLabsExisting(ctx, time.Time{}, time.Time{})
		if err != nil || len(evs) != 3 || evs[0].Action != "create" || evs[1].Action != "recorded second" {
			t.Errorf("the imported events keep their recorded order: %+v, %v", evs, err)
		}
		if a := mustActivity(t, e.s, time.Time{}, time.Time{}); !reflect.DeepEqual(a, []labs.Activity{span("i1", 10, 20), span("i1", 1000, 1000)}) {
			t.Errorf("imported activity = %v", a)
		}
		if err := e.s.Import(ctx, srcPath); err == nil {
			t.Error("importing the same labs twice must fail")
		}
	})
}

// TestUsage: a learner's usage in a course is the length of every span of every one of their
// labs in it, deleted ones and the open span included, and nobody else's; the time added to
// their budget is the sum of what operators added for that learner and course.
func TestUsage(t *testing.T) {
	gap := int(labs.ActivityGap / time.Second)
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		beat := func(id string, secs ...int) {
			t.Helper()
			for _, s := range secs {
				if _, err := e.s.Heartbeat(ctx, id, at(s)); err != nil {
					t.Fatal(err)
				}
			}
		}
		course := "course-v1:hastexo+hx212+201907"
		mustCreate(t, e.s, newLab("u1", "ann", course, "east", labs.Active, at(0)))
		beat("u1", 0, 60, 120, 120+gap+1, 120+gap+61) // two spans: 120 s and 60 s
		first := mustGet(t, e.s, "u1")
		first.Status, first.DeletedAt = labs.Deleted, at(5000)
		if _, err := e.s.UpdateLab(ctx, first, event("delete", at(5000))); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, e.s, newLab("u2", "ann", course, "east", labs.Active, at(6000)))
		beat("u2", 6000, 6030) // the open span: 30 s
		// someone else's in the course, and ann's in another course: not counted
		mustCreate(t, e.s, newLab("u3", "bob", course, "east", labs.Active, at(0)))
		beat("u3", 0, 200)
		mustCreate(t, e.s, newLab("u4", "ann", "net101", "east", labs.Active, at(0)))
		beat("u4", 0, 300)

		used, added, err := e.s.Usage(ctx, "ann", course)
		if err != nil || used != 210*time.Second || added != 0 {
			t.Errorf("Usage(ann) = %s, %s, %v; want 3m30s used, nothing added", used, added, err)
		}
		for _, by := range []time.Duration{2 * time.Hour, 90*time.Minute + 500*time.Millisecond} {
			if err := e.s.AddUsage(ctx, mustGet(t, e.s, "u2"), by, labs.Event{LabID: "u2", At: at(7000), Actor: "op", Action: "extend"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, added, err := e.s.Usage(ctx, "ann", course); err != nil || added != 3*time.Hour+30*time.Minute {
			t.Errorf("time added after 2h and 1h30m0.5s: %s, %v; want 3h30m (whole seconds)", added, err)
		}
		if _, added, _ := e.s.Usage(ctx, "bob", course); added != 0 {
			t.Errorf("time added to bob's budget by ann's extension: %s", added)
		}
		if evs, err := e.s.Events(ctx, "u2", 0); err != nil || evs[len(evs)-1].Action != "extend" {
			t.Errorf("the lab's events after an extension: %+v, %v", evs, err)
		}
		if used, _, err := e.s.Usage(ctx, "nobody", course); err != nil || used != 0 {
			t.Errorf("Usage of a learner with no lab = %s, %v", used, err)
		}
	})
}
