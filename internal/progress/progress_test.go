package progress_test

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/labplane/labplane/internal/progress"
)

// A part's line adds up the work of every Add (a host's tasks over a promotion's runs), even
// when its count reached its total between two Adds, and counts the failures. (Drawn on a
// buffer, not a terminal: mpb draws 30 columns, and cuts the lines to them; the bars
// themselves are checked at a terminal, in tmux, by internal/cli's tests.)
func TestBoard(t *testing.T) {
	var out bytes.Buffer // read once Wait has returned: the board's goroutine is done with it
	b := progress.New(t.Context(), &out, "tasks")
	b.Add("lms1", 2)
	b.Add("cms1", 1)
	b.Done("lms1", false)
	b.Done("lms1", false) // 2/2: the line goes on
	b.Add("lms1", 3)
	for range 2 {
		b.Done("lms1", false)
	}
	b.Done("lms1", true)
	b.Add("guacd1", 3)
	b.Done("guacd1", false)
	b.Done("cms1", false)
	b.Done("nobody", false) // no line: nothing
	if _, err := b.Write([]byte("a line above\n")); err != nil {
		t.Fatal(err)
	}
	b.Wait()
	final := out.String()
	for _, want := range []string{`(?m)^lms1 +tasks +5/5 +1 failed`, `(?m)^cms1 +tasks +1/1`, `(?m)^guacd1 +tasks +1/3`, `(?m)^a line above$`} {
		if !regexp.MustCompile(want).MatchString(final) {
			t.Errorf("the board lacks %q:\n%s", want, final)
		}
	}
	if strings.Contains(final, "nobody") {
		t.Errorf("a line for a part never added:\n%s", final)
	}
}
