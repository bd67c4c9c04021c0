package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/dev/pgtest"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

// pgServer is started once for the whole package by TestMain (or is the server named by
// LABPLANE_TEST_POSTGRES_DSN); each test gets a fresh database on it.
var pgServer *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &pgServer) }

// env is one driver's fresh database, with a Store open on it.
type env struct {
	driver string
	dsn    string
	s      *store.Store
}

// open opens another Store on the same database (as another process would).
func (e *env) open(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), e.driver, e.dsn)
	if err != nil {
		t.Fatalf("Open(%s): %v", e.driver, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

var drivers = []struct {
	name  string
	newDB func(t *testing.T) string // a DSN to a fresh, empty database
}{
	{store.SQLite, func(t *testing.T) string { return filepath.Join(t.TempDir(), "labplane.db") }},
	{store.Postgres, func(t *testing.T) string { return pgServer.Database(t) }},
}

// eachDriver runs fn as a parallel subtest per driver, each on a fresh database (the test
// itself runs in parallel with the other tests that use eachDriver).
func eachDriver(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Parallel()
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			e := &env{driver: d.name, dsn: d.newDB(t)}
			e.s = e.open(t)
			if got := e.s.Driver(); got != d.name {
				t.Fatalf("Driver() = %q, want %q", got, d.name)
			}
			fn(t, e)
		})
	}
}

// base has nanoseconds and a zone that is not UTC, to check the store's normalisation.
var base = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))

func at(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

// norm is what the store must return for t: UTC, truncated to the microsecond.
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

func normLab(l labs.Lab) labs.Lab {
	for _, p := range []*time.Time{&l.StackStatusSince, &l.CreatedAt, &l.LastHeartbeat, &l.LastResumedAt,
		&l.NextAttemptAt, &l.UpdatedAt, &l.DeletedAt} {
		*p = norm(*p)
	}
	return l
}

func newLab(id, learner, course, cloud string, st labs.Status, created time.Time) labs.Lab {
	return labs.Lab{ID: id, Learner: learner, Course: course, Template: "tpl-" + course, Cloud: cloud,
		StackName: "lab-" + id, Status: st, CreatedAt: created}
}

func event(action string, when time.Time) labs.Event {
	return labs.Event{At: when, Actor: "test", Action: action}
}

func mustCreate(t *testing.T, s *store.Store, l labs.Lab) labs.Lab {
	t.Helper()
	got, err := s.CreateLab(t.Context(), l, event("create", l.CreatedAt))
	if err != nil {
		t.Fatalf("CreateLab(%s): %v", l.ID, err)
	}
	return got
}

func mustGet(t *testing.T, s *store.Store, id string) labs.Lab {
	t.Helper()
	l, err := s.GetLab(t.Context(), id)
	if err != nil {
		t.Fatalf("GetLab(%s): %v", id, err)
	}
	return l
}

func mustEvents(t *testing.T, s *store.Store, labID string, limit int) []labs.Event {
	t.Helper()
	evs, err := s.Events(t.Context(), labID, limit)
	if err != nil {
		t.Fatalf("Events(%q, %d): %v", labID, limit, err)
	}
	return evs
}

func sameLab(t *testing.T, what string, got, want labs.Lab) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func ids(ls []labs.Lab) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		full := labs.Lab{
			ID: "lab-1", Learner: "ann@example.org", Course: "net101", Template: "net101/v3", Cloud: "east",
			StackName: "labplane-net101-ann", StackID: "8c3e0c5e-stack", Status: labs.Active,
			StackStatus: "CREATE_COMPLETE", StackStatusSince: at(10), CreatedAt: at(0),
			LastHeartbeat: at(20), LastResumedAt: at(30), Attempts: 3, NextAttemptAt: at(40),
			LastError: "quota: 'cores' exceeded\nline two", Outputs: map[string]string{"url": "https://g/x?a=1&b=2", "pw": `q"uo'te`},
			UpdatedAt: at(-1000), DeletedAt: at(50), Version: 42, // store-managed: both replaced
		}
		ev := labs.Event{LabID: "ignored", At: at(5), Actor: "api", Action: "launch", To: labs.Launching}
		got, err := e.s.CreateLab(ctx, full, ev)
		if err != nil {
			t.Fatal(err)
		}
		want := normLab(full)
		want.Version = 1
		want.UpdatedAt = norm(ev.At)
		sameLab(t, "CreateLab", got, want)
		if got.CreatedAt.Location() != time.UTC || got.CreatedAt.Nanosecond()%1000 != 0 {
			t.Errorf("CreatedAt %v: want UTC, microseconds", got.CreatedAt)
		}
		sameLab(t, "GetLab", mustGet(t, e.s, full.ID), want)
		live, err := e.s.FindLive(ctx, full.Learner, full.Course)
		if err != nil {
			t.Fatal(err)
		}
		sameLab(t, "FindLive", live, want)
		list, err := e.s.ListLabs(ctx, labs.Filter{})
		if err != nil || len(list) != 1 {
			t.Fatalf("ListLabs = %v, %v; want one lab", ids(list), err)
		}
		sameLab(t, "ListLabs", list[0], want)

		// A minimal lab: zero times stay zero (NULL), nil outputs stay nil; CreatedAt defaults to ev.At.
		minimal := labs.Lab{ID: "lab-2", Learner: "bob", Course: "net101", Status: labs.Launching}
		got, err = e.s.CreateLab(ctx, minimal, event("launch", at(7)))
		if err != nil {
			t.Fatal(err)
		}
		wantMin := minimal
		wantMin.CreatedAt, wantMin.UpdatedAt, wantMin.Version = norm(at(7)), norm(at(7)), 1
		sameLab(t, "CreateLab minimal", got, wantMin)
		sameLab(t, "GetLab minimal", mustGet(t, e.s, minimal.ID), wantMin)

		// Empty outputs stay empty and not nil.
		empty := newLab("lab-3", "cat", "net101", "east", labs.Active, at(8))
		empty.Outputs = map[string]string{}
		if got := mustCreate(t, e.s, empty); got.Outputs == nil || len(got.Outputs) != 0 {
			t.Errorf("empty outputs came back as %#v", got.Outputs)
		}

		// UpdateLab writes every mutable field (and only those).
		upd := mustGet(t, e.s, full.ID)
		upd.Learner, upd.Course, upd.CreatedAt = "mallory", "other", at(-99) // immutable: ignored
		upd.Template, upd.Cloud, upd.StackName, upd.StackID = "net101/v4", "west", "n2", "s2"
		upd.Status, upd.StackStatus, upd.StackStatusSince = labs.Suspended, "SUSPEND_COMPLETE", at(60)
		upd.LastHeartbeat, upd.LastResumedAt, upd.Attempts, upd.NextAttemptAt = at(61), at(62), 0, time.Time{}
		upd.LastError, upd.Outputs, upd.DeletedAt = "", map[string]string{"k": "v"}, time.Time{}
		got, err = e.s.UpdateLab(ctx, upd, event("suspend", at(70)))
		if err != nil {
			t.Fatal(err)
		}
		wantUpd := normLab(upd)
		wantUpd.Learner, wantUpd.Course, wantUpd.CreatedAt = full.Learner, full.Course, norm(full.CreatedAt)
		wantUpd.Version, wantUpd.UpdatedAt = 2, norm(at(70))
		sameLab(t, "UpdateLab", got, wantUpd)
		sameLab(t, "GetLab after UpdateLab", mustGet(t, e.s, full.ID), wantUpd)
	})
}

func TestNotFound(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		_, err := e.s.GetLab(ctx, "no-such-lab")
		if !errors.Is(err, labs.ErrNotFound) || !strings.Contains(err.Error(), "no-such-lab") {
			t.Errorf("GetLab(unknown) = %v; want ErrNotFound naming the id", err)
		}
		mustCreate(t, e.s, newLab("l1", "ann", "net101", "east", labs.Deleted, at(0)))
		if _, err := e.s.FindLive(ctx, "ann", "net101"); !errors.Is(err, labs.ErrNotFound) {
			t.Errorf("FindLive with only a deleted lab = %v; want ErrNotFound", err)
		}
		if _, err := e.s.FindLive(ctx, "bob", "net101"); !errors.Is(err, labs.ErrNotFound) {
			t.Errorf("FindLive(unknown) = %v; want ErrNotFound", err)
		}
	})
}

func TestCreateExists(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		first := mustCreate(t, e.s, newLab("a1", "ann", "net101", "east", labs.Active, at(0)))

		_, err := e.s.CreateLab(ctx, newLab("a2", "ann", "net101", "west", labs.Launching, at(1)), event("create", at(1)))
		if !errors.Is(err, labs.ErrExists) {
			t.Fatalf("second live lab: err = %v; want ErrExists", err)
		}
		if _, err := e.s.GetLab(ctx, "a2"); !errors.Is(err, labs.ErrNotFound) {
			t.Errorf("refused lab was stored: GetLab = %v", err)
		}
		if evs := mustEvents(t, e.s, "a2", 0); len(evs) != 0 {
			t.Errorf("refused create wrote events: %+v", evs)
		}

		// Other course, other learner: fine.
		mustCreate(t, e.s, newLab("a3", "ann", "sec201", "east", labs.Active, at(2)))
		mustCreate(t, e.s, newLab("b1", "bob", "net101", "east", labs.Active, at(3)))

		// A duplicate id is an error, but not ErrExists, and changes nothing.
		_, err = e.s.CreateLab(ctx, newLab("a1", "zed", "other", "east", labs.Active, at(4)), event("create", at(4)))
		if err == nil || errors.Is(err, labs.ErrExists) {
			t.Errorf("duplicate id: err = %v; want a non-ErrExists error", err)
		}
		sameLab(t, "lab after duplicate id", mustGet(t, e.s, "a1"), first)
		if evs := mustEvents(t, e.s, "a1", 0); len(evs) != 1 {
			t.Errorf("a1 has %d events, want 1", len(evs))
		}

		// Every status but deleted is live.
		for i, st := range labs.Statuses {
			learner := fmt.Sprintf("l%d", i)
			mustCreate(t, e.s, newLab("s"+learner, learner, "net101", "east", st, at(10+i)))
			_, err := e.s.CreateLab(ctx, newLab("t"+learner, learner, "net101", "east", labs.Launching, at(10+i)), event("create", at(10+i)))
			if st == labs.Deleted && err != nil {
				t.Errorf("after a deleted lab: %v; want nil", err)
			}
			if st != labs.Deleted && !errors.Is(err, labs.ErrExists) {
				t.Errorf("after a %s lab: %v; want ErrExists", st, err)
			}
		}

		// Once the first is deleted, the learner may have a new lab for the course.
		del := first
		del.Status, del.DeletedAt = labs.Deleted, at(20)
		if _, err := e.s.UpdateLab(ctx, del, event("deleted", at(20))); err != nil {
			t.Fatal(err)
		}
		again := mustCreate(t, e.s, newLab("a4", "ann", "net101", "west", labs.Launching, at(21)))
		live, err := e.s.FindLive(ctx, "ann", "net101")
		if err != nil || live.ID != again.ID {
			t.Errorf("FindLive = %s, %v; want a4", live.ID, err)
		}

		// Reviving the deleted one while a4 is live is refused, and writes nothing.
		revive := mustGet(t, e.s, "a1")
		deleted := revive
		revive.Status = labs.Active
		if _, err := e.s.UpdateLab(ctx, revive, event("revive", at(22))); !errors.Is(err, labs.ErrExists) {
			t.Errorf("revive: err = %v; want ErrExists", err)
		}
		sameLab(t, "lab after refused revive", mustGet(t, e.s, "a1"), deleted)
		if evs := mustEvents(t, e.s, "a1", 0); len(evs) != 2 {
			t.Errorf("a1 has %d events, want 2 (create, deleted)", len(evs))
		}
	})
}

func TestUpdateLab(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		created := mustCreate(t, e.s, newLab("u1", "ann", "net101", "east", labs.Launching, at(0)))

		upd := created
		upd.Status, upd.StackID, upd.StackStatus = labs.Active, "stack-1", "CREATE_COMPLETE"
		ev := labs.Event{LabID: "someone-else", At: at(10), Actor: "reaper", Action: "launched",
			From: labs.Launching, To: labs.Active, Cloud: "east", StackID: "stack-1", RequestID: "req-1"}
		got, err := e.s.UpdateLab(ctx, upd, ev)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != 2 || got.Status != labs.Active || got.StackID != "stack-1" || !got.UpdatedAt.Equal(at(10).Truncate(time.Microsecond)) {
			t.Errorf("UpdateLab returned %+v", got)
		}
		sameLab(t, "GetLab after update", mustGet(t, e.s, "u1"), got)
		evs := mustEvents(t, e.s, "u1", 0)
		if len(evs) != 2 || evs[1].LabID != "u1" || evs[1].Action != "launched" || evs[1].RequestID != "req-1" {
			t.Errorf("events after update: %+v", evs)
		}
		if others := mustEvents(t, e.s, "someone-else", 0); len(others) != 0 {
			t.Errorf("event kept its LabID: %+v", others)
		}

		// An update from the stale copy (version 1) is refused and writes nothing.
		stale := created
		stale.Status, stale.LastError = labs.Failed, "boom"
		_, err = e.s.UpdateLab(ctx, stale, event("fail", at(20)))
		if !errors.Is(err, labs.ErrStale) || !strings.Contains(err.Error(), "u1") {
			t.Fatalf("stale update: err = %v; want ErrStale naming the lab", err)
		}
		sameLab(t, "lab after stale update", mustGet(t, e.s, "u1"), got)
		if evs := mustEvents(t, e.s, "", 0); len(evs) != 2 {
			t.Errorf("stale update wrote an event: %+v", evs)
		}

		// A version from the future is stale too.
		future := got
		future.Version = 99
		if _, err := e.s.UpdateLab(ctx, future, event("x", at(21))); !errors.Is(err, labs.ErrStale) {
			t.Errorf("future version: err = %v; want ErrStale", err)
		}

		// Unknown lab.
		ghost := newLab("ghost", "bob", "net101", "east", labs.Active, at(0))
		ghost.Version = 1
		_, err = e.s.UpdateLab(ctx, ghost, event("x", at(22)))
		if !errors.Is(err, labs.ErrNotFound) || errors.Is(err, labs.ErrStale) {
			t.Errorf("unknown lab: err = %v; want ErrNotFound", err)
		}
		if evs := mustEvents(t, e.s, "", 0); len(evs) != 2 {
			t.Errorf("refused updates wrote events: %+v", evs)
		}

		// The next update from the fresh copy works, and the version keeps counting.
		got.Attempts = 1
		got2, err := e.s.UpdateLab(ctx, got, event("retry", at(30)))
		if err != nil || got2.Version != 3 || got2.Attempts != 1 {
			t.Errorf("second update: %+v, %v", got2, err)
		}
	})
}

func TestHeartbeat(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		created := mustCreate(t, e.s, newLab("h1", "ann", "net101", "east", labs.Active, at(0)))
		if !created.LastHeartbeat.IsZero() {
			t.Fatalf("new lab has a heartbeat: %v", created.LastHeartbeat)
		}
		steps := []struct {
			at, want time.Time
		}{
			{at(100), at(100)},
			{at(50), at(100)}, // an older heartbeat does not move it back
			{at(100), at(100)},
			{at(150), at(150)},
		}
		for i, st := range steps {
			got, err := e.s.Heartbeat(ctx, "h1", st.at)
			if err != nil {
				t.Fatal(err)
			}
			if !got.LastHeartbeat.Equal(norm(st.want)) || got.Version != int64(i+2) {
				t.Errorf("heartbeat %d at %v: last %v version %d; want %v version %d",
					i, st.at, got.LastHeartbeat, got.Version, norm(st.want), i+2)
			}
			sameLab(t, "GetLab after heartbeat", mustGet(t, e.s, "h1"), got)
		}
		final := mustGet(t, e.s, "h1")
		want := created
		want.LastHeartbeat, want.Version = norm(at(150)), 5
		sameLab(t, "only last_heartbeat and version changed", final, want)
		if evs := mustEvents(t, e.s, "", 0); len(evs) != 1 {
			t.Errorf("heartbeats wrote events: %+v", evs)
		}
		// The reaper's copy from before the heartbeats is stale.
		reaper := created
		reaper.Status = labs.Suspending
		if _, err := e.s.UpdateLab(ctx, reaper, event("suspend", at(200))); !errors.Is(err, labs.ErrStale) {
			t.Errorf("update after heartbeat from a stale copy: %v; want ErrStale", err)
		}
		if _, err := e.s.Heartbeat(ctx, "nope", at(1)); !errors.Is(err, labs.ErrNotFound) {
			t.Errorf("Heartbeat(unknown) = %v; want ErrNotFound", err)
		}
		gone := mustCreate(t, e.s, newLab("h2", "bob", "net101", "east", labs.Deleted, at(0)))
		if _, err := e.s.Heartbeat(ctx, "h2", at(300)); !errors.Is(err, labs.ErrDeleted) {
			t.Errorf("Heartbeat(deleted) = %v; want ErrDeleted", err)
		}
		sameLab(t, "a deleted lab takes no heartbeat", mustGet(t, e.s, "h2"), gone)
	})
}

// TestConcurrentUpdates has goroutines on two Stores (as two processes would) increment a
// counter with read-modify-UpdateLab, retrying on ErrStale, while others heartbeat: no
// update and no heartbeat may be lost.
func TestConcurrentUpdates(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		stores := []*store.Store{e.s, e.open(t)}
		mustCreate(t, e.s, newLab("c1", "ann", "net101", "east", labs.Active, at(0)))
		const (
			updaters, increments = 6, 10
			beaters, beats       = 4, 20
		)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			errs    []error
			retries int
		)
		fail := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		for g := range updaters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := stores[g%len(stores)]
				for i := range increments {
					for try := 0; ; try++ {
						if try > 2000 {
							fail(fmt.Errorf("updater %d: too many retries", g))
							return
						}
						l, err := s.GetLab(ctx, "c1")
						if err != nil {
							fail(err)
							return
						}
						l.Attempts++
						l.LastError = fmt.Sprintf("updater %d increment %d", g, i)
						_, err = s.UpdateLab(ctx, l, event("increment", at(1000+g*increments+i)))
						if errors.Is(err, labs.ErrStale) {
							mu.Lock()
							retries++
							mu.Unlock()
							continue
						}
						if err != nil {
							fail(err)
							return
						}
						break
					}
				}
			}()
		}
		for g := range beaters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := stores[(g+1)%len(stores)]
				for i := range beats {
					if _, err := s.Heartbeat(ctx, "c1", at(5000+g*beats+i)); err != nil {
						fail(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		final := mustGet(t, e.s, "c1")
		if final.Attempts != updaters*increments {
			t.Errorf("Attempts = %d, want %d: updates were lost", final.Attempts, updaters*increments)
		}
		// every change of the row moves its version: each update, and each heartbeat, except that
		// heartbeats to one lab sent in one batch (PostgreSQL) change the row once
		if lo, hi := int64(1+updaters*increments+1), int64(1+updaters*increments+beaters*beats); final.Version < lo || final.Version > hi ||
			e.driver == store.SQLite && final.Version != hi {
			t.Errorf("Version = %d, want %d (at most; at least %d on PostgreSQL)", final.Version, hi, lo)
		}
		if want := norm(at(5000 + beaters*beats - 1)); !final.LastHeartbeat.Equal(want) {
			t.Errorf("LastHeartbeat = %v, want %v: a heartbeat was lost", final.LastHeartbeat, want)
		}
		if evs := mustEvents(t, e.s, "c1", 0); len(evs) != 1+updaters*increments {
			t.Errorf("%d events, want %d", len(evs), 1+updaters*increments)
		}
		t.Logf("%s: %d stale retries", e.driver, retries)
	})
}

// DueLabs reads the labs that may be due to be brought to rest, and no other: running or
// failed ones idle since before the idle cutoff (by heartbeat, resume or creation) or left
// before the leave cutoff with no activity since, and those with a suspend or delete under way.
func TestDueLabs(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		lab := func(id string, st labs.Status, created, heartbeat, resumed int, left ...int) labs.Lab {
			l := newLab(id, "l-"+id, "net101", "c1", st, at(created))
			if heartbeat > 0 {
				l.LastHeartbeat = at(heartbeat)
			}
			if resumed > 0 {
				l.LastResumedAt = at(resumed)
			}
			if len(left) > 0 {
				l.LeftAt = at(left[0])
			}
			return l
		}
		for _, l := range []labs.Lab{
			lab("idle", labs.Active, 1, 5, 0),
			lab("never-used", labs.Active, 2, 0, 0),
			lab("idle-just-now", labs.Active, 1, 10, 0),
			lab("beating", labs.Active, 1, 50, 0),
			lab("resumed", labs.Active, 1, 5, 50),
			lab("new", labs.Active, 50, 0, 0),
			lab("failed-idle", labs.Failed, 3, 5, 0),
			lab("suspending", labs.Suspending, 4, 50, 0),
			lab("deleting", labs.Deleting, 5, 50, 0),
			lab("suspended", labs.Suspended, 1, 5, 0),
			lab("launching", labs.Launching, 1, 0, 0),
			lab("operator", labs.NeedsOperator, 1, 5, 0),
			lab("deleted", labs.Deleted, 1, 5, 0),
			lab("left", labs.Active, 1, 40, 0, 45),
			lab("left-just-now", labs.Active, 1, 40, 0, 48),
			lab("left-and-back", labs.Active, 1, 46, 0, 45),
			lab("left-and-resumed", labs.Active, 1, 40, 46, 45),
			lab("suspended-left", labs.Suspended, 1, 40, 0, 45),
		} {
			mustCreate(t, e.s, l)
		}
		got, err := e.s.DueLabs(t.Context(), at(10), at(47))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"idle", "idle-just-now", "left", "never-used", "failed-idle", "suspending", "deleting"}; !reflect.DeepEqual(ids(got), want) {
			t.Errorf("DueLabs(idle before 10 s, left before 47 s) = %v, want %v", ids(got), want)
		}
		// the leave is kept, the latest one; a deleted lab's is refused
		l, err := e.s.Leave(t.Context(), "left-and-back", at(60))
		if err != nil || !l.LeftAt.Equal(norm(at(60))) || !l.Left() {
			t.Fatalf("leave: %+v, %v", l, err)
		}
		if l, err := e.s.Leave(t.Context(), "left-and-back", at(55)); err != nil || !l.LeftAt.Equal(norm(at(60))) {
			t.Errorf("an older leave after a newer one: left at %s, %v", l.LeftAt, err)
		}
		if _, err := e.s.Leave(t.Context(), "deleted", at(60)); !errors.Is(err, labs.ErrDeleted) {
			t.Errorf("leave of a deleted lab: %v", err)
		}
		if _, err := e.s.Leave(t.Context(), "nope", at(60)); !errors.Is(err, labs.ErrNotFound) {
			t.Errorf("leave of no lab: %v", err)
		}
	})
}

func TestListLabs(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		// Inserted out of order; "a" and "d" were created at the same time.
		mustCreate(t, e.s, newLab("d", "cat", "net101", "c1", labs.Failed, at(2)))
		mustCreate(t, e.s, newLab("c", "ann", "sec201", "c1", labs.Deleted, at(3)))
		mustCreate(t, e.s, newLab("a", "ann", "net101", "c1", labs.Active, at(2)))
		mustCreate(t, e.s, newLab("b", "bob", "net101", "c2", labs.Suspended, at(1)))
		cases := []struct {
			f    labs.Filter
			want []string
		}{
			{labs.Filter{}, []string{"b", "a", "d", "c"}},
			{labs.Filter{Cloud: "c1"}, []string{"a", "d", "c"}},
			{labs.Filter{Course: "net101"}, []string{"b", "a", "d"}},
			{labs.Filter{Learner: "ann"}, []string{"a", "c"}},
			{labs.Filter{Statuses: []labs.Status{labs.Active, labs.Failed}}, []string{"a", "d"}},
			{labs.Filter{Statuses: []labs.Status{labs.Suspended}}, []string{"b"}},
			{labs.Filter{Cloud: "c1", Statuses: []labs.Status{labs.Deleted}}, []string{"c"}},
			{labs.Filter{Cloud: "c1", Course: "net101", Learner: "cat"}, []string{"d"}},
			{labs.Filter{Cloud: "c2", Learner: "ann"}, []string{}},
			{labs.Filter{Cloud: "nowhere"}, []string{}},
			// pages: by creation then id ("a" and "d" tie on time), the cursor a lab's id
			{labs.Filter{Limit: 2}, []string{"b", "a"}},
			{labs.Filter{After: "a", Limit: 2}, []string{"d", "c"}},
			{labs.Filter{After: "d"}, []string{"c"}},
			{labs.Filter{After: "c"}, []string{}},
			{labs.Filter{After: "b", Course: "net101", Limit: 1}, []string{"a"}},
			// the cursor's lab need not match the filter
			{labs.Filter{After: "c", Statuses: []labs.Status{labs.Active}}, []string{}},
			{labs.Filter{After: "b", Statuses: []labs.Status{labs.Deleted}}, []string{"c"}},
			// the reaper's pages: a cloud's live labs
			{labs.Filter{Statuses: labs.LiveStatuses(), Limit: 2}, []string{"b", "a"}},
			{labs.Filter{Statuses: labs.LiveStatuses(), After: "a", Limit: 2}, []string{"d"}},
			{labs.Filter{Cloud: "c1", Statuses: labs.LiveStatuses(), After: "a"}, []string{"d"}},
			// a cursor naming no lab: no page
			{labs.Filter{After: "nowhere"}, []string{}},
		}
		for _, c := range cases {
			got, err := e.s.ListLabs(t.Context(), c.f)
			if err != nil {
				t.Fatalf("ListLabs(%+v): %v", c.f, err)
			}
			if !reflect.DeepEqual(ids(got), c.want) {
				t.Errorf("ListLabs(%+v) = %v, want %v", c.f, ids(got), c.want)
			}
		}
	})
}

func TestEvents(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		// Added out of time order; e3 and e4 share a time (then id order decides).
		add := []labs.Event{
			{LabID: "x", At: at(3), Action: "e1"},
			{LabID: "y", At: at(1), Action: "e2"},
			{LabID: "x", At: at(2), Action: "e3"},
			{LabID: "x", At: at(2), Action: "e4"},
			{LabID: "orphan:c1/s9", At: at(4), Action: "e5"}, // names no lab: no foreign key
		}
		for _, ev := range add {
			if err := e.s.AddEvent(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		actions := func(evs []labs.Event) []string {
			out := []string{}
			for _, ev := range evs {
				out = append(out, ev.Action)
			}
			return out
		}
		cases := []struct {
			lab   string
			limit int
			want  []string
		}{
			{"", 0, []string{"e2", "e3", "e4", "e1", "e5"}},
			{"", -1, []string{"e2", "e3", "e4", "e1", "e5"}},
			{"", 3, []string{"e4", "e1", "e5"}},
			{"x", 0, []string{"e3", "e4", "e1"}},
			{"x", 2, []string{"e4", "e1"}},
			{"x", 1, []string{"e1"}},
			{"x", 10, []string{"e3", "e4", "e1"}},
			{"orphan:c1/s9", 0, []string{"e5"}},
			{"none", 0, []string{}},
		}
		for _, c := range cases {
			if got := actions(mustEvents(t, e.s, c.lab, c.limit)); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Events(%q, %d) = %v, want %v", c.lab, c.limit, got, c.want)
			}
		}
		all := mustEvents(t, e.s, "", 0)
		if all[1].ID >= all[2].ID || all[1].ID <= 0 {
			t.Errorf("ids %d, %d: want positive and increasing in insertion order", all[1].ID, all[2].ID)
		}

		// Every field round-trips.
		full := labs.Event{LabID: "z", At: base, Actor: "reaper", Action: "suspend", From: labs.Active,
			To: labs.Suspending, Cloud: "east", StackID: "st-1", RequestID: "req-abc", Error: "timeout\nhere", Detail: `{"idle":"2h"}`}
		if err := e.s.AddEvent(ctx, full); err != nil {
			t.Fatal(err)
		}
		got := mustEvents(t, e.s, "z", 0)
		if len(got) != 1 {
			t.Fatalf("Events(z) = %+v", got)
		}
		want := full
		want.At, want.ID = norm(full.At), got[0].ID
		if got[0].ID <= all[len(all)-1].ID || !reflect.DeepEqual(got[0], want) {
			t.Errorf("event round trip:\n got %+v\nwant %+v", got[0], want)
		}

		if err := e.s.AddEvent(ctx, labs.Event{LabID: "x", Action: "no time"}); err == nil {
			t.Error("AddEvent with a zero time: want an error")
		}
	})
}

func TestCountLive(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		got, err := e.s.CountLive(ctx)
		if err != nil || len(got) != 0 {
			t.Fatalf("CountLive on an empty store = %v, %v", got, err)
		}
		for i, l := range []struct {
			cloud string
			st    labs.Status
		}{
			{"c1", labs.Active}, {"c1", labs.Suspended}, {"c1", labs.Deleted}, {"c1", labs.Deleting},
			{"c2", labs.Launching}, {"c2", labs.NeedsOperator}, {"c2", labs.Deleted},
			{"c3", labs.Deleted},
		} {
			id := fmt.Sprintf("lab%d", i)
			mustCreate(t, e.s, newLab(id, id, "net101", l.cloud, l.st, at(i)))
		}
		got, err = e.s.CountLive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"c1": 3, "c2": 2}; !reflect.DeepEqual(got, want) {
			t.Errorf("CountLive = %v, want %v", got, want)
		}
	})
}

func TestOrphans(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		see := func(cloud, id string, now time.Time, want time.Time) {
			t.Helper()
			got, err := e.s.SeeOrphan(ctx, cloud, id, "name-"+id, now)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(norm(want)) || got.Location() != time.UTC {
				t.Errorf("SeeOrphan(%s, %s, %v) = %v, want %v", cloud, id, now, got, norm(want))
			}
		}
		see("c1", "s1", at(10), at(10))
		see("c1", "s1", at(20), at(10)) // keeps the first time
		see("c1", "s1", at(5), at(10))
		see("c2", "s1", at(30), at(30)) // another cloud, another stack
		if err := e.s.ForgetOrphan(ctx, "c1", "s1"); err != nil {
			t.Fatal(err)
		}
		see("c1", "s1", at(40), at(40)) // forgotten: seen anew
		see("c2", "s1", at(50), at(30)) // untouched
		if err := e.s.ForgetOrphan(ctx, "c9", "never-seen"); err != nil {
			t.Errorf("ForgetOrphan(unknown) = %v", err)
		}
	})
}

func TestOpenTwice(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		mustCreate(t, e.s, newLab("o1", "ann", "net101", "east", labs.Active, at(0)))
		other := e.open(t) // migrations already applied: a no-op
		if err := other.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		sameLab(t, "lab seen by the second store", mustGet(t, other, "o1"), mustGet(t, e.s, "o1"))
		created := mustCreate(t, other, newLab("o2", "bob", "net101", "east", labs.Active, at(1)))
		sameLab(t, "lab seen by the first store", mustGet(t, e.s, "o2"), created)
		if err := other.Close(); err != nil {
			t.Fatal(err)
		}
		third := e.open(t)
		if got, err := third.ListLabs(ctx, labs.Filter{}); err != nil || len(got) != 2 {
			t.Errorf("third store lists %v, %v", ids(got), err)
		}
	})
}

func TestSQLiteWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wal.db")
	s, err := store.Open(t.Context(), store.SQLite, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustCreate(t, s, newLab("w1", "ann", "net101", "east", labs.Active, at(0)))
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no WAL file next to the database: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
	_, err := store.Open(ctx, "mysql", "user:pw@tcp(db)/x")
	if err == nil {
		t.Fatal("Open(mysql): want an error")
	}
	for _, want := range []string{`"mysql"`, "sqlite", "postgres"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("unknown driver error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "pw@tcp") {
		t.Errorf("unknown driver error contains the DSN: %q", err)
	}
	for _, d := range []string{store.SQLite, store.Postgres} {
		if _, err := store.Open(ctx, d, ""); err == nil {
			t.Errorf("Open(%s, \"\"): want an error", d)
		}
	}

	const secret = "Sup3r-S3cret.pw"
	type badDSN struct {
		name, driver, dsn string
		secrets           []string
	}
	bad := []badDSN{
		{"sqlite missing dir", store.SQLite, "/nonexistent-" + secret + "/sub/x.db", []string{secret}},
		{"refused", store.Postgres, "postgres://labplane:" + secret + "@127.0.0.1:1/labplane?sslmode=disable&connect_timeout=5", []string{secret}},
		{"escaped", store.Postgres, "postgres://labplane:" + url.QueryEscape(secret+"/@:") + "@127.0.0.1:1/labplane?sslmode=disable", []string{secret, url.QueryEscape(secret + "/@:")}},
		{"bad port", store.Postgres, "postgres://labplane:" + secret + "@127.0.0.1:notaport/labplane", []string{secret}},
		{"key=value", store.Postgres, "host=127.0.0.1 port=1 user=labplane password=" + secret + " dbname=x sslmode=disable connect_timeout=5", []string{secret}},
		{"key=value quoted", store.Postgres, "host=127.0.0.1 port=1 user=labplane password='" + secret + " x' dbname=x sslmode=disable", []string{secret}},
		{"bad key=value", store.Postgres, "host=127.0.0.1 port=1 password='" + secret, []string{secret}},
	}
	// The real server, with a wrong password for a database that does not exist.
	if pgServer == nil {
		t.Log("no PostgreSQL server with -short: the wrong-password case is left out")
	} else if u, err := url.Parse(pgServer.DSN()); err == nil && u.Host != "" {
		user := "postgres"
		if u.User != nil {
			user = u.User.Username()
		}
		u.User = url.UserPassword(user, secret)
		u.Path = "/no_such_db"
		bad = append(bad, badDSN{"wrong password", store.Postgres, u.String(), []string{secret}})
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			s, err := store.Open(ctx, b.driver, b.dsn)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s): want an error", b.name)
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			for _, sec := range append(b.secrets, b.dsn) {
				if strings.Contains(msg, sec) {
					t.Errorf("error contains %q: %s", sec, msg)
				}
			}
			if !strings.Contains(msg, b.driver) {
				t.Errorf("error does not name the driver: %s", msg)
			}
		})
	}
}

func TestSQLiteMemory(t *testing.T) {
	s, err := store.Open(t.Context(), store.SQLite, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	created := mustCreate(t, s, newLab("m1", "ann", "net101", "east", labs.Active, at(0)))
	// One connection, so every call sees the same in-memory database.
	for range 3 {
		sameLab(t, "GetLab", mustGet(t, s, "m1"), created)
	}
}

func TestLabCounts(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		got, err := e.s.LabCounts(ctx)
		if err != nil || len(got) != 0 {
			t.Fatalf("LabCounts on an empty store = %v, %v", got, err)
		}
		for i, l := range []struct {
			cloud string
			st    labs.Status
		}{
			{"c1", labs.Active}, {"c1", labs.Active}, {"c1", labs.Suspended}, {"c1", labs.Deleted},
			{"c2", labs.Active}, {"c2", labs.Deleted}, {"c2", labs.Deleted}, {"c3", labs.NeedsOperator},
		} {
			id := fmt.Sprintf("lab%d", i)
			mustCreate(t, e.s, newLab(id, id, "net101", l.cloud, l.st, at(i)))
		}
		got, err = e.s.LabCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[store.LabCount]int{
			{Cloud: "c1", Status: labs.Active}: 2, {Cloud: "c1", Status: labs.Suspended}: 1, {Cloud: "c1", Status: labs.Deleted}: 1,
			{Cloud: "c2", Status: labs.Active}: 1, {Cloud: "c2", Status: labs.Deleted}: 2,
			{Cloud: "c3", Status: labs.NeedsOperator}: 1,
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("LabCounts =\n %v\nwant\n %v", got, want)
		}
	})
}

// TallyLabs counts by course, cloud and status what a filter selects (the console's counts).
func TestTallyLabs(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		for i, l := range []struct {
			course, cloud string
			st            labs.Status
		}{
			{"net101", "c1", labs.Active}, {"net101", "c1", labs.Active}, {"net101", "c2", labs.Suspended},
			{"os101", "c1", labs.NeedsOperator}, {"os101", "c1", labs.Deleted}, {"os101", "c2", labs.Active},
		} {
			id := fmt.Sprintf("lab%d", i)
			mustCreate(t, e.s, newLab(id, id, l.course, l.cloud, l.st, at(i)))
		}
		for _, tc := range []struct {
			name string
			f    labs.Filter
			want []labs.Tally
		}{
			{"live", labs.Filter{Statuses: labs.LiveStatuses()}, []labs.Tally{
				{Course: "net101", Cloud: "c1", Status: labs.Active, Labs: 2}, {Course: "net101", Cloud: "c2", Status: labs.Suspended, Labs: 1},
				{Course: "os101", Cloud: "c1", Status: labs.NeedsOperator, Labs: 1}, {Course: "os101", Cloud: "c2", Status: labs.Active, Labs: 1}}},
			{"a course, deleted included", labs.Filter{Course: "os101"}, []labs.Tally{
				{Course: "os101", Cloud: "c1", Status: labs.Deleted, Labs: 1}, {Course: "os101", Cloud: "c1", Status: labs.NeedsOperator, Labs: 1},
				{Course: "os101", Cloud: "c2", Status: labs.Active, Labs: 1}}},
			{"a cloud and a status", labs.Filter{Cloud: "c1", Statuses: []labs.Status{labs.Active}}, []labs.Tally{
				{Course: "net101", Cloud: "c1", Status: labs.Active, Labs: 2}}},
			{"nothing", labs.Filter{Learner: "nobody"}, nil},
		} {
			got, err := e.s.TallyLabs(ctx, tc.f)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s: TallyLabs = %+v, %v\nwant %+v", tc.name, got, err, tc.want)
			}
		}
	})
}

// A cloud drained at run time is recorded once, with who drained it, until it is undrained.
func TestDrains(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		if got, err := e.s.Drains(ctx); err != nil || len(got) != 0 {
			t.Fatalf("Drains on an empty store = %v, %v", got, err)
		}
		first := labs.Drain{Cloud: "c1", At: at(1), Actor: "api:ops"}
		for _, d := range []labs.Drain{first, {Cloud: "c1", At: at(2), Actor: "api:other"}, {Cloud: "c2", At: at(3), Actor: "api:ops"}} {
			if err := e.s.DrainCloud(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		got, err := e.s.Drains(ctx)
		if err != nil || len(got) != 2 || got["c1"].Actor != first.Actor || got["c1"].At.Sub(first.At).Abs() > time.Millisecond || got["c2"].Actor != "api:ops" {
			t.Fatalf("Drains = %+v, %v", got, err)
		}
		if err := e.s.DrainCloud(ctx, labs.Drain{Cloud: "c3"}); err == nil {
			t.Error("a drain without its time and actor was recorded")
		}
		for _, c := range []string{"c1", "nowhere"} {
			if err := e.s.UndrainCloud(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := e.s.Drains(ctx); err != nil || len(got) != 1 || got["c2"].Cloud != "c2" {
			t.Errorf("after undraining c1: %+v, %v", got, err)
		}
	})
}

// hashOf stands for the SHA-256 of a token: the store takes any bytes.
func hashOf(s string) []byte {
	h := make([]byte, 32)
	copy(h, s)
	return h
}

func TestTokens(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		list := func() []store.Token {
			t.Helper()
			toks, err := e.s.ListTokens(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return toks
		}
		lookup := func(hash []byte, want store.Token) {
			t.Helper()
			got, err := e.s.TokenByHash(ctx, hash)
			if want.Name == "" {
				if !errors.Is(err, labs.ErrNotFound) {
					t.Errorf("TokenByHash(%q) = %+v, %v; want ErrNotFound", hash[:4], got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("TokenByHash(%q) = %+v, %v; want %+v", hash[:4], got, err, want)
			}
		}
		if toks := list(); len(toks) != 0 {
			t.Fatalf("ListTokens on an empty store = %+v", toks)
		}

		h1, h2, h3 := hashOf("one"), hashOf("two"), hashOf("three")
		tok := func(name, scope string, sec int) store.Token {
			return store.Token{Name: name, Scope: scope, CreatedAt: at(sec)}
		}
		if err := e.s.CreateToken(ctx, tok("lms", "lms", 0), h1, "ops@host"); err != nil {
			t.Fatal(err)
		}
		lms1 := store.Token{Name: "lms", Scope: "lms", CreatedAt: norm(at(0))}
		lookup(h1, lms1)
		lookup(h2, store.Token{})
		lookup(hashOf("on"), store.Token{}) // a prefix of a stored hash is no match
		lookup(nil, store.Token{})

		// A second live token of the same name is refused, and nothing is stored.
		if err := e.s.CreateToken(ctx, tok("lms", "lms", 1), h2, "ops@host"); !errors.Is(err, store.ErrTokenExists) {
			t.Errorf("second live token: err = %v; want ErrTokenExists", err)
		}
		lookup(h2, store.Token{})
		// The same hash under another name is an error, but not ErrTokenExists.
		if err := e.s.CreateToken(ctx, tok("other", "lms", 1), h1, "ops@host"); err == nil || errors.Is(err, store.ErrTokenExists) {
			t.Errorf("duplicate hash: err = %v; want a non-ErrTokenExists error", err)
		}
		for _, bad := range []struct {
			tok  store.Token
			hash []byte
		}{{tok("", "lms", 1), h3}, {tok("x", "lms", 1), nil}, {store.Token{Name: "x", Scope: "lms"}, h3}, {tok("x", "", 1), h3}} {
			if err := e.s.CreateToken(ctx, bad.tok, bad.hash, "ops@host"); err == nil {
				t.Errorf("CreateToken(%+v, %v): want an error", bad.tok, bad.hash)
			}
		}
		if err := e.s.CreateToken(ctx, tok("cron", "read", 2), h3, "cron@host"); err != nil {
			t.Fatal(err)
		}

		// Revoked: no longer found; revoking again, or an unknown name, is ErrNotFound.
		if err := e.s.RevokeToken(ctx, "lms", at(10), "ops@host"); err != nil {
			t.Fatal(err)
		}
		lookup(h1, store.Token{})
		lookup(h3, store.Token{Name: "cron", Scope: "read", CreatedAt: norm(at(2))})
		for _, name := range []string{"lms", "nope"} {
			if err := e.s.RevokeToken(ctx, name, at(11), "ops@host"); !errors.Is(err, labs.ErrNotFound) || !strings.Contains(err.Error(), name) {
				t.Errorf("RevokeToken(%q) = %v; want ErrNotFound naming it", name, err)
			}
		}
		if err := e.s.RevokeToken(ctx, "cron", time.Time{}, "ops@host"); err == nil {
			t.Error("RevokeToken with a zero time: want an error")
		}

		// After the revocation the name may have a new token; the old one stays revoked.
		if err := e.s.CreateToken(ctx, tok("lms", "operator", 20), h2, "ops@host"); err != nil {
			t.Fatalf("new token after revoking: %v", err)
		}
		lookup(h2, store.Token{Name: "lms", Scope: "operator", CreatedAt: norm(at(20))})
		lookup(h1, store.Token{})

		want := []store.Token{
			{Name: "cron", Scope: "read", CreatedAt: norm(at(2))},
			{Name: "lms", Scope: "lms", CreatedAt: norm(at(0)), RevokedAt: norm(at(10))},
			{Name: "lms", Scope: "operator", CreatedAt: norm(at(20))},
		}
		if got := list(); !reflect.DeepEqual(got, want) {
			t.Errorf("ListTokens =\n %+v\nwant\n %+v", got, want)
		}
		if got := list(); got[0].Live() != true || got[1].Live() != false {
			t.Errorf("Live() of %+v", got)
		}
		// the audit trail: what succeeded, by whom; nothing of what was refused
		log, err := e.s.TokenLog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantLog := []store.TokenEvent{
			{At: norm(at(0)), Action: "created", Name: "lms", Scope: "lms", Actor: "ops@host"},
			{At: norm(at(2)), Action: "created", Name: "cron", Scope: "read", Actor: "cron@host"},
			{At: norm(at(10)), Action: "revoked", Name: "lms", Scope: "lms", Actor: "ops@host"},
			{At: norm(at(20)), Action: "created", Name: "lms", Scope: "operator", Actor: "ops@host"},
		}
		if !reflect.DeepEqual(log, wantLog) {
			t.Errorf("TokenLog =\n %+v\nwant\n %+v", log, wantLog)
		}
	})
}

// Two processes creating a token of the same name at once: exactly one gets it.
func TestConcurrentCreateToken(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		stores := []*store.Store{e.s, e.open(t)}
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				errs[i] = stores[i%2].CreateToken(t.Context(), store.Token{Name: "lms", Scope: "lms", CreatedAt: at(i)}, hashOf(fmt.Sprint("h", i)), "test")
			})
		}
		wg.Wait()
		created := 0
		for i, err := range errs {
			switch {
			case err == nil:
				created++
			case !errors.Is(err, store.ErrTokenExists):
				t.Errorf("creator %d: %v; want nil or ErrTokenExists", i, err)
			}
		}
		toks, err := e.s.ListTokens(t.Context())
		if created != 1 || err != nil || len(toks) != 1 {
			t.Errorf("%d created, tokens %+v, %v; want exactly one", created, toks, err)
		}
	})
}

// eventually polls cond for up to 10 seconds.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func TestTryLock(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		a, b := e.s, e.open(t) // two processes on one database
		try := func(s *store.Store, key string, want bool) func(context.Context) error {
			t.Helper()
			unlock, ok, err := s.TryLock(ctx, key)
			if err != nil || ok != want {
				t.Fatalf("TryLock(%q) = %v, %v; want %v", key, ok, err, want)
			}
			if ok == (unlock == nil) {
				t.Fatalf("TryLock(%q): ok %v with unlock %v", key, ok, unlock != nil)
			}
			return unlock
		}
		mustUnlock := func(unlock func(context.Context) error) {
			t.Helper()
			if err := unlock(ctx); err != nil {
				t.Fatalf("unlock: %v", err)
			}
		}

		unlockA := try(a, "scheduler", true)
		try(b, "scheduler", false)
		try(a, "scheduler", false)                 // not re-entrant, even through the same store
		mustUnlock(try(b, "reaper:suspend", true)) // another key is another lock
		mustUnlock(unlockA)
		unlockB := try(b, "scheduler", true) // free again
		try(a, "scheduler", false)
		mustUnlock(unlockB)
		mustUnlock(unlockB) // a second unlock does nothing
		mustUnlock(try(a, "scheduler", true))

		// A holder whose store closes (its connection dies) releases the lock.
		dead := e.open(t)
		try(dead, "scheduler", true)
		try(a, "scheduler", false)
		if err := dead.Close(); err != nil {
			t.Fatal(err)
		}
		var unlock func(context.Context) error
		if !eventually(func() bool {
			u, ok, err := a.TryLock(ctx, "scheduler")
			if err != nil {
				t.Fatal(err)
			}
			unlock = u
			return ok
		}) {
			t.Fatal("the lock of a closed store was never released")
		}
		try(b, "scheduler", false)
		mustUnlock(unlock)
		if _, _, err := dead.TryLock(ctx, "scheduler"); err == nil {
			t.Error("TryLock on a closed store: want an error")
		}

		for _, key := range []string{"", "a/b", "../x", "-x", "a b", strings.Repeat("k", 101)} {
			if _, ok, err := a.TryLock(ctx, key); err == nil || ok {
				t.Errorf("TryLock(%q) = %v, %v; want an error", key, ok, err)
			}
		}
		if e.driver == store.SQLite {
			if _, err := os.Stat(e.dsn + ".scheduler.lock"); err != nil {
				t.Errorf("no lock file beside the database: %v", err)
			}
		}
		if e.driver == store.Postgres {
			testAdvisoryLockDiesWithSession(t, e, a)
		}
	})
}

// testAdvisoryLockDiesWithSession kills the server session of a lock's holder, as when its
// connection breaks: the lock goes with it, the holder learns it has lost it (its held
// context ends with ErrLockLost), and another holder then takes it.
func testAdvisoryLockDiesWithSession(t *testing.T, e *env, other *store.Store) {
	ctx := t.Context()
	holder := e.open(t)
	held, unlock, ok, err := holder.TryHold(ctx, "killed")
	if err != nil || !ok {
		t.Fatalf("TryHold = %v, %v", ok, err)
	}
	if _, ok, err := other.TryLock(ctx, "killed"); ok || err != nil {
		t.Fatalf("TryLock while held = %v, %v; want false", ok, err)
	}
	if held.Err() != nil {
		t.Fatalf("held context done while the lock is held: %v", context.Cause(held))
	}
	admin, err := sql.Open("pgx", e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// Only the holder has an advisory lock in this database now.
	var killed int
	if err := admin.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d sessions holding advisory locks, want 1", killed)
	}
	select {
	case <-held.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the holder was never told that its lock's session died")
	}
	if cause := context.Cause(held); !errors.Is(cause, store.ErrLockLost) {
		t.Fatalf("held context's cause = %v, want ErrLockLost", cause)
	}
	// Learnt from its own connection, so the lock is surely free now.
	otherUnlock, ok, err := other.TryLock(ctx, "killed")
	if err != nil || !ok {
		t.Fatalf("another holder after the loss: TryLock = %v, %v; want the lock", ok, err)
	}
	defer otherUnlock(ctx)
	if err := unlock(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Errorf("unlock after the session died = %v, want an error saying the lock was lost", err)
	}
	if _, ok, err := holder.TryLock(ctx, "killed"); ok || err != nil {
		t.Errorf("the old holder took it back: %v, %v", ok, err)
	}
	// The holder's store still works.
	if err := holder.Ping(ctx); err != nil {
		t.Error(err)
	}
}

// A held context ends when its lock is released, with no loss reported.
func TestHoldEndsAtUnlock(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		held, unlock, err := e.s.Hold(ctx, "held")
		if err != nil {
			t.Fatal(err)
		}
		if held.Err() != nil {
			t.Fatal("held context done before the unlock")
		}
		if err := unlock(ctx); err != nil {
			t.Fatal(err)
		}
		<-held.Done()
		if cause := context.Cause(held); errors.Is(cause, store.ErrLockLost) {
			t.Errorf("cause after a plain unlock = %v, want no loss", cause)
		}
	})
}

// Lock waits while another process holds the lock, gives up with its context, and gets the
// lock once the holder lets go.
func TestLockWaits(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		a, b := e.s, e.open(t)
		unlockA, err := a.Lock(ctx, "reaper")
		if err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, err := b.Lock(short, "reaper"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock while held, until a deadline = %v; want the deadline", err)
		}
		got := make(chan error, 1)
		go func() {
			unlock, err := b.Lock(ctx, "reaper")
			if err == nil {
				err = unlock(ctx)
			}
			got <- err
		}()
		if err := unlockA(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("Lock after the holder let go: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Lock never got the lock its holder let go")
		}
	})
}

// A cloud's slots are shared by every process on the database: Take hands out at most that
// many at once, waits for one to be released, and names them slot.<cloud>.<i>.
func TestTakeSlots(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		a, b := store.Waiter{Locks: e.s}, store.Waiter{Locks: e.open(t)}
		_, first, err := a.Take(ctx, "east", bound(2), allVacant)
		if err != nil {
			t.Fatal(err)
		}
		_, second, err := b.Take(ctx, "east", bound(2), allVacant)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"slot.east.0", "slot.east.1"} {
			if _, ok, err := e.s.TryLock(ctx, key); ok || err != nil {
				t.Errorf("TryLock(%q) while both slots are taken = %v, %v; want held", key, ok, err)
			}
		}
		if _, release, err := b.Take(ctx, "west", bound(2), allVacant); err != nil {
			t.Errorf("another cloud's slot: %v", err)
		} else {
			release()
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, _, err := a.Take(short, "east", bound(2), allVacant); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a third slot of two = %v; want to wait until the deadline", err)
		}
		got := make(chan error, 1)
		go func() {
			_, release, err := b.Take(ctx, "east", bound(2), allVacant)
			if err == nil {
				release()
			}
			got <- err
		}()
		first()
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("Take after a slot was released: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Take never got the slot that was released")
		}
		second()
		second() // a second release does nothing
	})
}

// bound is a fixed bound on a cloud's slots.
func bound(n int) func() int { return func() int { return n } }

// A Waiter from NewWaiter queues its process's takers: never more holders than slots, a slot
// this process lets go goes at once to the next in line (polling, whose waits have grown to a
// second by then, would see it up to a second late), and one another process lets go is
// still found.
func TestTakeSlotsQueued(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		w := store.NewWaiter(e.s)
		var mu sync.Mutex
		holding, most := 0, 0
		var wg sync.WaitGroup
		for range 12 {
			wg.Go(func() {
				_, release, err := w.Take(ctx, "east", bound(3), allVacant)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				holding++
				most = max(most, holding)
				mu.Unlock()
				time.Sleep(200 * time.Millisecond) // long enough for the next two to come in on a busy machine
				mu.Lock()
				holding--
				mu.Unlock()
				release()
			})
		}
		wg.Wait()
		if most != 3 {
			t.Errorf("at most %d of 12 takers held a slot of 3 at once, want 3", most)
		}

		_, release, err := w.Take(ctx, "east", bound(1), allVacant)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan time.Time, 1)
		go func() {
			_, release, err := w.Take(ctx, "east", bound(1), allVacant)
			if err != nil {
				t.Error(err)
			}
			got <- time.Now()
			release()
		}()
		time.Sleep(2400 * time.Millisecond)
		released := time.Now()
		release()
		if late := (<-got).Sub(released); late > 400*time.Millisecond {
			t.Errorf("the next in line took the slot %v after it was let go, want at once", late)
		}

		other := store.NewWaiter(e.open(t))
		_, theirs, err := other.Take(ctx, "east", bound(1), allVacant)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, release, err := w.Take(ctx, "east", bound(1), allVacant)
			if err == nil {
				release()
			}
			done <- err
		}()
		time.Sleep(100 * time.Millisecond)
		theirs()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the slot another process let go was never taken")
		}
	})
}

func allVacant(context.Context, int) (bool, error) { return true, nil }

// The bound is read at each admission: when it falls (an adaptive bound cut), the takers that
// began waiting under the higher bound wait until fewer than the new one hold a slot.
func TestTakeSlotsBoundFalls(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		w := store.NewWaiter(e.s)
		var n atomic.Int64
		n.Store(6)
		bound := func() int { return int(n.Load()) }
		var mu sync.Mutex
		holding := 0
		var held []func()
		for range 6 {
			_, release, err := w.Take(ctx, "east", bound, allVacant)
			if err != nil {
				t.Fatal(err)
			}
			holding++
			held = append(held, release)
		}
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				_, release, err := w.Take(ctx, "east", bound, allVacant)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if holding >= 2 {
					t.Errorf("a slot taken while %d held one, after the bound fell to 2", holding)
				}
				holding++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				holding--
				mu.Unlock()
				release()
			})
		}
		time.Sleep(100 * time.Millisecond) // the ten wait in line under the bound of 6
		n.Store(2)
		for _, release := range held {
			mu.Lock()
			holding--
			mu.Unlock()
			release()
		}
		wg.Wait()
	})
}

// A slot whose last operation the cloud may still be at work on is not taken, although its
// lock is free: Take takes the next, and waits while none is vacant. The operation recorded
// in a slot is read back as written, replaced by the slot's next holder, and cleared only by
// the operation that wrote it.
func TestSlotsLeftWithAnOperation(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		sent := time.Date(2026, 12, 5, 10, 0, 0, 123456000, time.UTC)
		left := labs.Operation{Cloud: "east", Slot: 0, Op: "suspend", StackName: "lab-a", StackID: "id-a", SentAt: sent}
		if err := e.s.StartOperation(ctx, left); err != nil {
			t.Fatal(err)
		}
		got, ok, err := e.s.Operation(ctx, "east", 0)
		if err != nil || !ok || got != left {
			t.Fatalf("Operation(east, 0) = %+v, %v, %v; want %+v", got, ok, err, left)
		}
		if _, ok, err := e.s.Operation(ctx, "east", 1); ok || err != nil {
			t.Fatalf("Operation(east, 1) = %v, %v; want none", ok, err)
		}
		w := store.Waiter{Locks: e.s}
		stillAtWork := func(ctx context.Context, i int) (bool, error) {
			_, ok, err := e.s.Operation(ctx, "east", i)
			return !ok, err
		}
		slot, release, err := w.Take(ctx, "east", bound(2), stillAtWork)
		if err != nil || slot != 1 {
			t.Fatalf("Take beside a slot left with an operation = slot %d, %v; want slot 1", slot, err)
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, _, err := w.Take(short, "east", bound(2), stillAtWork); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Take with slot 0 left and slot 1 taken = %v; want to wait until the deadline", err)
		}
		release()

		next := labs.Operation{Cloud: "east", Slot: 0, Op: "create", StackName: "lab-b", SentAt: sent.Add(time.Minute)}
		if err := e.s.StartOperation(ctx, next); err != nil {
			t.Fatal(err)
		}
		if err := e.s.EndOperation(ctx, left); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := e.s.Operation(ctx, "east", 0); err != nil || !ok || got != next {
			t.Fatalf("after the old operation's end, Operation(east, 0) = %+v, %v, %v; want the next one %+v", got, ok, err, next)
		}
		if err := e.s.EndOperation(ctx, next); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := e.s.Operation(ctx, "east", 0); ok || err != nil {
			t.Fatalf("after its end, Operation(east, 0) = %v, %v; want none", ok, err)
		}
	})
}

// Goroutines on two stores race for one lock: never two holders at once.
func TestTryLockExclusion(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		stores := []*store.Store{e.s, e.open(t)}
		var (
			holders, taken atomic.Int32
			wg             sync.WaitGroup
		)
		for g := range 8 {
			wg.Go(func() {
				s := stores[g%2]
				for range 30 {
					unlock, ok, err := s.TryLock(t.Context(), "exclusive")
					if err != nil {
						t.Error(err)
						return
					}
					if !ok {
						continue
					}
					taken.Add(1)
					if n := holders.Add(1); n != 1 {
						t.Errorf("%d holders at once", n)
					}
					time.Sleep(time.Millisecond)
					holders.Add(-1)
					if err := unlock(t.Context()); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if taken.Load() == 0 {
			t.Error("no goroutine ever took the lock")
		}
		t.Logf("%s: taken %d times of 240 tries", e.driver, taken.Load())
	})
}

func TestTryLockInMemory(t *testing.T) {
	ctx := t.Context()
	open := func(dsn string) *store.Store {
		s, err := store.Open(ctx, store.SQLite, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(":memory:"), open(":memory:") // two databases
	unlock, ok, err := a.TryLock(ctx, "k")
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	if _, ok, _ := a.TryLock(ctx, "k"); ok {
		t.Error("taken twice")
	}
	if u, ok, err := b.TryLock(ctx, "k"); err != nil || !ok {
		t.Errorf("another in-memory database's lock: %v, %v; want free", ok, err)
	} else {
		u(ctx)
	}
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if u, ok, err := a.TryLock(ctx, "k"); err != nil || !ok {
		t.Fatalf("after unlock: %v, %v", ok, err)
	} else if err := u(ctx); err != nil {
		t.Fatal(err)
	}

	// A shared-cache in-memory database is one database for every Store of the process.
	const shared = "file:locktest?mode=memory&cache=shared"
	c, d := open(shared), open(shared)
	if _, ok, err := c.TryLock(ctx, "k"); err != nil || !ok {
		t.Fatalf("shared: TryLock = %v, %v", ok, err)
	}
	if _, ok, _ := d.TryLock(ctx, "k"); ok {
		t.Error("shared: taken by two stores")
	}
	c.Close() // releases it
	if u, ok, err := d.TryLock(ctx, "k"); err != nil || !ok {
		t.Errorf("shared, after the holder closed: %v, %v; want free", ok, err)
	} else if err := u(ctx); err != nil {
		t.Fatal(err)
	}
}

// A registry made before the tokens (migration 00001 only) gets them at its next Open, its
// labs kept.
func TestMigrateFromVersion1(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		mustCreate(t, e.s, newLab("old", "ann", "net101", "east", labs.Active, at(0)))
		if err := e.s.Close(); err != nil {
			t.Fatal(err)
		}
		sqlDriver := map[string]string{store.SQLite: "sqlite", store.Postgres: "pgx"}[e.driver]
		raw, err := sql.Open(sqlDriver, e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{`DROP TABLE cloud_drains`, `DROP INDEX labs_live_learner_course`, `CREATE UNIQUE INDEX labs_live_learner_course ON labs (learner, course) WHERE status <> 'deleted'`,
			`DROP TABLE usage_added`, `DROP INDEX labs_learner_course`, `DROP INDEX labs_cloud_created`, `DROP TABLE token_events`, `ALTER TABLE tokens DROP COLUMN scope`, `ALTER TABLE labs DROP COLUMN left_at`, `DROP INDEX labs_status`, `DROP TABLE operations`, `ALTER TABLE labs DROP COLUMN sent_at`, `ALTER TABLE labs DROP COLUMN claimed_by`, `ALTER TABLE labs DROP COLUMN claimed_at`,
			`DROP TABLE env_locks`, `DROP TABLE promotions`, `DROP TABLE runs`, `DROP TABLE activity`, `ALTER TABLE labs DROP COLUMN active_since`, `DROP TABLE tokens`,
			`DELETE FROM goose_db_version WHERE version_id IN (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)`} {
			if _, err := raw.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		raw.Close()

		s := e.open(t)
		if err := s.CreateToken(ctx, store.Token{Name: "lms", Scope: "lms", CreatedAt: at(1)}, hashOf("h"), "test"); err != nil {
			t.Fatalf("CreateToken after migrating: %v", err)
		}
		if _, err := s.TokenByHash(ctx, hashOf("h")); err != nil {
			t.Fatal(err)
		}
		mustGet(t, s, "old")
		if _, err := s.Heartbeat(ctx, "old", at(2)); err != nil {
			t.Fatalf("Heartbeat after migrating: %v", err)
		}
		if got, err := s.Activity(ctx, time.Time{}, time.Time{}); err != nil || len(got) != 1 {
			t.Fatalf("Activity after migrating = %+v, %v; want the open span", got, err)
		}
	})
}

// A SQLite registry in a directory others may write to (no sticky bit) is refused before a file
// is made: they could replace it. A sticky one (/tmp) keeps them from it and is taken, and
// OpenDirectory says how open a directory others may only read is.
func TestSQLiteRegistryDirectory(t *testing.T) {
	for _, tc := range []struct {
		mode    os.FileMode
		refused bool
		open    bool
	}{{0o777, true, true}, {0o770, true, true}, {0o777 | os.ModeSticky, false, true}, {0o755, false, true}, {0o700, false, false}} {
		dir := t.TempDir()
		if err := os.Chmod(dir, tc.mode); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "labplane.db")
		s, err := store.Open(t.Context(), store.SQLite, path)
		if tc.refused {
			if !errors.Is(err, store.ErrOpenDirectory) || !strings.Contains(err.Error(), dir+" is writable by others") ||
				!strings.Contains(err.Error(), "chmod 700 "+dir) {
				t.Errorf("registry in a %v directory: %v; want it refused, naming the directory and the fix", tc.mode, err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("registry in a %v directory: the file was made (%v)", tc.mode, err)
			}
		} else if err != nil {
			t.Errorf("registry in a %v directory: %v", tc.mode, err)
		} else {
			s.Close()
		}
		if gotDir, mode, open := store.OpenDirectory(store.SQLite, path); open != tc.open || (open && (gotDir != dir || mode != tc.mode)) {
			t.Errorf("OpenDirectory in a %v directory: %s %v %v; want open %v", tc.mode, gotDir, mode, open, tc.open)
		}
	}
	if _, _, open := store.OpenDirectory(store.Postgres, "postgres://x@/y"); open {
		t.Error("OpenDirectory of a PostgreSQL DSN: open")
	}
}

// The SQLite registry (the labs' connection details, the token hashes) is its owner's only:
// a new one is made 0600 (its WAL too), and one others could read is made 0600 at the next
// Open.
func TestSQLiteRegistryIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "labplane.db")
	s, err := store.Open(t.Context(), store.SQLite, path)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, newLab("a", "ann", "net101", "c1", labs.Active, at(0)))
	for name, want := range map[string]os.FileMode{path: 0o600, path + "-wal": 0o600} {
		if st, err := os.Stat(name); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want %v", name, st.Mode().Perm(), err, want)
		}
	}
	s.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = store.Open(t.Context(), store.SQLite, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("a registry others could read, opened again: %v, %v; want 0600", st.Mode().Perm(), err)
	}
	mustGet(t, s, "a")
}

// CourseCounts counts one cloud's live labs by course and status, and the used ones: a
// heartbeat or a resume at the time given or later.
func TestCourseCounts(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		lab := func(id, learner, course, cloud string, st labs.Status, beat, resumed time.Time) {
			l := newLab(id, learner, course, cloud, st, at(0))
			l.LastHeartbeat, l.LastResumedAt = beat, resumed
			mustCreate(t, e.s, l)
		}
		lab("a1", "ann", "os101", "a", labs.Active, at(100), time.Time{}) // used
		lab("a2", "bob", "os101", "a", labs.Active, at(10), time.Time{})  // idle
		lab("a3", "cat", "os101", "a", labs.Active, time.Time{}, at(120)) // resumed: used
		lab("a4", "dan", "os101", "a", labs.Suspended, at(10), time.Time{})
		lab("a5", "eve", "net201", "a", labs.Launching, time.Time{}, time.Time{})
		lab("a6", "fay", "os101", "a", labs.Deleted, at(100), time.Time{}) // not live
		lab("b1", "gus", "os101", "b", labs.Active, at(100), time.Time{})  // another cloud
		got, err := e.s.CourseCounts(t.Context(), "a", at(60))
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(x, y labs.CourseCount) int {
			return strings.Compare(x.Course+string(x.Status), y.Course+string(y.Status))
		})
		want := []labs.CourseCount{
			{Course: "net201", Status: labs.Launching, Labs: 1},
			{Course: "os101", Status: labs.Active, Labs: 3, Used: 2},
			{Course: "os101", Status: labs.Suspended, Labs: 1},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("CourseCounts(a) = %+v, want %+v", got, want)
		}
	})
}
