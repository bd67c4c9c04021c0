package api

import (
	"errors"
	"net/http"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
)

var (
	errUnauthorized = errors.New("a valid bearer token is required")
	errForbidden    = errors.New("forbidden")
	errRateLimited  = errors.New("too many requests")
	errNoRoute      = errors.New("no such endpoint")
	errBadRequest   = errors.New("bad request")
)

// requestError is a problem with the request itself, with a message for the client.
type requestError struct{ msg string }

func (e requestError) Error() string { return e.msg }
func (e requestError) Unwrap() error { return errBadRequest }

func badRequest(msg string) error { return requestError{msg} }

// errorKinds is the one table from error kinds to HTTP statuses and codes, first match wins.
var errorKinds = []struct {
	err    error
	status int
	code   string
}{
	{errUnauthorized, http.StatusUnauthorized, "unauthorized"},
	{errForbidden, http.StatusForbidden, "forbidden"},
	{errRateLimited, http.StatusTooManyRequests, "rate_limited"},
	{errNoRoute, http.StatusNotFound, "no_route"},
	{errBadRequest, http.StatusBadRequest, "bad_request"},
	{labs.ErrNotFound, http.StatusNotFound, "not_found"},
	{labs.ErrExists, http.StatusConflict, "exists"},
	{lifecycle.ErrInUse, http.StatusConflict, "in_use"},
	{lifecycle.ErrBusy, http.StatusConflict, "busy"},
	{lifecycle.ErrInvalid, http.StatusUnprocessableEntity, "invalid"},
	{lifecycle.ErrUnknownCloud, http.StatusUnprocessableEntity, "unknown_cloud"},
	{lifecycle.ErrNoRoom, http.StatusServiceUnavailable, "no_room"},
	{lifecycle.ErrBudgetExhausted, http.StatusForbidden, "budget_exhausted"},
	{cloud.ErrTransient, http.StatusServiceUnavailable, "cloud_unavailable"},
	{cloud.ErrConflict, http.StatusConflict, "busy"},
	// the registry's database cannot be reached (PostgreSQL restarting): not the client's
	// fault, and the same request may work in a moment
	{labs.ErrUnavailable, http.StatusServiceUnavailable, "store_unavailable"},
}

// writeError answers with the status and code of the error's kind and a JSON body. Errors of
// no known kind are logged and answered 500 without detail.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := http.StatusInternalServerError, "internal", "internal error"
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			status, code, msg = k.status, k.code, err.Error()
			break
		}
	}
	switch {
	case status == http.StatusInternalServerError:
		s.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case code == "store_unavailable":
		// the database's address and user stay in the log (at debug: one line per request
		// would flood it during an outage; /readyz says what is wrong)
		s.Log.Debug("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "the registry is unavailable, try again later"
	}
	if status == http.StatusUnauthorized {
		msg = errUnauthorized.Error() // nothing else: not even whether the token existed
	}
	_ = writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
