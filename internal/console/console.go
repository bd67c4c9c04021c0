// Package console is the operators' web console, served by `labplane serve` under /console:
// the labs by course, status and cloud with their counts and filters, a lab's audit trail,
// the labs that need an operator with what fixes them, the clouds (drained or not), what the
// labs cost, and the platform's deploy runs and promotions. Its pages are rendered on the server (html/template, the
// templates and the stylesheet embedded): no script, no build step, and they work without
// JavaScript and at a phone's width.
//
// An operator logs in with an API token (scope operator, or read for a console that only
// shows). The token is checked once, at the login, and never kept: the session is a random id
// in a cookie (Secure, HttpOnly, SameSite=Strict, Path=/console) that names, in this
// process's memory, the token's SHA-256, its name and scope, and the session's CSRF token.
// Every request checks the token again by its hash (revoking it ends its sessions within
// serve.token_cache), and every POST carries the CSRF token in its form. Actions (retry,
// delete, drain) go through the same lifecycle use cases as the API's, recorded in the audit trail
// as the API records them: actor "api:<token name>". A read token sees everything and acts on
// nothing: it gets no buttons, and its POSTs are refused (403).
package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/felixge/httpsnoop"

	"github.com/labplane/labplane/internal/auth"
	"github.com/labplane/labplane/internal/cost"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/runs"
)

// Registry is what the console reads: *store.Store.
type Registry interface {
	GetLab(ctx context.Context, id string) (labs.Lab, error)
	ListLabs(ctx context.Context, f labs.Filter) ([]labs.Lab, error)
	TallyLabs(ctx context.Context, f labs.Filter) ([]labs.Tally, error)
	Events(ctx context.Context, labID string, limit int) ([]labs.Event, error)
	cost.Source
	ListRuns(ctx context.Context, f runs.Filter) ([]runs.Run, error)
	ListPromotions(ctx context.Context, target string) ([]platform.Promotion, error)
	Drains(ctx context.Context) (map[string]labs.Drain, error)
	DrainCloud(ctx context.Context, d labs.Drain) error
	UndrainCloud(ctx context.Context, cloud string) error
}

// Cloud is a configured cloud as the console shows it.
type Cloud struct {
	Name string
	// Capacity is its most live labs (0: no limit); Drain, whether the configuration drains it.
	Capacity int
	Drain    bool
}

// Labs is what the console's actions need of the lifecycle manager (the API's own use cases).
type Labs interface {
	Claim(ctx context.Context, op lifecycle.Op, id, actor string, force bool) (lifecycle.Request, error)
	Carry(ctx context.Context, r lifecycle.Request) (labs.Lab, error)
}

// Tokens checks tokens: *auth.Verifier.
type Tokens interface {
	VerifyToken(ctx context.Context, plain string) (auth.Client, error)
	VerifyHash(ctx context.Context, sum [sha256.Size]byte) (auth.Client, error)
}

// Observer is told of every request (metrics), as the API's is.
type Observer interface {
	ObserveHTTP(route, method string, code int, took time.Duration)
}

// Server serves the console.
type Server struct {
	Registry Registry
	Labs     Labs
	Tokens   Tokens
	// Background runs an action's cloud work after the answer (required): the API server's,
	// so that serve's shutdown waits for the console's actions as for the API's.
	Background func(what, labID string, run func(ctx context.Context) error)
	// Clouds are the configured clouds, in order.
	Clouds []Cloud
	// SuspendedCostFactor is each cloud's suspended_cost_factor, for the cost report.
	SuspendedCostFactor map[string]float64
	Now                 func() time.Time // nil: the wall clock
	Log                 *slog.Logger
	Observe             Observer // nil: nothing observed

	initOnce sync.Once
	pages    map[string]*template.Template

	mu       sync.Mutex
	sessions map[[sha256.Size]byte]*session // by the SHA-256 of the session id
}

// sessionTTL is how long a login lasts.
const sessionTTL = 12 * time.Hour

// Cookie names: the session's, and the one that ties a login form to the browser it was
// shown to (login CSRF: no session exists yet).
const (
	sessionCookie = "labplane_console"
	loginCookie   = "labplane_console_login"
)

// session is a login: the token's hash (never the token), who it was given to, and the
// session's CSRF token.
type session struct {
	tokenHash [sha256.Size]byte
	csrf      string
	expires   time.Time
}

// user is the client of a request: its token's name and scope, as checked now, and its session.
type user struct {
	auth.Client
	csrf string
	key  [sha256.Size]byte
}

// Operator reports whether the user may act.
func (u user) Operator() bool { return u.Scope == auth.ScopeOperator }

//go:embed templates/*.html static/*
var files embed.FS

// maxForm bounds a form's body.
const maxForm = 16 << 10

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.sessions = map[[sha256.Size]byte]*session{}
		s.pages = map[string]*template.Template{}
		names, err := fs.Glob(files, "templates/*.html")
		if err != nil {
			panic(err)
		}
		for _, n := range names {
			if n == "templates/layout.html" {
				continue
			}
			s.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] =
				template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", n))
		}
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
	})
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Handler returns the console's routes, all under /console.
func (s *Server) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	mux.Handle("GET /console", http.RedirectHandler("/console/", http.StatusSeeOther))
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(pattern, s.observed(pattern, h))
	}
	page := func(pattern string, need auth.Scope, h func(http.ResponseWriter, *http.Request, user) error) {
		mux.Handle(pattern, s.observed(pattern, s.authed(need, h)))
	}
	handle("GET /console/login", s.loginForm)
	handle("POST /console/login", s.login)
	page("POST /console/logout", auth.ScopeRead, s.logout)
	page("GET /console/{$}", auth.ScopeRead, s.labsPage)
	page("GET /console/labs/{id}", auth.ScopeRead, s.labPage)
	page("GET /console/labs/{id}/outputs", auth.ScopeRead, s.outputsPage)
	page("GET /console/attention", auth.ScopeRead, s.attentionPage)
	page("GET /console/labs/{id}/confirm", auth.ScopeOperator, s.confirmPage)
	page("POST /console/labs/{id}/retry", auth.ScopeOperator, s.retry)
	page("POST /console/labs/{id}/delete", auth.ScopeOperator, s.delete)
	page("GET /console/clouds", auth.ScopeRead, s.cloudsPage)
	page("GET /console/clouds/{name}/confirm", auth.ScopeOperator, s.confirmCloudPage)
	page("POST /console/clouds/{name}/drain", auth.ScopeOperator, s.drain)
	page("POST /console/clouds/{name}/undrain", auth.ScopeOperator, s.undrain)
	page("GET /console/cost", auth.ScopeRead, s.costPage)
	page("GET /console/deploys", auth.ScopeRead, s.deploysPage)
	handle("/console/", func(http.ResponseWriter, *http.Request) error {
		return httpError{http.StatusNotFound, "There is no such page in the console."}
	})
	return mux
}

// httpError is an answer other than 200 with a message for the operator.
type httpError struct {
	code int
	msg  string
}

func (e httpError) Error() string { return e.msg }

// observed sets the console's headers, runs h, renders its error as a page, and reports the
// request to the observer.
func (s *Server) observed(route string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		// no script, no frame, no form posted elsewhere; pages never cached (they show what
		// the registry holds now, and may show a lab's outputs)
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		// not no-referrer: with it Chromium sends "Origin: null" on the forms' POSTs, which
		// sameOrigin refuses; same-origin keeps addresses within the console all the same
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		m := httpsnoop.CaptureMetricsFn(w, func(w http.ResponseWriter) {
			if r.Method == http.MethodPost {
				r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			}
			if err := h(w, r); err != nil {
				s.renderError(w, r, err)
			}
		})
		if s.Observe != nil {
			s.Observe.ObserveHTTP(route, r.Method, m.Code, m.Duration)
		}
	})
}

// errorKinds maps the use cases' errors to statuses, as the API's table does.
var errorKinds = []struct {
	err  error
	code int
}{
	{labs.ErrNotFound, http.StatusNotFound},
	{lifecycle.ErrInUse, http.StatusConflict},
	{lifecycle.ErrBusy, http.StatusConflict},
	{lifecycle.ErrInvalid, http.StatusUnprocessableEntity},
	{lifecycle.ErrUnknownCloud, http.StatusUnprocessableEntity},
	{labs.ErrUnavailable, http.StatusServiceUnavailable},
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := http.StatusInternalServerError, "Something went wrong; serve's log says what."
	var he httpError
	switch {
	case errors.As(err, &he):
		code, msg = he.code, he.msg
	default:
		for _, k := range errorKinds {
			if errors.Is(err, k.err) {
				code, msg = k.code, err.Error()
				break
			}
		}
	}
	switch {
	case code == http.StatusInternalServerError:
		s.Log.Error("console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case errors.Is(err, labs.ErrUnavailable):
		s.Log.Debug("console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "The registry is unavailable; try again in a moment."
	}
	u, _ := r.Context().Value(userKey{}).(*user)
	w.WriteHeader(code)
	s.render(w, r, "error", u, "", http.StatusText(code), map[string]any{"Code": code, "Message": msg})
}

type userKey struct{}

// authed runs h for a request with a live session whose token is still live and allows need;
// a POST must carry the session's CSRF token. Without a session, a GET is sent to the login
// form (and back after it).
func (s *Server) authed(need auth.Scope, h func(http.ResponseWriter, *http.Request, user) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		u, err := s.user(r)
		if err != nil {
			if r.Method != http.MethodGet {
				return httpError{http.StatusUnauthorized, "Your session has ended: log in again."}
			}
			http.Redirect(w, r, "/console/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return nil
		}
		r = r.WithContext(context.WithValue(r.Context(), userKey{}, &u))
		if r.Method == http.MethodPost {
			if err := sameOrigin(r); err != nil {
				return err
			}
			if err := r.ParseForm(); err != nil {
				return httpError{http.StatusBadRequest, "The form could not be read."}
			}
			if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(u.csrf)) != 1 {
				return httpError{http.StatusForbidden, "This form is stale or did not come from this console (its CSRF token does not match your session): go back, reload the page and try again."}
			}
		}
		if !u.Scope.Allows(need) {
			return httpError{http.StatusForbidden, fmt.Sprintf("Token %q has scope %s: this needs an operator token.", u.Name, u.Scope)}
		}
		return h(w, r, u)
	}
}

// errNoSession: the request has no live session.
var errNoSession = errors.New("no session")

// user finds the request's session and checks its token again.
func (s *Server) user(r *http.Request) (user, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return user{}, errNoSession
	}
	key := sha256.Sum256([]byte(c.Value))
	now := s.now()
	s.mu.Lock()
	sess, ok := s.sessions[key]
	if ok && !now.Before(sess.expires) {
		delete(s.sessions, key)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return user{}, errNoSession
	}
	client, err := s.Tokens.VerifyHash(r.Context(), sess.tokenHash)
	if errors.Is(err, auth.ErrUnauthorized) || (err == nil && !consoleScope(client.Scope)) {
		s.endSession(key) // revoked since the login
		return user{}, errNoSession
	}
	if err != nil {
		return user{}, err
	}
	return user{Client: client, csrf: sess.csrf, key: key}, nil
}

func (s *Server) endSession(key [sha256.Size]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, key)
}

// consoleScope reports whether a token of scope sc may log in: an operator's or a read
// token, not the LMS's.
func consoleScope(sc auth.Scope) bool { return sc == auth.ScopeOperator || sc == auth.ScopeRead }

// sameOrigin refuses a POST whose Origin (sent by every browser on a form's POST) is another
// site's: beside SameSite=Strict and the CSRF token.
func sameOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Host != r.Host {
		return httpError{http.StatusForbidden, "This form was sent from another site."}
	}
	return nil
}

// random is n random bytes in base64url.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) setCookie(w http.ResponseWriter, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// loginForm shows the login form, with a login CSRF token in it and in a cookie.
func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.user(r); err == nil {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
		return nil
	}
	return s.showLogin(w, r, http.StatusOK, "")
}

func (s *Server) showLogin(w http.ResponseWriter, r *http.Request, code int, problem string) error {
	token := random(32)
	s.setCookie(w, loginCookie, token, "/console/login", 3600)
	next := r.FormValue("next")
	if !safeNext(next) {
		next = ""
	}
	w.WriteHeader(code)
	s.render(w, r, "login", nil, token, "Log in", map[string]any{"Next": next, "Problem": problem,
		"Out": r.URL.Query().Get("out") != ""})
	return nil
}

// safeNext reports whether next is a console page to go back to after the login (not
// another site's).
func safeNext(next string) bool {
	return strings.HasPrefix(next, "/console/") && !strings.HasPrefix(next, "/console/login") &&
		!strings.ContainsAny(next, "\\\r\n")
}

// login checks the token typed into the form and opens a session.
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	if err := sameOrigin(r); err != nil {
		return err
	}
	if err := r.ParseForm(); err != nil {
		return httpError{http.StatusBadRequest, "The form could not be read."}
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostForm.Get("csrf"))) != 1 {
		return s.showLogin(w, r, http.StatusForbidden, "This login form is stale or did not come from this console: try again.")
	}
	plain := strings.TrimSpace(r.PostForm.Get("token"))
	client, err := s.Tokens.VerifyToken(r.Context(), plain)
	switch {
	case errors.Is(err, auth.ErrUnauthorized):
		// nothing more: not even whether the token existed (the API's 401 says no more)
		s.Log.Info("console: login refused", "remote", r.RemoteAddr)
		return s.showLogin(w, r, http.StatusUnauthorized, "That token is not valid: unknown, revoked or mistyped.")
	case err != nil:
		return err
	case !consoleScope(client.Scope):
		return s.showLogin(w, r, http.StatusForbidden, fmt.Sprintf("Token %q has scope %s: the console takes an operator token, or a read token to look only.", client.Name, client.Scope))
	}
	id := random(32)
	now := s.now()
	s.mu.Lock()
	for k, sess := range s.sessions { // the ended ones go now and then
		if !now.Before(sess.expires) {
			delete(s.sessions, k)
		}
	}
	s.sessions[sha256.Sum256([]byte(id))] = &session{tokenHash: sha256.Sum256([]byte(plain)), csrf: random(32), expires: now.Add(sessionTTL)}
	s.mu.Unlock()
	s.setCookie(w, sessionCookie, id, "/console", int(sessionTTL.Seconds()))
	s.setCookie(w, loginCookie, "", "/console/login", -1)
	s.Log.Info("console: logged in", "token", client.Name, "scope", client.Scope, "remote", r.RemoteAddr)
	next := r.PostForm.Get("next")
	if !safeNext(next) {
		next = "/console/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, u user) error {
	s.endSession(u.key)
	s.setCookie(w, sessionCookie, "", "/console", -1)
	s.Log.Info("console: logged out", "token", u.Name)
	http.Redirect(w, r, "/console/login?out=1", http.StatusSeeOther)
	return nil
}

// view is what every page's template gets.
type view struct {
	Title string
	Nav   string
	User  *user
	CSRF  string
	Page  any
	Now   time.Time
	// Attention is how many labs need an operator (or failed), for the menu.
	Attention int
}

// render writes a page; a failure to render is logged (the status is written already).
func (s *Server) render(w http.ResponseWriter, r *http.Request, page string, u *user, csrf, title string, data any) {
	v := view{Title: title, Nav: page, User: u, CSRF: csrf, Page: data, Now: s.now()}
	if u != nil {
		v.CSRF = u.csrf
		if ts, err := s.Registry.TallyLabs(r.Context(), labs.Filter{Statuses: attention}); err == nil {
			for _, t := range ts {
				v.Attention += t.Labs
			}
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := s.pages[page].Execute(w, v); err != nil {
		s.Log.Error("console: render", "page", page, "path", r.URL.Path, "err", err)
	}
}
