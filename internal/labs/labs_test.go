package labs_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/labplane/labplane/internal/labs"
)

// The identifiers Open edX sends are accepted, up to 255 characters; the rest are refused
// with the field and the rule.
func TestIdentifiers(t *testing.T) {
	long := "course-v1:hastexo+" + strings.Repeat("x", 255-len("course-v1:hastexo+")-len("+201907")) + "+201907"
	for _, c := range []string{"course-v1:hastexo+hx212+201907", "hastexo/hx212/201907", "os101", long,
		"course-v1:Org.X+CS_101-a~b:c+2026_T1", "course-v1:école+cours+été"} {
		if err := labs.CheckCourse(c); err != nil {
			t.Errorf("CheckCourse(%q) = %v, want it accepted", c, err)
		}
	}
	for _, c := range []string{"", long + "1", "course v1", "a,b", "-x", ":x", "course-v1:a+b+c\n", "x?y", "x#y"} {
		err := labs.CheckCourse(c)
		if err == nil || !strings.Contains(err.Error(), "course ") || !strings.Contains(err.Error(), "Open edX course key") {
			t.Errorf("CheckCourse(%q) = %v, want it refused naming the field and the rule", c, err)
		}
	}
	for _, l := range []string{"0123456789abcdef0123456789abcdef", "ann", "ann.b@example.org", "a_b-c+d", "Zoë", strings.Repeat("a", 255)} {
		if err := labs.CheckLearner(l); err != nil {
			t.Errorf("CheckLearner(%q) = %v, want it accepted", l, err)
		}
	}
	for _, l := range []string{"", strings.Repeat("a", 256), "ann smith", "a,b", "a:b", "a/b"} {
		err := labs.CheckLearner(l)
		if err == nil || !strings.Contains(err.Error(), "learner ") || !strings.Contains(err.Error(), "anonymous id") {
			t.Errorf("CheckLearner(%q) = %v, want it refused naming the field and the rule", l, err)
		}
	}
}

// A stack's tags fit Heat's rules whatever the identifiers: at most 80 characters, no comma;
// short identifiers are tagged as they are, long ones as a digest that tells labs apart.
func TestStackTagsFitHeat(t *testing.T) {
	short := labs.Lab{ID: "0123456789ab", Course: "course-v1:hastexo+hx212+201907", Learner: "0123456789abcdef0123456789abcdef"}
	tags := labs.StackTags(short, "campus")
	want := []string{"labplane", "labplane-site=campus", "labplane-lab=0123456789ab", "course=course-v1:hastexo+hx212+201907", "learner=0123456789abcdef0123456789abcdef"}
	if strings.Join(tags, " ") != strings.Join(want, " ") {
		t.Errorf("StackTags = %v, want %v", tags, want)
	}
	long := short
	long.Course = "course-v1:hastexo+" + strings.Repeat("é", 200) + "+201907"
	long.Learner = strings.Repeat("b", 255)
	other := long
	other.Course += "2"
	a, b := labs.StackTags(long, "campus"), labs.StackTags(other, "campus")
	for _, tag := range a {
		if utf8.RuneCountInString(tag) > labs.MaxTagLen || strings.Contains(tag, ",") {
			t.Errorf("tag %q does not fit Heat (%d characters)", tag, utf8.RuneCountInString(tag))
		}
	}
	if !strings.HasPrefix(a[3], "course-digest=") || !strings.HasPrefix(a[4], "learner-digest=") || a[3] == b[3] {
		t.Errorf("long identifiers tagged %v and %v: want digests that tell them apart", a[3:], b[3:])
	}
}
