package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/store"
	"github.com/labplane/labplane/internal/terraformbin"
)

// Load reads the setup: labplane.yaml at configFile when there is one (its store validated as
// deploy validates it; in full, as the labs commands and serve do, when it has clouds or
// templates or labs or serve is named), and every inventories/*/environment.yml. A file that is
// there but wrong is a *specfile.Error naming the file and the field (exit 2).
func Load(configFile, project, inventories string, named []Job) (Setup, error) {
	s := Setup{ConfigFile: configFile, Project: project, Inventories: inventories, Named: named}
	if _, err := os.Stat(configFile); err == nil || !errors.Is(err, fs.ErrNotExist) {
		cfg, err := config.LoadRegistry(configFile)
		if err != nil {
			return Setup{}, err
		}
		if len(cfg.Clouds) > 0 || len(cfg.Templates) > 0 || slices.Contains(named, Labs) || slices.Contains(named, Serve) {
			if cfg, err = config.Load(configFile); err != nil {
				return Setup{}, err
			}
			s.LabsConfig = true
		}
		s.Config = cfg
	}
	entries, err := os.ReadDir(inventories)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Setup{}, fmt.Errorf("environments: %w", err)
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(inventories, e.Name(), envspec.File)); err != nil {
			continue
		}
		env, err := envspec.Load(inventories, e.Name())
		if err != nil {
			return Setup{}, err
		}
		s.Environments = append(s.Environments, env)
	}
	return s, nil
}

// MachineProbes ask this machine, through the packages that do the jobs. log receives their
// debug logs (never a secret).
func MachineProbes(log *slog.Logger) Probes {
	return Probes{
		Missing:  apt.Missing,
		LookPath: exec.LookPath,
		Callback: ansible.CheckCallback,
		Cloud: func(ctx context.Context, c config.Cloud) error {
			// as serve opens a cloud, and /readyz checks it
			h, err := heat.Open(ctx, heat.Options{Name: c.Name, Cloud: c.Cloud, RequestTimeout: cloudTimeout, Logger: log})
			if err != nil {
				return err
			}
			return h.Check(ctx)
		},
		CloudEntry: func(entry string) error { return heat.Entry(heat.Options{Name: entry}) },
		Registry: func(ctx context.Context, cfg *config.Config) error {
			st, err := store.Open(ctx, cfg.Store.Driver, cfg.DSN())
			if err != nil {
				return err
			}
			defer st.Close()
			return st.Ping(ctx)
		},
		Terraform: func(ctx context.Context) (terraformbin.Toolchain, error) {
			return terraformbin.Find(ctx, terraformbin.Options{Logger: log})
		},
		Root:       func() bool { return os.Geteuid() == 0 },
		Namespaces: testhosts.CheckNamespaces,
		GuardRoute: testhosts.GuardRouted,
		Stat: func(path string) error {
			st, err := os.Stat(path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("no %s", path)
			case err != nil:
				return err
			case st.IsDir():
				return fmt.Errorf("%s is a directory", path)
			}
			return nil
		},
	}
}

// Packages are the Debian packages --install installs for jobs (none: deploy's, the local
// cloud's and the test hosts'), each once, in order. The other jobs have none.
func Packages(jobs []Job) []string {
	if len(jobs) == 0 {
		jobs = []Job{Deploy, LocalCloud, TestHosts}
	}
	var out []string
	for _, j := range jobs {
		var pkgs []string
		switch j {
		case Deploy, Promote:
			pkgs = ansible.Packages
		case LocalCloud:
			pkgs = localcloud.Packages
		case TestHosts:
			pkgs = testhosts.Packages()
		}
		for _, p := range pkgs {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// Install installs the missing Packages of jobs with the project's one installer (apt.Ensure:
// the machine-wide lock, no service started), its progress to progress. Something to install
// and not root: an error saying so.
func Install(ctx context.Context, progress io.Writer, jobs []Job) error {
	pkgs := Packages(jobs)
	if len(pkgs) == 0 {
		fmt.Fprintf(progress, "doctor: no Debian packages to install for %s\n", joinJobs(jobs))
		return nil
	}
	// Ensure checks what is missing first, and says so when installing it needs root
	if err := apt.Ensure(ctx, progress, pkgs...); err != nil {
		return fmt.Errorf("doctor --install: %w", err)
	}
	return nil
}

func joinJobs(jobs []Job) string {
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = string(j)
	}
	return strings.Join(names, ", ")
}
