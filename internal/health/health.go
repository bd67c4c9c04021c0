// Package health checks the platform's services the way their clients use them: an LMS or CMS
// answers edx-platform's GET /heartbeat with every check passing (and /labplane/release with
// the release the host runs), and guacd answers the Guacamole protocol's select handshake with
// its args. The deploy's plays check the same from the hosts; labplane checks
// from where it runs (the promotion gate).
package health

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Handshake opens the Guacamole protocol on addr (host:port) as a client does: it sends
// "select" for protocol and returns the elements of guacd's "args" answer (the protocol
// version first, then the parameter names). It works against the real guacd as against the
// stand-in.
func Handshake(ctx context.Context, addr, protocol string) ([]string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("guacd %s: %w", addr, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(conn, EncodeInstruction("select", protocol)); err != nil {
		return nil, fmt.Errorf("guacd %s: send select: %w", addr, err)
	}
	inst, err := ReadInstruction(bufio.NewReader(conn))
	if err != nil {
		return nil, fmt.Errorf("guacd %s: read the answer to select: %w", addr, err)
	}
	if inst[0] != "args" {
		return nil, fmt.Errorf("guacd %s: answered select with %q, want args", addr, inst)
	}
	return inst[1:], nil
}

// EncodeInstruction encodes a Guacamole protocol instruction: each element as LENGTH.VALUE
// (the length in Unicode code points), comma-separated, ending with a semicolon.
func EncodeInstruction(opcode string, args ...string) string {
	var b strings.Builder
	for i, e := range append([]string{opcode}, args...) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(len([]rune(e))))
		b.WriteByte('.')
		b.WriteString(e)
	}
	b.WriteByte(';')
	return b.String()
}

// ReadInstruction reads one Guacamole protocol instruction (opcode first).
func ReadInstruction(r *bufio.Reader) ([]string, error) {
	var elements []string
	for {
		n, err := r.ReadString('.')
		if err != nil {
			return nil, err
		}
		length, err := strconv.Atoi(n[:len(n)-1])
		if err != nil || length < 0 || length > 1<<16 {
			return nil, fmt.Errorf("not the Guacamole protocol: element length %q", n)
		}
		runes := make([]rune, length)
		for i := range runes {
			if runes[i], _, err = r.ReadRune(); err != nil {
				return nil, err
			}
		}
		elements = append(elements, string(runes))
		sep, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		switch sep {
		case ';':
			return elements, nil
		case ',':
		default:
			return nil, fmt.Errorf("not the Guacamole protocol: separator %q", sep)
		}
	}
}

// ServiceStatus is what an LMS or CMS answers.
type ServiceStatus struct {
	// Checks are edx-platform's heartbeat checks (the database, the modulestore, the cache...),
	// as /heartbeat answers them: each with its status and message.
	Checks map[string]HeartbeatCheck `json:"checks"`
	// Release is the release the host runs: /labplane/release, the file the openedx role
	// writes when it switches the host's current release (edx-platform's heartbeat says none).
	Release string `json:"release"`
}

// HeartbeatCheck is one of edx-platform's heartbeat checks.
type HeartbeatCheck struct {
	Status  bool   `json:"status"`
	Message string `json:"message"`
}

// client checks services the way their clients reach them: straight (no proxy from the
// environment), and without following redirects (a redirect is an answer to report, such as
// one to a login page).
var client = &http.Client{
	Transport:     &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, ResponseHeaderTimeout: 10 * time.Second},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Service checks an LMS or CMS at base (http://host:port or https://host:port), asking for it
// by siteName (the Host header, and over https the name its certificate must be valid for; the
// address when empty), trusting over https the certificates in caFile (the system's when
// empty): edx-platform's /heartbeat must answer 200 with every check passing, and
// /labplane/release the release. An error says what failed; the status has what was read.
func Service(ctx context.Context, base, siteName, caFile string) (ServiceStatus, error) {
	var st ServiceStatus
	c, err := clientFor(base, siteName, caFile)
	if err != nil {
		return st, err
	}
	code, body, err := get(ctx, c, base+"/heartbeat", siteName)
	if err != nil {
		return st, err
	}
	jerr := json.Unmarshal(body, &st.Checks)
	var failed []string
	for name, c := range st.Checks {
		if !c.Status {
			failed = append(failed, name+": "+c.Message)
		}
	}
	sort.Strings(failed)
	switch {
	case code != http.StatusOK && len(failed) > 0:
		return st, fmt.Errorf("%s/heartbeat: %d: %s", base, code, strings.Join(failed, "; "))
	case code != http.StatusOK:
		return st, fmt.Errorf("%s/heartbeat: %d: %s", base, code, strings.TrimSpace(string(body)))
	case jerr != nil || st.Checks == nil:
		return st, fmt.Errorf("%s/heartbeat: not edx-platform's answer (a JSON object of checks): %q", base, body)
	case len(failed) > 0: // edx-platform answers 503 then; say it whatever the code
		return st, fmt.Errorf("%s/heartbeat: %s", base, strings.Join(failed, "; "))
	}
	code, body, err = get(ctx, c, base+"/labplane/release", siteName)
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("%s/labplane/release: %d: %s", base, code, strings.TrimSpace(string(body)))
	}
	st.Release = strings.TrimSpace(string(body))
	return st, nil
}

// clientFor is the client that checks base: client itself over http; over https, one that
// verifies the certificate for siteName against caFile's certificates (or the system's).
func clientFor(base, siteName, caFile string) (*http.Client, error) {
	if !strings.HasPrefix(base, "https://") {
		return client, nil
	}
	cfg := &tls.Config{ServerName: siteName, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("the CA file the checks trust: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the CA file the checks trust, %s: no PEM certificate in it", caFile)
		}
	}
	t := client.Transport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	t.DisableKeepAlives = true // a transport per check: an idle connection kept would never be used, nor closed
	return &http.Client{Transport: t, CheckRedirect: client.CheckRedirect}, nil
}

// get fetches url as host with c, returning the status code and the start of the body.
func get(ctx context.Context, c *http.Client, url, host string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", url, err)
	}
	return resp.StatusCode, body, nil
}
