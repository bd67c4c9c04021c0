package labs_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/labplane/labplane/internal/labs"
)

// FuzzIdentifiers: any course and learner the rules accept make a stack Heat keeps (tags of at
// most 80 characters, no comma) that names its lab, and is found again by its course and
// learner (the tag or the digest is the same for the same identifier, and differs for another).
func FuzzIdentifiers(f *testing.F) {
	f.Add("course-v1:hastexo+hx212+201907", "0123456789abcdef0123456789abcdef")
	f.Add("hastexo/hx212/201907", "ann.smith+lab@example")
	f.Add("course-v1:"+strings.Repeat("9", 245), "ünïcödé_名前")
	f.Add("a,b", "x y")
	f.Add("", "\xff")
	f.Fuzz(func(t *testing.T, course, learner string) {
		if labs.CheckCourse(course) != nil || labs.CheckLearner(learner) != nil {
			return
		}
		lab := labs.Lab{ID: "abc123", Course: course, Learner: learner}
		tags := labs.StackTags(lab, "site")
		for _, tag := range tags {
			if utf8.RuneCountInString(tag) > labs.MaxTagLen || strings.Contains(tag, ",") || !utf8.ValidString(tag) {
				t.Fatalf("tag %q of course %q, learner %q: Heat cannot keep it", tag, course, learner)
			}
		}
		if st := (labs.Stack{Tags: tags}); st.LabID() != lab.ID || !st.Managed() {
			t.Fatalf("tags %v do not name lab %s", tags, lab.ID)
		}
		again := labs.StackTags(labs.Lab{ID: "other", Course: course, Learner: learner}, "site")
		if again[3] != tags[3] || again[4] != tags[4] {
			t.Fatalf("the same identifiers tag differently: %v, %v", tags, again)
		}
		other := labs.StackTags(labs.Lab{ID: "other", Course: course + "x", Learner: learner + "x"}, "site")
		if other[3] == tags[3] || other[4] == tags[4] {
			t.Fatalf("two identifiers share a tag: %v, %v", tags, other)
		}
	})
}
