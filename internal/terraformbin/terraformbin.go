// Package terraformbin provides the Terraform toolchain labplane provisions with: a terraform
// executable (found on PATH, or built from source through the Go module proxy) and the pinned
// OpenStack provider built into a filesystem mirror, with the CLI configuration that makes
// terraform take that provider from the mirror and never from the network. Nothing is
// downloaded from HashiCorp or the Terraform registry.
//
// Builds happen once per machine: they are cached under a directory (by default
// ~/.cache/labplane/terraform) and done under file locks, so that parallel test packages and
// commands wait for one build instead of racing.
package terraformbin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hashicorp/go-version"

	"github.com/labplane/labplane/internal/atomicfile"
	"github.com/labplane/labplane/internal/filelock"
)

// The pinned versions. TerraformVersion is the one built when no terraform is on PATH; a
// terraform on PATH is used when it is at least MinTerraformVersion.
const (
	TerraformVersion    = "1.11.4"
	MinTerraformVersion = "1.5.0"
	// ProviderSource is the provider's address as modules declare it (required_providers).
	ProviderSource  = "terraform-provider-openstack/openstack"
	ProviderVersion = "3.4.0"
)

const (
	providerAddress = "registry.terraform.io/" + ProviderSource
	providerModule  = "github.com/terraform-provider-openstack/terraform-provider-openstack/v3"
	terraformModule = "github.com/hashicorp/terraform"
)

// Toolchain is what Ensure found or built.
type Toolchain struct {
	// Terraform is the terraform executable; Version its version.
	Terraform string `json:"terraform"`
	Version   string `json:"version"`
	// Built says the executable is labplane's own build (no usable terraform was on PATH).
	Built bool `json:"built"`
	// CLIConfig is the CLI configuration to run terraform with (TF_CLI_CONFIG_FILE).
	CLIConfig string `json:"cli_config"`
	// Mirror is the filesystem mirror holding the provider.
	Mirror string `json:"mirror"`
}

// Options tune Ensure.
type Options struct {
	// Dir caches the builds, the mirror and the CLI configuration (default: DefaultDir()).
	Dir string
	// Logger receives what is found and built (default: slog.Default()).
	Logger *slog.Logger
	// Progress receives the go command's output while building (nil: discarded).
	Progress io.Writer
	// LookPath finds terraform and go (default: exec.LookPath); tests make terraform absent.
	LookPath func(file string) (string, error)
}

// DefaultDir is $XDG_CACHE_HOME/labplane/terraform, or ~/.cache/labplane/terraform.
func DefaultDir() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("terraform toolchain: no cache directory: %w", err)
	}
	return filepath.Join(cache, "labplane", "terraform"), nil
}

// ErrNoGo means something had to be built and there is no go command to build it with.
var ErrNoGo = errors.New("no go command on PATH")

// Ensure returns a terraform to run and a CLI configuration whose provider mirror holds the
// pinned OpenStack provider, building what is missing (the provider: about a minute the first
// time on a machine; terraform, when none is on PATH: a few minutes). A second call finds
// everything in place and costs `terraform version` (some 30 ms).
func Ensure(ctx context.Context, o Options) (Toolchain, error) {
	i, err := newInstaller(o)
	if err != nil {
		return Toolchain{}, err
	}
	if tc, err := i.find(ctx); err == nil {
		return tc, nil
	}
	if err := os.MkdirAll(i.dir, 0o755); err != nil {
		return Toolchain{}, fmt.Errorf("terraform toolchain: %w", err)
	}
	// one lock per build, so that a machine building terraform does not keep every other
	// process from the provider, which most need alone
	if err := i.locked(ctx, "provider.lock", i.installProvider); err != nil {
		return Toolchain{}, err
	}
	if tc, err := i.findTerraform(ctx); err == nil {
		return tc, nil
	}
	var tc Toolchain
	err = i.locked(ctx, "terraform.lock", func(ctx context.Context) error {
		var err error
		if tc, err = i.findTerraform(ctx); err == nil {
			return nil // built by another process meanwhile
		}
		i.o.Logger.Info("terraform not found: building it from source", "version", TerraformVersion, "reason", err.Error())
		if err := i.buildTerraform(ctx); err != nil {
			return err
		}
		tc, err = i.findTerraform(ctx)
		return err
	})
	return tc, err
}

// locked runs f holding the lock file name in the cache directory.
func (i installer) locked(ctx context.Context, name string, f func(context.Context) error) error {
	path := filepath.Join(i.dir, name)
	unlock, err := filelock.Lock(ctx, path)
	if err != nil {
		return fmt.Errorf("terraform toolchain: lock %s: %w", path, err)
	}
	defer func() { _ = unlock() }()
	return f(ctx)
}

// installer finds and builds the toolchain in dir.
type installer struct {
	dir string
	o   Options
}

func (i installer) mirror() string { return filepath.Join(i.dir, "mirror") }

func (i installer) cliConfig() string { return filepath.Join(i.dir, "terraform.rc") }

// builtTerraform is where labplane's own build of terraform goes.
func (i installer) builtTerraform() string {
	return filepath.Join(i.dir, "bin", "terraform-"+TerraformVersion)
}

// provider is the provider's path in the mirror (the "unpacked" layout terraform expects).
func (i installer) provider() string {
	platform := runtime.GOOS + "_" + runtime.GOARCH
	return filepath.Join(i.mirror(), providerAddress, ProviderVersion, platform,
		"terraform-provider-openstack_v"+ProviderVersion)
}

// Find reports the toolchain Ensure would return, building and writing nothing: terraform (on
// PATH and at least MinTerraformVersion, or labplane's own build) and the provider in the mirror
// with the CLI configuration that points at it. When something is missing the error wraps
// ErrNoTerraform, ErrNoProvider or both, and the Toolchain still holds what was found (Mirror
// and CLIConfig are always set).
func Find(ctx context.Context, o Options) (Toolchain, error) {
	i, err := newInstaller(o)
	if err != nil {
		return Toolchain{}, err
	}
	return i.find(ctx)
}

// What Find reports missing (Ensure builds it).
var (
	ErrNoTerraform = errors.New("no usable terraform")
	ErrNoProvider  = errors.New("the OpenStack provider is not in the mirror")
)

// newInstaller applies Options' defaults.
func newInstaller(o Options) (installer, error) {
	if o.Dir == "" {
		d, err := DefaultDir()
		if err != nil {
			return installer{}, err
		}
		o.Dir = d
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return installer{}, fmt.Errorf("terraform toolchain: %w", err)
	}
	return installer{dir: dir, o: o}, nil
}

// find is Find, and Ensure's fast path: everything already in place, nothing to lock or build.
func (i installer) find(ctx context.Context) (Toolchain, error) {
	var errs []error
	if _, err := os.Stat(i.provider()); err != nil {
		errs = append(errs, fmt.Errorf("%w: no %s", ErrNoProvider, i.provider()))
	} else if cur, err := os.ReadFile(i.cliConfig()); err != nil || !bytes.Equal(cur, cliConfig(i.mirror())) {
		errs = append(errs, fmt.Errorf("%w: the CLI configuration %s is missing or out of date", ErrNoProvider, i.cliConfig()))
	}
	tc, err := i.findTerraform(ctx)
	if err != nil {
		tc = Toolchain{CLIConfig: i.cliConfig(), Mirror: i.mirror()}
		errs = append(errs, fmt.Errorf("%w: %v", ErrNoTerraform, err))
	}
	if len(errs) > 0 {
		return tc, fmt.Errorf("terraform toolchain: %w", errors.Join(errs...))
	}
	return tc, nil
}

// installProvider builds the provider into the mirror if it is not there, and writes the
// CLI configuration.
func (i installer) installProvider(ctx context.Context) error {
	if _, err := os.Stat(i.provider()); err != nil {
		if err := i.buildProvider(ctx); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(i.cliConfig(), cliConfig(i.mirror()), 0o644); err != nil {
		return fmt.Errorf("terraform toolchain: %w", err)
	}
	return nil
}

// findTerraform returns a usable terraform: the one on PATH when it is recent enough, else
// labplane's own build if there is one.
func (i installer) findTerraform(ctx context.Context) (Toolchain, error) {
	tc := Toolchain{CLIConfig: i.cliConfig(), Mirror: i.mirror()}
	var problems []string
	if path, err := i.o.LookPath("terraform"); err == nil {
		v, err := terraformVersion(ctx, path, i.cliConfig())
		switch {
		case err != nil:
			problems = append(problems, err.Error())
		case v.LessThan(version.Must(version.NewVersion(MinTerraformVersion))):
			problems = append(problems, fmt.Sprintf("%s is terraform %s, older than %s", path, v, MinTerraformVersion))
		default:
			tc.Terraform, tc.Version = path, v.String()
			return tc, nil
		}
	} else {
		problems = append(problems, "no terraform on PATH")
	}
	if _, err := os.Stat(i.builtTerraform()); err == nil {
		v, err := terraformVersion(ctx, i.builtTerraform(), i.cliConfig())
		if err == nil {
			tc.Terraform, tc.Version, tc.Built = i.builtTerraform(), v.String(), true
			return tc, nil
		}
		problems = append(problems, err.Error())
	}
	return Toolchain{}, errors.New(strings.Join(problems, "; "))
}

// terraformVersion runs `terraform version -json`.
func terraformVersion(ctx context.Context, path, cliConfig string) (*version.Version, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "version", "-json")
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+cliConfig, "CHECKPOINT_DISABLE=1")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s version: %w", path, err)
	}
	var v struct {
		Version string `json:"terraform_version"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return nil, fmt.Errorf("%s version: %w", path, err)
	}
	parsed, err := version.NewVersion(v.Version)
	if err != nil {
		return nil, fmt.Errorf("%s version %q: %w", path, v.Version, err)
	}
	return parsed, nil
}

// cliConfig is the CLI configuration: the OpenStack provider from the mirror only, every other
// provider as terraform would normally find it, no update checks.
func cliConfig(mirror string) []byte {
	return fmt.Appendf(nil, `# Written by labplane (internal/terraformbin): terraform takes the OpenStack provider from
# the filesystem mirror below, where labplane built it, and never downloads it.
disable_checkpoint = true

provider_installation {
  filesystem_mirror {
    path    = %q
    include = [%q]
  }
  direct {
    exclude = [%q]
  }
}
`, mirror, providerAddress, providerAddress)
}

// buildProvider builds the pinned provider from the Go module proxy into the mirror.
func (i installer) buildProvider(ctx context.Context) error {
	start := time.Now()
	i.o.Logger.Info("building the OpenStack provider (once per machine)", "version", ProviderVersion, "into", i.mirror())
	work := filepath.Join(i.dir, "build", "provider")
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("terraform toolchain: %w", err)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return fmt.Errorf("terraform toolchain: %w", err)
	}
	gomod := "module labplane.invalid/terraform-provider-build\n\ngo 1.23\n"
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(gomod), 0o644); err != nil {
		return fmt.Errorf("terraform toolchain: %w", err)
	}
	// the checksum database does not know this version: GONOSUMDB; @latest is refused: exact
	if err := i.goCmd(ctx, work, providerModule, "get", providerModule+"@v"+ProviderVersion); err != nil {
		return err
	}
	out := i.provider()
	if err := i.goBuild(ctx, work, providerModule, out, "", providerModule); err != nil {
		return err
	}
	i.o.Logger.Info("built the OpenStack provider", "path", out, "took", time.Since(start).Round(time.Second))
	return os.RemoveAll(work)
}

// removedBackends are the state backends that terraform's source keeps in modules of their
// own, which are never published: the module proxy cannot serve them, so labplane's build of
// terraform leaves them out (it keeps local, remote, cloud, http and inmem; labplane uses local).
var removedBackends = []string{"azure", "consul", "cos", "gcs", "kubernetes", "oss", "pg", "s3"}

// buildTerraform builds terraform from its source module on the Go module proxy.
func (i installer) buildTerraform(ctx context.Context) error {
	start := time.Now()
	work := filepath.Join(i.dir, "build", "terraform")
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("terraform toolchain: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(work), 0o755); err != nil {
		return fmt.Errorf("terraform toolchain: %w", err)
	}
	var dl struct{ Dir, Error string }
	var out bytes.Buffer
	if err := i.goCmdTo(ctx, &out, filepath.Dir(work), terraformModule, "mod", "download", "-json", terraformModule+"@v"+TerraformVersion); err != nil {
		return err
	}
	if err := json.Unmarshal(out.Bytes(), &dl); err != nil || dl.Dir == "" {
		return fmt.Errorf("terraform toolchain: go mod download %s: no source directory (%s)", terraformModule, firstLine(dl.Error))
	}
	if err := os.CopyFS(work, os.DirFS(dl.Dir)); err != nil {
		return fmt.Errorf("terraform toolchain: copy terraform's source: %w", err)
	}
	edit := []string{"mod", "edit", "-dropgodebug=tlskyber", // unknown to newer Go; terraform sets it for AWS
		"-dropreplace=" + terraformModule + "/internal/legacy", "-droprequire=" + terraformModule + "/internal/legacy"}
	for _, b := range removedBackends {
		m := terraformModule + "/internal/backend/remote-state/" + b
		edit = append(edit, "-dropreplace="+m, "-droprequire="+m)
	}
	if err := i.goCmd(ctx, work, terraformModule, edit...); err != nil {
		return err
	}
	if err := dropBackends(filepath.Join(work, "internal", "backend", "init", "init.go")); err != nil {
		return err
	}
	ldflags := "-X " + terraformModule + "/version.dev=no"
	if err := i.goBuild(ctx, work, terraformModule, i.builtTerraform(), ldflags, "."); err != nil {
		return err
	}
	i.o.Logger.Info("built terraform", "version", TerraformVersion, "path", i.builtTerraform(), "took", time.Since(start).Round(time.Second))
	return os.RemoveAll(work)
}

// dropBackends removes the unpublished backends from terraform's backend list: their imports
// and their entries, one line each. It fails when the file does not look as expected.
func dropBackends(path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("terraform toolchain: %w", err)
	}
	var kept []string
	dropped := 0
	for _, line := range strings.Split(string(src), "\n") {
		drop := false
		for _, b := range removedBackends {
			if strings.Contains(line, `"`+terraformModule+"/internal/backend/remote-state/"+b+`"`) ||
				strings.Contains(line, "return backend"+backendIdent(b)+".New()") {
				drop = true
			}
		}
		if drop {
			dropped++
			continue
		}
		kept = append(kept, line)
	}
	if dropped != 2*len(removedBackends) {
		return fmt.Errorf("terraform toolchain: %s: expected %d lines naming the unpublished backends, found %d: the source is not terraform %s's",
			path, 2*len(removedBackends), dropped, TerraformVersion)
	}
	return os.WriteFile(path, []byte(strings.Join(kept, "\n")), 0o644)
}

// backendIdent is the identifier terraform's init.go imports a backend as (backendS3, ...).
func backendIdent(b string) string {
	switch b {
	case "gcs", "oss", "s3":
		return strings.ToUpper(b)
	default:
		return strings.ToUpper(b[:1]) + b[1:]
	}
}

// goBuild builds pkg in work into out (through a temporary file, so a crash never leaves half
// a binary where Ensure looks).
func (i installer) goBuild(ctx context.Context, work, module, out, ldflags, pkg string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("terraform toolchain: %w", err)
	}
	tmp := out + ".building"
	args := []string{"build", "-trimpath", "-ldflags", strings.TrimSpace("-s -w " + ldflags), "-o", tmp, pkg}
	if err := i.goCmd(ctx, work, module, args...); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("terraform toolchain: %w", err)
	}
	return nil
}

func (i installer) goCmd(ctx context.Context, dir, module string, args ...string) error {
	return i.goCmdTo(ctx, nil, dir, module, args...)
}

// goCmdTo runs the go command in dir for module (GONOSUMDB covers it), its standard output to
// stdout (nil: progress), its errors to progress; a failure carries the last 4 KiB of output.
func (i installer) goCmdTo(ctx context.Context, stdout io.Writer, dir, module string, args ...string) error {
	gobin, err := i.o.LookPath("go")
	if err != nil {
		hint := "install Go 1.23 or later to build it"
		if module == terraformModule {
			hint = fmt.Sprintf("install terraform >= %s and put it on PATH, or install Go 1.23 or later to build it", MinTerraformVersion)
		}
		return fmt.Errorf("terraform toolchain: cannot build %s: %w (%s)", module, ErrNoGo, hint)
	}
	var output bytes.Buffer // for the error: the go command says little unless it fails
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GONOSUMDB="+module, "GOWORK=off", "CGO_ENABLED=0")
	cmd.Stderr = io.MultiWriter(i.o.Progress, &output)
	cmd.Stdout = io.MultiWriter(i.o.Progress, &output)
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.WaitDelay = 10 * time.Second
	i.o.Logger.Debug("go", "dir", dir, "args", strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("terraform toolchain: go %s: %w", args[0], ctx.Err())
		}
		msg := output.Bytes()
		if len(msg) > 4096 {
			msg = msg[len(msg)-4096:]
		}
		return fmt.Errorf("terraform toolchain: go %s %s: %w\n%s", args[0], module, err, msg)
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
