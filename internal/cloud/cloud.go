// Package cloud is the vocabulary of a cloud's stacks that the rest of labplane speaks: what
// a create asks for, and the kinds of failure of a cloud operation (test them with
// errors.Is(err, cloud.ErrConflict) and so on). No I/O: the Heat client (heat) and the
// in-process fake (fakecloud) speak it, lifecycle and the API read it.
package cloud

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// CreateRequest describes a stack to create.
type CreateRequest struct {
	// Name is the stack name (Heat: a letter, then letters, digits, '_', '-', '.').
	Name string
	// TemplateFile is the path of a Heat template (YAML). Nested template files it references
	// (type: foo.yaml, get_file), relative to its directory, are sent along in `files`.
	TemplateFile string
	// Params are candidate parameters: only those the template declares under `parameters` are
	// sent (Heat rejects undeclared ones).
	Params map[string]string
	Tags   []string
	// Timeout is Heat's timeout_mins (rounded up to whole minutes) and the bound of the wait.
	// Zero: Heat's default, and the wait is bounded by ctx only.
	Timeout time.Duration
	// Accepted, if set, is called once Heat has accepted the create, with the stack's id,
	// before the wait for its completion.
	Accepted func(labs.Stack)
}

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

// Error is every error a cloud operation returns.
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
