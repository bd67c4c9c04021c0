package heat

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stacks"
	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/labs"
)

// Create creates the stack and waits for CREATE_COMPLETE (the stack is returned with its
// outputs) or CREATE_FAILED (the stack is returned with an cloud.ErrFailed error). RequestID is the
// POST's. Once Heat has
// answered with an id, the stack (ID set) is returned even if the wait fails or times out, so
// the caller can clean up.
func (h *Heat) Create(ctx context.Context, r cloud.CreateRequest) (labs.Stack, error) {
	const op = "create"
	if r.Name == "" {
		return labs.Stack{}, &cloud.Error{Cloud: h.name, Op: op, Kind: cloud.ErrInvalid, Message: "stack name is empty"}
	}
	if h.restrictedCredential {
		return labs.Stack{}, &cloud.Error{Cloud: h.name, Op: op, Stack: r.Name, Kind: cloud.ErrAuth, Message: restrictedMessage}
	}
	body, sent, err := createBody(r)
	if err != nil {
		return labs.Stack{}, &cloud.Error{Cloud: h.name, Op: op, Stack: r.Name, Kind: cloud.ErrInvalid, Message: truncate(err.Error()), Err: err}
	}
	start := time.Now()

	var resp struct {
		Stack struct {
			ID string `json:"id"`
		} `json:"stack"`
	}
	hdr, err := h.request(ctx, http.MethodPost, h.sc.ServiceURL("stacks"), body, &resp, 201)
	if err != nil {
		return labs.Stack{}, h.wrap(op, r.Name, err)
	}
	rid := requestID(hdr)
	st := labs.Stack{Cloud: h.name, ID: resp.Stack.ID, Name: r.Name, Status: "CREATE_IN_PROGRESS", Tags: r.Tags}
	if st.ID == "" {
		return st, &cloud.Error{Cloud: h.name, Op: op, Stack: r.Name, Kind: cloud.ErrTransient, RequestID: rid,
			Message: "Heat accepted the create but returned no stack id"}
	}
	h.log.Info("stack create requested", "stack", r.Name, "id", st.ID, "request_id", rid, "params", sent, "tags", r.Tags)
	if r.Accepted != nil {
		r.Accepted(st)
	}

	wctx := ctx
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	got, err := h.wait(wctx, ctx, waitSpec{op: op, action: "CREATE", name: r.Name, id: st.ID, pre: labs.Stack{}, requestID: rid}, st)
	got.RequestID = rid
	h.done(op, got, err, start, rid)
	return got, err
}

// createBody builds the POST /stacks body: the template with its nested files, the declared
// parameters, tags and timeout. sent lists the parameter names sent.
func createBody(r cloud.CreateRequest) (map[string]any, []string, error) {
	if r.TemplateFile == "" {
		return nil, nil, errors.New("no template file")
	}
	path, err := filepath.Abs(r.TemplateFile)
	if err != nil {
		return nil, nil, err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("template: %w", err)
	}
	var doc struct {
		Parameters map[string]any `yaml:"parameters"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, nil, fmt.Errorf("template %s: %w", path, err)
	}
	params := map[string]any{}
	var sent []string
	for k, v := range r.Params {
		if _, ok := doc.Parameters[k]; ok {
			params[k] = v
			sent = append(sent, k)
		}
	}
	sort.Strings(sent)
	mins := 0
	if r.Timeout > 0 {
		mins = int(math.Ceil(r.Timeout.Minutes()))
	}
	// gophercloud's Template with a file:// URL reads the template, finds nested templates
	// (type: x.yaml / get_file) relative to it, rewrites them to file:// URLs and puts their
	// contents in `files`, like python-heatclient does.
	opts := stacks.CreateOpts{
		Name:         r.Name,
		TemplateOpts: &stacks.Template{TE: stacks.TE{URL: (&url.URL{Scheme: "file", Path: path}).String()}},
		Timeout:      mins,
		Tags:         r.Tags,
	}
	if len(params) > 0 {
		opts.Parameters = params
	}
	for _, t := range r.Tags {
		if t == "" || strings.Contains(t, ",") {
			return nil, nil, fmt.Errorf("bad tag %q (empty or with a comma)", t)
		}
	}
	body, err := opts.ToStackCreateMap()
	if err != nil {
		return nil, nil, fmt.Errorf("template %s: %w", path, err)
	}
	return body, sent, nil
}

// Suspend suspends the stack and waits for SUSPEND_COMPLETE (nil error) or SUSPEND_FAILED
// (cloud.ErrFailed). Suspending a suspended stack is a no-op that completes at once. A stack with an
// action in progress is cloud.ErrConflict (Heat's 409, or found so before sending: Heat would accept a
// suspend during a CREATE_IN_PROGRESS and wreck the stack). The returned stack's RequestID is
// the action request's (for the audit trail). An empty id is looked up by name first.
func (h *Heat) Suspend(ctx context.Context, name, id string) (labs.Stack, error) {
	return h.action(ctx, "suspend", "SUSPEND", name, id)
}

// Resume resumes the stack and waits for RESUME_COMPLETE (nil error) or RESUME_FAILED (cloud.ErrFailed).
func (h *Heat) Resume(ctx context.Context, name, id string) (labs.Stack, error) {
	return h.action(ctx, "resume", "RESUME", name, id)
}

func (h *Heat) action(ctx context.Context, op, action, name, id string) (labs.Stack, error) {
	start := time.Now()

	pre, _, err := h.get(ctx, name, id)
	if err != nil {
		return labs.Stack{}, h.wrap(op, name, err)
	}
	if pre.Status == "DELETE_COMPLETE" {
		return pre, &cloud.Error{Cloud: h.name, Op: op, Stack: name, Kind: cloud.ErrNotFound, Message: "the stack is deleted"}
	}
	name, id = pre.Name, pre.ID
	if busy, state := pre.Phase(); state == "IN_PROGRESS" {
		// Heat answers 409 to an action during SUSPEND/RESUME_IN_PROGRESS, but accepts one during
		// a (convergence) CREATE or DELETE and the stack then ends in SUSPEND_FAILED: never send one
		return pre, &cloud.Error{Cloud: h.name, Op: op, Stack: name, Kind: cloud.ErrConflict, RequestID: pre.RequestID,
			Message: fmt.Sprintf("Stack %s already has an action (%s) in progress (not sent)", name, busy)}
	}
	spec := waitSpec{op: op, action: action, name: name, id: id, pre: pre}
	if err := h.baseline(ctx, &spec); err != nil {
		return pre, h.wrap(op, name, err)
	}
	hdr, err := h.request(ctx, http.MethodPost, h.stackURL(name, id, "actions"), map[string]any{strings.ToLower(action): nil}, nil, 200)
	spec.requestID = requestID(hdr)
	if err != nil {
		return pre, h.wrap(op, name, err)
	}
	h.log.Info("stack "+op+" requested", "stack", name, "id", id, "request_id", spec.requestID, "from", pre.Status)
	got, err := h.wait(ctx, ctx, spec, pre)
	got.RequestID = spec.requestID
	h.done(op, got, err, start, spec.requestID)
	return got, err
}

// Delete deletes the stack and waits until it is gone: absent from the stack list (?id=) or
// 404, which is the truth (a GET by id can show a stale SUSPEND_FAILED on a deleted stack); or
// DELETE_FAILED (cloud.ErrFailed). Deleting a stack that is already gone is a success. Deleting a
// stack with an action in progress is allowed (Heat cancels a create or a suspend). The returned
// stack has status DELETE_COMPLETE when gone; its RequestID is the DELETE's (or, if none was
// needed, the GET's that found it gone).
func (h *Heat) Delete(ctx context.Context, name, id string) (labs.Stack, error) {
	const op = "delete"
	start := time.Now()

	gone := func(st labs.Stack) labs.Stack {
		if st.Status != "DELETE_COMPLETE" {
			st.StatusReason = "" // the last status seen (if any) was not the end of the delete
		}
		st.Cloud, st.Status, st.Outputs = h.name, "DELETE_COMPLETE", nil
		if st.Name == "" {
			st.Name = name
		}
		if st.ID == "" {
			st.ID = id
		}
		return st
	}
	pre, _, err := h.get(ctx, name, id)
	if err != nil {
		if errors.Is(h.wrap(op, name, err), cloud.ErrNotFound) {
			return gone(labs.Stack{RequestID: requestIDOf(err)}), nil
		}
		return labs.Stack{}, h.wrap(op, name, err)
	}
	name, id = pre.Name, pre.ID
	spec := waitSpec{op: op, action: "DELETE", name: name, id: id, pre: pre, requestID: pre.RequestID}
	// already deleted, or being deleted (a retry after a wait that timed out): just wait
	if pre.Status != "DELETE_COMPLETE" && pre.Status != "DELETE_IN_PROGRESS" {
		if err := h.baseline(ctx, &spec); err != nil {
			return pre, h.wrap(op, name, err)
		}
		hdr, err := h.request(ctx, http.MethodDelete, h.stackURL(name, id), nil, nil, 204)
		spec.requestID = requestID(hdr)
		if err != nil {
			if errors.Is(h.wrap(op, name, err), cloud.ErrNotFound) {
				pre.RequestID = spec.requestID
				return gone(pre), nil
			}
			return pre, h.wrap(op, name, err)
		}
		h.log.Info("stack delete requested", "stack", name, "id", id, "request_id", spec.requestID, "from", pre.Status)
	}
	got, err := h.wait(ctx, ctx, spec, pre)
	if err == nil {
		got = gone(got)
	}
	got.RequestID = spec.requestID
	h.done(op, got, err, start, spec.requestID)
	return got, err
}

func (h *Heat) done(op string, st labs.Stack, err error, start time.Time, rid string) {
	took := time.Since(start)
	if h.obs != nil {
		h.obs(op, took, err)
	}
	args := []any{"stack", st.Name, "id", st.ID, "status", st.Status, "request_id", rid,
		"seconds", took.Round(time.Millisecond).Seconds()}
	if err != nil {
		h.log.Warn("stack "+op+" failed", append(args, "error", err.Error())...)
		return
	}
	h.log.Info("stack "+op+" done", args...)
}

// waitSpec describes what a wait waits for.
type waitSpec struct {
	op, action string
	name, id   string
	pre        labs.Stack // the stack before the request (zero for a create)
	requestID  string     // of the action request (for errors)
	// ambiguous: the stack already showed <action>_COMPLETE or _FAILED before the request, so
	// that status alone does not tell the new attempt's result; baseline is the id of the
	// newest stack-level event then ("" if none).
	ambiguous bool
	baseline  string
}

// baseline notes, for a retry of an action whose terminal status the stack already shows, the
// newest stack-level event, so that the wait can tell the new attempt's result from the old.
func (h *Heat) baseline(ctx context.Context, w *waitSpec) error {
	action, state := w.pre.Phase()
	if action != w.action || (state != "COMPLETE" && state != "FAILED") {
		return nil
	}
	w.ambiguous = true
	ev, err := h.latestStackEvent(ctx, w.name, w.id)
	if err != nil {
		return err
	}
	w.baseline = ev.ID
	return nil
}

type eventJSON struct {
	ID                 string `json:"id"`
	PhysicalResourceID string `json:"physical_resource_id"`
	ResourceName       string `json:"resource_name"`
	ResourceStatus     string `json:"resource_status"`
	Reason             string `json:"resource_status_reason"`
	EventTime          string `json:"event_time"`
}

// latestStackEvent returns the newest stack-level event (physical_resource_id == stack id), or
// a zero event if there is none.
func (h *Heat) latestStackEvent(ctx context.Context, name, id string) (eventJSON, error) {
	q := url.Values{"resource_name": {name}, "sort_dir": {"desc"}, "limit": {"10"}}
	var body struct {
		Events []eventJSON `json:"events"`
	}
	if _, err := h.request(ctx, http.MethodGet, h.stackURL(name, id, "events")+"?"+q.Encode(), nil, &body, 200); err != nil {
		return eventJSON{}, err
	}
	for _, e := range body.Events {
		if e.PhysicalResourceID == id {
			return e, nil
		}
	}
	return eventJSON{}, nil
}

// wait polls the stack until the action reaches a terminal status that belongs to this attempt.
// wctx bounds the wait (a create's timeout); ctx is the caller's context (to tell a wait timeout
// from the caller giving up).
func (h *Heat) wait(wctx, ctx context.Context, w waitSpec, last labs.Stack) (labs.Stack, error) {
	fail := func(kind error, msg string, err error) error {
		return &cloud.Error{Cloud: h.name, Op: w.op, Stack: w.name, Kind: kind, RequestID: w.requestID, Message: truncate(msg), Err: err}
	}
	start := time.Now()
	seenInProgress := false
	var transientSince, supersededAt time.Time
	h.pace.waits.Add(1)
	done := func(st labs.Stack) (labs.Stack, error) {
		h.pace.learn(w.action, time.Since(start))
		return st, nil
	}
	for reads := 0; ; reads++ {
		select {
		case <-wctx.Done():
			err := wctx.Err()
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			msg := fmt.Sprintf("gave up after %s waiting for %s_COMPLETE (last status %s)",
				time.Since(start).Round(time.Second), w.action, orDash(last.Status))
			return last, fail(cloud.ErrTransient, msg, err)
		case <-time.After(h.pace.next(w.action, time.Since(start), reads)):
		}
		h.pace.readCount.Add(1)
		if w.action == "DELETE" {
			gone, err := h.absent(wctx, w.id)
			if err == nil && gone {
				return done(last)
			}
		}
		st, _, err := h.get(wctx, w.name, w.id)
		if err != nil {
			e := h.wrap(w.op, w.name, err).(*cloud.Error)
			switch {
			case errors.Is(e, cloud.ErrNotFound) && w.action == "DELETE":
				return done(last)
			case wctx.Err() != nil:
				continue // reported at the top of the loop
			case errors.Is(e, cloud.ErrTransient):
				if transientSince.IsZero() {
					transientSince = time.Now()
				}
				if time.Since(transientSince) > h.transientGrace {
					e.Message = truncate(fmt.Sprintf("while waiting for %s_COMPLETE: %s", w.action, e.Message))
					return last, e
				}
				h.log.Debug("transient error while waiting", "stack", w.name, "error", e.Error())
				continue
			default:
				e.RequestID = firstNonEmpty(e.RequestID, w.requestID)
				return last, e
			}
		}
		transientSince = time.Time{}
		last = st
		action, state := st.Phase()
		switch {
		case w.action == "DELETE" && st.Status == "DELETE_COMPLETE":
			// deleted; the list drops it a moment later, and the list is the truth. Take the
			// status alone only if the list keeps it for long.
			if time.Since(start) > h.staleGrace {
				return st, nil
			}
		case action == w.action && state == "IN_PROGRESS":
			seenInProgress = true
		case st.Status == "DELETE_FAILED" && st.StatusReason == deleteCancelled && w.action == "DELETE":
			// another actor deleted the stack too (a stopping launch and the reaper): Heat
			// stopped this delete and runs theirs at once, which is waited for instead. Only
			// if the stack stays so is this delete's failure reported.
			if supersededAt.IsZero() {
				supersededAt = time.Now()
			}
			if time.Since(supersededAt) > h.staleGrace {
				return st, fail(cloud.ErrFailed, st.StatusReason, nil)
			}
			seenInProgress = true
		case action == w.action && (state == "COMPLETE" || state == "FAILED"):
			fresh := !w.ambiguous || seenInProgress
			if !fresh {
				ev, err := h.latestStackEvent(wctx, w.name, w.id)
				if err != nil {
					continue
				}
				if ev.ID != "" && ev.ID != w.baseline {
					switch ev.ResourceStatus {
					case w.action + "_IN_PROGRESS":
						seenInProgress = true // the new attempt has started; this GET may predate it
						continue
					case w.action + "_COMPLETE", w.action + "_FAILED":
						// the new attempt ended; re-read so that the status matches the event
						if again, _, err := h.get(wctx, w.name, w.id); err == nil {
							st, last = again, again
							_, state = st.Phase()
						}
						fresh = true
					}
				}
			}
			if !fresh && st.Status == w.pre.Status && time.Since(start) > h.staleGrace {
				// no sign of a new attempt for a long while: the status is what it is
				h.log.Warn("no new attempt seen; taking the current status", "stack", w.name, "status", st.Status)
				fresh = true
			}
			if !fresh {
				continue
			}
			if state == "FAILED" {
				return st, fail(cloud.ErrFailed, firstNonEmpty(st.StatusReason, st.Status), nil)
			}
			return done(st)
		case st.Status == w.pre.Status && w.pre.Status != "":
			// the request has not shown yet (the action is asynchronous)
			if time.Since(start) > h.staleGrace {
				return st, fail(cloud.ErrTransient, fmt.Sprintf("the cloud accepted the %s but the stack stayed %s for %s",
					w.op, st.Status, h.staleGrace), nil)
			}
		default:
			if w.action == "DELETE" {
				// e.g. SUSPEND_FAILED written by a cancelled suspend: the list is the truth
				continue
			}
			return st, fail(cloud.ErrConflict, fmt.Sprintf("the stack went to %s while waiting for %s (another action?)",
				st.Status, w.action), nil)
		}
	}
}

// deleteCancelled is the reason Heat gives a delete it stopped because another DELETE of the
// stack arrived (heat/engine/worker.py, _stop_traversal).
const deleteCancelled = "Stack DELETE cancelled"

// requestIDOf is the request id of a failed request, if the cloud answered.
func requestIDOf(err error) string {
	if code, ok := responseCode(err); ok {
		return requestID(code.ResponseHeader)
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
