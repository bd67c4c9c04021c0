// Package api is labplane's HTTP API, the one the LMS calls: launch (or get back) a learner's
// lab, heartbeats, status, resume, delete; bearer-token auth; health, readiness and metrics.
// Cloud work (creating, resuming, deleting a stack) runs in the background after the answer;
// Shutdown waits for it, so a SIGTERM never leaves an action unrecorded.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/felixge/httpsnoop"

	"github.com/labplane/labplane/internal/auth"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"golang.org/x/time/rate"
	"gopkg.in/yaml.v3"
)

// Labs is what the API needs of the lifecycle manager.
type Labs interface {
	Start(ctx context.Context, req lifecycle.LaunchRequest) (lifecycle.Pending, error)
	Provision(ctx context.Context, p lifecycle.Pending) (labs.Lab, error)
	Claim(ctx context.Context, op lifecycle.Op, id, actor string, force bool) (lifecycle.Request, error)
	Carry(ctx context.Context, r lifecycle.Request) (labs.Lab, error)
	Heartbeat(ctx context.Context, id string) (labs.Lab, error)
	Leave(ctx context.Context, id string) (labs.Lab, error)
	Do(ctx context.Context, op lifecycle.Op, id, actor string, force bool) (labs.Lab, error)
	Budget(ctx context.Context, learner, course string) (policy.Budget, error)
	SuspendSpent(ctx context.Context, lab labs.Lab, b policy.Budget) (lifecycle.Request, bool, error)
	Extend(ctx context.Context, id string, by time.Duration, actor string) (labs.Lab, policy.Budget, error)
	Fill(ctx context.Context, course string) (int, error)
}

// Registry is what the API reads directly.
type Registry interface {
	GetLab(ctx context.Context, id string) (labs.Lab, error)
	ListLabs(ctx context.Context, f labs.Filter) ([]labs.Lab, error)
}

// Authenticator turns an Authorization header into a client (its name and scope), or fails:
// with an error wrapping auth.ErrUnauthorized when the header is refused (401), with another
// one when it could not be checked (the store is down: 503).
type Authenticator interface {
	Verify(ctx context.Context, authorizationHeader string) (auth.Client, error)
}

// Check is one readiness check (the store, a cloud). /readyz, which anyone may read, shows a
// failed check as "failed" and logs its error, which may name a database, a host or a user;
// only a Public check's error (labplane's own words, such as the scheduler's "stuck: ...") is
// shown as it is.
type Check struct {
	Name   string
	Check  func(ctx context.Context) error
	Public bool
}

// Observer is told of every request (metrics).
type Observer interface {
	ObserveHTTP(route, method string, code int, took time.Duration)
}

// Server serves the API.
type Server struct {
	Labs     Labs
	Registry Registry
	Auth     Authenticator
	Ready    []Check
	Metrics  http.Handler // /metrics; nil: not served
	Observe  Observer     // nil: nothing observed
	Log      *slog.Logger
	// Policy gives each lab answer its deadlines (suspend_at, delete_at); Now is the clock
	// they are read at (nil: the wall clock).
	Policy policy.Set
	Now    func() time.Time
	// RateLimit bounds each token's requests (a token bucket per client); zero: no bound.
	RateLimit RateLimit

	limiters sync.Map // client name -> *rate.Limiter

	bgOnce sync.Once
	bg     context.Context // background work's context, cancelled by Shutdown when its time is up
	stop   context.CancelFunc
	work   sync.WaitGroup
}

//go:embed openapi.yaml
var description []byte

// Description is the API's OpenAPI description (openapi.yaml, embedded), as JSON.
var Description = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(description, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return json.Marshal(doc)
})

// RateLimit is a token bucket per client: PerSecond requests a second on average, Burst at
// once. Beyond it a request is answered 429 with Retry-After.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// admit takes one of client's requests from its bucket, or says how long until one is free.
func (s *Server) admit(client string) (retryAfter time.Duration, ok bool) {
	if s.RateLimit.PerSecond <= 0 {
		return 0, true
	}
	l, _ := s.limiters.LoadOrStore(client, rate.NewLimiter(rate.Limit(s.RateLimit.PerSecond), max(s.RateLimit.Burst, 1)))
	r := l.(*rate.Limiter).Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return d, false
	}
	return 0, true
}

// maxBody bounds request bodies.
const maxBody = 64 << 10

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, need auth.Scope, h func(w http.ResponseWriter, r *http.Request, client string) error) {
		mux.Handle(pattern, s.authed(pattern, need, h))
	}
	route("POST /v1/labs", auth.ScopeLMS, s.launch)
	route("GET /v1/labs", auth.ScopeRead, s.list)
	route("GET /v1/labs/{id}", auth.ScopeRead, s.get)
	route("POST /v1/labs/{id}/heartbeat", auth.ScopeLMS, s.heartbeat)
	route("POST /v1/labs/{id}/leave", auth.ScopeLMS, s.leave)
	route("POST /v1/labs/{id}/resume", auth.ScopeLMS, s.resume)
	route("DELETE /v1/labs/{id}", auth.ScopeLMS, s.delete)
	route("POST /v1/labs/{id}/extend", auth.ScopeOperator, s.extend)
	mux.Handle("GET /healthz", s.observed("/healthz", func(w http.ResponseWriter, _ *http.Request) error {
		return writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	}))
	mux.Handle("GET /readyz", s.observed("/readyz", s.ready))
	mux.Handle("GET /v1/openapi.json", s.observed("/v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) error {
		doc, err := Description()
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		_, err = w.Write(doc)
		return err
	}))
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	mux.Handle("/", s.observed("other", func(http.ResponseWriter, *http.Request) error {
		return errNoRoute
	}))
	return mux
}

// authed checks the bearer token and its scope, then runs h with the client's name; a wrong
// or missing token gets 401 and nothing else, a token whose scope does not allow the route 403.
func (s *Server) authed(route string, need auth.Scope, h func(http.ResponseWriter, *http.Request, string) error) http.Handler {
	return s.observed(route, func(w http.ResponseWriter, r *http.Request) error {
		client, err := s.Auth.Verify(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			if !errors.Is(err, auth.ErrUnauthorized) {
				return err // the token could not be checked (the store is down): not the client's fault
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="labplane"`)
			return errUnauthorized
		}
		if !client.Scope.Allows(need) {
			return fmt.Errorf("%w: token %q has scope %q; %s %s needs %q", errForbidden, client.Name, client.Scope, r.Method, route, need)
		}
		if wait, ok := s.admit(client.Name); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			return fmt.Errorf("%w: token %q is over serve.rate_limit (%g a second, %d at once): try again in %s",
				errRateLimited, client.Name, s.RateLimit.PerSecond, max(s.RateLimit.Burst, 1), wait.Round(time.Millisecond))
		}
		return h(w, r, client.Name)
	})
}

// observed runs h, writes its error as JSON, and reports the request to the observer.
func (s *Server) observed(route string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := httpsnoop.CaptureMetricsFn(w, func(w http.ResponseWriter) {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			if err := h(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
		if s.Observe != nil {
			s.Observe.ObserveHTTP(route, r.Method, m.Code, m.Duration)
		}
	})
}

// launchRequest is POST /v1/labs.
type launchRequest struct {
	Learner  string `json:"learner"`
	Course   string `json:"course"`
	Template string `json:"template,omitempty"`
}

// launch returns the learner's live lab for the course (resuming it if it is suspended), or
// starts a new one (or takes one of the course's warm pool, and resumes it): an LMS retry
// never makes a second stack.
func (s *Server) launch(w http.ResponseWriter, r *http.Request, client string) error {
	var req launchRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Learner == "" || req.Course == "" {
		return badRequest("learner and course are required")
	}
	p, err := s.Labs.Start(r.Context(), lifecycle.LaunchRequest{Learner: req.Learner, Course: req.Course,
		Template: req.Template, Actor: "api:" + client})
	switch {
	case errors.Is(err, labs.ErrExists):
		// the learner is back: that is activity, whatever the lab's state
		lab, err := s.Labs.Heartbeat(r.Context(), p.Lab.ID)
		if err != nil {
			return err
		}
		if lab.Resumable() {
			s.background("resume", lab.ID, func(ctx context.Context) error {
				_, err := s.Labs.Do(ctx, lifecycle.OpResume, lab.ID, "api:"+client, false)
				return err
			})
			return s.writeLab(w, r, http.StatusAccepted, lab)
		}
		return s.writeLab(w, r, http.StatusOK, lab)
	case err != nil:
		return err
	}
	s.background("launch", p.Lab.ID, func(ctx context.Context) error {
		_, err := s.Labs.Provision(ctx, p)
		return err
	})
	if p.Pooled() {
		// taken from the course's warm pool (Provision resumes it): the pool lacks one
		s.background("fill the pool", p.Lab.ID, func(ctx context.Context) error {
			_, err := s.Labs.Fill(ctx, p.Lab.Course)
			return err
		})
	}
	w.Header().Set("Location", "/v1/labs/"+p.Lab.ID)
	return s.writeLab(w, r, http.StatusAccepted, p.Lab)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, _ string) error {
	lab, err := s.Registry.GetLab(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return s.writeLab(w, r, http.StatusOK, lab)
}

// Listings come in pages of pageSize labs unless the client asks for another size, at most
// maxPageSize.
const (
	pageSize    = 100
	maxPageSize = 1000
)

// list pages through the labs that match the query, in the order they were created, deleted
// ones left out unless asked for (include_deleted=true, or a status filter naming deleted).
func (s *Server) list(w http.ResponseWriter, r *http.Request, _ string) error {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "course", "learner", "status", "cloud", "limit", "cursor", "include_deleted":
		default:
			return badRequest(fmt.Sprintf("unknown query parameter %q (course, learner, status, cloud, limit, cursor, include_deleted)", k))
		}
	}
	f := labs.Filter{Course: q.Get("course"), Learner: q.Get("learner"), Cloud: q.Get("cloud"), Limit: pageSize}
	for _, st := range q["status"] {
		for one := range strings.SplitSeq(st, ",") {
			if !labs.Status(one).Valid() {
				return badRequest(fmt.Sprintf("unknown status %q", one))
			}
			f.Statuses = append(f.Statuses, labs.Status(one))
		}
	}
	switch v := q.Get("include_deleted"); v {
	case "true":
	case "", "false":
		if len(f.Statuses) == 0 {
			f.Statuses = labs.LiveStatuses()
		}
	default:
		return badRequest(fmt.Sprintf("include_deleted %q: true or false", v))
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return badRequest(fmt.Sprintf("limit %q: a whole number from 1 to %d", v, maxPageSize))
		}
		f.Limit = n
	}
	if f.After = q.Get("cursor"); f.After != "" {
		if _, err := s.Registry.GetLab(r.Context(), f.After); errors.Is(err, labs.ErrNotFound) {
			return badRequest(fmt.Sprintf("cursor %q: no such page (a cursor is the next_cursor of a page)", f.After))
		} else if err != nil {
			return err
		}
	}
	want := f.Limit
	f.Limit++ // one more tells whether a next page exists
	list, err := s.Registry.ListLabs(r.Context(), f)
	if err != nil {
		return err
	}
	page := labPage{Labs: make([]labView, 0, min(len(list), want))}
	for i, l := range list {
		if i == want {
			page.NextCursor = list[want-1].ID
			break
		}
		v, err := s.view(r.Context(), l)
		if err != nil {
			return err
		}
		page.Labs = append(page.Labs, v)
	}
	return writeJSON(w, http.StatusOK, page)
}

// labPage is a page of GET /v1/labs: NextCursor, when set, is the cursor of the next page.
type labPage struct {
	Labs       []labView `json:"labs"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// heartbeat: the learner is active in the lab. The heartbeat that spends the learner's time
// budget in the course has the lab suspended (in the background, as a suspend asked for).
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, _ string) error {
	return s.mark(w, r, s.Labs.Heartbeat, true)
}

// leave: the learner closed the lab's page.
func (s *Server) leave(w http.ResponseWriter, r *http.Request, _ string) error {
	return s.mark(w, r, s.Labs.Leave, false)
}

// mark records what the learner did (a heartbeat, a leave) and answers with the lab's status,
// its deadlines from then and the learner's budget (read once); with enforce, a spent budget
// has the lab suspended.
func (s *Server) mark(w http.ResponseWriter, r *http.Request, record func(ctx context.Context, id string) (labs.Lab, error), enforce bool) error {
	if err := emptyBody(r); err != nil {
		return err
	}
	ctx := r.Context()
	lab, err := record(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	b, err := s.Labs.Budget(ctx, lab.Learner, lab.Course)
	if err != nil {
		return err
	}
	if enforce {
		lab = s.suspendSpent(ctx, lab, b)
	}
	v := s.viewOf(lab, b)
	return writeJSON(w, http.StatusOK, heartbeatView{ID: v.ID, Status: v.Status, LastHeartbeat: timePtr(lab.LastHeartbeat),
		LeftAt: v.LeftAt, SuspendAt: v.SuspendAt, DeleteAt: v.DeleteAt, Budget: v.Budget})
}

// suspendSpent claims the suspend of a running lab whose learner's budget b is spent and
// carries it out in the background; it returns the lab as the claim left it.
func (s *Server) suspendSpent(ctx context.Context, lab labs.Lab, b policy.Budget) labs.Lab {
	req, spent, err := s.Labs.SuspendSpent(ctx, lab, b)
	switch {
	case errors.Is(err, lifecycle.ErrBusy):
		// another heartbeat (another replica's) claimed it first
	case err != nil:
		// counted all the same; the next heartbeat tries again
		s.Log.Warn("suspend of a spent time budget not claimed", "lab", lab.ID, "err", err)
	case spent:
		s.background("suspend", lab.ID, func(ctx context.Context) error {
			_, err := s.Labs.Carry(ctx, req)
			return err
		})
		return req.Lab
	}
	return lab
}

// extendRequest is POST /v1/labs/{id}/extend: a duration such as "2h".
type extendRequest struct {
	By string `json:"by"`
}

// extend adds time to the budget of the lab's learner in its course (an operator's call).
func (s *Server) extend(w http.ResponseWriter, r *http.Request, client string) error {
	var req extendRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	by, err := time.ParseDuration(req.By)
	if err != nil {
		return badRequest(fmt.Sprintf("by %q: a duration such as 2h or 90m", req.By))
	}
	lab, _, err := s.Labs.Extend(r.Context(), r.PathValue("id"), by, "api:"+client)
	if err != nil {
		return err
	}
	return s.writeLab(w, r, http.StatusOK, lab)
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request, client string) error {
	return s.act(w, r, client, lifecycle.OpResume, false)
}

// delete deletes the lab on the LMS's request (a learner resetting a lab), in use or not.
func (s *Server) delete(w http.ResponseWriter, r *http.Request, client string) error {
	return s.act(w, r, client, lifecycle.OpDelete, true)
}

// act checks the request and, for a suspend or a delete, claims the lab for it (the answer
// shows it suspending or deleting, and a crash after the answer loses nothing: the reaper
// finishes it), then carries it out in the background: 202 and the lab as it is now.
func (s *Server) act(w http.ResponseWriter, r *http.Request, client string, op lifecycle.Op, force bool) error {
	if err := emptyBody(r); err != nil {
		return err
	}
	req, err := s.Labs.Claim(r.Context(), op, r.PathValue("id"), "api:"+client, force)
	if err != nil {
		return err
	}
	s.background(string(op), req.Lab.ID, func(ctx context.Context) error {
		_, err := s.Labs.Carry(ctx, req)
		return err
	})
	return s.writeLab(w, r, http.StatusAccepted, req.Lab)
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	results := make(map[string]string, len(s.Ready))
	var mu sync.Mutex
	var wg sync.WaitGroup
	ok := true
	for _, c := range s.Ready {
		wg.Go(func() {
			res := "ok"
			if err := c.Check(ctx); err != nil {
				res = "failed"
				if c.Public {
					res = err.Error()
				}
				s.Log.Warn("not ready", "check", c.Name, "err", err)
			}
			mu.Lock()
			defer mu.Unlock()
			results[c.Name] = res
			ok = ok && res == "ok"
		})
	}
	wg.Wait()
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	return writeJSON(w, code, map[string]any{"ready": ok, "checks": results})
}

// Background runs cloud work after the answer to a request served beside the API (the
// console's actions), as the API runs its own: Shutdown waits for it, and its failure is
// logged.
func (s *Server) Background(what, labID string, run func(ctx context.Context) error) {
	s.background(what, labID, run)
}

// background runs cloud work after the answer; Shutdown waits for it.
func (s *Server) background(what, labID string, run func(ctx context.Context) error) {
	s.bgOnce.Do(s.initBackground)
	s.work.Go(func() {
		if err := run(s.bg); err != nil {
			s.Log.Warn("background action failed", "action", what, "lab", labID, "err", err)
		}
	})
}

func (s *Server) initBackground() { s.bg, s.stop = context.WithCancel(context.Background()) }

// Shutdown waits for background work until ctx is done, then cancels what is left (which
// still records its outcome) and waits for that too.
func (s *Server) Shutdown(ctx context.Context) {
	s.bgOnce.Do(s.initBackground)
	done := make(chan struct{})
	go func() { s.work.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.stop()
		<-done
	}
	s.stop()
}

// heartbeatView is a heartbeat's or a leave's answer: the lab's status and its deadlines from
// now.
type heartbeatView struct {
	ID            string             `json:"id"`
	Status        labs.Status        `json:"status"`
	LastHeartbeat *time.Time         `json:"last_heartbeat,omitempty"`
	LeftAt        *time.Time         `json:"left_at,omitempty"`
	SuspendAt     *time.Time         `json:"suspend_at,omitempty"`
	DeleteAt      *time.Time         `json:"delete_at,omitempty"`
	Budget        *policy.BudgetView `json:"budget,omitempty"`
}

// labView is a lab as the API shows it: the outputs (connection details) in full, since the
// LMS hands them to the learner.
type labView struct {
	ID            string            `json:"id"`
	Learner       string            `json:"learner"`
	Course        string            `json:"course"`
	Template      string            `json:"template"`
	Cloud         string            `json:"cloud"`
	Status        labs.Status       `json:"status"`
	StackStatus   string            `json:"stack_status,omitempty"`
	CreatedAt     time.Time         `json:"created_at"`
	LastHeartbeat *time.Time        `json:"last_heartbeat,omitempty"`
	LastResumedAt *time.Time        `json:"last_resumed_at,omitempty"`
	Outputs       map[string]string `json:"outputs,omitempty"`
	LastError     string            `json:"last_error,omitempty"`
	// when the learner left it, if they have shown no activity since
	LeftAt *time.Time `json:"left_at,omitempty"`
	// when the lab will be suspended and deleted if its learner shows no more activity
	SuspendAt *time.Time `json:"suspend_at,omitempty"`
	DeleteAt  *time.Time `json:"delete_at,omitempty"`
	// the learner's time budget in the course, when it has a usage_limit
	Budget *policy.BudgetView `json:"budget,omitempty"`
}

// writeLab answers with the lab as the API shows it.
func (s *Server) writeLab(w http.ResponseWriter, r *http.Request, code int, l labs.Lab) error {
	v, err := s.view(r.Context(), l)
	if err != nil {
		return err
	}
	return writeJSON(w, code, v)
}

// view is the lab as the API shows it, with its learner's budget read from the registry.
func (s *Server) view(ctx context.Context, l labs.Lab) (labView, error) {
	b, err := s.Labs.Budget(ctx, l.Learner, l.Course)
	if err != nil {
		return labView{}, err
	}
	return s.viewOf(l, b), nil
}

// viewOf is the lab as the API shows it, with the learner's budget b.
func (s *Server) viewOf(l labs.Lab, b policy.Budget) labView {
	v := labView{ID: l.ID, Learner: l.Learner, Course: l.Course, Template: l.Template, Cloud: l.Cloud,
		Status: l.Status, StackStatus: l.StackStatus, CreatedAt: l.CreatedAt, LastError: l.LastError,
		LastHeartbeat: timePtr(l.LastHeartbeat), LastResumedAt: timePtr(l.LastResumedAt)}
	if l.Status == labs.Active {
		v.Outputs = l.Outputs
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if l.Left() {
		v.LeftAt = timePtr(l.LeftAt)
	}
	suspendAt, deleteAt := s.Policy.For(l.Course).Deadlines(l, now())
	v.SuspendAt, v.DeleteAt = timePtr(suspendAt), timePtr(deleteAt)
	v.Budget = b.View()
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// decode reads a JSON body into v: unknown fields, trailing data and oversized bodies are errors.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: " + describeJSONError(err))
	}
	if dec.More() {
		return badRequest("request body: more than one JSON value")
	}
	return nil
}

// emptyBody refuses a body on requests that take none (an empty JSON object is fine).
func emptyBody(r *http.Request) error {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 64))
	if body := strings.TrimSpace(string(b)); body != "" && body != "{}" {
		return badRequest("this request takes no body (or {})")
	}
	return nil
}

func describeJSONError(err error) string {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return fmt.Sprintf("larger than %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return "empty (a JSON object is expected)"
	}
	return err.Error()
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	return json.NewEncoder(w).Encode(v)
}
