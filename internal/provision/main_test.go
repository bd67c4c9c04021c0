package provision_test

import (
	"os"
	"testing"

	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/dev/localcloud/localcloudtest"
)

// lease holds the local cloud local-a for the tests in heat_test.go (nil with -short);
// servers_test.go's test leases local-servers (with Nova) itself. The tests in
// provision_test.go run no terraform; terraform_test.go runs terraform and the provider
// without a cloud.
var lease *localcloud.Lease

func TestMain(m *testing.M) { os.Exit(localcloudtest.Main(m, &lease, nil, "local-a")) }
