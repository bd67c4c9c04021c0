package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/api"
	"github.com/labplane/labplane/internal/auth"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/scheduler"
	"github.com/labplane/labplane/internal/store"
)

const token = "lp_test-token"

// tokens accepts two tokens: the LMS's (scope lms) and a dashboard's (scope read).
type tokens struct{}

// readToken is the dashboard's, operatorToken an operator's.
const (
	readToken     = "lp_read-token"
	operatorToken = "lp_operator-token"
)

func (tokens) Verify(_ context.Context, header string) (auth.Client, error) {
	switch header {
	case "Bearer " + token:
		return auth.Client{Name: "lms", Scope: auth.ScopeLMS}, nil
	case "Bearer " + readToken:
		return auth.Client{Name: "dashboard", Scope: auth.ScopeRead}, nil
	case "Bearer " + operatorToken:
		return auth.Client{Name: "ops", Scope: auth.ScopeOperator}, nil
	}
	return auth.Client{}, auth.ErrUnauthorized
}

type rig struct {
	t     *testing.T
	srv   *httptest.Server
	api   *api.Server
	store *store.Store
	cloud *fakecloud.Cloud
	mgr   *lifecycle.Manager
	// every answer is checked against the API's description (contract_test.go)
	contract contract
}

func newRig(t *testing.T) *rig {
	t.Helper()
	st, err := store.Open(context.Background(), store.SQLite, filepath.Join(t.TempDir(), "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	c := fakecloud.New("a", 4, 50*time.Millisecond)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rules := policy.Rules{IdleSuspendAfter: time.Minute, LaunchTimeout: time.Minute, StuckAfter: time.Minute,
		OrphanGrace: time.Hour, MaxAttempts: 3, RetryBackoff: time.Minute}
	mgr := &lifecycle.Manager{Site: "test", Registry: st, Locks: st, Targets: []lifecycle.Target{{Cloud: c}}, Rules: policy.Set{Default: rules},
		DefaultTemplate: "lab", Now: time.Now, Log: log,
		Template: func(name string) (string, error) {
			if name == "lab" {
				return "/lab.yaml", nil
			}
			return "", fmt.Errorf("%w: no template %q", lifecycle.ErrInvalid, name)
		}}
	a := &api.Server{Labs: mgr, Registry: st, Auth: tokens{}, Log: log, Policy: mgr.Rules, Now: time.Now,
		Ready: []api.Check{{Name: "store", Check: st.Ping}}}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		a.Shutdown(context.Background())
		st.Close()
	})
	return &rig{t: t, srv: srv, api: a, store: st, cloud: c, mgr: mgr}
}

type response struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func (r *rig) call(method, path, auth, body string) response {
	r.t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r.contract.check(r.t, req, body, resp, raw)
	out := response{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

func (r *rig) do(method, path, body string) response {
	r.t.Helper()
	return r.call(method, path, "Bearer "+token, body)
}

// waitStatus polls GET /v1/labs/{id} until the lab has the status.
func (r *rig) waitStatus(id string, want labs.Status) response {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := r.do("GET", "/v1/labs/"+id, "")
		if res.body["status"] == string(want) {
			return res
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("lab %s never became %s: %s", id, want, res.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) labCount() int {
	r.t.Helper()
	list, err := r.store.ListLabs(context.Background(), labs.Filter{})
	if err != nil {
		r.t.Fatal(err)
	}
	return len(list)
}

func TestAuthIsRequired(t *testing.T) {
	r := newRig(t)
	for _, auth := range []string{"", "Bearer wrong", "Basic " + token, token} {
		res := r.call("GET", "/v1/labs", auth, "")
		if res.code != http.StatusUnauthorized || strings.Contains(res.raw, "labs\"") {
			t.Errorf("auth %q: want 401 and nothing else, got %d %s", auth, res.code, res.raw)
		}
	}
	res := r.call("POST", "/v1/labs", "Bearer nope", `{"learner":"ann","course":"os101"}`)
	if res.code != http.StatusUnauthorized || r.labCount() != 0 {
		t.Fatalf("an unauthorized launch: %d, %d labs", res.code, r.labCount())
	}
	if res := r.call("GET", "/healthz", "", ""); res.code != http.StatusOK {
		t.Errorf("healthz needs no token: %d", res.code)
	}
}

func TestLaunchIsIdempotentAndCompletes(t *testing.T) {
	r := newRig(t)
	res := r.do("POST", "/v1/labs", `{"learner":"ann","course":"os101"}`)
	if res.code != http.StatusAccepted || res.body["status"] != "launching" {
		t.Fatalf("launch: %d %s", res.code, res.raw)
	}
	id := res.body["id"].(string)
	done := r.waitStatus(id, labs.Active)
	if outputs, _ := done.body["outputs"].(map[string]any); outputs["lab_id"] != id {
		t.Errorf("outputs of a complete lab: %s", done.raw)
	}
	again := r.do("POST", "/v1/labs", `{"learner":"ann","course":"os101"}`)
	if again.code != http.StatusOK || again.body["id"] != id {
		t.Fatalf("an LMS retry must get the same lab: %d %s", again.code, again.raw)
	}
	if n := len(r.cloud.Stacks()); n != 1 {
		t.Fatalf("want one stack, got %d", n)
	}
}

func TestConcurrentRetriesMakeOneStack(t *testing.T) {
	r := newRig(t)
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for range 20 {
		wg.Go(func() {
			res := r.do("POST", "/v1/labs", `{"learner":"bob","course":"os101"}`)
			if res.code != http.StatusAccepted && res.code != http.StatusOK {
				t.Errorf("launch: %d %s", res.code, res.raw)
				return
			}
			ids <- res.body["id"].(string)
		})
	}
	wg.Wait()
	close(ids)
	first := ""
	for id := range ids {
		if first == "" {
			first = id
		} else if id != first {
			t.Fatalf("two labs for one learner and course: %s and %s", first, id)
		}
	}
	r.waitStatus(first, labs.Active)
	if n := len(r.cloud.Stacks()); n != 1 || r.labCount() != 1 {
		t.Fatalf("want one stack and one lab, got %d and %d", n, r.labCount())
	}
}

func TestBadRequestsWriteNothing(t *testing.T) {
	r := newRig(t)
	tests := []struct {
		method, path, body string
		code               int
		errCode            string
	}{
		{"POST", "/v1/labs", `{"learner":"ann","course":`, 400, "bad_request"},
		{"POST", "/v1/labs", `{"learner":"ann","course":"os101","flavor":"big"}`, 400, "bad_request"},
		{"POST", "/v1/labs", `{"learner":"ann"}`, 400, "bad_request"},
		{"POST", "/v1/labs", ``, 400, "bad_request"},
		{"POST", "/v1/labs", `{"learner":"ann","course":"os101"} {}`, 400, "bad_request"},
		{"POST", "/v1/labs", `{"learner":"ann","course":"os101","template":"nope"}`, 422, "invalid"},
		{"POST", "/v1/labs", `{"learner":"a b","course":"os101"}`, 422, "invalid"},
		{"POST", "/v1/labs", `{"learner":"ann","course":"course-v1:a+b+c d"}`, 422, "invalid"},
		{"POST", "/v1/labs", `{"learner":"ann","course":"course-v1:` + strings.Repeat("x", 250) + `"}`, 422, "invalid"},
		{"POST", "/v1/labs", `{"learner":"ann","course":"os101","pad":"` + strings.Repeat("x", 70<<10) + `"}`, 400, "bad_request"},
		{"GET", "/v1/labs/nope", ``, 404, "not_found"},
		{"POST", "/v1/labs/nope/heartbeat", ``, 404, "not_found"},
		{"POST", "/v1/labs/nope/resume", ``, 404, "not_found"},
		{"DELETE", "/v1/labs/nope", ``, 404, "not_found"},
		{"GET", "/v1/labs?status=bogus", ``, 400, "bad_request"},
		{"GET", "/v1/labs?colour=red", ``, 400, "bad_request"},
		{"GET", "/v2/labs", ``, 404, "no_route"},
		{"POST", "/v1/labs/nope/heartbeat", `{"at":"now"}`, 400, "bad_request"},
	}
	for _, tc := range tests {
		res := r.do(tc.method, tc.path, tc.body)
		errBody, _ := res.body["error"].(map[string]any)
		if res.code != tc.code || errBody["code"] != tc.errCode || errBody["message"] == "" {
			t.Errorf("%s %s %.40q: want %d %s, got %d %s", tc.method, tc.path, tc.body, tc.code, tc.errCode, res.code, res.raw)
		}
	}
	if n := r.labCount(); n != 0 || len(r.cloud.Stacks()) != 0 {
		t.Fatalf("bad requests wrote %d labs and %d stacks", n, len(r.cloud.Stacks()))
	}
}

// The LMS's own identifiers: a course key with its colon and pluses, an anonymous student id,
// up to 255 characters; the lab is listed by them (the query string encodes the pluses), and a
// refused one names the field and the rule.
func TestOpenEdXIdentifiers(t *testing.T) {
	r := newRig(t)
	const learner = "0123456789abcdef0123456789abcdef"
	course := "course-v1:hastexo+hx212+" + strings.Repeat("9", 255-len("course-v1:hastexo+hx212+"))
	res := r.do("POST", "/v1/labs", fmt.Sprintf(`{"learner":%q,"course":%q}`, learner, course))
	if res.code != http.StatusAccepted || res.body["course"] != course || res.body["learner"] != learner {
		t.Fatalf("launch with Open edX identifiers: %d %s", res.code, res.raw)
	}
	id := res.body["id"].(string)
	r.waitStatus(id, labs.Active)
	list := r.do("GET", "/v1/labs?course="+url.QueryEscape(course)+"&learner="+learner, "")
	if got, _ := list.body["labs"].([]any); len(got) != 1 || got[0].(map[string]any)["id"] != id {
		t.Errorf("list by course key and learner: %s", list.raw)
	}
	bad := r.do("POST", "/v1/labs", `{"learner":"ann smith","course":"course-v1:a+b+c"}`)
	msg := fmt.Sprint(bad.body["error"])
	if bad.code != http.StatusUnprocessableEntity || !strings.Contains(msg, `learner "ann smith"`) || !strings.Contains(msg, "anonymous id") {
		t.Errorf("a username with a space: %d %s", bad.code, bad.raw)
	}
}

func TestHeartbeatResumeDelete(t *testing.T) {
	r := newRig(t)
	id := r.do("POST", "/v1/labs", `{"learner":"cat","course":"os101"}`).body["id"].(string)
	r.waitStatus(id, labs.Active)
	if res := r.do("POST", "/v1/labs/"+id+"/heartbeat", "{}"); res.code != 200 || res.body["last_heartbeat"] == nil {
		t.Fatalf("heartbeat: %d %s", res.code, res.raw)
	}
	// suspended by the reaper (forced here): the learner comes back through POST /v1/labs
	if _, err := r.mgr.Do(context.Background(), lifecycle.OpSuspend, id, "test", true); err != nil {
		t.Fatal(err)
	}
	if res := r.do("POST", "/v1/labs", `{"learner":"cat","course":"os101"}`); res.code != http.StatusAccepted || res.body["id"] != id {
		t.Fatalf("launch of a suspended lab: %d %s", res.code, res.raw)
	}
	r.waitStatus(id, labs.Active)
	if _, err := r.mgr.Do(context.Background(), lifecycle.OpSuspend, id, "test", true); err != nil {
		t.Fatal(err)
	}
	if res := r.do("POST", "/v1/labs/"+id+"/resume", ""); res.code != http.StatusAccepted {
		t.Fatalf("resume: %d %s", res.code, res.raw)
	}
	r.waitStatus(id, labs.Active)
	if res := r.do("GET", "/v1/labs?learner=cat&status=active", ""); len(res.body["labs"].([]any)) != 1 {
		t.Errorf("list: %s", res.raw)
	}
	if res := r.do("DELETE", "/v1/labs/"+id, ""); res.code != http.StatusAccepted {
		t.Fatalf("delete: %d %s", res.code, res.raw)
	}
	r.waitStatus(id, labs.Deleted)
	if res := r.do("POST", "/v1/labs/"+id+"/heartbeat", ""); res.code != http.StatusUnprocessableEntity {
		t.Errorf("heartbeat of a deleted lab: %d %s", res.code, res.raw)
	}
	if len(r.cloud.Stacks()) != 0 {
		t.Error("the stack is still there")
	}
}

// /readyz, which needs no token, names the check that failed and nothing more: the error
// (which may name a database, its user and host) goes to the log.
func TestReadiness(t *testing.T) {
	r := newRig(t)
	var log bytes.Buffer
	r.api.Log = slog.New(slog.NewTextHandler(&log, nil))
	if res := r.call("GET", "/readyz", "", ""); res.code != 200 {
		t.Fatalf("readyz: %d %s", res.code, res.raw)
	}
	const detail = "dial tcp db.internal:5432: password authentication failed for user labplane"
	r.api.Ready = append(r.api.Ready, api.Check{Name: "cloud a", Check: func(context.Context) error { return errors.New(detail) }})
	res := r.call("GET", "/readyz", "", "")
	checks, _ := res.body["checks"].(map[string]any)
	if res.code != http.StatusServiceUnavailable || checks["cloud a"] != "failed" || checks["store"] != "ok" || strings.Contains(res.raw, "db.internal") {
		t.Fatalf("readyz with a cloud down: %d %s; want 503, cloud a failed, nothing of the error", res.code, res.raw)
	}
	if !strings.Contains(log.String(), "check=\"cloud a\"") || !strings.Contains(log.String(), "db.internal") {
		t.Errorf("the log lacks the failed check's error: %s", log.String())
	}
}

// A job run stuck past its bound makes the replica unready: /readyz answers 503 naming the
// job and how long it has run, and nothing of what any run failed with.
func TestReadinessNamesAStuckJob(t *testing.T) {
	r := newRig(t)
	const secret = "postgres://labplane:Sup3r-s3cret@db/labplane"
	failed, release := make(chan struct{}), make(chan struct{})
	sched, err := scheduler.New(scheduler.Options{Logger: slog.New(slog.DiscardHandler), Grace: 20 * time.Millisecond,
		Jobs: []scheduler.Job{
			{Name: "reconcile", Every: time.Hour, Run: func(context.Context) error {
				defer close(failed)
				return errors.New("dial " + secret + ": connection refused")
			}},
			{Name: "reap", Every: time.Hour, Timeout: 20 * time.Millisecond, Run: func(context.Context) error {
				<-release // ignores its context
				return nil
			}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	sched.Start()
	t.Cleanup(func() {
		close(release)
		_ = sched.Shutdown(context.Background())
	})
	r.api.Ready = append(r.api.Ready, api.Check{Name: "scheduler", Check: sched.Check, Public: true})
	<-failed

	deadline := time.Now().Add(10 * time.Second)
	var res response
	for res = r.call("GET", "/readyz", "", ""); res.code == http.StatusOK; res = r.call("GET", "/readyz", "", "") {
		if time.Now().After(deadline) {
			t.Fatalf("readyz still ready 10s after the reap run passed its bound: %s", res.raw)
		}
		time.Sleep(10 * time.Millisecond) // the run must age past its bound: wall time is the point
	}
	checks, _ := res.body["checks"].(map[string]any)
	msg, _ := checks["scheduler"].(string)
	if res.code != http.StatusServiceUnavailable || res.body["ready"] != false || checks["store"] != "ok" {
		t.Fatalf("readyz with a stuck job: %d %s", res.code, res.raw)
	}
	if !strings.Contains(msg, "job reap has run for ") || !strings.Contains(msg, "past its bound of 20ms") {
		t.Errorf("the scheduler's check = %q, want the stuck job, how long it has run and its bound", msg)
	}
	if strings.Contains(res.raw, "Sup3r-s3cret") || strings.Contains(msg, "reconcile") {
		t.Errorf("readyz tells of a run's failure: %s", res.raw)
	}
}

func TestShutdownWaitsForBackgroundWork(t *testing.T) {
	r := newRig(t)
	id := r.do("POST", "/v1/labs", `{"learner":"dan","course":"os101"}`).body["id"].(string)
	r.api.Shutdown(context.Background()) // returns once the launch is done and recorded
	lab, err := r.store.GetLab(context.Background(), id)
	if err != nil || lab.Status != labs.Active {
		t.Fatalf("after shutdown: %v %s", err, lab.Status)
	}
}

// Every lab answer carries its deadlines, the reaper's (policy.Rules.Deadlines): suspend_at
// while it is active, moved by each heartbeat; delete_at when the course's labs are deleted by
// age; neither once it is deleted.
func TestDeadlines(t *testing.T) {
	r := newRig(t)
	idle := r.mgr.Rules.Default.IdleSuspendAfter
	r.api.Policy.Courses = map[string]policy.Rules{"old101": {IdleSuspendAfter: idle, DeleteAfter: 24 * time.Hour}}
	id := r.do("POST", "/v1/labs", `{"learner":"eve","course":"os101"}`).body["id"].(string)
	r.waitStatus(id, labs.Active)
	at := func(res response, field string) time.Time {
		t.Helper()
		s, _ := res.body[field].(string)
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("%s: %q in %s", field, s, res.raw)
		}
		return v
	}
	lab, err := r.store.GetLab(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	got := r.do("GET", "/v1/labs/"+id, "")
	if want := lab.StackStatusSince.Add(idle); !at(got, "suspend_at").Equal(want) || got.body["delete_at"] != nil {
		t.Errorf("a lab just launched: %s; want suspend_at %s (launched + idle_suspend_after), no delete_at", got.raw, want)
	}
	beat := r.do("POST", "/v1/labs/"+id+"/heartbeat", "")
	if want := at(beat, "last_heartbeat").Add(idle); !at(beat, "suspend_at").Equal(want) {
		t.Errorf("after a heartbeat: %s; want suspend_at %s", beat.raw, want)
	}
	old := r.do("POST", "/v1/labs", `{"learner":"eve","course":"old101"}`)
	if want := at(old, "created_at").Add(24 * time.Hour); !at(old, "delete_at").Equal(want) || old.body["suspend_at"] != nil {
		t.Errorf("a launching lab of a course with delete_after 24h: %s; want delete_at %s, no suspend_at yet", old.raw, want)
	}
	r.do("DELETE", "/v1/labs/"+id, "")
	if gone := r.waitStatus(id, labs.Deleted); gone.body["suspend_at"] != nil || gone.body["delete_at"] != nil {
		t.Errorf("a deleted lab: %s", gone.raw)
	}
}

// A token of each scope against every route: read may only GET; lms may do all the API does
// for the LMS; operator also what an operator does (extend a budget).
func TestScopesAgainstEveryRoute(t *testing.T) {
	r := newRig(t)
	limited := r.mgr.Rules.Default
	limited.UsageLimit = time.Hour
	r.mgr.Rules.Courses = map[string]policy.Rules{"os101": limited}
	id := r.do("POST", "/v1/labs", `{"learner":"ann","course":"os101"}`).body["id"].(string)
	r.waitStatus(id, labs.Active)
	routes := []struct {
		method, path, body string
		need               auth.Scope
	}{
		{"GET", "/v1/labs", "", auth.ScopeRead}, {"GET", "/v1/labs/" + id, "", auth.ScopeRead},
		{"POST", "/v1/labs", `{"learner":"ann","course":"os101"}`, auth.ScopeLMS}, {"POST", "/v1/labs/" + id + "/heartbeat", "", auth.ScopeLMS},
		{"POST", "/v1/labs/" + id + "/leave", "", auth.ScopeLMS}, {"POST", "/v1/labs/" + id + "/resume", "", auth.ScopeLMS},
		{"POST", "/v1/labs/" + id + "/extend", `{"by":"1h"}`, auth.ScopeOperator}, {"DELETE", "/v1/labs/" + id, "", auth.ScopeLMS},
	}
	for _, client := range []struct {
		token string
		scope auth.Scope
	}{{readToken, auth.ScopeRead}, {token, auth.ScopeLMS}, {operatorToken, auth.ScopeOperator}} {
		for _, rt := range routes {
			res := r.call(rt.method, rt.path, "Bearer "+client.token, rt.body)
			if forbidden := res.code == http.StatusForbidden; forbidden == client.scope.Allows(rt.need) || res.code == http.StatusUnauthorized {
				t.Errorf("%s %s with a %s token: %d %s", rt.method, rt.path, client.scope, res.code, res.raw)
			}
		}
	}
}

// TestTimeBudget: in a course with a usage_limit every answer carries the learner's budget; the
// heartbeat that spends it has the lab suspended though the learner is in it; a resume, or a
// launch that would hand the lab back, is then refused 403 budget_exhausted; an operator's
// extension lets the learner back in. Another learner's budget is their own.
func TestTimeBudget(t *testing.T) {
	r := newRig(t)
	var offset atomic.Int64 // the manager's clock runs ahead of the wall clock by this
	r.mgr.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	course := "course-v1:hastexo+hx212+201907"
	limited := r.mgr.Rules.Default
	limited.UsageLimit, limited.UsageWarnAt = 10*time.Minute, 3*time.Minute
	r.mgr.Rules.Courses = map[string]policy.Rules{course: limited}
	r.api.Policy = r.mgr.Rules
	launch := `{"learner":"0123456789abcdef0123456789abcdef","course":"` + course + `"}`
	type budget struct {
		Limit, Used, Left  int64
		Warning, Exhausted bool
	}
	budgetOf := func(res response) budget {
		t.Helper()
		b, ok := res.body["budget"].(map[string]any)
		if !ok {
			t.Fatalf("no budget in %d %s", res.code, res.raw)
		}
		n := func(k string) int64 { f, _ := b[k].(float64); return int64(f) }
		return budget{n("limit_seconds"), n("used_seconds"), n("left_seconds"), b["warning"] == true, b["exhausted"] == true}
	}
	errorCode := func(res response) string {
		e, _ := res.body["error"].(map[string]any)
		code, _ := e["code"].(string)
		return code
	}

	res := r.do("POST", "/v1/labs", launch)
	id, _ := res.body["id"].(string)
	if got := budgetOf(res); res.code != http.StatusAccepted || got != (budget{Limit: 600, Left: 600}) {
		t.Fatalf("launch: %d %+v", res.code, got)
	}
	r.waitStatus(id, labs.Active)
	beat := func(at time.Duration) response {
		t.Helper()
		offset.Store(int64(at))
		return r.do("POST", "/v1/labs/"+id+"/heartbeat", "")
	}
	beat(0)
	for _, step := range []struct {
		at   time.Duration
		want budget
	}{
		{4 * time.Minute, budget{Limit: 600, Used: 240, Left: 360}},
		{8 * time.Minute, budget{Limit: 600, Used: 480, Left: 120, Warning: true}},
	} {
		res := beat(step.at)
		if got := budgetOf(res); res.code != http.StatusOK || got != step.want || res.body["status"] != "active" {
			t.Errorf("heartbeat %s after the first: %d %+v %s; want %+v, active", step.at, res.code, got, res.body["status"], step.want)
		}
	}
	res = beat(10 * time.Minute)
	if got := budgetOf(res); got != (budget{Limit: 600, Used: 600, Warning: true, Exhausted: true}) || res.body["status"] != "suspending" {
		t.Errorf("the heartbeat that spends the budget: %+v, %s; want it exhausted and the lab suspending", got, res.raw)
	}
	r.waitStatus(id, labs.Suspended)
	evs, err := r.store.Events(t.Context(), id, 0)
	if err != nil || !slices.ContainsFunc(evs, func(e labs.Event) bool {
		return e.Action == "suspend" && e.Actor == lifecycle.BudgetActor && strings.Contains(e.Detail, "time budget exhausted")
	}) {
		t.Errorf("no suspend by the budget in the lab's events: %+v, %v", evs, err)
	}

	for _, req := range [][3]string{{"POST", "/v1/labs/" + id + "/resume", ""}, {"POST", "/v1/labs", launch}} {
		if res := r.do(req[0], req[1], req[2]); res.code != http.StatusForbidden || errorCode(res) != "budget_exhausted" ||
			!strings.Contains(res.raw, "labplane labs extend") {
			t.Errorf("%s %s with the budget spent: %d %s; want 403 budget_exhausted saying how to add time", req[0], req[1], res.code, res.raw)
		}
	}
	if res := r.do("POST", "/v1/labs", `{"learner":"bob","course":"`+course+`"}`); res.code != http.StatusAccepted || budgetOf(res).Used != 0 {
		t.Errorf("another learner's launch in the course: %d %s", res.code, res.raw)
	}

	res = r.call("POST", "/v1/labs/"+id+"/extend", "Bearer "+operatorToken, `{"by":"1h"}`)
	if got := budgetOf(res); res.code != http.StatusOK || got != (budget{Limit: 4200, Used: 600, Left: 3600}) {
		t.Errorf("extend by 1h: %d %+v", res.code, got)
	}
	if res := r.do("POST", "/v1/labs/"+id+"/resume", ""); res.code != http.StatusAccepted {
		t.Fatalf("resume after the extension: %d %s", res.code, res.raw)
	}
	r.waitStatus(id, labs.Active)
}

// TestLaunchFromWarmPool: a launch in a course with a warm pool is answered with a lab of the
// pool, now the learner's, which is resumed; the pool is filled up again in the background.
func TestLaunchFromWarmPool(t *testing.T) {
	r := newRig(t)
	r.mgr.Pools = map[string]lifecycle.Pool{"os101": {Size: 2, Template: "lab"}}
	if n, err := r.mgr.Fill(t.Context(), "os101"); err != nil || n != 2 {
		t.Fatalf("fill: %d, %v", n, err)
	}
	pool, err := r.store.ListLabs(t.Context(), labs.Filter{Course: "os101"})
	if err != nil {
		t.Fatal(err)
	}
	res := r.do("POST", "/v1/labs", `{"learner":"ann","course":"os101"}`)
	id, _ := res.body["id"].(string)
	if res.code != http.StatusAccepted || res.body["learner"] != "ann" || res.header.Get("Location") != "/v1/labs/"+id ||
		!slices.ContainsFunc(pool, func(l labs.Lab) bool { return l.ID == id }) {
		t.Fatalf("launch: %d %s; want one of the pool's labs, now ann's", res.code, res.raw)
	}
	r.waitStatus(id, labs.Active)
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := r.store.PoolSize(t.Context(), "os101"); n != 2; n, _ = r.store.PoolSize(t.Context(), "os101") {
		if time.Now().After(deadline) {
			t.Fatalf("the pool was not filled up again: %d of 2", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSpentBudgetOnTwoReplicasAtOnce: the heartbeats that spend a learner's budget reach two
// replicas at once (the LMS retried, or sent two tabs' beats): the lab is suspended once, by
// the budget, and both answer 200 with the budget exhausted.
func TestSpentBudgetOnTwoReplicasAtOnce(t *testing.T) {
	r := newRig(t)
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	limited := r.mgr.Rules.Default
	limited.UsageLimit = 10 * time.Minute
	r.mgr.Rules.Courses = map[string]policy.Rules{"os101": limited}
	r.mgr.Now = clock
	other := &lifecycle.Manager{Site: r.mgr.Site, Registry: r.store, Locks: r.store, Targets: r.mgr.Targets, Rules: r.mgr.Rules,
		DefaultTemplate: r.mgr.DefaultTemplate, Template: r.mgr.Template, Now: clock, Log: r.api.Log}
	replica := &api.Server{Labs: other, Registry: r.store, Auth: tokens{}, Log: r.api.Log, Policy: r.mgr.Rules, Now: time.Now}
	srv := httptest.NewServer(replica.Handler())
	t.Cleanup(func() {
		srv.Close()
		replica.Shutdown(context.Background())
	})

	id := r.do("POST", "/v1/labs", `{"learner":"ann","course":"os101"}`).body["id"].(string)
	r.waitStatus(id, labs.Active)
	for _, at := range []time.Duration{0, 4 * time.Minute, 8 * time.Minute} { // one span: beats closer than the activity gap
		offset.Store(int64(at))
		r.do("POST", "/v1/labs/"+id+"/heartbeat", "")
	}
	offset.Store(int64(10 * time.Minute))
	var wg sync.WaitGroup
	for _, base := range []string{r.srv.URL, srv.URL} {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", base+"/v1/labs/"+id+"/heartbeat", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var got struct {
				Status labs.Status        `json:"status"`
				Budget *policy.BudgetView `json:"budget"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK || got.Budget == nil || !got.Budget.Exhausted {
				t.Errorf("a spending heartbeat on %s: %d %+v (%v)", base, resp.StatusCode, got, err)
			}
		})
	}
	wg.Wait()
	r.waitStatus(id, labs.Suspended)
	evs, err := r.store.Events(t.Context(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	claims, suspends := 0, 0
	for _, e := range evs {
		if e.Actor == lifecycle.BudgetActor {
			switch e.Action {
			case "suspend-claimed":
				claims++
			case "suspend":
				suspends++
			}
		}
	}
	if claims != 1 || suspends != 1 {
		t.Errorf("two spending heartbeats at once: %d claims, %d suspends by the budget; want one each:\n%+v", claims, suspends, evs)
	}
}

// observations records what the observer is told.
type observations struct {
	mu   sync.Mutex
	seen []string
}

func (o *observations) ObserveHTTP(route, method string, code int, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, fmt.Sprintf("%s (%s) %d", route, method, code))
	if took <= 0 {
		o.seen = append(o.seen, "a request that took no time")
	}
}

// The observer (the metrics) is told of every answer with its route and status: one written
// by the handler, an error written for it, a refusal before it runs, and no route at all.
func TestObserverSeesEveryAnswer(t *testing.T) {
	r := newRig(t)
	var o observations
	r.api.Observe = &o
	r.call("GET", "/healthz", "", "")
	r.call("GET", "/v1/labs", "", "")
	r.do("POST", "/v1/labs", `{"learner":"ann","course":"os101"}`)
	r.do("GET", "/v1/labs/no-such-lab", "")
	r.call("GET", "/nowhere", "", "")
	want := []string{"/healthz (GET) 200", "GET /v1/labs (GET) 401", "POST /v1/labs (POST) 202", "GET /v1/labs/{id} (GET) 404", "other (GET) 404"}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !slices.Equal(o.seen, want) {
		t.Errorf("observed %q\nwant     %q", o.seen, want)
	}
}
