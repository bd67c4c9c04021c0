package provision_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/terraform-exec/tfexec"

	"github.com/labplane/labplane/internal/provision"
	"github.com/labplane/labplane/internal/terraformbin"
)

// The tests here run the real terraform and the real OpenStack provider (labplane's install
// step finds or builds them, once per machine), without a cloud.

var (
	toolchainOnce sync.Once
	toolchainVal  terraformbin.Toolchain
	toolchainErr  error
)

// toolchain is terraform and the provider, as the CLI gets them.
func toolchain(t *testing.T) terraformbin.Toolchain {
	t.Helper()
	if testing.Short() {
		t.Skip("runs terraform (not with -short)")
	}
	toolchainOnce.Do(func() {
		// no deadline of its own: a build on a busy machine takes what it takes (go test's
		// -timeout still applies), and another process's build is waited for under its lock
		toolchainVal, toolchainErr = terraformbin.Ensure(context.Background(), terraformbin.Options{})
	})
	if toolchainErr != nil {
		t.Fatal(toolchainErr)
	}
	return toolchainVal
}

// repoProvision is the project's provision/ directory.
func repoProvision(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "provision"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Every module and example is formatted and valid, with the pinned provider.
func TestModulesValidate(t *testing.T) {
	tc := toolchain(t)
	ctx := context.Background()
	// a copy: init writes .terraform and a lock file beside the configuration
	work := t.TempDir()
	if err := os.CopyFS(work, os.DirFS(repoProvision(t))); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "TF_CLI_CONFIG_FILE": tc.CLIConfig, "CHECKPOINT_DISABLE": "1"}
	tf, err := tfexec.NewTerraform(work, tc.Terraform)
	if err != nil {
		t.Fatal(err)
	}
	if err := tf.SetEnv(env); err != nil {
		t.Fatal(err)
	}
	ok, unformatted, err := tf.FormatCheck(ctx, tfexec.Recursive(true))
	if err != nil || !ok {
		t.Errorf("terraform fmt -check -recursive: %v %v", unformatted, err)
	}
	for _, module := range []string{"modules/network", "modules/compute", "examples/openstack", "examples/heat", "examples/servers"} {
		t.Run(module, func(t *testing.T) {
			dir := filepath.Join(work, module)
			for _, f := range []string{"main.tf", "variables.tf", "outputs.tf", "versions.tf"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("the four-file layout: %v", err)
				}
			}
			tf, err := tfexec.NewTerraform(dir, tc.Terraform)
			if err != nil {
				t.Fatal(err)
			}
			if err := tf.SetEnv(env); err != nil {
				t.Fatal(err)
			}
			if err := tf.Init(ctx, tfexec.Backend(false)); err != nil {
				t.Fatal(err)
			}
			out, err := tf.Validate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !out.Valid || out.ErrorCount > 0 || out.WarningCount > 0 {
				t.Errorf("terraform validate: %+v", out.Diagnostics)
			}
			// every variable typed and described, every output described
			for file, want := range map[string][]*regexp.Regexp{
				"variables.tf": {regexp.MustCompile(`(?m)^variable "`), regexp.MustCompile(`(?m)^  description\s+=`), regexp.MustCompile(`(?m)^  type\s+=`)},
				"outputs.tf":   {regexp.MustCompile(`(?m)^output "`), regexp.MustCompile(`(?m)^  description\s+=`)},
			} {
				src, err := os.ReadFile(filepath.Join(dir, file))
				if err != nil {
					t.Fatal(err)
				}
				blocks := len(want[0].FindAll(src, -1))
				for _, re := range want[1:] {
					if n := len(re.FindAll(src, -1)); n != blocks {
						t.Errorf("%s: %d blocks, %d match %s", file, blocks, n, re)
					}
				}
			}
			versions, err := os.ReadFile(filepath.Join(dir, "versions.tf"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(versions), `version = "`+terraformbin.ProviderVersion+`"`) ||
				!strings.Contains(string(versions), `source  = "`+terraformbin.ProviderSource+`"`) {
				t.Errorf("the provider is not pinned to %s %s:\n%s", terraformbin.ProviderSource, terraformbin.ProviderVersion, versions)
			}
		})
	}
}

// A spec whose variables do not fit the module: exit 2's error naming the variable, and no
// state or plan written. Nothing reaches a cloud.
func TestBadVariables(t *testing.T) {
	tc := toolchain(t)
	tests := []struct {
		name string
		edit func(v map[string]any)
		want string
	}{
		{"missing", func(v map[string]any) { delete(v, "name_prefix") },
			"provision.variables.name_prefix: required by the module"},
		{"unknown", func(v map[string]any) { v["flavour"] = "m1.small" },
			"provision.variables.flavour: the module ../../../../../provision/examples/heat has no such variable"},
		{"wrong type", func(v map[string]any) { v["services"] = "three" },
			"provision.variables.services: Invalid value for input variable"},
		{"failing its validation", func(v map[string]any) { v["name_prefix"] = "Not A Name" },
			"name_prefix must be 1 to 31 lower-case letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := loadEnv(t, "local")
			tt.edit(env.Provision.Variables)
			t.Setenv("OS_CLIENT_CONFIG_FILE", filepath.Join(t.TempDir(), "none.yaml"))
			ws := open(t, env, provision.Options{Terraform: tc.Terraform, CLIConfig: tc.CLIConfig})
			_, err := ws.Plan(context.Background())
			if !errors.Is(err, provision.ErrBadInput) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want bad input naming %q, got %v", tt.want, err)
			}
			if testing.Verbose() {
				t.Log(err)
			}
			assertNoState(t, ws)
		})
	}
}

// assertNoState fails if the workspace has a state or a saved plan.
func assertNoState(t *testing.T, ws *provision.Workspace) {
	t.Helper()
	for _, f := range []string{provision.StateFile, provision.PlanFile, provision.DestroyPlanFile} {
		if _, err := os.Stat(filepath.Join(ws.Dir(), f)); err == nil {
			t.Errorf("%s was written", f)
		}
	}
}

// testLogger logs to t at debug level and into all, for the secret checks.
func testLogger(t *testing.T, all *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(&testWriter{t: t, all: all}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t   *testing.T
	mu  sync.Mutex
	all *strings.Builder
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
