package cloud_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/localcloud"
)

// The integration tests run against the real Keystone + Heat of the local cloud "local-a",
// which TestMain brings up through localcloud.Acquire (about 25 s the first time on a machine
// with the packages, well under a second when it is up) and releases at the end, pass or fail:
// the last suite to release a cloud that a suite started stops it. go test -short skips them.

var (
	lease  *localcloud.Lease
	runTag string // tag on every stack these tests create, for the cleanup
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(runWithCloud(m))
}

func runWithCloud(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	var err error
	lease, err = localcloud.Acquire(ctx, os.Stderr, "local-a")
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloud tests: cannot bring up the local cloud local-a: %v\n(go test -short skips the integration tests)\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "cloud tests: local-a ready in %.1fs (started here: %v)\n", time.Since(start).Seconds(), lease.Started("local-a"))
	// the standard way: clientconfig finds the entries through OS_CLIENT_CONFIG_FILE
	os.Setenv("OS_CLIENT_CONFIG_FILE", lease.CloudsYAML())
	runTag = fmt.Sprintf("labplane-test-run=%d-%d", os.Getpid(), time.Now().Unix())

	code := m.Run()

	cleanup(ctx)
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer rcancel()
	if err := lease.Release(rctx); err != nil {
		fmt.Fprintf(os.Stderr, "cloud tests: release: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// cleanup deletes what the tests left behind (on a failure), so that a developer's cloud does
// not fill up.
func cleanup(ctx context.Context) {
	h, err := cloud.Open(ctx, cloud.Options{Name: "local-a", MaxInFlight: 4, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloud tests: cleanup: %v\n", err)
		return
	}
	left, err := h.List(ctx, runTag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloud tests: cleanup: %v\n", err)
		return
	}
	done := make(chan struct{}, len(left))
	for _, s := range left {
		go func() {
			dctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if _, err := h.Delete(dctx, s.Name, s.ID); err != nil {
				fmt.Fprintf(os.Stderr, "cloud tests: cleanup: %v\n", err)
			}
			done <- struct{}{}
		}()
	}
	for range left {
		<-done
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "cloud tests: cleanup deleted %d leftover stacks\n", len(left))
	}
}
