package health_test

import (
	"bufio"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labplane/labplane/internal/health"
)

// The handshake against the real stand-in guacd is in internal/dev/testhosts/standins; the deploy
// tests check /heartbeat and the handshake on real test hosts.

func TestInstructionEncoding(t *testing.T) {
	for _, tc := range []struct {
		elements []string
		want     string
	}{
		{[]string{"select", "vnc"}, "6.select,3.vnc;"},
		{[]string{"args", "VERSION_1_5_0", "hostname"}, "4.args,13.VERSION_1_5_0,8.hostname;"},
		{[]string{"name", "héllo;,."}, "4.name,8.héllo;,.;"},
		{[]string{"nop"}, "3.nop;"},
	} {
		got := health.EncodeInstruction(tc.elements[0], tc.elements[1:]...)
		if got != tc.want {
			t.Errorf("encode %q = %q, want %q", tc.elements, got, tc.want)
		}
		back, err := health.ReadInstruction(bufio.NewReader(strings.NewReader(got + "3.nop;")))
		if err != nil || strings.Join(back, "|") != strings.Join(tc.elements, "|") {
			t.Errorf("read %q = %q %v", got, back, err)
		}
	}
	for _, bad := range []string{"x.select;", "6.select:3.vnc;", "6.sel"} {
		if got, err := health.ReadInstruction(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("read %q = %q, want an error", bad, got)
		}
	}
}

// An LMS or CMS as edx-platform answers: its heartbeat's checks, and the release file the
// openedx role serves. Asked for by its site name, straight (no proxy), redirects not followed.
func TestService(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://10.251.255.1:3128") // unreachable: must not be used
	var heartbeat struct {
		code int
		body string
	}
	release := "olive.1"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "lms.example.com" {
			http.Error(w, "unknown site "+r.Host, http.StatusNotFound)
			return
		}
		switch r.URL.Path {
		case "/heartbeat":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(heartbeat.code)
			io.WriteString(w, heartbeat.body)
		case "/labplane/release":
			io.WriteString(w, release+"\n")
		case "/login":
			io.WriteString(w, "a login page")
		default:
			http.Redirect(w, r, "/login", http.StatusFound)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, body, wantErr string
		code                int
	}{
		{name: "healthy", code: 200, body: `{"sql": {"status": true, "message": "OK"}, "modulestore": {"status": true, "message": "OK"}}`},
		{name: "a check fails", code: 503, body: `{"sql": {"status": false, "message": "connection refused"}, "modulestore": {"status": true, "message": "OK"}}`,
			wantErr: "/heartbeat: 503: sql: connection refused"},
		{name: "not edx-platform's answer", code: 200, body: `{"release": "olive.1"}`, wantErr: "not edx-platform's answer"},
		{name: "an error page", code: 500, body: "Internal Server Error", wantErr: "/heartbeat: 500: Internal Server Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			heartbeat.code, heartbeat.body = tc.code, tc.body
			st, err := health.Service(t.Context(), srv.URL, "lms.example.com", "")
			switch {
			case tc.wantErr == "" && (err != nil || st.Release != release || !st.Checks["sql"].Status):
				t.Errorf("Service = %+v, %v", st, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Service: %v, want %q", err, tc.wantErr)
			}
		})
	}
	if _, err := health.Service(t.Context(), srv.URL, "other.example.com", ""); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("asked for another site: %v", err)
	}
	if _, err := health.Service(t.Context(), srv.URL+"/moved", "lms.example.com", ""); err == nil || !strings.Contains(err.Error(), "302") {
		t.Errorf("a redirect: %v, want it reported, not followed", err)
	}
}

// Over https, the certificate must be valid for the site name and signed by the CA file's
// certificates (the system's when none is given).
func TestServiceOverTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/heartbeat" {
			io.WriteString(w, `{"sql": {"status": true, "message": "OK"}}`)
			return
		}
		io.WriteString(w, "r1\n")
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	// httptest's certificate is for example.com
	if st, err := health.Service(t.Context(), srv.URL, "example.com", ca); err != nil || st.Release != "r1" {
		t.Errorf("with the CA, as example.com: %+v %v", st, err)
	}
	for _, c := range []struct{ name, site, ca, want string }{
		{"another name", "lms.example.org", ca, "certificate is valid for"},
		{"the system's CAs", "example.com", "", "certificate signed by unknown authority"},
		{"a CA file without certificates", "example.com", filepath.Join(filepath.Dir(ca), "none.pem"), "the CA file the checks trust"},
	} {
		if _, err := health.Service(t.Context(), srv.URL, c.site, c.ca); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
