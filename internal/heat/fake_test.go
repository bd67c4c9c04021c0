package heat_test

// Tests against heattest.Server (in-process, no local cloud needed): the in-flight bound, error
// mapping, fault injection, and the wait logic's corner cases that the real Heat shows only by
// chance (stale statuses, the delete-during-suspend race).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/dev/heattest"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/labs"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openFake(t *testing.T, f *heattest.Server) *heat.Heat {
	t.Helper()
	return openFakeWith(t, f, heat.Options{})
}

// openFakeWith opens the fake cloud with o's RequestTimeout.
func openFakeWith(t *testing.T, f *heattest.Server, o heat.Options) *heat.Heat {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := heat.Open(ctx, heat.Options{Name: "fake", ConfigFile: f.CloudsYAML("fake-password"),
		RequestTimeout: o.RequestTimeout, PollInterval: 20 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	heat.SetGraces(h, 3*time.Second, 2*time.Second)
	return h
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestFakeErrorMapping(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status int
		kind   error
	}{
		{400, cloud.ErrInvalid}, {401, cloud.ErrAuth}, {403, cloud.ErrAuth}, {404, cloud.ErrNotFound},
		{409, cloud.ErrConflict}, {429, cloud.ErrTransient}, {500, cloud.ErrTransient}, {502, cloud.ErrTransient},
		{503, cloud.ErrTransient}, {422, cloud.ErrInvalid},
	}
	all := []error{cloud.ErrNotFound, cloud.ErrConflict, cloud.ErrTransient, cloud.ErrAuth, cloud.ErrInvalid, cloud.ErrFailed}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.status), func(t *testing.T) {
			t.Parallel()
			f := heattest.New(t)
			h := openFake(t, f)
			f.Lock()
			f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/stacks") {
					// (for 401, gophercloud re-authenticates once and gets 401 again)
					heattest.WriteJSON(w, c.status, heattest.HeatError(c.status, "Boom", fmt.Sprintf("injected %d", c.status)))
					return true
				}
				return false
			}
			f.Unlock()
			_, err := h.List(testCtx(t, 10*time.Second), "a")
			var ce *cloud.Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *cloud.Error", err, err)
			}
			for _, k := range all {
				if errors.Is(err, k) != (k == c.kind) {
					t.Errorf("errors.Is(err, %v) = %v; err = %v", k, errors.Is(err, k), err)
				}
			}
			if ce.HTTPStatus != c.status || !strings.HasPrefix(ce.RequestID, "req-fake-") || ce.Message != fmt.Sprintf("injected %d", c.status) {
				t.Errorf("error fields: %+v", ce)
			}
		})
	}
}

// Heat's 409 (another action started between our read and our request).
func TestFakeConflictMessage(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	f.ActionDur = time.Second
	s := f.Add("lab-x", "CREATE_COMPLETE")
	h := openFake(t, f)
	ctx := testCtx(t, 10*time.Second)
	f.Lock()
	f.StartLocked(s, "SUSPEND", time.Second)
	s.ShowStatus, s.ShowReason = "CREATE_COMPLETE", "stale" // the read before the action misses it
	f.Unlock()
	_, err := h.Resume(ctx, s.Name, s.ID)
	if !errors.Is(err, cloud.ErrConflict) {
		t.Fatalf("err = %v, want conflict", err)
	}
	want := "cloud fake: resume lab-x: conflict (HTTP 409, request req-fake-"
	if got := err.Error(); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "): Stack lab-x already has an action (SUSPEND) in progress.") {
		t.Errorf("Error() = %q", got)
	}
}

// An action on a stack that shows an action in progress is refused before sending it.
func TestFakeNoActionWhileInProgress(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	s := f.Add("busy", "CREATE_IN_PROGRESS")
	h := openFake(t, f)
	_, err := h.Suspend(testCtx(t, 10*time.Second), s.Name, s.ID)
	if !errors.Is(err, cloud.ErrConflict) || !strings.Contains(err.Error(), "(CREATE) in progress") {
		t.Fatalf("err = %v, want conflict", err)
	}
	for _, r := range f.RequestLog() {
		if strings.HasSuffix(r, "/actions") {
			t.Errorf("an action was sent: %s", r)
		}
	}
}

// A connection the server closes mid-request, and a connection refused: transient.
func TestFakeTransportErrorsAreTransient(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	h := openFake(t, f)
	f.Lock()
	f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/stacks") {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return true
		}
		return false
	}
	f.Unlock()
	_, err := h.List(testCtx(t, 10*time.Second))
	if !errors.Is(err, cloud.ErrTransient) {
		t.Errorf("reset: err = %v, want transient", err)
	}

	// the whole server gone: Check fails fast with transient
	f.Close()
	err = h.Check(testCtx(t, 10*time.Second))
	if !errors.Is(err, cloud.ErrTransient) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("refused: err = %v, want transient connection refused", err)
	}
}

func TestFakeOpenErrors(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	ctx := testCtx(t, 10*time.Second)
	const pw = "Wr0ng-pa55word-xyzzy"
	_, err := heat.Open(ctx, heat.Options{Name: "fake", ConfigFile: f.CloudsYAML(pw), Logger: quietLogger()})
	if !errors.Is(err, cloud.ErrAuth) {
		t.Fatalf("wrong password: err = %v, want auth", err)
	}
	assertNoSecret(t, err, pw)

	_, err = heat.Open(ctx, heat.Options{Name: "fake", Cloud: "nope", ConfigFile: f.CloudsYAML(pw), Logger: quietLogger()})
	if !errors.Is(err, cloud.ErrInvalid) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing entry: err = %v, want invalid", err)
	}
	assertNoSecret(t, err, pw)

	_, err = heat.Open(ctx, heat.Options{Name: "fake", ConfigFile: heattest.WriteCloudsYAML(t, "fake", "http://127.0.0.1:"+closedPort(t)+"/v3", pw), Logger: quietLogger()})
	if !errors.Is(err, cloud.ErrTransient) {
		t.Errorf("closed port: err = %v, want transient", err)
	}
	assertNoSecret(t, err, pw)
}

// A token that expires is renewed transparently; if Keystone then refuses the credentials, the
// error is ErrAuth.
func TestFakeReauth(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	h := openFake(t, f)
	ctx := testCtx(t, 10*time.Second)
	f.ExpireTokens()
	if err := h.Check(ctx); err != nil {
		t.Fatalf("after token expiry: %v", err)
	}
	f.ExpireTokens()
	f.SetPassword("changed")
	err := h.Check(ctx)
	if !errors.Is(err, cloud.ErrAuth) {
		t.Fatalf("err = %v, want auth", err)
	}
	assertNoSecret(t, err, "fake-password")
}

// assertNoSecret checks that no error in the chain mentions the secret.
func assertNoSecret(t *testing.T, err error, secret string) {
	t.Helper()
	for e := err; e != nil; e = errors.Unwrap(e) {
		if strings.Contains(e.Error(), secret) || strings.Contains(fmt.Sprintf("%+v", e), secret) {
			t.Errorf("error mentions the secret: %v", e)
		}
	}
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	_ = l.Close()
	return port
}

// A retry of an action whose FAILED status the stack already shows must not take that stale
// status as its result: here the new attempt is slow to start and never shows IN_PROGRESS on a
// GET, and succeeds; then another attempt fails again, with a new reason.
func TestFakeRetryAfterFailedIsNotStale(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	s := f.Add("retry", "SUSPEND_FAILED")
	f.Lock()
	s.Reason = "old reason"
	f.Unlock()
	h := openFake(t, f)
	ctx := testCtx(t, 20*time.Second)
	outcome := "COMPLETE"
	f.Lock()
	f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/actions") {
			return false
		}
		f.Lock()
		end := outcome
		f.Unlock()
		time.AfterFunc(400*time.Millisecond, func() {
			f.Lock()
			defer f.Unlock()
			f.EventLocked(s, "SUSPEND_IN_PROGRESS", "Stack SUSPEND started")
			s.State = end
			s.Reason = "new reason " + end
			f.EventLocked(s, "SUSPEND_"+end, s.Reason)
		})
		heattest.WriteJSON(w, 200, nil)
		return true
	}
	f.Unlock()

	start := time.Now()
	st, err := h.Suspend(ctx, s.Name, s.ID)
	if err != nil || st.Status != "SUSPEND_COMPLETE" {
		t.Fatalf("retry: %+v, %v; want SUSPEND_COMPLETE", st, err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("returned after %v, before the new attempt ended", d)
	}

	f.Lock()
	s.State, s.Reason = "FAILED", "old reason" // back to FAILED, then a retry that fails anew
	outcome = "FAILED"
	f.Unlock()
	start = time.Now()
	st, err = h.Suspend(ctx, s.Name, s.ID)
	if !errors.Is(err, cloud.ErrFailed) || st.StatusReason != "new reason FAILED" {
		t.Fatalf("failing retry: %+v, %v; want ErrFailed with the new reason", st, err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Errorf("failing retry returned after %v", d)
	}
	var ce *cloud.Error
	if errors.As(err, &ce); ce == nil || ce.Message != "new reason FAILED" || ce.RequestID == "" {
		t.Errorf("error = %+v", ce)
	}
}

// After a DELETE, a GET by id may show a stale SUSPEND_FAILED on a stack that is gone from
// the list: the list is the truth.
func TestFakeDeleteTrustsTheList(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	s := f.Add("race", "SUSPEND_IN_PROGRESS")
	h := openFake(t, f)
	f.Lock()
	f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodDelete {
			return false
		}
		f.Lock()
		s.ShowStatus, s.ShowReason = "SUSPEND_FAILED", "The resource delay is already being updated."
		f.Unlock()
		time.AfterFunc(300*time.Millisecond, func() {
			f.Lock()
			s.Listed = false
			f.Unlock()
		})
		w.WriteHeader(204)
		return true
	}
	f.Unlock()
	st, err := h.Delete(testCtx(t, 10*time.Second), s.Name, s.ID)
	if err != nil || !st.Gone() || st.ID != s.ID {
		t.Fatalf("delete: %+v, %v", st, err)
	}
	// and deleting it again is a success
	f.Lock()
	f.Hook = nil
	s.ShowStatus, s.Action, s.State = "", "DELETE", "COMPLETE"
	f.Unlock()
	if st, err := h.Delete(testCtx(t, 10*time.Second), s.Name, s.ID); err != nil || !st.Gone() {
		t.Fatalf("delete again: %+v, %v", st, err)
	}
	if st, err := h.Delete(testCtx(t, 10*time.Second), "never", "no-such-id"); err != nil || !st.Gone() {
		t.Fatalf("delete of a never-existing stack: %+v, %v", st, err)
	}
}

func TestFakeCreateTimeoutReturnsTheStack(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	f.ActionDur = 5 * time.Second
	h := openFake(t, f)
	start := time.Now()
	st, err := h.Create(testCtx(t, 10*time.Second), cloud.CreateRequest{Name: "slowpoke",
		TemplateFile: templatePath(t, "slow.yaml"), Timeout: 300 * time.Millisecond})
	if !errors.Is(err, cloud.ErrTransient) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want transient + deadline exceeded", err)
	}
	if st.ID == "" || st.Name != "slowpoke" || st.Cloud != "fake" || st.RequestID == "" {
		t.Errorf("stack = %+v, want its id, name, cloud and the create's request id", st)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

// Heat's quota refusal (max_stacks_per_tenant, heat/engine/service.py _validate_new_stack), as
// Heat 19 answers it (the body is the local-quota cloud's, verbatim): the create is refused
// before any stack exists, once, as cloud.ErrInvalid with Heat's message and request id. Not
// transient: nothing is left at work on the cloud, and asking the same cloud again is refused
// until stacks are deleted; the launch moves to the next cloud (lifecycle).
func TestFakeQuotaRefusal(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	h := openFake(t, f)
	const msg = "Request limit exceeded: You have reached the maximum stacks per tenant, 2. Please delete some stacks."
	var posts atomic.Int32
	f.Lock()
	f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/stacks") {
			return false
		}
		posts.Add(1)
		heattest.WriteJSON(w, http.StatusBadRequest, map[string]any{"code": 400, "title": "Bad Request",
			"explanation": "The server could not comply with the request since it is either malformed or otherwise incorrect.",
			"error":       map[string]any{"type": "RequestLimitExceeded", "traceback": nil, "message": msg}})
		return true
	}
	f.Unlock()
	accepted := false
	st, err := h.Create(testCtx(t, 10*time.Second), cloud.CreateRequest{Name: "lab-full",
		TemplateFile: templatePath(t, "lab.yaml"), Accepted: func(labs.Stack) { accepted = true }})
	var ce *cloud.Error
	if !errors.As(err, &ce) || !errors.Is(err, cloud.ErrInvalid) || errors.Is(err, cloud.ErrTransient) {
		t.Fatalf("err = %v, want cloud.ErrInvalid", err)
	}
	if ce.HTTPStatus != 400 || !strings.HasPrefix(ce.RequestID, "req-fake-") || ce.Message != msg || ce.Op != "create" || ce.Stack != "lab-full" {
		t.Errorf("error fields: %+v", ce)
	}
	if st.ID != "" || accepted || posts.Load() != 1 {
		t.Errorf("stack %+v, accepted %v, %d creates sent: want no stack, no Accepted, one create", st, accepted, posts.Load())
	}
}

// The create body: the template with its nested file, only the declared parameters, tags,
// timeout_mins rounded up.
func TestFakeCreateBody(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	h := openFake(t, f)
	st, err := h.Create(testCtx(t, 10*time.Second), cloud.CreateRequest{Name: "lab1",
		TemplateFile: templatePath(t, "lab.yaml"),
		Params:       map[string]string{"lab_id": "L1", "course": "c1", "learner": "ann", "flavor": "not-declared"},
		Tags:         []string{labs.TagManaged, "course=c1"}, Timeout: 90 * time.Second})
	if err != nil || st.Status != "CREATE_COMPLETE" {
		t.Fatalf("create: %+v %v", st, err)
	}
	if st.Outputs["host"] != "lab1.example" || st.Outputs["n"] != "2" {
		t.Errorf("outputs = %v (non-strings JSON-encoded)", st.Outputs)
	}
	f.Lock()
	body := f.CreateBodies[0]
	f.Unlock()
	params, _ := body["parameters"].(map[string]any)
	if len(params) != 3 || params["lab_id"] != "L1" || params["learner"] != "ann" {
		t.Errorf("parameters = %v, want the 3 declared ones", params)
	}
	if body["tags"] != "labplane,course=c1" || fmt.Sprint(body["timeout_mins"]) != "2" {
		t.Errorf("tags = %v, timeout_mins = %v", body["tags"], body["timeout_mins"])
	}
	files, _ := body["files"].(map[string]any)
	nodeURL := "file://" + templatePath(t, "lab-node.yaml")
	if _, ok := files[nodeURL]; !ok || len(files) != 1 {
		t.Errorf("files = %v, want %s", keys(files), nodeURL)
	}
	if tpl, _ := body["template"].(string); !strings.Contains(tpl, nodeURL) {
		t.Errorf("template does not refer to %s:\n%s", nodeURL, tpl)
	}
}

func TestFakeListPagesAndTags(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	for i := range 25 {
		tags := []string{"labplane", "course=c1"}
		if i%5 == 0 {
			tags = []string{"other"}
		}
		f.Add(fmt.Sprintf("p%02d", i), "CREATE_COMPLETE", tags...)
	}
	h := openFake(t, f)
	restore := heat.SetListPage(7)
	t.Cleanup(restore)
	all, err := h.List(testCtx(t, 10*time.Second))
	if err != nil || len(all) != 25 {
		t.Fatalf("list all: %d stacks, %v", len(all), err)
	}
	tagged, err := h.List(testCtx(t, 10*time.Second), "labplane", "course=c1")
	if err != nil || len(tagged) != 20 {
		t.Fatalf("list tagged: %d stacks, %v", len(tagged), err)
	}
	for _, s := range tagged {
		if !s.Managed() || s.Cloud != "fake" || s.RequestID == "" || s.CreatedAt.IsZero() {
			t.Errorf("listed stack %+v", s)
		}
	}
	var lists, withMarker int
	for _, r := range f.RequestLog() {
		if strings.Contains(r, "/stacks?") && strings.Contains(r, "tags=labplane%2Ccourse%3Dc1") {
			lists++
			if strings.Contains(r, "marker=") {
				withMarker++
			}
			if strings.Contains(r, "status=") || strings.Contains(r, "name=") {
				t.Errorf("tags combined with another filter: %s", r)
			}
		}
	}
	if lists != 3 || withMarker != 2 {
		t.Errorf("tagged list took %d requests (%d with a marker), want 3 (2)", lists, withMarker)
	}
	if _, err := h.List(testCtx(t, 10*time.Second), "a,b"); !errors.Is(err, cloud.ErrInvalid) {
		t.Errorf("tag with a comma: %v", err)
	}
}

// An action on a stack that someone else deletes meanwhile ends with a conflict, not a hang.
func TestFakeActionOvertaken(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	s := f.Add("overtaken", "CREATE_COMPLETE")
	h := openFake(t, f)
	f.Lock()
	f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/actions") {
			f.Lock()
			f.StartLocked(s, "DELETE", time.Second)
			f.Unlock()
			heattest.WriteJSON(w, 200, nil)
			return true
		}
		return false
	}
	f.Unlock()
	_, err := h.Suspend(testCtx(t, 10*time.Second), s.Name, s.ID)
	if !errors.Is(err, cloud.ErrConflict) || !strings.Contains(err.Error(), "DELETE_IN_PROGRESS") {
		t.Fatalf("err = %v, want conflict mentioning DELETE_IN_PROGRESS", err)
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	e := &cloud.Error{Cloud: "local-a", Op: "suspend", Stack: "lab-x", Kind: cloud.ErrConflict, HTTPStatus: 409,
		RequestID: "req-1", Message: "Stack lab-x already has an action (SUSPEND) in progress."}
	want := "cloud local-a: suspend lab-x: conflict (HTTP 409, request req-1): Stack lab-x already has an action (SUSPEND) in progress."
	if e.Error() != want {
		t.Errorf("got  %q\nwant %q", e.Error(), want)
	}
	e2 := &cloud.Error{Cloud: "c", Op: "create", Stack: "s", Kind: cloud.ErrFailed, Message: "Resource CREATE failed"}
	if got := e2.Error(); got != "cloud c: create s: failed: Resource CREATE failed" {
		t.Errorf("got %q", got)
	}
	wrapped := fmt.Errorf("lab 1: %w", e)
	if !errors.Is(wrapped, cloud.ErrConflict) || errors.Is(wrapped, cloud.ErrFailed) {
		t.Error("errors.Is through wrapping")
	}
}

func templatePath(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "examples", "templates", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Transient errors while waiting are ridden out for a while (a heat-api restart), then
// reported as transient.
func TestFakeWaitRidesOutTransientErrors(t *testing.T) {
	t.Parallel()
	f := heattest.New(t)
	f.ActionDur = 600 * time.Millisecond
	s := f.Add("flaky", "CREATE_COMPLETE")
	h := openFake(t, f)
	heat.SetGraces(h, 3*time.Second, time.Second)
	var failUntil atomic.Int64
	f.Lock()
	f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && time.Now().UnixNano() < failUntil.Load() {
			heattest.WriteJSON(w, 503, heattest.HeatError(503, "ServiceUnavailable", "engine restarting"))
			return true
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/actions") {
			failUntil.Store(time.Now().Add(400 * time.Millisecond).UnixNano())
		}
		return false
	}
	f.Unlock()
	st, err := h.Suspend(testCtx(t, 10*time.Second), s.Name, s.ID)
	if err != nil || st.Status != "SUSPEND_COMPLETE" {
		t.Fatalf("suspend through a 400ms outage: %+v, %v", st, err)
	}

	// an outage longer than the grace: transient, with the stack as last seen
	f.Lock()
	f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/actions") {
			failUntil.Store(time.Now().Add(time.Hour).UnixNano())
			return false
		}
		if r.Method == http.MethodGet && time.Now().UnixNano() < failUntil.Load() {
			heattest.WriteJSON(w, 503, heattest.HeatError(503, "ServiceUnavailable", "down"))
			return true
		}
		return false
	}
	f.Unlock()
	start := time.Now()
	st, err = h.Resume(testCtx(t, 10*time.Second), s.Name, s.ID)
	if !errors.Is(err, cloud.ErrTransient) || st.ID != s.ID {
		t.Fatalf("resume through a long outage: %+v, %v; want transient with the stack", st, err)
	}
	if d := time.Since(start); d < time.Second || d > 4*time.Second {
		t.Errorf("gave up after %v (grace 1s)", d)
	}
}

// A response that stops midway (headers and half a body, then nothing, the connection kept
// open) fails as ErrTransient once the request's timeout is up, whatever the caller's
// context allows: Get and List, and an action whose polls hang after its request went
// through (the wait rides out transient errors for its grace, then reports one).
func TestFakeHangingBodyTimesOut(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	f := heattest.New(t)
	f.ActionDur = 5 * time.Second
	s := f.Add("slow", "CREATE_COMPLETE")
	var hang atomic.Bool
	f.Lock()
	f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !hang.Load() {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"stacks": [{"id": "`)
		w.(http.Flusher).Flush()
		<-r.Context().Done() // until the client gives up
		return true
	}
	f.Unlock()
	h := openFakeWith(t, f, heat.Options{RequestTimeout: timeout})
	heat.SetGraces(h, 3*time.Second, time.Second)
	ctx := testCtx(t, time.Minute)

	hang.Store(true)
	reads := map[string]func(context.Context) error{
		"get": func(ctx context.Context) error {
			_, err := h.Get(ctx, s.Name, s.ID)
			return err
		},
		"list": func(ctx context.Context) error {
			_, err := h.List(ctx)
			return err
		},
	}
	for name, read := range reads {
		start := time.Now()
		err := read(ctx)
		took := time.Since(start)
		if !errors.Is(err, cloud.ErrTransient) {
			t.Errorf("%s: err = %v, want transient", name, err)
		}
		if took < timeout || took > 10*timeout {
			t.Errorf("%s: failed after %v, want about the request timeout %v", name, took, timeout)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the caller's context ended: the timeouts above were not the requests'")
	}

	// the suspend's first read answers; once its request is sent, every read hangs
	hang.Store(false)
	f.Lock()
	hook := f.Hook
	f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/actions") {
			hang.Store(true)
		}
		return hook(w, r)
	}
	f.Unlock()
	start := time.Now()
	_, err := h.Suspend(ctx, s.Name, s.ID)
	if !errors.Is(err, cloud.ErrTransient) || ctx.Err() != nil {
		t.Fatalf("suspend with hanging polls: err = %v (ctx %v), want transient before the context ends", err, ctx.Err())
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("suspend gave up after %v: want the transient grace (1s) and a request timeout or two", took)
	}
}

// Entry reads the clouds.yaml entry as Open does, and connects to nothing: the auth_url below
// is a closed port, which Open would report as transient.
func TestEntry(t *testing.T) {
	t.Parallel()
	const pw = "Entry-pa55word-plugh"
	file := heattest.WriteCloudsYAML(t, "here", "http://127.0.0.1:"+closedPort(t)+"/v3", pw)
	noAuth := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(noAuth, []byte("clouds:\n  bare:\n    region_name: RegionOne\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts heat.Options
		want string // in the error; "" = no error
	}{
		{"entry present", heat.Options{Name: "here", ConfigFile: file}, ""},
		{"entry named apart from the cloud", heat.Options{Name: "alpha", Cloud: "here", ConfigFile: file}, ""},
		{"entry missing", heat.Options{Name: "alpha", Cloud: "nowhere", ConfigFile: file}, `clouds.yaml entry "nowhere"`},
		{"entry without auth", heat.Options{Name: "bare", ConfigFile: noAuth}, `clouds.yaml entry "bare"`},
		{"no name", heat.Options{ConfigFile: file}, "Name is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := heat.Entry(tc.opts)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if !errors.Is(err, cloud.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want invalid naming %s", err, tc.want)
			}
			assertNoSecret(t, err, pw)
		})
	}
}
