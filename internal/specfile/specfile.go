// Package specfile reads the YAML files an operator writes (labplane.yaml, an environment's
// spec) the one way labplane reads them: every field must be known, and every problem is
// listed at once, naming the file and the field.
package specfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with one field.
type Problem struct {
	Field string
	Msg   string
}

// Error lists every problem found in a file. Callers exit 2 on it.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		// one problem a line, each naming the file: a value quoted from the file (by the YAML
		// decoder, or a path in a message) may hold a line break
		msg := lineBreaks.Replace(p.Msg)
		if p.Field == "" {
			lines[i] = fmt.Sprintf("%s: %s", e.File, msg)
		} else {
			lines[i] = fmt.Sprintf("%s: %s: %s", e.File, p.Field, msg)
		}
	}
	return strings.Join(lines, "\n")
}

var lineBreaks = strings.NewReplacer("\n", `\n`, "\r", `\r`)

// Fail is an Error with one problem about the file as a whole.
func Fail(file, format string, args ...any) *Error {
	return &Error{File: file, Problems: []Problem{{Msg: fmt.Sprintf(format, args...)}}}
}

// Decode decodes raw into v, refusing unknown fields; an empty file decodes to nothing.
func Decode(file string, raw []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return &Error{File: file, Problems: yamlProblems(err)}
	}
	return nil
}

var unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)

func yamlProblems(err error) []Problem {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []Problem{{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	ps := make([]Problem, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			ps = append(ps, Problem{Msg: fmt.Sprintf("line %s: unknown field %q", m[1], m[2])})
			continue
		}
		ps = append(ps, Problem{Msg: e})
	}
	return ps
}

// Validator collects the problems of one file.
type Validator struct {
	File     string
	problems []Problem
}

// Add records a problem with field.
func (v *Validator) Add(field, format string, args ...any) {
	v.problems = append(v.problems, Problem{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Err is the problems found, as an *Error, or nil.
func (v *Validator) Err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &Error{File: v.File, Problems: v.problems}
}

// DescribeFileError says why a file a field names cannot be read, in a few words.
func DescribeFileError(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	return err.Error()
}
