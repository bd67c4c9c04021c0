// Package localcloudtest runs a package's tests with local clouds: it brings them up through
// localcloud.Acquire (unless -short), points OS_CLIENT_CONFIG_FILE at them, runs the tests,
// and releases the clouds, pass or fail (the last suite to release a cloud a suite started
// stops it).
package localcloudtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/utils/v2/openstack/clientconfig"

	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/dev/localcloud"
)

// Main is TestMain's body: it sets *lease (nil with -short, when the tests that need a cloud
// skip themselves), runs the tests, calls before (if any) while the clouds are still up, then
// releases them. It returns the exit code.
func Main(m *testing.M, lease **localcloud.Lease, before func(context.Context), names ...string) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	start := time.Now()
	// the packages first, for as long as that takes on a busy machine (other packages' tests
	// may hold the installer's lock); then the clouds within 20 minutes
	pkgs := localcloud.Packages
	for _, n := range names {
		if in, err := localcloud.Named(n); err == nil {
			pkgs = append(slices.Clone(pkgs), in.Packages()...) // apt.Ensure asks for each once
		}
	}
	if err := apt.Ensure(context.Background(), os.Stderr, pkgs...); err != nil {
		fmt.Fprintf(os.Stderr, "cannot install the local cloud's packages: %v\n(go test -short runs only the tests that need none)\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	l, err := localcloud.Acquire(ctx, os.Stderr, names...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot bring up the local clouds %v: %v\n(go test -short runs only the tests that need none)\n", names, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "local clouds %v ready in %.1fs\n", names, time.Since(start).Seconds())
	*lease = l
	os.Setenv("OS_CLIENT_CONFIG_FILE", l.CloudsYAML())
	code := m.Run()
	if before != nil {
		before(ctx)
	}
	// the clouds this suite was the last user of are stopped one after another: four took
	// over 2 minutes on a busy machine, and a down cut short leaves servers running
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer rcancel()
	if err := l.Release(rctx); err != nil {
		fmt.Fprintf(os.Stderr, "release the local clouds: %v\n", err)
		code = max(code, 1)
	}
	return code
}

// Nova is the compute API of a local cloud with compute (entry: its clouds.yaml entry, such as
// "local-servers") as its learner sees it: the truth about servers, checked apart from what
// Heat or Terraform say.
func Nova(t testing.TB, entry string) *gophercloud.ServiceClient {
	t.Helper()
	sc, err := clientconfig.NewServiceClient(context.Background(), "compute", &clientconfig.ClientOpts{Cloud: entry})
	if err != nil {
		t.Fatalf("nova client for %s: %v", entry, err)
	}
	return sc
}
