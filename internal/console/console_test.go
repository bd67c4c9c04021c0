package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/auth"
	"github.com/labplane/labplane/internal/console"
	"github.com/labplane/labplane/internal/dev/syncbuffer"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/runs"
	"github.com/labplane/labplane/internal/store"
)

// rig is a console on a real SQLite registry, a lifecycle manager on a fake cloud, and the
// real token checks, with three tokens: ops (operator), viewer (read) and lms (lms).
type rig struct {
	t      *testing.T
	srv    *httptest.Server
	store  *store.Store
	mgr    *lifecycle.Manager
	tokens map[string]string
	work   sync.WaitGroup
	logs   syncbuffer.Buffer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, store.SQLite, filepath.Join(t.TempDir(), "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, store: st, tokens: map[string]string{}}
	log := slog.New(slog.NewTextHandler(&r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rules := policy.Rules{IdleSuspendAfter: time.Hour, LaunchTimeout: time.Minute, StuckAfter: time.Minute,
		OrphanGrace: time.Hour, MaxAttempts: 3, RetryBackoff: time.Minute}
	r.mgr = &lifecycle.Manager{Site: "test", Registry: st, Locks: st,
		Targets: []lifecycle.Target{{Cloud: fakecloud.New("a", 4, 10*time.Millisecond)}, {Cloud: fakecloud.New("b", 4, 10*time.Millisecond)}},
		Rules:   policy.Set{Default: rules}, DefaultTemplate: "lab", Now: time.Now, Log: log,
		Template: func(string) (string, error) { return "/lab.yaml", nil }}
	for name, scope := range map[string]auth.Scope{"ops": auth.ScopeOperator, "viewer": auth.ScopeRead, "lms": auth.ScopeLMS} {
		plain, hash := auth.NewToken()
		if err := st.CreateToken(ctx, store.Token{Name: name, Scope: string(scope), CreatedAt: time.Now()}, hash, "test"); err != nil {
			t.Fatal(err)
		}
		r.tokens[name] = plain
	}
	c := &console.Server{Registry: st, Labs: r.mgr, Tokens: auth.NewVerifier(st, 0, nil), Clouds: []console.Cloud{{Name: "a", Capacity: 10}, {Name: "b", Drain: true}}, Log: log,
		Background: func(_, _ string, run func(context.Context) error) {
			r.work.Go(func() {
				if err := run(context.Background()); err != nil {
					log.Warn("background", "err", err)
				}
			})
		}}
	r.srv = httptest.NewServer(c.Handler())
	t.Cleanup(func() {
		r.srv.Close()
		r.work.Wait()
		st.Close()
		if strings.Contains(r.logs.String(), "console: render") || strings.Contains(r.logs.String(), "console request failed") {
			t.Errorf("the console failed:\n%s", r.logs.String())
		}
	})
	return r
}

// launch makes a lab with a real stack on the fake cloud.
func (r *rig) launch(learner, course, cloud string) labs.Lab {
	r.t.Helper()
	lab, err := r.mgr.Launch(r.t.Context(), lifecycle.LaunchRequest{Learner: learner, Course: course, Cloud: cloud, Actor: "test"})
	if err != nil {
		r.t.Fatal(err)
	}
	return lab
}

// change rewrites a lab in the registry, as a test's stand-in for what went wrong.
func (r *rig) change(id string, how func(*labs.Lab)) labs.Lab {
	r.t.Helper()
	lab, err := r.store.GetLab(r.t.Context(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	from := lab.Status
	how(&lab)
	lab, err = r.store.UpdateLab(r.t.Context(), lab, labs.Event{At: time.Now(), Actor: "test", Action: "test-change", From: from, To: lab.Status})
	if err != nil {
		r.t.Fatal(err)
	}
	return lab
}

// flag makes a lab need an operator: its suspend failed max_attempts times.
func (r *rig) flag(id string) labs.Lab {
	return r.change(id, func(l *labs.Lab) {
		l.Status, l.StackStatus, l.Attempts, l.LastError = labs.NeedsOperator, "SUSPEND_FAILED", 3, "suspend lab "+id+": SUSPEND_FAILED (made by the test)"
	})
}

func (r *rig) events(id string) []labs.Event {
	r.t.Helper()
	evs, err := r.store.Events(r.t.Context(), id, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	return evs
}

// browser is a client that keeps the console's cookies (Go's cookie jar sends no Secure
// cookie over http; a browser does to 127.0.0.1) and follows no redirect.
type browser struct {
	r       *rig
	cookies map[string]*http.Cookie
	csrf    string
}

func (r *rig) browser() *browser { return &browser{r: r, cookies: map[string]*http.Cookie{}} }

type page struct {
	code   int
	header http.Header
	body   string
	sets   []*http.Cookie
}

func (b *browser) do(method, path string, form url.Values, header ...string) page {
	b.r.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.r.srv.URL+path, body)
	if err != nil {
		b.r.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	for _, c := range b.cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		b.r.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	p := page{code: resp.StatusCode, header: resp.Header, body: string(raw), sets: resp.Cookies()}
	if m := csrfField.FindStringSubmatch(p.body); m != nil {
		b.csrf = m[1]
	}
	return p
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) get(path string) page { b.r.t.Helper(); return b.do("GET", path, nil) }

// post sends a form with the CSRF token of the last page shown.
func (b *browser) post(path string, form url.Values) page {
	b.r.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf") == "" {
		form.Set("csrf", b.csrf)
	}
	return b.do("POST", path, form)
}

// login logs in with the named token (or any string) and returns the login's answer.
func (b *browser) login(token string) page {
	b.r.t.Helper()
	if p := b.get("/console/login"); p.code != 200 {
		b.r.t.Fatalf("login form: %d %s", p.code, p.body)
	}
	return b.post("/console/login", url.Values{"token": {token}})
}

func (r *rig) loggedIn(name string) *browser {
	r.t.Helper()
	b := r.browser()
	if p := b.login(r.tokens[name]); p.code != http.StatusSeeOther || p.header.Get("Location") != "/console/" {
		r.t.Fatalf("login as %s: %d %s %s", name, p.code, p.header.Get("Location"), p.body)
	}
	return b
}

func TestLogin(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	if p := b.get("/console/"); p.code != http.StatusSeeOther || p.header.Get("Location") != "/console/login?next=%2Fconsole%2F" {
		t.Fatalf("without a session: %d %s", p.code, p.header.Get("Location"))
	}
	if p := b.get("/console/labs/nope"); p.code != http.StatusSeeOther {
		t.Errorf("a lab without a session: %d", p.code)
	}
	for _, tc := range []struct {
		name, token, want string
		code              int
	}{
		{"a wrong token", auth.Prefix + strings.Repeat("A", 43), "not valid", http.StatusUnauthorized},
		{"not a token", "hunter2", "not valid", http.StatusUnauthorized},
		{"nothing", "", "not valid", http.StatusUnauthorized},
		{"the LMS's token", r.tokens["lms"], "scope lms", http.StatusForbidden},
	} {
		p := b.login(tc.token)
		if p.code != tc.code || !strings.Contains(p.body, tc.want) {
			t.Errorf("login with %s: want %d %q, got %d\n%s", tc.name, tc.code, tc.want, p.code, p.body)
		}
		if _, ok := b.cookies["labplane_console"]; ok {
			t.Errorf("login with %s: a session cookie was set", tc.name)
		}
		if p := b.get("/console/"); p.code != http.StatusSeeOther {
			t.Errorf("after a login with %s: the console answered %d", tc.name, p.code)
		}
	}
	// a login form posted without the form's own token (another site's, or a stale one)
	b.get("/console/login")
	if p := b.do("POST", "/console/login", url.Values{"token": {r.tokens["ops"]}, "csrf": {"forged"}}); p.code != http.StatusForbidden {
		t.Errorf("login with a forged form token: %d", p.code)
	}
	if p := b.do("POST", "/console/login", url.Values{"token": {r.tokens["ops"]}, "csrf": {b.csrf}}, "Origin", "https://evil.example"); p.code != http.StatusForbidden {
		t.Errorf("login posted from another site: %d", p.code)
	}

	p := b.login(r.tokens["ops"])
	if p.code != http.StatusSeeOther || p.header.Get("Location") != "/console/" {
		t.Fatalf("login: %d %s", p.code, p.body)
	}
	var sess *http.Cookie
	for _, c := range p.sets {
		if c.Name == "labplane_console" {
			sess = c
		}
	}
	if sess == nil || !sess.Secure || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/console" || sess.MaxAge <= 0 {
		t.Fatalf("the session cookie: %+v", sess)
	}
	if strings.Contains(sess.Value, r.tokens["ops"]) || strings.Contains(r.tokens["ops"], sess.Value) {
		t.Error("the session cookie holds the token")
	}
	home := b.get("/console/")
	if home.code != 200 || !strings.Contains(home.body, "ops") || !strings.Contains(home.body, "Log out") {
		t.Fatalf("home: %d\n%s", home.code, home.body)
	}
	for k, want := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := home.header.Get(k); got != want {
			t.Errorf("%s: %q", k, got)
		}
	}
	if csp := home.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "form-action 'self'") {
		t.Errorf("CSP: %q", csp)
	}
	if p := b.get("/console/login"); p.code != http.StatusSeeOther {
		t.Errorf("the login form while logged in: %d", p.code)
	}
	// back where the operator was going, never to another site
	b2 := r.browser()
	b2.get("/console/login?next=" + url.QueryEscape("/console/cost?by=cloud"))
	if p := b2.post("/console/login", url.Values{"token": {r.tokens["viewer"]}, "next": {"/console/cost?by=cloud"}}); p.header.Get("Location") != "/console/cost?by=cloud" {
		t.Errorf("next: %s", p.header.Get("Location"))
	}
	b3 := r.browser()
	b3.get("/console/login")
	if p := b3.post("/console/login", url.Values{"token": {r.tokens["viewer"]}, "next": {"//evil.example/console/"}}); p.header.Get("Location") != "/console/" {
		t.Errorf("next to another site: %s", p.header.Get("Location"))
	}

	// logout needs the form's CSRF token, and ends the session
	if p := b.do("POST", "/console/logout", url.Values{"csrf": {"nope"}}); p.code != http.StatusForbidden {
		t.Errorf("logout without the CSRF token: %d", p.code)
	}
	old := b.cookies["labplane_console"].Value
	if p := b.post("/console/logout", nil); p.code != http.StatusSeeOther || p.header.Get("Location") != "/console/login?out=1" {
		t.Errorf("logout: %d %s", p.code, p.header.Get("Location"))
	}
	b.cookies["labplane_console"] = &http.Cookie{Name: "labplane_console", Value: old} // a cookie kept after the logout
	if p := b.get("/console/"); p.code != http.StatusSeeOther {
		t.Errorf("the session after its logout: %d", p.code)
	}

	// a revoked token's sessions end (the verifier here caches nothing)
	b = r.loggedIn("ops")
	if err := r.store.RevokeToken(t.Context(), "ops", time.Now(), "test"); err != nil {
		t.Fatal(err)
	}
	if p := b.get("/console/"); p.code != http.StatusSeeOther {
		t.Errorf("a revoked token's session: %d", p.code)
	}
	for name, plain := range r.tokens {
		if strings.Contains(r.logs.String(), plain) {
			t.Errorf("the token %s appears in the log", name)
		}
	}
}

// A read token sees everything and acts on nothing.
func TestReadTokenCannotAct(t *testing.T) {
	r := newRig(t)
	lab := r.flag(r.launch("ann", "os101", "a").ID)
	before := len(r.events(lab.ID))
	b := r.loggedIn("viewer")
	p := b.get("/console/attention")
	if p.code != 200 || !strings.Contains(p.body, lab.ID) || !strings.Contains(p.body, "SUSPEND_FAILED") {
		t.Fatalf("attention: %d\n%s", p.code, p.body)
	}
	if p := b.get("/console/labs/" + lab.ID); p.code != 200 || strings.Contains(p.body, "confirm?action=") {
		t.Errorf("a read token's lab page: %d, buttons: %v", p.code, strings.Contains(p.body, "confirm?action="))
	}
	if strings.Contains(p.body, "confirm?action=") || strings.Contains(p.body, "Retry the") {
		t.Error("a read token is shown action buttons")
	}
	if p := b.get("/console/labs/" + lab.ID + "/confirm?action=retry"); p.code != http.StatusForbidden {
		t.Errorf("a read token's confirmation page: %d", p.code)
	}
	for _, action := range []string{"retry", "delete"} {
		if p := b.post("/console/labs/"+lab.ID+"/"+action, url.Values{"confirm": {"yes"}}); p.code != http.StatusForbidden || !strings.Contains(p.body, "operator") {
			t.Errorf("a read token's %s: %d\n%s", action, p.code, p.body)
		}
	}
	r.work.Wait()
	if got, _ := r.store.GetLab(t.Context(), lab.ID); got.Status != labs.NeedsOperator || len(r.events(lab.ID)) != before {
		t.Errorf("a read token changed the lab: %s, %d events (%d before)", got.Status, len(r.events(lab.ID)), before)
	}
}

// Every POST needs the session's CSRF token (and a form from this site); nothing is done
// without it.
func TestCSRF(t *testing.T) {
	r := newRig(t)
	lab := r.flag(r.launch("ann", "os101", "a").ID)
	before := len(r.events(lab.ID))
	b := r.loggedIn("ops")
	other := r.loggedIn("ops")
	b.get("/console/labs/" + lab.ID + "/confirm?action=retry")
	path := "/console/labs/" + lab.ID + "/retry"
	for name, p := range map[string]page{
		"no CSRF token":                 b.do("POST", path, url.Values{"confirm": {"yes"}}),
		"a wrong one":                   b.do("POST", path, url.Values{"confirm": {"yes"}, "csrf": {"x" + b.csrf}}),
		"another session's":             b.do("POST", path, url.Values{"confirm": {"yes"}, "csrf": {other.csrf}}),
		"posted from another site":      b.do("POST", path, url.Values{"confirm": {"yes"}, "csrf": {b.csrf}}, "Origin", "http://evil.example"),
		"delete without the CSRF token": b.do("POST", "/console/labs/"+lab.ID+"/delete", url.Values{"confirm": {"yes"}}),
	} {
		if p.code != http.StatusForbidden {
			t.Errorf("%s: %d\n%s", name, p.code, p.body)
		}
	}
	if other.csrf == b.csrf {
		t.Error("two sessions share a CSRF token")
	}
	if p := b.post(path, nil); p.code != http.StatusBadRequest || !strings.Contains(p.body, "not confirmed") {
		t.Errorf("unconfirmed: %d", p.code)
	}
	r.work.Wait()
	if got, _ := r.store.GetLab(t.Context(), lab.ID); got.Status != labs.NeedsOperator || len(r.events(lab.ID)) != before {
		t.Errorf("a refused POST changed the lab: %s", got.Status)
	}
}

// An operator's retry does the failed action again through the lifecycle, recorded as the
// token's; a delete likewise.
func TestOperatorActions(t *testing.T) {
	r := newRig(t)
	lab := r.flag(r.launch("ann", "os101", "a").ID)
	healthy := r.launch("bob", "os101", "b")
	b := r.loggedIn("ops")
	p := b.get("/console/attention")
	if !strings.Contains(p.body, "/console/labs/"+lab.ID+"/confirm?action=retry") || strings.Contains(p.body, healthy.ID) {
		t.Fatalf("attention:\n%s", p.body)
	}
	if !strings.Contains(p.body, `<span class="count some">1</span>`) {
		t.Error("the menu does not count the lab that needs an operator")
	}
	p = b.get("/console/labs/" + lab.ID + "/confirm?action=retry")
	if p.code != 200 || !strings.Contains(p.body, "Yes, suspend lab "+lab.ID) {
		t.Fatalf("confirm: %d\n%s", p.code, p.body)
	}
	if p := b.get("/console/labs/" + healthy.ID + "/confirm?action=retry"); p.code != http.StatusConflict {
		t.Errorf("retrying a sound lab: %d", p.code)
	}
	p = b.post("/console/labs/"+lab.ID+"/retry", url.Values{"confirm": {"yes"}})
	if p.code != http.StatusSeeOther || p.header.Get("Location") != "/console/labs/"+lab.ID+"?requested=suspend" {
		t.Fatalf("retry: %d %s\n%s", p.code, p.header.Get("Location"), p.body)
	}
	r.work.Wait()
	got, _ := r.store.GetLab(t.Context(), lab.ID)
	if got.Status != labs.Suspended || got.Attempts != 0 {
		t.Errorf("after the retry: %s, %d attempts", got.Status, got.Attempts)
	}
	var done bool
	for _, ev := range r.events(lab.ID) {
		done = done || (ev.Actor == "api:ops" && ev.Action == "suspend" && ev.Error == "" && ev.To == labs.Suspended)
	}
	if !done {
		t.Errorf("the retry is not in the audit trail as the token's: %+v", r.events(lab.ID))
	}
	p = b.get("/console/labs/" + lab.ID + "?requested=suspend")
	if !strings.Contains(p.body, "api:ops") || !strings.Contains(p.body, "You asked for a suspend") {
		t.Errorf("the lab's timeline:\n%s", p.body)
	}
	// a retry of what is not failed is refused, and does nothing
	if p := b.post("/console/labs/"+healthy.ID+"/retry", url.Values{"confirm": {"yes"}}); p.code != http.StatusConflict {
		t.Errorf("retry of a sound lab: %d", p.code)
	}
	b.get("/console/labs/" + healthy.ID + "/confirm?action=delete")
	if p := b.post("/console/labs/"+healthy.ID+"/delete", url.Values{"confirm": {"yes"}}); p.code != http.StatusSeeOther {
		t.Fatalf("delete: %d\n%s", p.code, p.body)
	}
	r.work.Wait()
	if got, _ := r.store.GetLab(t.Context(), healthy.ID); got.Status != labs.Deleted {
		t.Errorf("after the delete: %s", got.Status)
	}
	if p := b.post("/console/labs/"+healthy.ID+"/delete", url.Values{"confirm": {"yes"}}); p.code != http.StatusUnprocessableEntity || !strings.Contains(p.body, "already deleted") {
		t.Errorf("deleting a deleted lab: %d\n%s", p.code, p.body)
	}
	if p := b.post("/console/labs/nope/delete", url.Values{"confirm": {"yes"}}); p.code != http.StatusNotFound {
		t.Errorf("deleting no lab: %d", p.code)
	}
}

// An operator drains a cloud (placement then skips it) and undrains it; a read token sees
// the clouds and cannot; every change is recorded with the token's name.
func TestDrainACloud(t *testing.T) {
	r := newRig(t)
	r.launch("ann", "os101", "a")
	viewer := r.loggedIn("viewer")
	p := viewer.get("/console/clouds")
	if p.code != 200 || !strings.Contains(p.body, "in labplane.yaml") || strings.Contains(p.body, "confirm?action=") {
		t.Fatalf("a read token's clouds: %d\n%s", p.code, p.body)
	}
	if p := viewer.post("/console/clouds/a/drain", url.Values{"confirm": {"yes"}}); p.code != http.StatusForbidden {
		t.Errorf("a read token's drain: %d", p.code)
	}
	ops := r.loggedIn("ops")
	p = ops.get("/console/clouds")
	if !strings.Contains(p.body, `href="/console/clouds/a/confirm?action=drain"`) || strings.Contains(p.body, "/console/clouds/b/confirm") {
		t.Fatalf("an operator's clouds:\n%s", p.body)
	}
	if p := ops.get("/console/clouds/a/confirm?action=drain"); p.code != 200 || !strings.Contains(p.body, "Yes, drain cloud a") {
		t.Fatalf("confirm: %d\n%s", p.code, p.body)
	}
	if p := ops.do("POST", "/console/clouds/a/drain", url.Values{"confirm": {"yes"}}); p.code != http.StatusForbidden {
		t.Errorf("a drain without the CSRF token: %d", p.code)
	}
	if p := ops.post("/console/clouds/a/drain", url.Values{"confirm": {"yes"}}); p.code != http.StatusSeeOther {
		t.Fatalf("drain: %d\n%s", p.code, p.body)
	}
	drains, err := r.store.Drains(t.Context())
	if err != nil || drains["a"].Actor != "api:ops" {
		t.Fatalf("drains: %+v, %v", drains, err)
	}
	if p := ops.get("/console/clouds"); !strings.Contains(p.body, "by api:ops since") || !strings.Contains(p.body, "/console/clouds/a/confirm?action=undrain") {
		t.Errorf("the drained cloud:\n%s", p.body)
	}
	// b is drained in the configuration of this rig's manager too: a launch finds no room
	r.mgr.Targets[1].Drain = true
	if _, err := r.mgr.Launch(t.Context(), lifecycle.LaunchRequest{Learner: "bob", Course: "os101", Actor: "test"}); !errors.Is(err, lifecycle.ErrNoRoom) {
		t.Errorf("a launch with every cloud drained: %v", err)
	}
	ops.get("/console/clouds/a/confirm?action=undrain")
	if p := ops.post("/console/clouds/a/undrain", url.Values{"confirm": {"yes"}}); p.code != http.StatusSeeOther {
		t.Fatalf("undrain: %d", p.code)
	}
	if lab := r.launch("bob", "os101", ""); lab.Cloud != "a" {
		t.Errorf("after the undrain the lab went to %s", lab.Cloud)
	}
	if p := ops.post("/console/clouds/nowhere/drain", url.Values{"confirm": {"yes"}}); p.code != http.StatusNotFound {
		t.Errorf("draining no such cloud: %d", p.code)
	}
	if !strings.Contains(r.logs.String(), `msg="console: cloud drained" cloud=a actor=api:ops`) {
		t.Errorf("the drain is not logged:\n%s", r.logs.String())
	}
}

func TestLabsFilters(t *testing.T) {
	r := newRig(t)
	a1 := r.launch("ann", "net101", "a")
	a2 := r.launch("bob", "net101", "b")
	b1 := r.flag(r.launch("cat", "os101", "a").ID)
	gone := r.change(r.launch("dan", "os101", "b").ID, func(l *labs.Lab) { l.Status, l.DeletedAt = labs.Deleted, time.Now() })
	b := r.loggedIn("viewer")
	for _, tc := range []struct {
		query     string
		want, not []string
	}{
		{"", []string{a1.ID, a2.ID, b1.ID, "3 live labs, 4 with the deleted ones"}, []string{gone.ID}},
		{"?course=net101", []string{a1.ID, a2.ID, "2 live labs, 2 with the deleted ones, in this filter"}, []string{b1.ID, gone.ID}},
		{"?cloud=a", []string{a1.ID, b1.ID}, []string{a2.ID, gone.ID}},
		{"?learner=bob", []string{a2.ID}, []string{a1.ID, b1.ID}},
		{"?status=needs-operator", []string{b1.ID}, []string{a1.ID, a2.ID, gone.ID}},
		{"?status=all", []string{a1.ID, a2.ID, b1.ID, gone.ID}, nil},
		{"?course=os101&status=deleted", []string{gone.ID}, []string{b1.ID}},
		{"?course=nothing", []string{"No lab matches"}, []string{a1.ID}},
	} {
		p := b.get("/console/" + tc.query)
		if p.code != 200 {
			t.Errorf("%s: %d", tc.query, p.code)
			continue
		}
		rows := p.body[strings.Index(p.body, `id="list-h"`):]
		for _, w := range tc.want {
			if !strings.Contains(p.body, w) {
				t.Errorf("%s: want %s", tc.query, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(rows, n) {
				t.Errorf("%s: %s is listed", tc.query, n)
			}
		}
	}
	// the counts link to their filters, the other filters kept
	p := b.get("/console/?course=net101")
	if !strings.Contains(p.body, `href="/console/?course=net101&amp;status=active"`) || !strings.Contains(p.body, `href="/console/?cloud=b&amp;course=net101"`) {
		t.Errorf("count links:\n%s", p.body)
	}
	if p := b.get("/console/?status=bogus"); p.code != http.StatusBadRequest {
		t.Errorf("an unknown status: %d", p.code)
	}
	if p := b.get("/console/labs/nope"); p.code != http.StatusNotFound {
		t.Errorf("no such lab: %d", p.code)
	}
	// pages of 100
	for i := range 101 {
		r.change(r.launch(fmt.Sprintf("p%03d", i), "big101", "a").ID, func(*labs.Lab) {})
	}
	p = b.get("/console/?course=big101")
	if n := strings.Count(p.body, `<tr><td><a href="/console/labs/`); n != 100 || !strings.Contains(p.body, "Next page") {
		t.Fatalf("first page: %d labs", n)
	}
	next := regexp.MustCompile(`href="(/console/\?[^"]*cursor=[^"]+)"`).FindStringSubmatch(p.body)
	if next == nil {
		t.Fatal("no next page link")
	}
	p = b.get(strings.ReplaceAll(next[1], "&amp;", "&"))
	if n := strings.Count(p.body, `<tr><td><a href="/console/labs/`); n != 1 || strings.Contains(p.body, "Next page") {
		t.Errorf("second page: %d labs", n)
	}
}

// A lab's outputs (passwords) are shown only on their own page, never cached, never logged.
func TestOutputsHiddenUntilAsked(t *testing.T) {
	r := newRig(t)
	lab := r.change(r.launch("ann", "os101", "a").ID, func(l *labs.Lab) {
		l.Outputs = labs.Outputs{"guacamole_password": "s3cret-Pw-123", "guacamole_host": "gw.example"}
	})
	b := r.loggedIn("viewer")
	for _, path := range []string{"/console/", "/console/labs/" + lab.ID, "/console/attention", "/console/cost"} {
		if p := b.get(path); p.code != 200 || strings.Contains(p.body, "s3cret-Pw-123") {
			t.Errorf("%s: %d, the password shown: %v", path, p.code, strings.Contains(p.body, "s3cret-Pw-123"))
		}
	}
	p := b.get("/console/labs/" + lab.ID + "/outputs")
	if p.code != 200 || !strings.Contains(p.body, "s3cret-Pw-123") || !strings.Contains(p.body, "gw.example") || p.header.Get("Cache-Control") != "no-store" {
		t.Errorf("outputs: %d %s\n%s", p.code, p.header.Get("Cache-Control"), p.body)
	}
	if strings.Contains(r.logs.String(), "s3cret-Pw-123") {
		t.Error("the password appears in the log")
	}
}

func TestCostAndDeploys(t *testing.T) {
	r := newRig(t)
	r.launch("ann", "os101", "a")
	ctx := t.Context()
	start := time.Now().Add(-time.Hour)
	run := runs.Run{ID: "0194aaaabbbbcccc", Kind: runs.Deploy, Environment: "staging", Release: "olive.1", Actor: "ci", StartedAt: start,
		Status: runs.Running, LogPath: "/var/lib/labplane/runs/x.jsonl"}
	if err := r.store.CreateRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	run.Status, run.FinishedAt = runs.Failed, start.Add(5*time.Minute)
	run.Recap = map[string]runs.HostRecap{"lms-1": {OK: 40, Changed: 3}, "cms-1": {OK: 12, Failed: 1}}
	run.Failures = []runs.Failure{{Host: "cms-1", Task: "migrate", Msg: "database is locked"}}
	run.Error = "1 host failed"
	if err := r.store.FinishRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	if err := r.store.SavePromotion(ctx, platform.Promotion{ID: "0194-promo-1", From: "staging", To: "production", Release: "olive.1",
		Previous: "nutmeg.2", Actor: "ci", StartedAt: start, Status: platform.RolledBack, Phase: platform.PhaseDone, FailedBatch: 0,
		Batches: []platform.Batch{{Hosts: []string{"lms-1"}}}, Runs: []string{run.ID}, Error: "batch 1 failed its health check"}); err != nil {
		t.Fatal(err)
	}
	b := r.loggedIn("viewer")
	p := b.get("/console/cost")
	if p.code != 200 || !strings.Contains(p.body, "<svg") || !strings.Contains(p.body, "Lab-hours running vs used") || !strings.Contains(p.body, "os101") {
		t.Errorf("cost: %d\n%s", p.code, p.body)
	}
	for _, q := range []string{"?since=2026-13-01", "?by=planet", "?since=1h&until=2h"} {
		if p := b.get("/console/cost" + q); p.code != http.StatusBadRequest {
			t.Errorf("cost%s: %d", q, p.code)
		}
	}
	if p := b.get("/console/cost?since=720h&by=cloud"); p.code != 200 || !strings.Contains(p.body, `<th scope="row">a</th>`) {
		t.Errorf("cost by cloud: %d", p.code)
	}
	p = b.get("/console/deploys")
	for _, want := range []string{"0194aaaabbbb", "olive.1", "staging", "lms-1", "cms-1", "database is locked", "rolled_back", "staging → production", "nutmeg.2"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("deploys lack %q", want)
		}
	}
	if p := b.get("/console/deploys?env=production"); strings.Contains(p.body, "0194aaaabbbb of") {
		t.Error("the environment filter kept staging's run")
	}
	if p := b.get("/console/static/console.css"); p.code != 200 || !strings.Contains(p.header.Get("Content-Type"), "text/css") {
		t.Errorf("the stylesheet: %d %s", p.code, p.header.Get("Content-Type"))
	}
	if p := b.get("/console/nothing-here"); p.code != http.StatusNotFound {
		t.Errorf("no such page: %d", p.code)
	}
}
