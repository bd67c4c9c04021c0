package heat_test

// Integration tests against the real Heat of the local cloud local-a (see main_test.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/dev/heattest"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/labs"
)

var nameSeq atomic.Int64

// stackName is unique per run and test.
func stackName(prefix string) string {
	return fmt.Sprintf("it-%s-%d-%d", prefix, os.Getpid()%100000, nameSeq.Add(1))
}

func openReal(t *testing.T) *heat.Heat {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (needs the local cloud); -short skips it")
	}
	ctx := testCtx(t, time.Minute)
	h, err := heat.Open(ctx, heat.Options{Name: "local-a", Cloud: "local-a",
		PollInterval: 250 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open local-a: %v", err)
	}
	return h
}

// deleteLater deletes the stack at the end of the test if it still exists.
func deleteLater(t *testing.T, h *heat.Heat, st *labs.Stack) {
	t.Cleanup(func() {
		if st.ID == "" || st.Gone() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := h.Delete(ctx, st.Name, st.ID); err != nil {
			t.Errorf("cleanup delete %s: %v", st.Name, err)
		}
	})
}

func TestHeatLifecycle(t *testing.T) {
	t.Parallel()
	h := openReal(t)
	ctx := testCtx(t, 5*time.Minute)
	if err := h.Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	course := fmt.Sprintf("course=it%d", time.Now().UnixNano())
	tags := []string{labs.TagManaged, runTag, course, "labplane-lab=L42"}

	// an untagged stack alongside, that the tag filter must leave out
	other := labs.Stack{Name: stackName("untagged")}
	var err error
	other, err = h.Create(ctx, cloud.CreateRequest{Name: other.Name, TemplateFile: templatePath(t, "slow.yaml"),
		Params: map[string]string{"create_wait": "0", "delete_wait": "0"}, Timeout: 2 * time.Minute})
	deleteLater(t, h, &other)
	if err != nil {
		t.Fatalf("create untagged: %v", err)
	}

	name := stackName("lab")
	start := time.Now()
	st, err := h.Create(ctx, cloud.CreateRequest{Name: name, TemplateFile: templatePath(t, "lab.yaml"),
		Params: map[string]string{"lab_id": "L42", "course": "os101", "learner": "ann", "undeclared": "x"},
		Tags:   tags, Timeout: 3 * time.Minute})
	deleteLater(t, h, &st)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Logf("create: %s in %.1fs", st.Status, time.Since(start).Seconds())
	if st.Status != "CREATE_COMPLETE" || st.ID == "" || st.Cloud != "local-a" || st.Name != name ||
		!strings.HasPrefix(st.RequestID, "req-") || st.CreatedAt.IsZero() || st.LabID() != "L42" {
		t.Errorf("created stack = %+v", st)
	}
	if st.Outputs["guacamole_host"] != "L42-gw.labs.example" || len(st.Outputs["guacamole_password"]) != 16 ||
		st.Outputs["owner"] != "os101/ann" {
		t.Errorf("outputs = %v", st.Outputs)
	}
	var nodes []string
	if err := json.Unmarshal([]byte(st.Outputs["node_names"]), &nodes); err != nil || len(nodes) != 2 || nodes[1] != "L42-node-1" {
		t.Errorf("node_names = %q (%v), want a JSON list of the 2 nested nodes", st.Outputs["node_names"], err)
	}

	listed, err := h.List(ctx, labs.TagManaged, course)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(listed) != 1 || listed[0].ID != st.ID || listed[0].Status != "CREATE_COMPLETE" || !listed[0].Managed() {
		t.Errorf("list by tags = %+v, want just %s", listed, st.ID)
	}
	all, err := h.List(ctx)
	if err != nil {
		t.Fatalf("list all: %v", err)
	}
	if !hasStack(all, st.ID) || !hasStack(all, other.ID) {
		t.Errorf("list without tags misses a stack")
	}
	for _, s := range all {
		if strings.Contains(s.Name, "-nodes-") {
			t.Errorf("nested stack %s listed", s.Name)
		}
	}

	got, err := h.Get(ctx, name, st.ID)
	if err != nil || got.ID != st.ID || got.Outputs["guacamole_password"] != st.Outputs["guacamole_password"] {
		t.Errorf("get = %+v, %v", got, err)
	}
	if byName, err := h.Get(ctx, name, ""); err != nil || byName.ID != st.ID {
		t.Errorf("get by name = %+v, %v", byName, err)
	}

	// step returns how long the action took. A repeated action (already suspended, resumed or
	// deleted) must not take longer than the first did, or 10 s: it has nothing to wait for,
	// but a loaded Heat (the whole suite at once) is slow at everything.
	step := func(what string, do func() (labs.Stack, error), want string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		s, err := do()
		d := time.Since(start)
		t.Logf("%s: %s in %.2fs (request %s)", what, s.Status, d.Seconds(), s.RequestID)
		if err != nil || s.Status != want {
			t.Fatalf("%s: %+v, %v; want %s", what, s, err, want)
		}
		if d > within {
			t.Errorf("%s took %v (more than %v)", what, d, within)
		}
		if !strings.HasPrefix(s.RequestID, "req-") {
			t.Errorf("%s: no request id", what)
		}
		return d
	}
	again := func(first time.Duration) time.Duration { return max(first, 10*time.Second) }
	suspended := step("suspend", func() (labs.Stack, error) { return h.Suspend(ctx, name, st.ID) }, "SUSPEND_COMPLETE", time.Minute)
	step("suspend again (no-op)", func() (labs.Stack, error) { return h.Suspend(ctx, name, st.ID) }, "SUSPEND_COMPLETE", again(suspended))
	resumed := step("resume", func() (labs.Stack, error) { return h.Resume(ctx, name, st.ID) }, "RESUME_COMPLETE", time.Minute)
	step("resume again (no-op)", func() (labs.Stack, error) { return h.Resume(ctx, name, st.ID) }, "RESUME_COMPLETE", again(resumed))
	deleted := step("delete", func() (labs.Stack, error) {
		s, err := h.Delete(ctx, name, st.ID)
		st = s
		return s, err
	}, "DELETE_COMPLETE", 2*time.Minute)

	// gone: not listed any more, GET by id says DELETE_COMPLETE (or 404)
	if listed, err := h.List(ctx, labs.TagManaged, course); err != nil || len(listed) != 0 {
		t.Errorf("list after delete = %+v, %v", listed, err)
	}
	if g, err := h.Get(ctx, name, st.ID); !(errors.Is(err, cloud.ErrNotFound) || (err == nil && g.Gone())) {
		t.Errorf("get after delete = %+v, %v", g, err)
	}
	step("delete again", func() (labs.Stack, error) { return h.Delete(ctx, name, st.ID) }, "DELETE_COMPLETE", again(deleted))
}

func hasStack(list []labs.Stack, id string) bool {
	for _, s := range list {
		if s.ID == id {
			return true
		}
	}
	return false
}

func TestHeatGetNeverExisting(t *testing.T) {
	t.Parallel()
	h := openReal(t)
	ctx := testCtx(t, time.Minute)
	_, err := h.Get(ctx, "it-never-existed", "6f1b0d2e-0000-4000-8000-000000000000")
	if !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("err = %v, want not found", err)
	}
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.HTTPStatus != 404 || !strings.HasPrefix(ce.RequestID, "req-") || !strings.Contains(ce.Message, "could not be found") {
		t.Errorf("error = %+v", ce)
	}
	if _, err := h.Get(ctx, "it-never-existed", ""); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("by name: err = %v, want not found", err)
	}
	if _, err := h.Suspend(ctx, "it-never-existed", "6f1b0d2e-0000-4000-8000-000000000000"); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("suspend: err = %v, want not found", err)
	}
}

// Actions while another is in progress: refused (ErrConflict) before sending during a create
// (Heat would accept it and wreck the stack) and during a suspend; a second stack of the same
// name is Heat's own 409; a delete during SUSPEND_IN_PROGRESS (Heat cancels the suspend, and may
// then show SUSPEND_FAILED by id on the deleted stack) ends with the stack gone.
func TestHeatInProgress(t *testing.T) {
	t.Parallel()
	h := openReal(t)
	ctx := testCtx(t, 3*time.Minute)
	name := stackName("slow")
	tag := runTag
	type result struct {
		st  labs.Stack
		err error
	}
	created := make(chan result, 1)
	go func() {
		st, err := h.Create(ctx, cloud.CreateRequest{Name: name, TemplateFile: templatePath(t, "slow.yaml"),
			Params: map[string]string{"create_wait": "6", "suspend_wait": "6", "delete_wait": "0"},
			Tags:   []string{tag, "slow"}, Timeout: 2 * time.Minute})
		created <- result{st, err}
	}()
	var st labs.Stack
	deadline := time.Now().Add(30 * time.Second)
	for st.ID == "" && time.Now().Before(deadline) {
		l, err := h.List(ctx, tag, "slow")
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, s := range l {
			if s.Name == name && s.Status == "CREATE_IN_PROGRESS" {
				st = s
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.ID == "" {
		t.Fatal("never saw the slow stack in CREATE_IN_PROGRESS")
	}
	deleteLater(t, h, &st)
	_, err := h.Suspend(ctx, name, st.ID)
	t.Logf("suspend during create: %v", err)
	if !errors.Is(err, cloud.ErrConflict) || !strings.Contains(err.Error(), "(CREATE) in progress") {
		t.Errorf("suspend during create: %v, want conflict", err)
	}
	r := <-created
	if r.err != nil || r.st.Status != "CREATE_COMPLETE" {
		t.Fatalf("slow create: %+v, %v", r.st, r.err)
	}

	_, err = h.Create(ctx, cloud.CreateRequest{Name: name, TemplateFile: templatePath(t, "slow.yaml"), Tags: []string{tag}})
	var ce *cloud.Error
	t.Logf("create of an existing name: %v", err)
	if !errors.Is(err, cloud.ErrConflict) || !errors.As(err, &ce) || ce.HTTPStatus != 409 || !strings.HasPrefix(ce.RequestID, "req-") {
		t.Errorf("create of an existing name: %v, want Heat's 409", err)
	}

	suspended := make(chan result, 1)
	go func() {
		s, err := h.Suspend(ctx, name, st.ID)
		suspended <- result{s, err}
	}()
	for {
		g, err := h.Get(ctx, name, st.ID)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if g.Status == "SUSPEND_IN_PROGRESS" {
			break
		}
		if time.Now().After(deadline.Add(time.Minute)) {
			t.Fatalf("never saw SUSPEND_IN_PROGRESS (last %s)", g.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err = h.Resume(ctx, name, st.ID)
	t.Logf("resume during suspend: %v", err)
	if !errors.Is(err, cloud.ErrConflict) || !strings.Contains(err.Error(), "(SUSPEND) in progress") {
		t.Errorf("resume during suspend: %v, want conflict", err)
	}

	start := time.Now()
	d, err := h.Delete(ctx, name, st.ID)
	t.Logf("delete during SUSPEND_IN_PROGRESS: %s in %.1fs: %v", d.Status, time.Since(start).Seconds(), err)
	if err != nil || !d.Gone() {
		t.Fatalf("delete during suspend: %+v, %v", d, err)
	}
	st = d
	if l, err := h.List(ctx, tag, "slow"); err != nil || hasStack(l, st.ID) {
		t.Errorf("still listed after delete: %v", err)
	}
	s := <-suspended
	t.Logf("the interrupted suspend returned %s: %v", s.st.Status, s.err)
	if s.err == nil {
		t.Errorf("the interrupted suspend returned no error")
	}
}

// Two actors delete one stack (a launch stopping and the reaper deleting its zombie): Heat
// stops the delete under way, marks the stack DELETE_FAILED "Stack DELETE cancelled", and runs
// the second. The first delete waits for the second instead of reporting a failure.
func TestHeatDeleteSuperseded(t *testing.T) {
	t.Parallel()
	h := openReal(t)
	fast, err := heat.Open(t.Context(), heat.Options{Name: "local-a", Cloud: "local-a", PollInterval: 20 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open local-a: %v", err)
	}
	waitFor := func(ctx context.Context, t *testing.T, st labs.Stack, status string) {
		t.Helper()
		for {
			g, err := h.Get(ctx, st.Name, st.ID)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if g.Status == status {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("never saw %s (last %s)", status, g.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// the window is short (about 1 run in 6 caught it before the fix): each case runs 3 times
	for i, during := range []string{"CREATE_IN_PROGRESS", "CREATE_COMPLETE", "CREATE_IN_PROGRESS", "CREATE_COMPLETE", "CREATE_IN_PROGRESS", "CREATE_COMPLETE"} {
		t.Run(fmt.Sprintf("first delete during %s #%d", during, i/2+1), func(t *testing.T) {
			t.Parallel()
			// its own deadline: parallel subtests may wait for a free slot long after the parent began
			ctx := testCtx(t, 3*time.Minute)
			accepted := make(chan labs.Stack, 1)
			created := make(chan error, 1)
			go func() {
				_, err := h.Create(ctx, cloud.CreateRequest{Name: stackName("twice"), TemplateFile: templatePath(t, "slow.yaml"),
					Params: map[string]string{"create_wait": "3", "delete_wait": "2"}, Tags: []string{runTag}, Timeout: time.Minute,
					Accepted: func(st labs.Stack) { accepted <- st }})
				created <- err
			}()
			st := <-accepted
			deleteLater(t, h, &st)
			if during == "CREATE_COMPLETE" {
				if err := <-created; err != nil {
					t.Fatalf("create: %v", err)
				}
			}
			waitFor(ctx, t, st, during)
			type result struct {
				st  labs.Stack
				err error
			}
			first := make(chan result, 1)
			go func() {
				d, err := fast.Delete(ctx, st.Name, st.ID)
				first <- result{d, err}
			}()
			// the second actor reads the stack as the first delete starts (CREATE_FAILED
			// "Stack CREATE cancelled", then DELETE_IN_PROGRESS) and deletes it too
			for g := st; g.Status == during; {
				if g, err = h.Get(ctx, st.Name, st.ID); err != nil {
					t.Fatalf("get: %v", err)
				}
			}
			if err := heat.SendDelete(ctx, h, st.Name, st.ID); err != nil {
				t.Fatalf("the second delete: %v", err)
			}
			r := <-first
			t.Logf("the first delete, superseded: %s %q: %v", r.st.Status, r.st.StatusReason, r.err)
			if r.err != nil || !r.st.Gone() {
				t.Errorf("the superseded delete: %s, %v; want it to wait for the second and succeed", r.st.Status, r.err)
			}
			if g, err := h.Get(ctx, st.Name, st.ID); !errors.Is(err, cloud.ErrNotFound) && !(err == nil && g.Gone()) {
				t.Errorf("after both deletes: %s, %v; want the stack gone", g.Status, err)
			} else {
				st.Status = "DELETE_COMPLETE"
			}
		})
	}
}

// A create that fails returns the stack and ErrFailed; suspending the failed stack fails, and
// a retry fails again promptly (a new attempt, not the stale status, and no hang).
func TestHeatFailures(t *testing.T) {
	t.Parallel()
	h := openReal(t)
	ctx := testCtx(t, 3*time.Minute)
	name := stackName("failing")
	st, err := h.Create(ctx, cloud.CreateRequest{Name: name, TemplateFile: templatePath(t, "failing.yaml"),
		Tags: []string{runTag}, Timeout: 2 * time.Minute})
	deleteLater(t, h, &st)
	if !errors.Is(err, cloud.ErrFailed) || st.ID == "" || st.Status != "CREATE_FAILED" {
		t.Fatalf("create failing.yaml: %+v, %v; want CREATE_FAILED + ErrFailed", st, err)
	}
	if !strings.Contains(err.Error(), "Test Resource failed") || !strings.HasPrefix(st.RequestID, "req-") {
		t.Errorf("error %q / request id %q", err, st.RequestID)
	}
	for i := range 2 {
		start := time.Now()
		s, err := h.Suspend(ctx, name, st.ID)
		d := time.Since(start)
		t.Logf("suspend #%d of a CREATE_FAILED stack: %s in %.2fs: %v", i+1, s.Status, d.Seconds(), err)
		if !errors.Is(err, cloud.ErrFailed) || s.Status != "SUSPEND_FAILED" || !strings.Contains(err.Error(), "invalid for suspend") {
			t.Fatalf("suspend #%d: %+v, %v; want SUSPEND_FAILED + ErrFailed", i+1, s, err)
		}
		if d > 45*time.Second { // a stale status is waited out for 60 s; a loaded Heat takes 20 s
			t.Errorf("suspend #%d took %v", i+1, d)
		}
	}
	// and it deletes
	if s, err := h.Delete(ctx, name, st.ID); err != nil || !s.Gone() {
		t.Fatalf("delete failed stack: %+v, %v", s, err)
	}
	st.Status = "DELETE_COMPLETE"

	// a template Heat refuses: invalid, with Heat's message
	bad := writeTemplate(t, "heat_template_version: 2018-08-31\nresources:\n  x:\n    type: OS::No::Such\n")
	_, err = h.Create(ctx, cloud.CreateRequest{Name: stackName("bad"), TemplateFile: bad, Tags: []string{runTag}})
	if !errors.Is(err, cloud.ErrInvalid) || !strings.Contains(err.Error(), "OS::No::Such") {
		t.Errorf("bad template: %v, want invalid naming the type", err)
	}
}

func writeTemplate(t *testing.T, body string) string {
	t.Helper()
	p := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A create whose wait times out returns the stack (with its id) for the caller to clean up,
// and deleting a stack still CREATE_IN_PROGRESS works.
func TestHeatCreateTimeout(t *testing.T) {
	t.Parallel()
	h := openReal(t)
	ctx := testCtx(t, 3*time.Minute)
	name := stackName("timeout")
	st, err := h.Create(ctx, cloud.CreateRequest{Name: name, TemplateFile: templatePath(t, "slow.yaml"),
		Params: map[string]string{"create_wait": "60", "delete_wait": "0"}, Tags: []string{runTag}, Timeout: 2 * time.Second})
	deleteLater(t, h, &st)
	if !errors.Is(err, cloud.ErrTransient) || !errors.Is(err, context.DeadlineExceeded) || st.ID == "" {
		t.Fatalf("create with a short timeout: %+v, %v", st, err)
	}
	start := time.Now()
	d, err := h.Delete(ctx, name, st.ID)
	t.Logf("delete during CREATE_IN_PROGRESS: %s in %.1fs", d.Status, time.Since(start).Seconds())
	if err != nil || !d.Gone() {
		t.Fatalf("delete: %+v, %v", d, err)
	}
	st = d
}

// A wrong password is ErrAuth, and the password appears nowhere in the error.
func TestHeatWrongPassword(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	ctx := testCtx(t, time.Minute)
	const pw = "not-the-Passw0rd-0f-learner"
	b, err := os.ReadFile(lease.CloudsYAML())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string]map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	entry := doc["clouds"]["local-a"]
	auth := entry["auth"].(map[string]any)
	auth["password"] = pw
	out, _ := yaml.Marshal(map[string]any{"clouds": map[string]any{"wrong": entry}})
	p := t.TempDir() + "/clouds.yaml"
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = heat.Open(ctx, heat.Options{Name: "local-a", Cloud: "wrong", ConfigFile: p, Logger: quietLogger()})
	if !errors.Is(err, cloud.ErrAuth) {
		t.Fatalf("err = %v, want auth", err)
	}
	t.Logf("wrong password: %v", err)
	assertNoSecret(t, err, pw)
}

// Nothing listening: transient.
func TestHeatClosedPort(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	p := heattest.WriteCloudsYAML(t, "closed", "http://127.0.0.1:"+closedPort(t)+"/v3", "x")
	_, err := heat.Open(ctx, heat.Options{Name: "closed", ConfigFile: p, Logger: quietLogger()})
	if !errors.Is(err, cloud.ErrTransient) {
		t.Fatalf("err = %v, want transient", err)
	}
	t.Logf("closed port: %v", err)
}
