package testhosts

import (
	"context"
	"io"
	"slices"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/apt"
)

// Packages returns the Debian packages the test hosts and the project's roles need on the
// machine. The hosts see the machine's files through an overlay, so what is installed here is
// installed inside every host too (the roles find nginx, supervisor, Django and gunicorn there
// and install nothing from the network).
func Packages() []string { return append(slices.Clone(ansible.Packages), packages...) }

var packages = []string{
	// the hosts: namespaces, sshd
	"iproute2", "util-linux", "procps", "openssh-server",
	// the controller's linter; the apt module's python bindings on the hosts
	"ansible-lint", "python3-apt",
	// what the roles run on the hosts
	"supervisor", "nginx", "sqlite3", "ca-certificates", "nftables", "python3-venv",
	// what the stand-in release takes from Debian (settings.venv_system_site_packages)
	"python3-pip", "python3-django", "python3-django-redis", "python3-celery", "python3-yaml", "gunicorn",
	// the stand-ins' apt repository (dpkg-deb, dpkg-scanpackages)
	"dpkg-dev",
}

// EnsurePackages installs the missing Packages through the project's one installer (internal/apt):
// nothing when all are installed; root otherwise. No service is started on the machine.
func EnsurePackages(ctx context.Context, progress io.Writer) error {
	return apt.Ensure(ctx, progress, Packages()...)
}
