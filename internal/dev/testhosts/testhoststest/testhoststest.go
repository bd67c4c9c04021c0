// Package testhoststest gives tests SSH test hosts (internal/testhosts): one set for a whole
// package (Main, from TestMain) or one per test (New). Both install the packages the hosts need
// first, and take the hosts down when the tests are done, pass or fail.
package testhoststest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/dev/testhosts"
)

// Main is TestMain's body: unless -short, it installs the packages, brings up a set with o and
// sets *set, runs the tests, then takes the set down. With -short it only runs the tests (*set
// stays nil: the tests that need hosts skip themselves). It returns the exit code.
func Main(m *testing.M, set **testhosts.Set, o testhosts.Options) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	s, err := up(context.Background(), o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot bring up test hosts: %v\n(go test -short runs only the tests that need none)\n", err)
		return 1
	}
	*set = s
	code := m.Run()
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer dcancel()
	if err := s.Down(dctx); err != nil {
		fmt.Fprintf(os.Stderr, "take the test hosts down: %v\n", err)
		code = max(code, 1)
	}
	return code
}

// New brings up a set for one test and takes it down when the test ends. It skips the test
// with -short.
func New(t testing.TB, o testhosts.Options) *testhosts.Set {
	t.Helper()
	if testing.Short() {
		t.Skip("needs test hosts (root, namespaces): not with -short")
	}
	s, err := up(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.Down(ctx); err != nil {
			t.Errorf("take the test hosts down: %v", err)
		}
	})
	return s
}

// up installs the packages (for as long as that takes on a busy machine: ctx's deadline only),
// then brings the hosts up within 15 minutes.
func up(ctx context.Context, o testhosts.Options) (*testhosts.Set, error) {
	if err := testhosts.EnsurePackages(ctx, os.Stderr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	return testhosts.Up(ctx, o)
}
