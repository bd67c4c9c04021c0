// Package heattest gives tests an in-process Keystone v3 + Heat speaking the subset of the API
// that package cloud uses, with the asynchronous behaviour of the real one (actions are
// IN_PROGRESS for a while, then COMPLETE or FAILED, with stack-level events) and knobs for fault
// injection: a hook answering requests itself, failed actions, a cloud that answers 500 to
// everything or hangs, expired tokens, a changed password. It counts the actions in progress
// and the requests in flight, to check an in-flight bound.
package heattest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mode is how the whole server answers.
type Mode int

const (
	Normal  Mode = iota
	Failing      // every request answers 500
	Hanging      // every request hangs until the mode changes (or the client gives up)
)

func (m Mode) String() string { return [...]string{"normal", "failing", "hanging"}[m] }

// Project is the project id of the server's tokens (and in its Heat URLs).
const Project = "fakeproject"

// Password is the password the server accepts until SetPassword.
const Password = "fake-password"

// Server is the fake Keystone + Heat. Its exported fields are knobs: set them before the
// server is used, or under Lock.
type Server struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	stacks   map[string]*Stack // by id
	seq      int
	reqSeq   int
	password string
	tokens   map[string]bool

	mode    Mode
	release chan struct{} // closed when hanging requests may go on
	hangOn  string        // when an action request of this kind ("SUSPEND") is served, switch to Hanging
	hanging int           // requests hanging now
	failed  int           // requests answered 500 by Failing

	// ActionDur is how long every action stays IN_PROGRESS.
	ActionDur time.Duration
	// CreateDur, if set, is how long a create stays IN_PROGRESS instead of ActionDur.
	CreateDur time.Duration
	// Fail makes the next action of that kind on a stack end FAILED ("SUSPEND" -> reason).
	Fail map[string]string
	// Hook, if set, may answer a request itself (return true): fault injection.
	Hook func(w http.ResponseWriter, r *http.Request) bool
	// ReqDelay delays every Heat request (to see concurrent requests).
	ReqDelay time.Duration
	// Outputs gives the outputs of a stack created by name.
	Outputs func(name string) map[string]any

	inProgress, maxInProgress int // actions IN_PROGRESS now / at most
	inReq, maxInReq           int // Heat requests being served now / at most
	requests                  []string
	// CreateBodies are the bodies of the create requests, in order.
	CreateBodies []map[string]any
}

// Stack is a stack on the server; change it under Lock.
type Stack struct {
	ID, Name, Action, State, Reason string
	Tags                            []string
	Created                         time.Time
	Outputs                         map[string]any
	Listed                          bool // false once deleted (GET by id still answers)
	events                          []event
	// ShowStatus, if set, is what GET by id shows instead of the real status (a stale view).
	ShowStatus, ShowReason string
}

type event struct{ ID, Status, Reason string }

// New starts a server, closed at the end of the test.
func New(t testing.TB) *Server {
	f := &Server{t: t, stacks: map[string]*Stack{}, password: Password, tokens: map[string]bool{},
		release: make(chan struct{}), ActionDur: 200 * time.Millisecond, Fail: map[string]string{},
		Outputs: func(name string) map[string]any { return map[string]any{"host": name + ".example", "n": 2} }}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() { f.SetMode(Normal) }) // runs first: let hanging requests go
	return f
}

// Lock and Unlock guard the server's state: the knobs, the stacks, and the *Locked methods.
func (f *Server) Lock()   { f.mu.Lock() }
func (f *Server) Unlock() { f.mu.Unlock() }

// URL is the server's base URL (Keystone at URL/v3).
func (f *Server) URL() string { return f.srv.URL }

// Close stops the server: clients then get connection refused.
func (f *Server) Close() { f.srv.Close() }

// CloudsYAML writes a clouds.yaml with one entry "fake" for this server and returns its path.
func (f *Server) CloudsYAML(password string) string {
	return WriteCloudsYAML(f.t, "fake", f.srv.URL+"/v3", password)
}

// UseCloudsYAML writes a clouds.yaml with the entry "fake" and the server's password, and
// points OS_CLIENT_CONFIG_FILE at it.
func (f *Server) UseCloudsYAML() {
	f.t.Setenv("OS_CLIENT_CONFIG_FILE", f.CloudsYAML(Password))
}

// WriteCloudsYAML writes a clouds.yaml with one entry for a Keystone at authURL and returns its path.
func WriteCloudsYAML(t testing.TB, entry, authURL, password string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "clouds.yaml")
	doc := fmt.Sprintf(`clouds:
  %s:
    auth:
      auth_url: %s
      username: learner
      password: %s
      project_name: learner-lab
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
`, entry, authURL, password)
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Add puts a stack in the given status, as if created earlier.
func (f *Server) Add(name, status string, tags ...string) *Stack {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	action, state, _ := strings.Cut(status, "_")
	s := &Stack{ID: fmt.Sprintf("id-%06d", f.seq), Name: name, Action: action, State: state,
		Reason: "Stack " + action + " " + state, Tags: tags, Created: time.Now().UTC(), Listed: true,
		Outputs: map[string]any{"host": "h1", "ports": []int{22, 80}}}
	f.stacks[s.ID] = s
	f.EventLocked(s, status, s.Reason)
	return s
}

// EventLocked adds a stack-level event to s.
func (f *Server) EventLocked(s *Stack, status, reason string) {
	f.seq++
	s.events = append(s.events, event{ID: fmt.Sprintf("ev-%06d", f.seq), Status: status, Reason: reason})
}

// StartLocked puts s IN_PROGRESS for action and schedules the end after d.
func (f *Server) StartLocked(s *Stack, action string, d time.Duration) {
	s.Action, s.State, s.Reason = action, "IN_PROGRESS", "Stack "+action+" started"
	s.ShowStatus = ""
	f.EventLocked(s, action+"_IN_PROGRESS", s.Reason)
	f.inProgress++
	f.maxInProgress = max(f.maxInProgress, f.inProgress)
	time.AfterFunc(d, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.inProgress--
		f.finishLocked(s, action)
	})
}

func (f *Server) finishLocked(s *Stack, action string) {
	if reason, ok := f.Fail[action]; ok {
		delete(f.Fail, action)
		s.State, s.Reason = "FAILED", reason
	} else {
		s.State, s.Reason = "COMPLETE", "Stack "+action+" completed successfully"
	}
	if action == "DELETE" && s.State == "COMPLETE" {
		s.Listed = false
	}
	f.EventLocked(s, action+"_"+s.State, s.Reason)
}

// Stats returns the most actions IN_PROGRESS at once and the most Heat requests served at once.
func (f *Server) Stats() (maxInProgress, maxInReq int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInProgress, f.maxInReq
}

// RequestLog returns every request so far, as "METHOD /path?query".
func (f *Server) RequestLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// SetMode switches how the whole server answers; leaving Hanging lets the hanging requests go on.
func (f *Server) SetMode(m Mode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setModeLocked(m)
}

func (f *Server) setModeLocked(m Mode) {
	if f.mode == Hanging && m != Hanging {
		close(f.release)
		f.release = make(chan struct{})
	}
	f.mode = m
}

// HangAfter makes the server hang every request once it has served an action request of
// that kind (SUSPEND, RESUME): an action caught mid-wait.
func (f *Server) HangAfter(action string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hangOn = action
}

// State returns the mode, the requests hanging now and the requests answered 500 by Failing.
func (f *Server) State() (mode Mode, hanging, failed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mode, f.hanging, f.failed
}

// StackStatus returns the status of a stack by name ("" if there is none).
func (f *Server) StackStatus(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.stacks {
		if s.Name == name {
			return s.Action + "_" + s.State
		}
	}
	return ""
}

// ExpireTokens makes every token issued so far invalid (the client must re-authenticate).
func (f *Server) ExpireTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = map[string]bool{}
}

// SetPassword changes the password Keystone accepts.
func (f *Server) SetPassword(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.password = p
}

// WriteJSON answers with code and v as JSON (no body if v is nil).
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// HeatError is the body of a Heat error answer.
func HeatError(code int, typ, msg string) map[string]any {
	return map[string]any{"code": code, "title": http.StatusText(code), "explanation": "explanation " + typ,
		"error": map[string]any{"type": typ, "message": msg, "traceback": nil}}
}

func unauthorized(w http.ResponseWriter) {
	WriteJSON(w, 401, map[string]any{"error": map[string]any{"code": 401, "title": "Unauthorized",
		"message": "The request you have made requires authentication."}})
}

func (f *Server) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqSeq++
	w.Header().Set("X-Openstack-Request-Id", fmt.Sprintf("req-fake-%d", f.reqSeq))
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	hook, mode, release := f.Hook, f.mode, f.release
	switch mode {
	case Failing:
		f.failed++
	case Hanging:
		f.hanging++
	}
	f.mu.Unlock()

	switch mode {
	case Failing:
		const msg = "Remote error: DBConnectionError (injected)"
		WriteJSON(w, http.StatusInternalServerError, map[string]any{"code": 500, "title": http.StatusText(500),
			"explanation": msg, "error": map[string]any{"type": http.StatusText(500), "message": msg, "traceback": nil}})
		return
	case Hanging:
		select {
		case <-release:
		case <-r.Context().Done():
		}
		f.mu.Lock()
		f.hanging--
		f.mu.Unlock()
		if r.Context().Err() != nil {
			return // the client gave up
		}
	}
	if r.URL.Path == "/v3/auth/tokens" && r.Method == http.MethodPost {
		f.serveToken(w, r)
		return
	}
	if hook != nil && hook(w, r) {
		return
	}
	if !f.checkToken(r.Header.Get("X-Auth-Token")) {
		unauthorized(w)
		return
	}
	f.mu.Lock()
	f.inReq++
	f.maxInReq = max(f.maxInReq, f.inReq)
	delay := f.ReqDelay
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inReq--
		f.mu.Unlock()
	}()
	if delay > 0 {
		time.Sleep(delay)
	}
	f.serveHeat(w, r)
}

func (f *Server) checkToken(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens[tok]
}

func (f *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Auth struct {
			Identity struct {
				Password struct {
					User struct {
						Password string `json:"password"`
					} `json:"user"`
				} `json:"password"`
			} `json:"identity"`
		} `json:"auth"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	ok := body.Auth.Identity.Password.User.Password == f.password
	f.seq++
	tok := fmt.Sprintf("tok-%d", f.seq)
	if ok {
		f.tokens[tok] = true
	}
	f.mu.Unlock()
	if !ok {
		unauthorized(w)
		return
	}
	w.Header().Set("X-Subject-Token", tok)
	heatURL := f.srv.URL + "/v1/" + Project
	WriteJSON(w, 201, map[string]any{"token": map[string]any{
		"methods":    []string{"password"},
		"expires_at": time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000000Z"),
		"project":    map[string]any{"id": Project, "name": "learner-lab", "domain": map[string]any{"id": "default", "name": "Default"}},
		"user":       map[string]any{"id": "u1", "name": "learner", "domain": map[string]any{"id": "default", "name": "Default"}},
		"catalog": []any{map[string]any{"type": "orchestration", "name": "heat", "id": "svc1", "endpoints": []any{
			map[string]any{"id": "e1", "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": heatURL},
		}}},
	}})
}

func (f *Server) stackJSON(s *Stack, withOutputs bool) map[string]any {
	status, reason := s.Action+"_"+s.State, s.Reason
	if s.ShowStatus != "" {
		status, reason = s.ShowStatus, s.ShowReason
	}
	m := map[string]any{"id": s.ID, "stack_name": s.Name, "stack_status": status, "stack_status_reason": reason,
		"tags": s.Tags, "creation_time": s.Created.Format("2006-01-02T15:04:05Z"), "parent": nil, "updated_time": nil}
	if withOutputs && s.Action != "DELETE" && (s.Action != "CREATE" || s.State == "COMPLETE") {
		var outs []any
		keys := make([]string, 0, len(s.Outputs))
		for k := range s.Outputs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			outs = append(outs, map[string]any{"output_key": k, "output_value": s.Outputs[k]})
		}
		m["outputs"] = outs
	}
	return m
}

func (f *Server) serveHeat(w http.ResponseWriter, r *http.Request) {
	prefix := "/v1/" + Project + "/stacks"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		WriteJSON(w, 404, HeatError(404, "NotFound", "no route"))
		return
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, prefix), "/"), "/")
	if len(parts) == 1 && parts[0] == "" {
		parts = nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case len(parts) == 0 && r.Method == http.MethodGet:
		f.listLocked(w, r.URL.Query())
	case len(parts) == 0 && r.Method == http.MethodPost:
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			WriteJSON(w, 400, HeatError(400, "BadRequest", "bad json"))
			return
		}
		f.CreateBodies = append(f.CreateBodies, body)
		name, _ := body["stack_name"].(string)
		for _, s := range f.stacks {
			if s.Name == name && s.Listed {
				WriteJSON(w, 409, HeatError(409, "StackExists", fmt.Sprintf("The Stack (%s) already exists.", name)))
				return
			}
		}
		f.seq++
		s := &Stack{ID: fmt.Sprintf("id-%06d", f.seq), Name: name, Created: time.Now().UTC(), Listed: true,
			Outputs: f.Outputs(name)}
		if tags, _ := body["tags"].(string); tags != "" {
			s.Tags = strings.Split(tags, ",")
		}
		f.stacks[s.ID] = s
		d := f.ActionDur
		if f.CreateDur > 0 {
			d = f.CreateDur
		}
		f.StartLocked(s, "CREATE", d)
		WriteJSON(w, 201, map[string]any{"stack": map[string]any{"id": s.ID, "links": []any{}}})
	case len(parts) == 1 && r.Method == http.MethodGet:
		for _, s := range f.stacks {
			if s.Name == parts[0] && s.Listed {
				http.Redirect(w, r, prefix+"/"+s.Name+"/"+s.ID, http.StatusFound)
				return
			}
		}
		WriteJSON(w, 404, HeatError(404, "EntityNotFound", fmt.Sprintf("The Stack (%s) could not be found.", parts[0])))
	case len(parts) >= 2:
		s := f.stacks[parts[1]]
		if s == nil || s.Name != parts[0] {
			WriteJSON(w, 404, HeatError(404, "EntityNotFound", fmt.Sprintf("The Stack (%s) could not be found.", parts[0])))
			return
		}
		switch {
		case len(parts) == 2 && r.Method == http.MethodGet:
			WriteJSON(w, 200, map[string]any{"stack": f.stackJSON(s, true)})
		case len(parts) == 2 && r.Method == http.MethodDelete:
			if s.State == "IN_PROGRESS" && s.Action == "DELETE" {
				WriteJSON(w, 409, HeatError(409, "ActionInProgress", fmt.Sprintf("Stack %s already has an action (DELETE) in progress.", s.Name)))
				return
			}
			if s.Action == "DELETE" && s.State == "COMPLETE" {
				WriteJSON(w, 404, HeatError(404, "EntityNotFound", "gone"))
				return
			}
			f.StartLocked(s, "DELETE", f.ActionDur)
			w.WriteHeader(204)
		case len(parts) == 3 && parts[2] == "actions" && r.Method == http.MethodPost:
			var body map[string]any
			_ = json.NewDecoder(r.Body).Decode(&body)
			var action string
			for k := range body {
				action = strings.ToUpper(k)
			}
			if s.State == "IN_PROGRESS" {
				WriteJSON(w, 409, HeatError(409, "ActionInProgress", fmt.Sprintf("Stack %s already has an action (%s) in progress.", s.Name, s.Action)))
				return
			}
			f.StartLocked(s, action, f.ActionDur)
			WriteJSON(w, 200, nil)
			if f.hangOn == action {
				f.hangOn = ""
				f.setModeLocked(Hanging)
			}
		case len(parts) == 3 && parts[2] == "events" && r.Method == http.MethodGet:
			var evs []any
			for i := len(s.events) - 1; i >= 0; i-- { // sort_dir=desc
				e := s.events[i]
				evs = append(evs, map[string]any{"id": e.ID, "resource_name": s.Name, "logical_resource_id": s.Name,
					"physical_resource_id": s.ID, "resource_status": e.Status, "resource_status_reason": e.Reason,
					"event_time": time.Now().UTC().Format("2006-01-02T15:04:05Z")})
			}
			WriteJSON(w, 200, map[string]any{"events": evs})
		default:
			WriteJSON(w, 405, HeatError(405, "MethodNotAllowed", "no"))
		}
	default:
		WriteJSON(w, 405, HeatError(405, "MethodNotAllowed", "no"))
	}
}

func (f *Server) listLocked(w http.ResponseWriter, q url.Values) {
	if q.Get("tags") != "" && (q.Get("status") != "" || q.Get("name") != "") {
		// the real Heat bug: tags combined with status/name filters -> 500
		WriteJSON(w, 500, HeatError(500, "RemoteError", ""))
		return
	}
	var ids []string
	for id, s := range f.stacks {
		if s.Listed {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if want := q.Get("id"); want != "" {
		ids = slices.DeleteFunc(ids, func(id string) bool { return id != want })
	}
	if tags := q.Get("tags"); tags != "" {
		ids = slices.DeleteFunc(ids, func(id string) bool {
			for _, t := range strings.Split(tags, ",") {
				if !slices.Contains(f.stacks[id].Tags, t) {
					return true
				}
			}
			return false
		})
	}
	if m := q.Get("marker"); m != "" {
		i := slices.Index(ids, m)
		if i < 0 {
			WriteJSON(w, 404, HeatError(404, "EntityNotFound", "marker"))
			return
		}
		ids = ids[i+1:]
	}
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l < len(ids) {
		ids = ids[:l]
	}
	out := []any{}
	for _, id := range ids {
		out = append(out, f.stackJSON(f.stacks[id], false))
	}
	WriteJSON(w, 200, map[string]any{"stacks": out})
}
