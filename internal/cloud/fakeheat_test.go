package cloud_test

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

// fakeHeat is an in-process Keystone + Heat speaking the subset of the API that package cloud
// uses, with the asynchronous behaviour of the real one (actions are IN_PROGRESS for a while,
// then COMPLETE or FAILED, with stack-level events) and hooks for fault injection. It counts
// the actions in progress and the requests in flight, to check the in-flight bound.
type fakeHeat struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	stacks   map[string]*fakeStack // by id
	seq      int
	reqSeq   int
	password string
	tokens   map[string]bool

	// ActionDur is how long every action stays IN_PROGRESS.
	actionDur time.Duration
	// fail makes the next action of that kind on a stack end FAILED ("SUSPEND" -> reason).
	fail map[string]string
	// hook, if set, may answer a request itself (return true): fault injection.
	hook func(w http.ResponseWriter, r *http.Request) bool
	// reqDelay delays every Heat request (to see concurrent requests).
	reqDelay time.Duration

	inProgress, maxInProgress int // actions IN_PROGRESS now / at most
	inReq, maxInReq           int // Heat requests being served now / at most
	requests                  []string
	createBodies              []map[string]any
}

type fakeStack struct {
	ID, Name, Action, State, Reason string
	Tags                            []string
	Created                         time.Time
	Outputs                         map[string]any
	listed                          bool // false once deleted (GET by id still answers)
	events                          []fakeEvent
	// showStatus, if set, is what GET by id shows instead of the real status (a stale view).
	showStatus, showReason string
}

type fakeEvent struct{ ID, Status, Reason string }

const fakeProject = "fakeproject"

func newFakeHeat(t *testing.T) *fakeHeat {
	f := &fakeHeat{t: t, stacks: map[string]*fakeStack{}, password: "fake-password", tokens: map[string]bool{},
		actionDur: 200 * time.Millisecond, fail: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// cloudsYAML writes a clouds.yaml with one entry "fake" for this server and returns its path.
func (f *fakeHeat) cloudsYAML(password string) string {
	return writeCloudsYAML(f.t, "fake", f.srv.URL+"/v3", password)
}

func writeCloudsYAML(t *testing.T, entry, authURL, password string) string {
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

// add puts a stack in the given status, as if created earlier.
func (f *fakeHeat) add(name, status string, tags ...string) *fakeStack {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	action, state, _ := strings.Cut(status, "_")
	s := &fakeStack{ID: fmt.Sprintf("id-%04d", f.seq), Name: name, Action: action, State: state,
		Reason: "Stack " + action + " " + state, Tags: tags, Created: time.Now().UTC(), listed: true,
		Outputs: map[string]any{"host": "h1", "ports": []int{22, 80}}}
	f.stacks[s.ID] = s
	f.eventLocked(s, status, s.Reason)
	return s
}

func (f *fakeHeat) eventLocked(s *fakeStack, status, reason string) {
	f.seq++
	s.events = append(s.events, fakeEvent{ID: fmt.Sprintf("ev-%05d", f.seq), Status: status, Reason: reason})
}

// startLocked puts s IN_PROGRESS for action and schedules the end after d.
func (f *fakeHeat) startLocked(s *fakeStack, action string, d time.Duration) {
	s.Action, s.State, s.Reason = action, "IN_PROGRESS", "Stack "+action+" started"
	s.showStatus = ""
	f.eventLocked(s, action+"_IN_PROGRESS", s.Reason)
	f.inProgress++
	f.maxInProgress = max(f.maxInProgress, f.inProgress)
	time.AfterFunc(d, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.inProgress--
		f.finishLocked(s, action)
	})
}

func (f *fakeHeat) finishLocked(s *fakeStack, action string) {
	if reason, ok := f.fail[action]; ok {
		delete(f.fail, action)
		s.State, s.Reason = "FAILED", reason
	} else {
		s.State, s.Reason = "COMPLETE", "Stack "+action+" completed successfully"
	}
	if action == "DELETE" && s.State == "COMPLETE" {
		s.listed = false
	}
	f.eventLocked(s, action+"_"+s.State, s.Reason)
}

func (f *fakeHeat) stats() (maxInProgress, maxInReq int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInProgress, f.maxInReq
}

func (f *fakeHeat) requestLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeHeat) writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func heatError(code int, typ, msg string) map[string]any {
	return map[string]any{"code": code, "title": http.StatusText(code), "explanation": "explanation " + typ,
		"error": map[string]any{"type": typ, "message": msg, "traceback": nil}}
}

func (f *fakeHeat) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqSeq++
	w.Header().Set("X-Openstack-Request-Id", fmt.Sprintf("req-fake-%d", f.reqSeq))
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	hook := f.hook
	f.mu.Unlock()

	if r.URL.Path == "/v3/auth/tokens" && r.Method == http.MethodPost {
		f.serveToken(w, r)
		return
	}
	if hook != nil && hook(w, r) {
		return
	}
	if !f.checkToken(r.Header.Get("X-Auth-Token")) {
		f.writeJSON(w, 401, map[string]any{"error": map[string]any{"code": 401, "title": "Unauthorized",
			"message": "The request you have made requires authentication."}})
		return
	}
	f.mu.Lock()
	f.inReq++
	f.maxInReq = max(f.maxInReq, f.inReq)
	delay := f.reqDelay
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

func (f *fakeHeat) checkToken(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens[tok]
}

// expireTokens makes every token issued so far invalid (the client must re-authenticate).
func (f *fakeHeat) expireTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = map[string]bool{}
}

func (f *fakeHeat) setPassword(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.password = p
}

func (f *fakeHeat) serveToken(w http.ResponseWriter, r *http.Request) {
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
		f.writeJSON(w, 401, map[string]any{"error": map[string]any{"code": 401, "title": "Unauthorized",
			"message": "The request you have made requires authentication."}})
		return
	}
	w.Header().Set("X-Subject-Token", tok)
	heatURL := f.srv.URL + "/v1/" + fakeProject
	f.writeJSON(w, 201, map[string]any{"token": map[string]any{
		"methods":    []string{"password"},
		"expires_at": time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000000Z"),
		"project":    map[string]any{"id": fakeProject, "name": "learner-lab", "domain": map[string]any{"id": "default", "name": "Default"}},
		"user":       map[string]any{"id": "u1", "name": "learner", "domain": map[string]any{"id": "default", "name": "Default"}},
		"catalog": []any{map[string]any{"type": "orchestration", "name": "heat", "id": "svc1", "endpoints": []any{
			map[string]any{"id": "e1", "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": heatURL},
		}}},
	}})
}

func (f *fakeHeat) stackJSON(s *fakeStack, withOutputs bool) map[string]any {
	status, reason := s.Action+"_"+s.State, s.Reason
	if s.showStatus != "" {
		status, reason = s.showStatus, s.showReason
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

func (f *fakeHeat) serveHeat(w http.ResponseWriter, r *http.Request) {
	prefix := "/v1/" + fakeProject + "/stacks"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		f.writeJSON(w, 404, heatError(404, "NotFound", "no route"))
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
			f.writeJSON(w, 400, heatError(400, "BadRequest", "bad json"))
			return
		}
		f.createBodies = append(f.createBodies, body)
		name, _ := body["stack_name"].(string)
		for _, s := range f.stacks {
			if s.Name == name && s.listed {
				f.writeJSON(w, 409, heatError(409, "StackExists", fmt.Sprintf("The Stack (%s) already exists.", name)))
				return
			}
		}
		f.seq++
		s := &fakeStack{ID: fmt.Sprintf("id-%04d", f.seq), Name: name, Created: time.Now().UTC(), listed: true,
			Outputs: map[string]any{"host": name + ".example", "n": 2}}
		if tags, _ := body["tags"].(string); tags != "" {
			s.Tags = strings.Split(tags, ",")
		}
		f.stacks[s.ID] = s
		f.startLocked(s, "CREATE", f.actionDur)
		f.writeJSON(w, 201, map[string]any{"stack": map[string]any{"id": s.ID, "links": []any{}}})
	case len(parts) == 1 && r.Method == http.MethodGet:
		for _, s := range f.stacks {
			if s.Name == parts[0] && s.listed {
				http.Redirect(w, r, prefix+"/"+s.Name+"/"+s.ID, http.StatusFound)
				return
			}
		}
		f.writeJSON(w, 404, heatError(404, "EntityNotFound", fmt.Sprintf("The Stack (%s) could not be found.", parts[0])))
	case len(parts) >= 2:
		s := f.stacks[parts[1]]
		if s == nil || s.Name != parts[0] {
			f.writeJSON(w, 404, heatError(404, "EntityNotFound", fmt.Sprintf("The Stack (%s) could not be found.", parts[0])))
			return
		}
		switch {
		case len(parts) == 2 && r.Method == http.MethodGet:
			f.writeJSON(w, 200, map[string]any{"stack": f.stackJSON(s, true)})
		case len(parts) == 2 && r.Method == http.MethodDelete:
			if s.State == "IN_PROGRESS" && s.Action == "DELETE" {
				f.writeJSON(w, 409, heatError(409, "ActionInProgress", fmt.Sprintf("Stack %s already has an action (DELETE) in progress.", s.Name)))
				return
			}
			if s.Action == "DELETE" && s.State == "COMPLETE" {
				f.writeJSON(w, 404, heatError(404, "EntityNotFound", "gone"))
				return
			}
			f.startLocked(s, "DELETE", f.actionDur)
			w.WriteHeader(204)
		case len(parts) == 3 && parts[2] == "actions" && r.Method == http.MethodPost:
			var body map[string]any
			_ = json.NewDecoder(r.Body).Decode(&body)
			var action string
			for k := range body {
				action = strings.ToUpper(k)
			}
			if s.State == "IN_PROGRESS" {
				f.writeJSON(w, 409, heatError(409, "ActionInProgress", fmt.Sprintf("Stack %s already has an action (%s) in progress.", s.Name, s.Action)))
				return
			}
			f.startLocked(s, action, f.actionDur)
			f.writeJSON(w, 200, nil)
		case len(parts) == 3 && parts[2] == "events" && r.Method == http.MethodGet:
			var evs []any
			for i := len(s.events) - 1; i >= 0; i-- { // sort_dir=desc
				e := s.events[i]
				evs = append(evs, map[string]any{"id": e.ID, "resource_name": s.Name, "logical_resource_id": s.Name,
					"physical_resource_id": s.ID, "resource_status": e.Status, "resource_status_reason": e.Reason,
					"event_time": time.Now().UTC().Format("2006-01-02T15:04:05Z")})
			}
			f.writeJSON(w, 200, map[string]any{"events": evs})
		default:
			f.writeJSON(w, 405, heatError(405, "MethodNotAllowed", "no"))
		}
	default:
		f.writeJSON(w, 405, heatError(405, "MethodNotAllowed", "no"))
	}
}

func (f *fakeHeat) listLocked(w http.ResponseWriter, q url.Values) {
	if q.Get("tags") != "" && (q.Get("status") != "" || q.Get("name") != "") {
		// the real Heat bug: tags combined with status/name filters -> 500
		f.writeJSON(w, 500, heatError(500, "RemoteError", ""))
		return
	}
	var ids []string
	for id, s := range f.stacks {
		if s.listed {
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
			f.writeJSON(w, 404, heatError(404, "EntityNotFound", "marker"))
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
	f.writeJSON(w, 200, map[string]any{"stacks": out})
}
