// Package servetest runs `labplane serve` in the test's process, for tests that drive it over
// HTTP as the LMS or an operator does: its log kept for the test's failures, requests with a
// bearer token, waits bounded in time, and a stop as SIGTERM does it.
package servetest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cli"
	"github.com/labplane/labplane/internal/dev/syncbuffer"
)

// Serve is a `labplane serve` running in the test's process.
type Serve struct {
	// Base is its address, http://HOST:PORT.
	Base string
	// Logs is what it wrote (its log, at debug).
	Logs   *syncbuffer.Buffer
	t      testing.TB
	cancel context.CancelFunc
	exited chan int
}

// Start runs `labplane --config config --log-level debug serve`, listening on addr (the
// configuration's serve.listen). The test's end stops it, if Stop did not.
func Start(t testing.TB, config, addr string) *Serve {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Serve{Base: "http://" + addr, Logs: &syncbuffer.Buffer{}, t: t, cancel: cancel, exited: make(chan int, 1)}
	go func() {
		s.exited <- cli.Run(ctx, []string{"labplane", "--config", config, "--log-level", "debug", "serve"},
			cli.IO{In: strings.NewReader(""), Out: s.Logs, Err: s.Logs})
	}()
	t.Cleanup(cancel)
	return s
}

// Call sends a request with the bearer token and returns the status and the JSON answer; 0
// when serve cannot be reached (yet).
func (s *Serve) Call(token, method, path, body string) (int, map[string]any) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.Base+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// WaitFor polls ok until it holds, failing the test with serve's log after limit.
func (s *Serve) WaitFor(what string, limit time.Duration, ok func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			s.t.Fatalf("waited %s for %s; serve's log:\n%s", limit, what, s.Logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop does what SIGTERM does and checks that serve exits 0 within a minute.
func (s *Serve) Stop() {
	s.t.Helper()
	s.cancel()
	select {
	case code := <-s.exited:
		if code != 0 {
			s.t.Errorf("serve exited %d; log:\n%s", code, s.Logs.String())
		}
	case <-time.After(time.Minute):
		s.t.Fatal("serve did not stop")
	}
}

// FreeAddr is a loopback address with a port free at the time of the call.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
