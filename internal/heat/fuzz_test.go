package heat_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/dev/heattest"
	"github.com/labplane/labplane/internal/heat"
)

// FuzzResponses: whatever Heat answers a read with (status, body, Retry-After, request id), the
// real client (gophercloud and labplane's parsing of stacks, outputs, errors and pushbacks)
// returns the stacks or a *cloud.Error of exactly one documented kind, the one cloud.go gives
// the status, whose message is on one line and cut to 300 bytes, and which shows no token and
// no password the answer did not hold; only a 429 or a 503 is a pushback (pushback.go); it
// never panics. -short: no local cloud is needed.
func FuzzResponses(f *testing.F) {
	stack := `{"id": "id-1", "stack_name": "lab-x", "stack_status": "CREATE_COMPLETE", "stack_status_reason": "Stack CREATE completed successfully",
	 "tags": ["labplane-lab=l1"], "creation_time": "2026-01-02T03:04:05Z", "parent": null,
	 "outputs": [{"output_key": "host", "output_value": "h1"}, {"output_key": "ports", "output_value": [22, 80]},
	  {"output_key": "ip", "output_error": "not ready"}, {"output_key": "none", "output_value": null}, {"output_key": "m", "output_value": {"a": 1.5e300}}]}`
	f.Add(uint16(200), "", "req-1", `{"stack": `+stack+`, "stacks": [`+stack+`, {"id": "id-2", "parent": "id-1"}, {"id": "id-3"}]}`)
	f.Add(uint16(200), "", "", `{"stack": {"creation_time": "2026-01-02T03:04:05.123456"}, "stacks": [{"id": "a"}, {"id": "a"}]}`)
	f.Add(uint16(200), "", "", `{"stack": {"tags": "a,b"}}`)
	f.Add(uint16(200), "", "", "")
	f.Add(uint16(204), "", "", "")
	f.Add(uint16(302), "", "", "")
	f.Add(uint16(404), "", "req-2", `{"code": 404, "title": "Not Found", "explanation": "The resource could not be found.", "error": {"type": "EntityNotFound", "message": "The Stack (lab-x) could not be found.", "traceback": null}}`)
	f.Add(uint16(409), "", "", `{"explanation": "Stack lab-x already has an action (SUSPEND) in progress.", "title": "Conflict"}`)
	f.Add(uint16(401), "", "", `{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}`)
	f.Add(uint16(400), "", "", `{"error": {"message": "`+strings.Repeat("é\\n ", 200)+`"}}`)
	f.Add(uint16(429), "0", "", `{"message": "slow down"}`)
	f.Add(uint16(503), "Wed, 21 Oct 2015 07:28:00 GMT", "", "<html><body>503 Service Unavailable</body></html>")
	f.Add(uint16(500), "", "", "\x00\xff{")

	srv := heattest.New(f)
	password := rand.Text()
	srv.SetPassword(password)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := heat.Open(ctx, heat.Options{Name: "fuzz", Cloud: "fake", ConfigFile: srv.CloudsYAML(password),
		RequestTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(heat.SetListPage(2)) // List reads a second page of the same answer
	var (
		mu     sync.Mutex
		tokens = map[string]bool{}
	)
	kinds := []error{cloud.ErrNotFound, cloud.ErrConflict, cloud.ErrTransient, cloud.ErrAuth, cloud.ErrInvalid, cloud.ErrFailed}
	f.Fuzz(func(t *testing.T, status uint16, retryAfter, requestID, body string) {
		code := int(status)
		if code < 200 || code > 599 {
			code = 200 + code%400 // a status a server can send, and no interim one
		}
		srv.Lock()
		srv.Hook = func(w http.ResponseWriter, r *http.Request) bool {
			mu.Lock()
			tokens[r.Header.Get("X-Auth-Token")] = true
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Del("X-Openstack-Request-Id")
			if requestID != "" {
				w.Header().Set("X-Openstack-Request-Id", requestID)
			}
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(code)
			_, _ = io.WriteString(w, body)
			return true
		}
		srv.Unlock()
		// a pushback waits up to 30 s: the context cuts it short (the call then fails as the
		// cloud answered)
		timeout := 3 * time.Second // two calls within go test -fuzz's 10 s for an input
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			timeout = 100 * time.Millisecond
		}
		answer := retryAfter + requestID + body
		check := func(op string, err error) {
			t.Helper()
			if err == nil {
				return
			}
			var ce *cloud.Error
			if !errors.As(err, &ce) {
				t.Fatalf("%s: %v (%T) is not a *cloud.Error", op, err, err)
			}
			if ce.Cloud != "fuzz" || ce.Op != op {
				t.Errorf("%s: the error names cloud %q and operation %q", op, ce.Cloud, ce.Op)
			}
			n := 0
			for _, k := range kinds {
				if errors.Is(err, k) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: %v is of %d of the documented kinds (Kind %v)", op, err, n, ce.Kind)
			}
			if ce.HTTPStatus != 0 && ce.HTTPStatus != code {
				t.Errorf("%s: HTTP %d, and the cloud answered %d", op, ce.HTTPStatus, code)
			}
			if want := kindOfStatus(ce.HTTPStatus); want != nil && ce.Kind != want {
				t.Errorf("%s: HTTP %d is %v, want %v (cloud.go)", op, ce.HTTPStatus, ce.Kind, want)
			}
			if len(ce.Message) > 300+len("…") || strings.ContainsAny(ce.Message, "\r\n") {
				t.Errorf("%s: the message is not cut to one line of 300 bytes: %q", op, ce.Message)
			}
			mu.Lock()
			defer mu.Unlock()
			for secret := range tokens {
				if secret != "" && strings.Contains(err.Error(), secret) && !strings.Contains(answer, secret) {
					t.Errorf("%s: the error shows the request's token: %v", op, err)
				}
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("%s: the error shows the password: %v", op, err)
			}
		}
		pushbacks := h.Pushbacks()
		gctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := h.Get(gctx, "lab-x", "id-1")
		check("get", err)
		lctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err = h.List(lctx, "labplane-lab=l1")
		check("list", err)
		if code != http.StatusTooManyRequests && code != http.StatusServiceUnavailable && h.Pushbacks() != pushbacks {
			t.Errorf("HTTP %d taken for a pushback (only 429 and 503 are)", code)
		}
	})
}

// kindOfStatus is the kind cloud.go documents for an HTTP error status (nil: below 400).
func kindOfStatus(status int) error {
	switch {
	case status < 400:
		return nil
	case status == http.StatusNotFound:
		return cloud.ErrNotFound
	case status == http.StatusConflict:
		return cloud.ErrConflict
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return cloud.ErrAuth
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500:
		return cloud.ErrTransient
	}
	return cloud.ErrInvalid
}
