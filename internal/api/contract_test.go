package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/labplane/labplane/internal/api"
	"github.com/labplane/labplane/internal/dev/npmtest"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
)

// description is the document as served (api.Description: openapi.yaml as JSON), loaded and
// validated once.
var description = sync.OnceValues(func() (routers.Router, error) {
	raw, err := api.Description()
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("load the description: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the description is not valid OpenAPI: %w", err)
	}
	doc.Servers = nil // the test's server listens elsewhere than the documented default
	return legacy.NewRouter(doc)
})

// contract checks answers against the description: every answer's status must be one its
// operation documents, with a body of the documented schema, and a request the server took
// (a 2xx) must be one the document takes. It records which operation answered which status.
type contract struct {
	mu   sync.Mutex
	seen map[string]bool // "GET /v1/labs/{id} 404"
}

func (c *contract) check(t *testing.T, req *http.Request, body string, resp *http.Response, raw []byte) {
	t.Helper()
	router, err := description()
	if err != nil {
		t.Fatal(err)
	}
	req.Body = io.NopCloser(strings.NewReader(body))
	route, params, err := router.FindRoute(req)
	if err != nil {
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: answered %d, and the description has no such operation (%v)", req.Method, req.URL.Path, resp.StatusCode, err)
		}
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}}
	if resp.StatusCode < 300 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s %.60q: the server took it (%d), the description refuses it: %v", req.Method, req.URL, body, resp.StatusCode, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(raw)), Options: in.Options}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: the answer %d %.200s does not match the description: %v", req.Method, req.URL, resp.StatusCode, raw, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	c.seen[fmt.Sprintf("%s %s %d", route.Method, route.Path, resp.StatusCode)] = true
}

// documented lists every operation and status of the description, as contract records them.
func documented(t *testing.T) []string {
	raw, err := api.Description()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				out = append(out, fmt.Sprintf("%s %s %s", method, path, status))
			}
		}
	}
	sort.Strings(out)
	return out
}

// faults makes the API's dependencies fail on demand: the lifecycle manager, the registry and
// the token check answer err while it is set.
type faults struct{ err atomic.Pointer[error] }

func (f *faults) set(err error) {
	if err == nil {
		f.err.Store(nil)
		return
	}
	f.err.Store(&err)
}

func (f *faults) failing() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

type faultyLabs struct {
	api.Labs
	f *faults
}

func (l faultyLabs) Start(ctx context.Context, req lifecycle.LaunchRequest) (lifecycle.Pending, error) {
	if err := l.f.failing(); err != nil {
		return lifecycle.Pending{}, err
	}
	return l.Labs.Start(ctx, req)
}

func (l faultyLabs) Claim(ctx context.Context, op lifecycle.Op, id, actor string, force bool) (lifecycle.Request, error) {
	if err := l.f.failing(); err != nil {
		return lifecycle.Request{}, err
	}
	return l.Labs.Claim(ctx, op, id, actor, force)
}

func (l faultyLabs) Heartbeat(ctx context.Context, id string) (labs.Lab, error) {
	if err := l.f.failing(); err != nil {
		return labs.Lab{}, err
	}
	return l.Labs.Heartbeat(ctx, id)
}

func (l faultyLabs) Leave(ctx context.Context, id string) (labs.Lab, error) {
	if err := l.f.failing(); err != nil {
		return labs.Lab{}, err
	}
	return l.Labs.Leave(ctx, id)
}

func (l faultyLabs) Extend(ctx context.Context, id string, by time.Duration, actor string) (labs.Lab, policy.Budget, error) {
	if err := l.f.failing(); err != nil {
		return labs.Lab{}, policy.Budget{}, err
	}
	return l.Labs.Extend(ctx, id, by, actor)
}

type faultyRegistry struct {
	api.Registry
	f *faults
}

func (r faultyRegistry) GetLab(ctx context.Context, id string) (labs.Lab, error) {
	if err := r.f.failing(); err != nil {
		return labs.Lab{}, err
	}
	return r.Registry.GetLab(ctx, id)
}

func (r faultyRegistry) ListLabs(ctx context.Context, f labs.Filter) ([]labs.Lab, error) {
	if err := r.f.failing(); err != nil {
		return nil, err
	}
	return r.Registry.ListLabs(ctx, f)
}

// TestContract drives every operation of the description to every status it documents, each
// answer checked against it (as every test's are: rig.call), and fails on a documented status
// no request reached: a handler and its description cannot drift apart unnoticed.
func TestContract(t *testing.T) {
	r := newRig(t)
	r.api.Metrics = promhttp.Handler()
	// the Open edX course has a time budget: its answers carry it
	limited := r.mgr.Rules.Default
	limited.UsageLimit, limited.UsageWarnAt = 10*time.Hour, 15*time.Minute
	r.mgr.Rules.Courses = map[string]policy.Rules{"course-v1:hastexo+hx212+201907": limited}
	r.api.Policy = r.mgr.Rules
	f := &faults{}
	r.api.Labs = faultyLabs{Labs: r.api.Labs, f: f}
	r.api.Registry = faultyRegistry{Registry: r.api.Registry, f: f}
	r.api.Ready = append(r.api.Ready, api.Check{Name: "faults", Check: func(context.Context) error { return f.failing() }})
	r.srv.Close() // served again, with /metrics
	r.srv = httptest.NewServer(r.api.Handler())
	t.Cleanup(r.srv.Close)
	expect := func(method, path, body string, want int) response {
		t.Helper()
		res := r.do(method, path, body)
		if res.code != want {
			t.Errorf("%s %s %.40q: %d %s, want %d", method, path, body, res.code, res.raw, want)
		}
		return res
	}

	// the answers of a lab's life
	launched := expect("POST", "/v1/labs", `{"learner":"0123456789abcdef0123456789abcdef","course":"course-v1:hastexo+hx212+201907"}`, 202)
	id, _ := launched.body["id"].(string)
	r.waitStatus(id, labs.Active)
	expect("POST", "/v1/labs", `{"learner":"0123456789abcdef0123456789abcdef","course":"course-v1:hastexo+hx212+201907","template":"lab"}`, 200)
	expect("GET", "/v1/labs/"+id, "", 200)
	expect("POST", "/v1/labs/"+id+"/heartbeat", "{}", 200)
	expect("POST", "/v1/labs/"+id+"/leave", "", 200)
	operator := func(path, body string, want int) {
		t.Helper()
		if res := r.call("POST", path, "Bearer "+operatorToken, body); res.code != want {
			t.Errorf("POST %s %s with an operator's token: %d %s, want %d", path, body, res.code, res.raw, want)
		}
	}
	operator("/v1/labs/"+id+"/extend", `{"by":"2h"}`, 200)
	operator("/v1/labs/"+id+"/extend", `{"by":"soon"}`, 400)
	operator("/v1/labs/"+id+"/extend", `{"by":"0s"}`, 422)
	operator("/v1/labs/nope/extend", `{"by":"1h"}`, 404)
	expect("POST", "/v1/labs/"+id+"/extend", `{"by":"1h"}`, 403) // the LMS's token may not
	if _, err := r.mgr.Do(t.Context(), lifecycle.OpSuspend, id, "test", true); err != nil {
		t.Fatal(err)
	}
	expect("POST", "/v1/labs/"+id+"/resume", "", 202)
	r.waitStatus(id, labs.Active)
	expect("GET", "/v1/labs?course="+strings.ReplaceAll("course-v1:hastexo+hx212+201907", "+", "%2B")+"&status=active,suspended&limit=10", "", 200)
	expect("DELETE", "/v1/labs/"+id, "", 202)
	r.waitStatus(id, labs.Deleted)
	expect("DELETE", "/v1/labs/"+id, "", 422) // already deleted
	expect("POST", "/v1/labs/"+id+"/heartbeat", "", 422)
	expect("POST", "/v1/labs/"+id+"/resume", "", 422)
	expect("POST", "/v1/labs/"+id+"/leave", "", 422)
	expect("GET", "/v1/labs?include_deleted=true", "", 200)

	// the client's mistakes
	expect("POST", "/v1/labs", `{"learner":"ann"`, 400)
	expect("POST", "/v1/labs", `{"learner":"ann smith","course":"os101"}`, 422)
	expect("GET", "/v1/labs?limit=0", "", 400)
	for _, path := range []string{"/v1/labs/nope", "/v1/labs/nope/heartbeat", "/v1/labs/nope/leave", "/v1/labs/nope/resume"} {
		method := map[bool]string{true: "GET", false: "POST"}[path == "/v1/labs/nope"]
		expect(method, path, "", 404)
		if method == "POST" {
			expect(method, path, `{"at":"now"}`, 400)
		}
	}
	expect("DELETE", "/v1/labs/nope", "", 404)
	expect("DELETE", "/v1/labs/nope", `{"force":true}`, 400)
	for _, op := range [][2]string{{"POST", "/v1/labs"}, {"GET", "/v1/labs"}, {"GET", "/v1/labs/x"}, {"DELETE", "/v1/labs/x"},
		{"POST", "/v1/labs/x/heartbeat"}, {"POST", "/v1/labs/x/leave"}, {"POST", "/v1/labs/x/resume"}, {"POST", "/v1/labs/x/extend"}} {
		if res := r.call(op[0], op[1], "Bearer wrong", ""); res.code != 401 {
			t.Errorf("%s %s with a wrong token: %d", op[0], op[1], res.code)
		}
	}

	// a token whose scope does not allow it: a read token may GET, nothing more
	for _, op := range [][2]string{{"POST", "/v1/labs"}, {"DELETE", "/v1/labs/x"}, {"POST", "/v1/labs/x/heartbeat"},
		{"POST", "/v1/labs/x/leave"}, {"POST", "/v1/labs/x/resume"}} {
		if res := r.call(op[0], op[1], "Bearer "+readToken, ""); res.code != http.StatusForbidden || !strings.Contains(res.raw, "forbidden") {
			t.Errorf("%s %s with a read token: %d %s", op[0], op[1], res.code, res.raw)
		}
	}
	if res := r.call("GET", "/v1/labs", "Bearer "+readToken, ""); res.code != http.StatusOK {
		t.Errorf("GET /v1/labs with a read token: %d %s", res.code, res.raw)
	}

	// what the server and its dependencies do: a lab another action holds, a registry down,
	// an unexpected failure
	second := expect("POST", "/v1/labs", `{"learner":"bob","course":"os101"}`, 202)
	other, _ := second.body["id"].(string)
	r.waitStatus(other, labs.Active)
	for _, c := range []struct {
		err  error
		code int
	}{{lifecycle.ErrBusy, 409}, {labs.ErrUnavailable, 503}, {errors.New("boom"), 500}} {
		f.set(c.err)
		if c.code != 409 {
			expect("POST", "/v1/labs", `{"learner":"cat","course":"os101"}`, c.code)
			expect("GET", "/v1/labs", "", c.code)
			expect("GET", "/v1/labs/"+other, "", c.code)
			expect("POST", "/v1/labs/"+other+"/heartbeat", "", c.code)
			expect("POST", "/v1/labs/"+other+"/leave", "", c.code)
			operator("/v1/labs/"+other+"/extend", `{"by":"1h"}`, c.code)
		}
		expect("POST", "/v1/labs/"+other+"/resume", "", c.code)
		expect("DELETE", "/v1/labs/"+other, "", c.code)
		f.set(nil)
	}

	// a token over its rate limit: its first request takes the bucket's one, the rest wait
	r.api.RateLimit = api.RateLimit{PerSecond: 0.01, Burst: 1}
	expect("GET", "/v1/labs/"+other, "", 200)
	for _, op := range [][2]string{{"POST", "/v1/labs"}, {"GET", "/v1/labs"}, {"GET", "/v1/labs/x"}, {"DELETE", "/v1/labs/x"},
		{"POST", "/v1/labs/x/heartbeat"}, {"POST", "/v1/labs/x/leave"}, {"POST", "/v1/labs/x/resume"}} {
		if res := r.do(op[0], op[1], ""); res.code != http.StatusTooManyRequests || res.header.Get("Retry-After") != "100" {
			t.Errorf("%s %s over the rate limit: %d, Retry-After %q, %s", op[0], op[1], res.code, res.header.Get("Retry-After"), res.raw)
		}
	}
	if res := r.call("GET", "/v1/labs", "Bearer "+readToken, ""); res.code != http.StatusOK {
		t.Errorf("another token, under its own limit: %d %s", res.code, res.raw)
	}
	operator("/v1/labs/x/extend", `{"by":"1h"}`, 404) // the operator's one
	operator("/v1/labs/x/extend", `{"by":"1h"}`, 429)
	r.api.RateLimit = api.RateLimit{}

	// the service's own
	expect("GET", "/healthz", "", 200)
	expect("GET", "/readyz", "", 200)
	expect("GET", "/metrics", "", 200)
	expect("GET", "/v1/openapi.json", "", 200)
	f.set(errors.New("down"))
	expect("GET", "/readyz", "", 503)
	f.set(nil)

	var missed []string
	for _, op := range documented(t) {
		if !r.contract.seen[op] {
			missed = append(missed, op)
		}
	}
	if len(missed) > 0 {
		t.Errorf("documented, never answered:\n  %s", strings.Join(missed, "\n  "))
	}
	var undocumented []string
	for op := range r.contract.seen {
		if !slices.Contains(documented(t), op) {
			undocumented = append(undocumented, op)
		}
	}
	if len(undocumented) > 0 {
		t.Errorf("answered, not documented:\n  %s", strings.Join(undocumented, "\n  "))
	}
}

// redoclyCLI is the linter TestDescriptionLints installs from npm, pinned.
const redoclyCLI = "@redocly/cli@2.77.0"

// TestDescriptionLints runs a standard OpenAPI linter (Redocly's, from npm, installed by the
// test into the user's cache the first time) on openapi.yaml with redocly.yaml: its
// recommended rules, no error and no warning.
func TestDescriptionLints(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the linter from npm: not with -short")
	}
	t.Parallel()
	bin := filepath.Join(npmtest.Install(t, filepath.Join(".bin", "redocly"), redoclyCLI), ".bin", "redocly")
	cmd := exec.CommandContext(t.Context(), bin, "lint", "--config", "redocly.yaml", "--format", "json", "openapi.yaml")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var report struct {
		Totals struct {
			Errors   int `json:"errors"`
			Warnings int `json:"warnings"`
		} `json:"totals"`
		Problems []struct {
			RuleID   string `json:"ruleId"`
			Severity string `json:"severity"`
			Message  string `json:"message"`
			Location []struct {
				Pointer string `json:"pointer"`
			} `json:"location"`
		} `json:"problems"`
	}
	if jerr := json.Unmarshal(out, &report); jerr != nil {
		t.Fatalf("redocly lint: %v (%v)\n%s\n%s", err, jerr, out, stderr.String())
	}
	for _, p := range report.Problems {
		where := ""
		if len(p.Location) > 0 {
			where = p.Location[0].Pointer
		}
		t.Errorf("openapi.yaml %s: %s (%s, %s)", where, p.Message, p.RuleID, p.Severity)
	}
	if report.Totals.Errors+report.Totals.Warnings != len(report.Problems) || err != nil && len(report.Problems) == 0 {
		t.Errorf("redocly lint: %v, totals %+v\n%s", err, report.Totals, stderr.String())
	}
}

// FuzzRequests: whatever body and query the LMS sends to each route, the API answers with a
// status its description documents and a body of the documented schema (rig.call checks every
// answer), never 500, and a refused launch writes no lab. go test runs its corpus; under -fuzz
// it crawls (a registry per input, and the SQLite driver, which is C translated to Go, is slow
// under the coverage instrumentation): FuzzIdentifiers and config's FuzzParse fuzz well.
func FuzzRequests(f *testing.F) {
	f.Add(`{"learner":"ann","course":"os101"}`, "status=active&limit=2")
	f.Add(`{"learner":"0123456789abcdef0123456789abcdef","course":"course-v1:hastexo+hx212+201907","template":"lab"}`, "include_deleted=true")
	f.Add(`{"learner":"ann","course":"os101","extra":1}`, "limit=0")
	f.Add(`{"learner":"a b","course":"os101"}`, "cursor=nope")
	f.Add(`[1,2,3]`, "status=bogus,active")
	f.Add(`{"learner":"ann","course":"os101"} {}`, "limit=99999999999999999999")
	f.Add("\x00\xff", "%zz")
	f.Fuzz(func(t *testing.T, body, query string) {
		// no client sends a control character in a URL (url.Parse refuses it): percent-encoded
		var q strings.Builder
		for i := 0; i < len(query); i++ {
			if c := query[i]; c < 0x20 || c == 0x7f {
				fmt.Fprintf(&q, "%%%02X", c)
			} else {
				q.WriteByte(c)
			}
		}
		query = q.String()
		r := newRig(t)
		before := r.labCount()
		res := r.do("POST", "/v1/labs", body)
		if res.code == http.StatusInternalServerError {
			t.Fatalf("launch with %q: 500 %s", body, res.raw)
		}
		if res.code >= 400 && r.labCount() != before {
			t.Fatalf("a refused launch (%d) wrote a lab", res.code)
		}
		for _, path := range []string{"/v1/labs?" + query, "/v1/labs/x/heartbeat", "/v1/labs/x/leave"} {
			method := map[bool]string{true: "GET", false: "POST"}[strings.HasPrefix(path, "/v1/labs?")]
			if res := r.do(method, path, map[bool]string{true: "", false: body}[method == "GET"]); res.code == http.StatusInternalServerError {
				t.Fatalf("%s %s with %q: 500 %s", method, path, body, res.raw)
			}
		}
	})
}
