// Package health checks the platform's services the way their clients use them: an LMS or CMS
// answers GET /heartbeat with its release, and guacd answers the Guacamole protocol's select
// handshake with its args. The deploy's plays check the same from the hosts; labplane checks
// from where it runs (the promotion gate).
package health

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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

// HeartbeatStatus is what /heartbeat answers.
type HeartbeatStatus struct {
	Release  string `json:"release"`
	Service  string `json:"service"`
	SiteName string `json:"site_name"`
	Status   string `json:"status"`
	Database struct {
		Status string `json:"status"`
		Engine string `json:"engine"`
		Error  string `json:"error"`
	} `json:"database"`
}

// Heartbeat gets url (http://host:port/heartbeat) and decodes the answer; a status other
// than 200 is an error (with the decoded answer, if any).
func Heartbeat(ctx context.Context, url string) (*HeartbeatStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	var st HeartbeatStatus
	jerr := json.Unmarshal(body, &st)
	if resp.StatusCode != http.StatusOK {
		return &st, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if jerr != nil {
		return nil, fmt.Errorf("%s: %w", url, errors.Join(jerr, errors.New(string(body))))
	}
	return &st, nil
}
