package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/gophercloud/gophercloud/v2"
)

// Error kinds: test them with errors.Is(err, cloud.ErrConflict) and so on.
var (
	// ErrNotFound: the stack does not exist (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the stack is busy (HTTP 409, an action is in progress), or changed under us.
	ErrConflict = errors.New("conflict")
	// ErrTransient: try again later (HTTP 5xx or 429, connection refused or reset, timeouts).
	ErrTransient = errors.New("transient")
	// ErrAuth: the credentials were refused (HTTP 401/403, Keystone authentication failures).
	ErrAuth = errors.New("auth")
	// ErrInvalid: the request is wrong and retrying will not help (other 4xx: a bad template, a
	// bad cloud configuration).
	ErrInvalid = errors.New("invalid")
	// ErrFailed: the stack ended in *_FAILED; the message is its stack_status_reason.
	ErrFailed = errors.New("failed")
)

// Error is every error this package returns from a cloud operation.
type Error struct {
	Cloud string // labplane's name for the cloud
	Op    string // open, check, create, get, list, suspend, resume, delete
	Stack string // stack name, if any
	// Kind is one of ErrNotFound, ErrConflict, ErrTransient, ErrAuth, ErrInvalid, ErrFailed.
	Kind error
	// HTTPStatus is the status of the failed request, 0 if none (transport error, *_FAILED).
	HTTPStatus int
	// RequestID is the cloud's X-Openstack-Request-Id of the failed request, if it answered.
	RequestID string
	// Message is the cloud's own message (Heat's error.message, or the stack_status_reason),
	// truncated; never a request body, a token or a password.
	Message string
	// Err is the underlying error, if any.
	Err error
}

// Error reads like
// "cloud local-a: suspend lab-x: conflict (HTTP 409, request req-…): Stack lab-x already has an action (SUSPEND) in progress.".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("cloud ")
	b.WriteString(e.Cloud)
	b.WriteString(": ")
	b.WriteString(e.Op)
	if e.Stack != "" {
		b.WriteString(" ")
		b.WriteString(e.Stack)
	}
	b.WriteString(": ")
	kind := "error"
	if e.Kind != nil {
		kind = e.Kind.Error()
	}
	b.WriteString(kind)
	var paren []string
	if e.HTTPStatus != 0 {
		paren = append(paren, fmt.Sprintf("HTTP %d", e.HTTPStatus))
	}
	if e.RequestID != "" {
		paren = append(paren, "request "+e.RequestID)
	}
	if len(paren) > 0 {
		b.WriteString(" (" + strings.Join(paren, ", ") + ")")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrConflict) (and the other kinds) true for an Error of that kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// Unwrap returns the underlying error (context.DeadlineExceeded for a wait that timed out, for
// example).
func (e *Error) Unwrap() error { return e.Err }

const maxMessage = 300

// truncate cuts s to maxMessage bytes (on a rune boundary) and flattens it to one line.
func truncate(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// requestID returns the OpenStack request id of a response.
func requestID(h http.Header) string {
	if h == nil {
		return ""
	}
	if v := h.Get("X-Openstack-Request-Id"); v != "" {
		return v
	}
	return h.Get("X-Compute-Request-Id")
}

// errorMessage extracts the human message of an OpenStack error body: Heat's
// {"error": {"message", "type"}, "explanation", "title"}, Keystone's {"error": {"message"}}.
func errorMessage(body []byte) string {
	var doc struct {
		Explanation string `json:"explanation"`
		Title       string `json:"title"`
		Message     string `json:"message"`
		Error       struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return "" // not JSON (an HTML page from a proxy, say): say nothing rather than echo it
	}
	for _, m := range []string{doc.Error.Message, doc.Message, doc.Explanation, doc.Title, doc.Error.Type} {
		if m = strings.TrimSpace(m); m != "" {
			return truncate(m)
		}
	}
	return ""
}

// kindForStatus maps an HTTP status to an error kind.
func kindForStatus(status int) error {
	switch {
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusConflict:
		return ErrConflict
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ErrAuth
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500:
		return ErrTransient
	default:
		return ErrInvalid
	}
}

// wrap turns any error from gophercloud, net/http or a context into an *Error.
// It returns a nil error (not a nil *Error) for a nil err.
func (h *Heat) wrap(op, stack string, err error) error {
	if err == nil {
		return nil
	}
	return classify(h.name, op, stack, err)
}

func classify(cloudName, op, stack string, err error) *Error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	e := &Error{Cloud: cloudName, Op: op, Stack: stack, Err: err}

	// Keystone refused to (re)authenticate: ErrUnableToReauthenticate does not unwrap.
	var reauth *gophercloud.ErrUnableToReauthenticate
	if errors.As(err, &reauth) {
		inner := classify(cloudName, op, stack, reauth.ErrReauth)
		if errors.Is(inner.Kind, ErrTransient) {
			inner.Err = err
			return inner
		}
		inner.Kind, inner.Err = ErrAuth, err
		return inner
	}
	if code, ok := responseCode(err); ok {
		e.HTTPStatus = code.Actual
		e.Kind = kindForStatus(code.Actual)
		e.RequestID = requestID(code.ResponseHeader)
		e.Message = errorMessage(code.Body)
		if e.Message == "" {
			e.Message = http.StatusText(code.Actual)
		}
		return e
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		e.Kind, e.Message = ErrTransient, "timed out"
	case errors.Is(err, context.Canceled):
		e.Kind, e.Message = ErrTransient, "canceled"
	case isTransportError(err):
		e.Kind, e.Message = ErrTransient, transportMessage(err)
	default:
		var (
			sn gophercloud.ErrServiceNotFound
			en gophercloud.ErrEndpointNotFound
		)
		if errors.As(err, &sn) || errors.As(err, &en) {
			e.Kind, e.Message = ErrInvalid, "no orchestration endpoint in the service catalog (region, interface?)"
		} else {
			e.Kind, e.Message = ErrInvalid, truncate(err.Error())
		}
	}
	return e
}

func responseCode(err error) (gophercloud.ErrUnexpectedResponseCode, bool) {
	var v gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &v) {
		return v, true
	}
	var p *gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &p) && p != nil {
		return *p, true
	}
	return v, false
}

func isTransportError(err error) bool {
	var oe *net.OpError
	var dnsErr *net.DNSError
	var to interface{ Timeout() bool }
	return errors.As(err, &oe) || errors.As(err, &dnsErr) ||
		(errors.As(err, &to) && to.Timeout()) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// transportMessage describes a transport failure without the request (only the syscall story).
func transportMessage(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return truncate(oe.Error()) // "dial tcp 127.0.0.1:1: connect: connection refused"
	}
	var to interface{ Timeout() bool }
	if errors.As(err, &to) && to.Timeout() {
		return "timed out"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed by the server"
	}
	return truncate(err.Error())
}
