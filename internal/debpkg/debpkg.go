// Package debpkg builds labplane's Debian package with nfpm: the binary, a hardened systemd
// unit for `labplane serve` (its own user, a 0700 StateDirectory), an example configuration,
// the lab templates it names, the Prometheus rules and Grafana dashboard, a man page and shell
// completions.
package debpkg

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

//go:embed files
var packaged embed.FS

// Options say what to package.
type Options struct {
	// Binary is the labplane binary to ship (/usr/bin/labplane).
	Binary string
	// Version is the package's version (Debian's rules: it starts with a digit).
	Version string
	// Project is labplane's source tree: the lab templates (examples/templates), the alerting
	// rules and the dashboard (internal/metrics) are taken from it.
	Project string
	// Man is the man page (roff), Fish the fish completion script: the command line's own
	// (cli.App ToMan, ToFishCompletion).
	Man, Fish string
	// Out is the directory the package is written to.
	Out string
	// MTime stamps every file (default: now); the same inputs and MTime give the same bytes.
	MTime time.Time
}

// Name is the package's name.
const Name = "labplane"

// Build writes the package to Out and returns its path.
func Build(o Options) (string, error) {
	if o.Binary == "" || o.Version == "" || o.Project == "" || o.Out == "" {
		return "", fmt.Errorf("debian package: binary, version, project and out are all needed")
	}
	if o.MTime.IsZero() {
		o.MTime = time.Now()
	}
	work, err := os.MkdirTemp("", "labplane-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	// the files made here: the embedded ones, the man page (gzipped, as Debian's are), fish
	if err := fs.WalkDir(packaged, "files", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := packaged.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(work, filepath.Base(p)), b, 0o644)
	}); err != nil {
		return "", fmt.Errorf("debian package: %w", err)
	}
	var man bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&man, gzip.BestCompression)
	zw.ModTime = o.MTime
	if _, err := zw.Write([]byte(o.Man)); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	for name, b := range map[string][]byte{"labplane.1.gz": man.Bytes(), "labplane.fish": []byte(o.Fish)} {
		if err := os.WriteFile(filepath.Join(work, name), b, 0o644); err != nil {
			return "", err
		}
	}

	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode, MTime: o.MTime}}
	}
	w := func(name string) string { return filepath.Join(work, name) }
	src := func(rel string) string { return filepath.Join(o.Project, rel) }
	contents := files.Contents{
		file(o.Binary, "/usr/bin/labplane", 0o755),
		file(w("labplane.service"), "/usr/lib/systemd/system/labplane.service", 0o644),
		{Source: w("labplane.yaml"), Destination: "/etc/labplane/labplane.yaml", Type: files.TypeConfigNoReplace,
			FileInfo: &files.ContentFileInfo{Mode: 0o640, MTime: o.MTime}},
		file(src("examples/templates/lab.yaml"), "/usr/share/labplane/templates/lab.yaml", 0o644),
		file(src("examples/templates/lab-node.yaml"), "/usr/share/labplane/templates/lab-node.yaml", 0o644),
		file(src("internal/metrics/prometheus/alerts.yml"), "/usr/share/labplane/prometheus/alerts.yml", 0o644),
		file(src("internal/metrics/grafana/labplane.json"), "/usr/share/labplane/grafana/labplane.json", 0o644),
		file(w("labplane.1.gz"), "/usr/share/man/man1/labplane.1.gz", 0o644),
		file(w("bash-completion"), "/usr/share/bash-completion/completions/labplane", 0o644),
		file(w("labplane.fish"), "/usr/share/fish/vendor_completions.d/labplane.fish", 0o644),
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:        Name,
		Arch:        "amd64",
		Platform:    "linux",
		Version:     o.Version,
		Section:     "admin",
		Priority:    "optional",
		Maintainer:  "labplane maintainers <maintainers@labplane.example>",
		Description: "control plane of an Open edX and OpenStack lab platform\nlabplane launches learners' lab stacks on OpenStack Heat, suspends them when idle,\nresumes them when the learner returns, and deploys and promotes the platform.",
		Homepage:    "https://github.com/labplane/labplane",
		License:     "proprietary",
		MTime:       o.MTime,
		Overridables: nfpm.Overridables{
			Depends:  []string{"adduser"},
			Contents: contents,
			Scripts:  nfpm.Scripts{PostInstall: w("postinst"), PreRemove: w("prerm")},
		},
	})
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("debian package: %w", err)
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	info.Target = pkg.ConventionalFileName(info)
	path := filepath.Join(o.Out, info.Target)
	f, err := os.CreateTemp(o.Out, ".labplane-*.deb")
	if err != nil {
		return "", fmt.Errorf("debian package: %w", err)
	}
	defer os.Remove(f.Name())
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("debian package: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(f.Name(), path)
}
