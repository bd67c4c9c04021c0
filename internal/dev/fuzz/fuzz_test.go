// Package fuzz runs every fuzz target of the module for a few seconds under go test -fuzz
// (issue 17): go test alone runs only their kept corpus (testdata/fuzz/<target>), this test
// lets each one look for new inputs as well. The targets are found in the module's test files,
// as go test finds them, so a new one runs without being listed here.
package fuzz

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// fuzzTime is how long each target fuzzes, with one worker: about its time in CPU, plus the
// link of its instrumented test binary (the build cache keeps the rest).
const fuzzTime = "2s"

// target is one fuzz function of a package.
type target struct {
	pkg, dir, name string
}

// TestFuzzTargets fuzzes each target for fuzzTime (with -short: no local cloud, database or
// Ansible install for the packages' TestMain) and fails on a failing input, which go test keeps
// under the package's testdata/fuzz/<target>, where go test runs it from then on. The fuzzing
// cache is a temporary one: each run starts from the kept corpus, and finds the same baseline.
func TestFuzzTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("fuzzes every target for " + fuzzTime)
	}
	goTool, err := exec.LookPath("go") // go test puts its own first on PATH
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	targets := findTargets(t, goTool, root)
	if len(targets) == 0 {
		t.Fatal("no fuzz target found in the module's test files")
	}
	cache := t.TempDir()
	for _, tg := range targets {
		t.Run(filepath.Base(tg.pkg)+"."+tg.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, goTool, "test", "-short", "-run", "^$", "-fuzz", "^"+tg.name+"$",
				"-fuzztime", fuzzTime, "-parallel", "1", tg.pkg, "-args", "-test.fuzzcachedir="+filepath.Join(cache, tg.pkg, tg.name))
			cmd.Dir = root
			cmd.WaitDelay = 10 * time.Second
			out, err := cmd.CombinedOutput()
			if err == nil && bytes.Contains(out, []byte("fuzz: elapsed:")) {
				return
			}
			if m := failingInput.FindSubmatch(out); m != nil {
				t.Errorf("go test -fuzz %s %s: a failing input, kept as %s (go test runs it now: fix the code or the target)\n%s",
					tg.name, tg.pkg, filepath.Join(tg.dir, string(m[1])), out)
				return
			}
			if regexp.MustCompile(`--- FAIL: ` + tg.name + ` \([0-9.]+s\)\n\s+context deadline exceeded\n`).Match(out) {
				// go.dev/issue/75804 (fixed in Go 1.27): the coordinator may report its own
				// -fuzztime deadline as a failure, with no failing input
				t.Logf("go test -fuzz %s %s: the end of -fuzztime reported as a failure, with no failing input (go.dev/issue/75804): not a finding", tg.name, tg.pkg)
				return
			}
			t.Errorf("go test -fuzz %s %s did not fuzz, or failed (exit: %v)\n%s", tg.name, tg.pkg, err, out)
		})
	}
}

var failingInput = regexp.MustCompile(`Failing input written to (\S+)`)

// findTargets lists the module's fuzz targets as go test -list '^Fuzz' would (without building
// every package's test binary): the functions FuzzXxx(*testing.F) of each package's test files.
func findTargets(t *testing.T, goTool, root string) []target {
	t.Helper()
	cmd := exec.Command(goTool, "list", "-f", `{{.ImportPath}}{{"\t"}}{{.Dir}}{{"\t"}}{{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}`, "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var targets []target
	fset := token.NewFileSet()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		cols := strings.SplitN(line, "\t", 3)
		if len(cols) != 3 {
			t.Fatalf("go list: %q", line)
		}
		pkg, dir := cols[0], cols[1]
		for _, name := range strings.Fields(cols[2]) {
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Decls {
				if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && isFuzzTarget(fn) {
					targets = append(targets, target{pkg: pkg, dir: dir, name: fn.Name.Name})
				}
			}
		}
	}
	return targets
}

// isFuzzTarget: named Fuzz or FuzzXxx (not Fuzzxxx), with one parameter, a *testing.F.
func isFuzzTarget(fn *ast.FuncDecl) bool {
	rest, ok := strings.CutPrefix(fn.Name.Name, "Fuzz")
	if r, _ := utf8.DecodeRuneInString(rest); !ok || rest != "" && unicode.IsLower(r) {
		return false
	}
	params := fn.Type.Params.List
	if len(params) != 1 || len(params[0].Names) > 1 {
		return false
	}
	star, ok := params[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "F"
}
