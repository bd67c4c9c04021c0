// Package npmtest installs the npm packages a test runs (a linter, a browser driver), pinned,
// into the user's cache the first time: ~/.cache/labplane-test/npm/<the packages>.
package npmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Install installs pkgs ("name@version") unless marker, a file under their node_modules,
// is there already, and returns the node_modules directory. It fails the test when npm is
// missing or the install fails.
func Install(t testing.TB, marker string, pkgs ...string) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm (Node.js) is needed for %v: %v", pkgs, err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "labplane-test", "npm", strings.NewReplacer("@", "", "/", "-").Replace(strings.Join(pkgs, "+")))
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, marker)); err != nil {
		args := append([]string{"install", "--no-audit", "--no-fund", "--prefix", dir}, pkgs...)
		if out, err := exec.CommandContext(t.Context(), npm, args...).CombinedOutput(); err != nil {
			t.Fatalf("npm install %v: %v\n%s", pkgs, err, out)
		}
	}
	return modules
}
