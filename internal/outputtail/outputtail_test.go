package outputtail_test

import (
	"fmt"
	"testing"

	"github.com/labplane/labplane/internal/outputtail"
)

func TestBufferKeepsTheEnd(t *testing.T) {
	b := &outputtail.Buffer{Max: 8}
	for i := range 5 {
		if n, err := fmt.Fprintf(b, "line%d\n", i); n != 6 || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
	}
	if got := b.String(); got != "3\nline4\n" {
		t.Fatalf("kept %q", got)
	}
}

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{{"abcdef", 3, "def"}, {"ab", 3, "ab"}, {"", 3, ""}} {
		if got := outputtail.Of([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("Of(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
