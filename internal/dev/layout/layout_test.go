// Package layout holds the test of the README's layout map: every package of the module is in
// it, and each imports only what the map allows.
package layout

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/labplane/labplane/"

// row is one package of the map: what it may import, whether it must do no I/O.
type row struct {
	mayImport []string // short paths ("labs", "dev/testhosts")
	allBut    []string // "all but ...": every package but these
	pure      bool
}

// ioPackages are what a domain or pure package may not import.
var ioPackages = []string{"os", "os/exec", "net", "net/http", "database/sql", "io/fs", "syscall"}

var cell = regexp.MustCompile("`([^`]+)`")

// readMap reads the README's layout table: | `package` | what it holds | may import |.
func readMap(t *testing.T, readme string) map[string]row {
	t.Helper()
	f, err := os.Open(readme)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]row{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Layout"
			continue
		case !in || !strings.HasPrefix(line, "| `"):
			continue
		}
		cols := strings.Split(strings.Trim(line, "|"), "|")
		if len(cols) != 3 {
			t.Fatalf("README layout row %q: want 3 columns", line)
		}
		name := strings.Trim(strings.TrimSpace(cols[0]), "`")
		r := row{pure: strings.Contains(cols[1], "**domain**") || strings.Contains(cols[1], "**pure**")}
		imports := cols[2]
		if rest, ok := strings.CutPrefix(strings.TrimSpace(imports), "all but "); ok {
			for _, m := range cell.FindAllStringSubmatch(rest, -1) {
				r.allBut = append(r.allBut, m[1])
			}
		} else {
			for _, m := range cell.FindAllStringSubmatch(imports, -1) {
				r.mayImport = append(r.mayImport, m[1])
			}
		}
		if _, dup := rows[name]; dup {
			t.Errorf("README layout: %s is in the map twice", name)
		}
		rows[name] = r
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("README: no layout map under '## Layout'")
	}
	return rows
}

// short is a package's path as the map names it: under internal/, or cmd/... whole.
func short(importPath string) string {
	p := strings.TrimPrefix(importPath, module)
	return strings.TrimPrefix(p, "internal/")
}

// TestImportsFollowTheLayoutMap lists the module's packages (tests left out: a test may use
// any tool) and holds each one's imports against the README's map.
func TestImportsFollowTheLayoutMap(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	rows := readMap(t, filepath.Join(root, "README.md"))
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \",\"}}", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, imports, _ := strings.Cut(line, " ")
		name := short(path)
		listed[name] = true
		r, ok := rows[name]
		if !ok {
			t.Errorf("%s is not in the README's layout map: add its row (what it holds, what it may import)", name)
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			if imp == "" {
				continue
			}
			if r.pure && slices.Contains(ioPackages, imp) {
				t.Errorf("%s is domain or pure in the map, and imports %s", name, imp)
			}
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := short(imp)
			allowed := slices.Contains(r.mayImport, dep)
			if r.allBut != nil {
				allowed = !slices.Contains(r.allBut, dep) && dep != name
			}
			if !allowed {
				t.Errorf("%s imports %s, which the README's layout map does not allow it", name, dep)
			}
		}
	}
	for name := range rows {
		if !listed[name] {
			t.Errorf("the README's layout map has %s, which go list does not: take its row out or fix its path", name)
		}
	}
}
