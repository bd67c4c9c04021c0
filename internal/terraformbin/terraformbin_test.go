package terraformbin_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
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
