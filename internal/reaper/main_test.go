package reaper_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/localcloud"
)

// The tests in heat_test.go run the reaper against two real local clouds (Keystone + Heat on
// loopback, local-a and local-b), which TestMain brings up through localcloud.Acquire and
// releases at the end, pass or fail (the last suite to release a cloud a suite started stops
// it). The tests in reaper_test.go use the in-process fake cloud. go test -short runs only those.

var lease *localcloud.Lease

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(runWithClouds(m))
}

func runWithClouds(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	var err error
	lease, err = localcloud.Acquire(ctx, os.Stderr, "local-a", "local-b")
	if err != nil {
		fmt.Fprintf(os.Stderr, "reaper tests: cannot bring up the local clouds: %v\n(go test -short runs only the tests that need none)\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "reaper tests: local-a and local-b ready in %.1fs\n", time.Since(start).Seconds())
	os.Setenv("OS_CLIENT_CONFIG_FILE", lease.CloudsYAML())
	code := m.Run()
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer rcancel()
	if err := lease.Release(rctx); err != nil {
		fmt.Fprintf(os.Stderr, "reaper tests: release: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
