package heat_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/dev/localcloud/localcloudtest"
	"github.com/labplane/labplane/internal/heat"
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
	runTag = fmt.Sprintf("labplane-test-run=%d-%d", os.Getpid(), time.Now().Unix())
	os.Exit(localcloudtest.Main(m, &lease, cleanup, "local-a"))
}

// cleanup deletes what the tests left behind (on a failure), so that a developer's cloud does
// not fill up.
func cleanup(ctx context.Context) {
	h, err := heat.Open(ctx, heat.Options{Name: "local-a", Logger: quietLogger()})
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
