package heat

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/labplane/labplane/internal/cloud"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/gophercloud/gophercloud/v2"
)

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
		return cloud.ErrNotFound
	case status == http.StatusConflict:
		return cloud.ErrConflict
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return cloud.ErrAuth
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500:
		return cloud.ErrTransient
	default:
		return cloud.ErrInvalid
	}
}

// wrap turns any error from gophercloud, net/http or a context into an *cloud.Error.
// It returns a nil error (not a nil *cloud.Error) for a nil err.
func (h *Heat) wrap(op, stack string, err error) error {
	if err == nil {
		return nil
	}
	return classify(h.name, op, stack, err)
}

func classify(cloudName, op, stack string, err error) *cloud.Error {
	if err == nil {
		return nil
	}
	var ce *cloud.Error
	if errors.As(err, &ce) {
		return ce
	}
	e := &cloud.Error{Cloud: cloudName, Op: op, Stack: stack, Err: err}

	// Keystone refused to (re)authenticate: ErrUnableToReauthenticate does not unwrap.
	var reauth *gophercloud.ErrUnableToReauthenticate
	if errors.As(err, &reauth) {
		inner := classify(cloudName, op, stack, reauth.ErrReauth)
		if errors.Is(inner.Kind, cloud.ErrTransient) {
			inner.Err = err
			return inner
		}
		inner.Kind, inner.Err = cloud.ErrAuth, err
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
		e.Kind, e.Message = cloud.ErrTransient, "timed out"
	case errors.Is(err, context.Canceled):
		e.Kind, e.Message = cloud.ErrTransient, "canceled"
	case isTransportError(err):
		e.Kind, e.Message = cloud.ErrTransient, transportMessage(err)
	default:
		var (
			sn gophercloud.ErrServiceNotFound
			en gophercloud.ErrEndpointNotFound
		)
		if errors.As(err, &sn) || errors.As(err, &en) {
			e.Kind, e.Message = cloud.ErrInvalid, "no orchestration endpoint in the service catalog (region, interface?)"
		} else {
			e.Kind, e.Message = cloud.ErrInvalid, truncate(err.Error())
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
