package reaper_test

import (
	"os"
	"testing"

	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/dev/localcloud/localcloudtest"
)

// The tests in heat_test.go run the reaper against two real local clouds (Keystone + Heat on
// loopback, local-a and local-b); quota_heat_test.go a launch refused by local-quota's Heat
// (its project full); servers_heat_test.go labs of real servers on local-servers (with Nova). The tests in reaper_test.go use the in-process fake cloud; go test -short
// runs only those.
var lease *localcloud.Lease

func TestMain(m *testing.M) {
	os.Exit(localcloudtest.Main(m, &lease, nil, "local-a", "local-b", "local-quota", "local-servers"))
}
