package terraformbin_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/terraformbin"
)

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// The toolchain the CLI uses: the provider built into the mirror (once per machine), a CLI
// configuration that takes it from there, a terraform recent enough. The second call finds
// everything in place.
func TestEnsure(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the provider the first time on a machine (not with -short)")
	}
	ctx := t.Context() // the test's deadline only: a build on a busy machine takes what it takes
	start := time.Now()
	tc, err := terraformbin.Ensure(ctx, terraformbin.Options{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first call: %v, %+v", time.Since(start).Round(time.Millisecond), tc)
	provider := filepath.Join(tc.Mirror, "registry.terraform.io", terraformbin.ProviderSource, terraformbin.ProviderVersion,
		"linux_amd64", "terraform-provider-openstack_v"+terraformbin.ProviderVersion)
	if st, err := os.Stat(provider); err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Errorf("provider: %v %v", st, err)
	}
	rc, err := os.ReadFile(tc.CLIConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`path    = "` + tc.Mirror + `"`, `"registry.terraform.io/terraform-provider-openstack/openstack"`, "disable_checkpoint = true"} {
		if !strings.Contains(string(rc), want) {
			t.Errorf("CLI configuration lacks %s:\n%s", want, rc)
		}
	}
	start = time.Now()
	again, err := terraformbin.Ensure(ctx, terraformbin.Options{})
	if err != nil || again != tc {
		t.Errorf("second call: %+v %v", again, err)
	}
	t.Logf("second call: %v", time.Since(start).Round(time.Millisecond))
}

// Without terraform on PATH, Ensure builds it from the Go module proxy (once per machine:
// the build is cached beside the provider).
func TestBuildTerraform(t *testing.T) {
	if testing.Short() {
		t.Skip("builds terraform the first time on a machine (not with -short)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	noTerraform := func(file string) (string, error) {
		if file == "go" {
			return goBin, nil
		}
		return "", exec.ErrNotFound
	}
	ctx := t.Context() // the test's deadline only: a build on a busy machine takes what it takes
	start := time.Now()
	tc, err := terraformbin.Ensure(ctx, terraformbin.Options{Logger: logger(t), LookPath: noTerraform})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: %+v", time.Since(start).Round(time.Millisecond), tc)
	if !tc.Built || tc.Version != terraformbin.TerraformVersion {
		t.Errorf("want labplane's build of terraform %s, got %+v", terraformbin.TerraformVersion, tc)
	}
	out, err := exec.Command(tc.Terraform, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "Terraform v"+terraformbin.TerraformVersion+"\n") {
		t.Errorf("terraform version: %q %v", out, err)
	}
}

// Nothing to run and nothing to build with: an error naming what to install.
func TestNoGo(t *testing.T) {
	nothing := func(string) (string, error) { return "", exec.ErrNotFound }
	_, err := terraformbin.Ensure(context.Background(), terraformbin.Options{Dir: t.TempDir(), LookPath: nothing,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if !errors.Is(err, terraformbin.ErrNoGo) || !strings.Contains(err.Error(), "cannot build github.com/terraform-provider-openstack") ||
		!strings.Contains(err.Error(), "install Go 1.23 or later") {
		t.Errorf("got %v", err)
	}
}

// Find reports what is there and what is missing, and never builds or writes anything: a fake
// terraform (a script answering `version -json`) and a fake provider file stand in, and the go
// command is absent, so that any build would fail.
func TestFind(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name      string
		terraform string // the version the fake terraform on PATH reports; "" = none on PATH
		usable    bool   // that terraform is recent enough
		provider  bool   // the provider file is in the mirror
		ensure    bool   // Ensure runs first (it writes the CLI configuration, builds nothing)
		want      []error
	}{
		{name: "nothing", want: []error{terraformbin.ErrNoTerraform, terraformbin.ErrNoProvider}},
		{name: "terraform only", terraform: "1.9.2", usable: true, want: []error{terraformbin.ErrNoProvider}},
		{name: "terraform too old", terraform: "1.4.7", provider: true, ensure: true, want: []error{terraformbin.ErrNoTerraform}},
		{name: "provider without its CLI configuration", terraform: "1.9.2", usable: true, provider: true, want: []error{terraformbin.ErrNoProvider}},
		{name: "everything", terraform: "1.10.0", usable: true, provider: true, ensure: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := t.TempDir()
			lookPath := func(file string) (string, error) {
				if file == "terraform" && tc.terraform != "" {
					return filepath.Join(bin, "terraform"), nil
				}
				return "", exec.ErrNotFound // no go: nothing can be built
			}
			if tc.terraform != "" {
				script := "#!/bin/sh\necho '{\"terraform_version\": \"" + tc.terraform + "\"}'\n"
				if err := os.WriteFile(filepath.Join(bin, "terraform"), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			provider := filepath.Join(dir, "mirror", "registry.terraform.io", terraformbin.ProviderSource, terraformbin.ProviderVersion,
				runtime.GOOS+"_"+runtime.GOARCH, "terraform-provider-openstack_v"+terraformbin.ProviderVersion)
			if tc.provider {
				if err := os.MkdirAll(filepath.Dir(provider), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(provider, []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			opts := terraformbin.Options{Dir: dir, LookPath: lookPath, Logger: quiet}
			if tc.ensure {
				_, err := terraformbin.Ensure(t.Context(), opts)
				if tc.usable && err != nil {
					t.Fatalf("Ensure with the provider in place: %v", err)
				}
			}
			before := files(t, dir)
			got, err := terraformbin.Find(t.Context(), opts)
			t.Logf("%+v %v", got, err)
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("error %v does not wrap %v", err, want)
				}
			}
			if len(tc.want) == 0 && err != nil {
				t.Errorf("want no error, got %v", err)
			}
			if got.Mirror != filepath.Join(dir, "mirror") || got.CLIConfig != filepath.Join(dir, "terraform.rc") {
				t.Errorf("mirror and CLI configuration not reported: %+v", got)
			}
			if tc.usable != (got.Terraform != "") || tc.usable && got.Version != tc.terraform {
				t.Errorf("terraform %q on PATH: got %+v", tc.terraform, got)
			}
			if after := files(t, dir); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("Find wrote files: before %v, after %v", before, after)
			}
		})
	}
}

// files lists the files under dir.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil {
			out = append(out, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
