package health_test

import (
	"bufio"
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
