package cli

import (
	"fmt"
	"runtime/debug"
)

// version is set when a release is linked:
//
//	go build -ldflags "-X github.com/labplane/labplane/internal/cli.version=1.2.0" ./cmd/labplane
var version string

// Version is labplane's version: the one set when the binary was linked, else the module's
// version the Go toolchain stamped into it (a tag, or a pseudo-version of the commit), else
// "(devel)".
func Version() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}

// versionDetail is what --version prints after "labplane version": the version, the commit
// (when the build recorded it) and the Go it was built with.
func versionDetail() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Version()
	}
	detail := info.GoVersion
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			detail = "commit " + s.Value[:12] + ", " + detail
		}
	}
	return fmt.Sprintf("%s (%s)", Version(), detail)
}
