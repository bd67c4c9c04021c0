package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/store"
	"github.com/labplane/labplane/internal/terraformbin"
)

// How long a probe that reaches over the network, or runs a program, may take.
const (
	cloudTimeout    = 30 * time.Second
	registryTimeout = 15 * time.Second
	programTimeout  = 30 * time.Second
)

// cloudsYAML says where clouds.yaml is looked for, in fixes.
const cloudsYAML = "clouds.yaml (the file OS_CLIENT_CONFIG_FILE names, else ./clouds.yaml, ~/.config/openstack/clouds.yaml or /etc/openstack/clouds.yaml)"

// checker builds the checks of a run.
type checker struct {
	s    Setup
	p    Probes
	mu   sync.Mutex
	memo map[string]*memoized
}

// job returns a job's checks.
func (c *checker) job(ctx context.Context, j Job) []Check {
	switch j {
	case Labs:
		return slices.Concat(c.configuration(), c.registry(ctx), c.clouds(ctx), c.templates())
	case Serve:
		return slices.Concat(c.configuration(), c.registry(ctx), c.listen(), c.clouds(ctx))
	case Deploy:
		return slices.Concat(c.ansible(ctx, Deploy), c.playbooks(), c.registry(ctx), c.environments(Deploy, 1))
	case Promote:
		return slices.Concat(c.ansible(ctx, Promote), c.playbooks(), c.registry(ctx), c.environments(Promote, 2))
	case Provision:
		return c.provision(ctx)
	case LocalCloud:
		return slices.Concat(c.root("labplane dev cloud up"), c.packages(ctx, LocalCloud, localcloud.Packages,
			"labplane dev cloud up, which installs them"), c.computePackages(ctx))
	case TestHosts:
		return c.testHosts(ctx)
	}
	return nil
}

func have(name, detail string) Check {
	return Check{Name: name, OK: true, Required: true, Detail: detail}
}

func lack(name, detail, fix string) Check {
	return Check{Name: name, Required: true, Detail: detail, Fix: fix}
}

// configuration: labplane.yaml, with the clouds and templates the labs need.
func (c *checker) configuration() []Check {
	const name = "configuration"
	s := c.s
	switch {
	case s.Config == nil:
		return []Check{lack(name, "no "+s.ConfigFile,
			"write "+s.ConfigFile+" (examples/labplane.yaml in labplane's repository is a start; `labplane config validate` checks it), or pass --config PATH")}
	case !s.LabsConfig:
		return []Check{lack(name, s.ConfigFile+" has no clouds or templates",
			"add clouds: and templates: to "+s.ConfigFile+" (see examples/labplane.yaml)")}
	}
	return []Check{have(name, fmt.Sprintf("%s: %s, %s", s.ConfigFile, plural(len(s.Config.Clouds), "cloud"), plural(len(s.Config.Templates), "template")))}
}

// registry: the store opens and answers. Neither the DSN nor its password is ever shown.
func (c *checker) registry(ctx context.Context) []Check {
	return c.once("registry", func() []Check {
		const name = "registry"
		cfg := c.s.Config
		if cfg == nil {
			return []Check{lack(name, "no "+c.s.ConfigFile+": the registry is set in its store: section",
				"write "+c.s.ConfigFile+" (its store: section; SQLite in labplane.db beside it by default), or pass --config PATH")}
		}
		ctx, cancel := context.WithTimeout(ctx, registryTimeout)
		defer cancel()
		if err := c.p.Registry(ctx, cfg); err != nil {
			return []Check{lack(name, store.Redact(err.Error(), cfg.Store.DSN, cfg.DSN()),
				"check store.dsn in "+c.s.ConfigFile+": the database must answer from this machine (${VAR} in it is read from the environment)")}
		}
		detail := cfg.Store.Driver + " answers"
		if cfg.Store.Driver == store.SQLite {
			detail = "sqlite " + cfg.DSN() + " answers"
		}
		checks := []Check{have(name, detail)}
		if dir, mode, open := store.OpenDirectory(cfg.Store.Driver, cfg.DSN()); open {
			checks = append(checks, Check{Name: "registry directory",
				Detail: fmt.Sprintf("%s is open to others (mode %04o): the registry's files are 0600, but others see their names and sizes", dir, mode),
				Fix:    "chmod 700 " + dir + ", or keep the registry in a directory of its own, 0700"})
		}
		return checks
	})
}

// clouds: each cloud's clouds.yaml entry authenticates and its Heat answers, all at once.
func (c *checker) clouds(ctx context.Context) []Check {
	if c.s.Config == nil || !c.s.LabsConfig {
		return nil
	}
	return c.once("clouds", func() []Check {
		clouds := c.s.Config.Clouds
		out := make([]Check, len(clouds))
		var wg sync.WaitGroup
		for i, cl := range clouds {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, cloudTimeout)
				defer cancel()
				name := "cloud " + cl.Name
				err := c.p.Cloud(ctx, cl)
				if err == nil {
					out[i] = have(name, fmt.Sprintf("clouds.yaml entry %q: Keystone authenticated, Heat answers", cl.Cloud))
					return
				}
				out[i] = lack(name, err.Error(), cloudFix(err, cl.Cloud,
					fmt.Sprintf("clouds[%d].cloud in %s", i, c.s.ConfigFile)))
			})
		}
		wg.Wait()
		return out
	})
}

// cloudFix is the fix for a cloud that could not be opened, by the kind of error.
func cloudFix(err error, entry, field string) string {
	local := "labplane dev cloud up --name NAME, then eval \"$(labplane dev cloud env --name NAME)\""
	if slices.Contains(localcloud.Names(), entry) {
		local = strings.ReplaceAll(local, "NAME", entry)
	}
	switch {
	case errors.Is(err, cloud.ErrInvalid):
		return fmt.Sprintf("add an entry %q to %s, or name one it has in %s; for a local cloud: %s",
			entry, cloudsYAML, field, local)
	case errors.Is(err, cloud.ErrAuth):
		return fmt.Sprintf("Keystone refused the credentials of the clouds.yaml entry %q: correct them there", entry)
	}
	return fmt.Sprintf("make the Keystone (auth_url of the clouds.yaml entry %q) and the Heat of the cloud answer from this machine; for a local cloud: %s",
		entry, local)
}

// templates: every lab template's file.
func (c *checker) templates() []Check {
	cfg := c.s.Config
	if cfg == nil || !c.s.LabsConfig {
		return nil
	}
	var out []Check
	for _, name := range cfg.TemplateNames() {
		path, err := cfg.TemplatePath(name)
		if err == nil {
			err = c.p.Stat(path)
		}
		if err != nil {
			out = append(out, lack("template "+name, err.Error(),
				fmt.Sprintf("put the Heat template at %s, or correct templates.%s in %s", path, name, c.s.ConfigFile)))
			continue
		}
		out = append(out, have("template "+name, path))
	}
	return out
}

// listen: serve's address.
func (c *checker) listen() []Check {
	cfg := c.s.Config
	if cfg == nil || !c.s.LabsConfig {
		return nil
	}
	const name = "listen address"
	if _, port, err := net.SplitHostPort(cfg.Serve.Listen); err != nil || port == "" {
		return []Check{lack(name, fmt.Sprintf("%q is not host:port", cfg.Serve.Listen),
			"set serve.listen in "+c.s.ConfigFile+" to host:port, such as 127.0.0.1:8080")}
	}
	return []Check{have(name, cfg.Serve.Listen+" (serve.listen; serve --listen overrides it)")}
}

// ansible: what runs the playbooks. Ansible from elsewhere than Debian (pip) will do: the
// Debian packages are reported, required only through the tools they bring.
func (c *checker) ansible(ctx context.Context, j Job) []Check {
	fix := func(pkg string) string {
		return fmt.Sprintf("labplane doctor --install %s (as root), or apt-get install %s", j, pkg)
	}
	tools := c.once("ansible", func() []Check {
		var out []Check
		playbook, err := c.p.LookPath("ansible-playbook")
		if err != nil {
			out = append(out, lack("ansible-playbook", "not on PATH", ""),
				lack("callback "+ansible.Callback, "no ansible-playbook", ""))
		} else {
			out = append(out, have("ansible-playbook", playbook))
			ctx, cancel := context.WithTimeout(ctx, programTimeout)
			defer cancel()
			if err := c.p.Callback(ctx, playbook); err != nil {
				out = append(out, lack("callback "+ansible.Callback, err.Error(), ""))
			} else {
				out = append(out, have("callback "+ansible.Callback, "the stdout callback deploy reads"))
			}
		}
		if ssh, err := c.p.LookPath("ssh"); err != nil {
			out = append(out, lack("ssh client", "no ssh on PATH", ""))
		} else {
			out = append(out, have("ssh client", ssh))
		}
		return out
	})
	for i := range tools {
		if !tools[i].OK {
			tools[i].Fix = fix("ansible")
			if tools[i].Name == "ssh client" {
				tools[i].Fix = fix("openssh-client")
			}
			if strings.HasPrefix(tools[i].Name, "callback") {
				tools[i].Fix += " (the ansible package, not only ansible-core, brings the ansible.posix collection)"
			}
		}
	}
	pkgs := c.packages(ctx, j, ansible.Packages, "apt-get install "+strings.Join(ansible.Packages, " "))
	for i := range pkgs {
		pkgs[i].Required = false
		if !pkgs[i].OK {
			pkgs[i].Detail += " (Ansible installed otherwise will do: the checks above are what deploy runs)"
		}
	}
	return append(tools, pkgs...)
}

// playbooks: the project's playbooks, which deploy runs.
func (c *checker) playbooks() []Check {
	site := filepath.Join(c.s.Project, "playbooks", "site.yml")
	if err := c.p.Stat(site); err != nil {
		return []Check{lack("playbooks", err.Error(),
			"run labplane from the project's directory (playbooks/, roles/), or pass --project DIR")}
	}
	return []Check{have("playbooks", site)}
}

// environments: the specs deploy and promote work on (promote: a source and a target).
func (c *checker) environments(j Job, least int) []Check {
	names := c.s.environmentNames()
	if len(names) >= least {
		return []Check{have("environments", strings.Join(names, ", ")+" in "+c.s.Inventories)}
	}
	detail := fmt.Sprintf("%s in %s", plural(len(names), "environment"), c.s.Inventories)
	if len(names) > 0 {
		detail += " (" + strings.Join(names, ", ") + ")"
	}
	fix := fmt.Sprintf("write %s/ENV/%s (the README's environment spec), pass --inventories DIR, or make local test hosts: labplane dev hosts up",
		c.s.Inventories, envspec.File)
	if j == Promote {
		fix = fmt.Sprintf("promote needs a source and a target: write another %s/ENV/%s", c.s.Inventories, envspec.File)
	}
	return []Check{lack("environments", detail, fix)}
}

// provision: terraform and the provider (found, never built here), and each provisioned
// environment's clouds.yaml entry.
func (c *checker) provision(ctx context.Context) []Check {
	envs := c.s.provisioned()
	env := "ENV"
	if len(envs) > 0 {
		env = envs[0].Name
	}
	tctx, cancel := context.WithTimeout(ctx, programTimeout)
	tc, err := c.p.Terraform(tctx)
	cancel()
	var out []Check
	if tc.Terraform != "" {
		how := "on PATH"
		if tc.Built {
			how = "labplane's build"
		}
		out = append(out, have("terraform", fmt.Sprintf("%s (%s, %s)", tc.Terraform, tc.Version, how)))
	} else {
		out = append(out, lack("terraform", problem(err, terraformbin.ErrNoTerraform),
			fmt.Sprintf("labplane provision %s plan builds it once before planning (a few minutes; needs Go), or put terraform >= %s on PATH",
				env, terraformbin.MinTerraformVersion)))
	}
	if err != nil && (errors.Is(err, terraformbin.ErrNoProvider) || !errors.Is(err, terraformbin.ErrNoTerraform)) {
		out = append(out, lack("OpenStack provider", problem(err, terraformbin.ErrNoProvider),
			fmt.Sprintf("labplane provision %s plan builds it into the mirror once before planning (about a minute; needs Go)", env)))
	} else {
		out = append(out, have("OpenStack provider", fmt.Sprintf("%s %s in %s", terraformbin.ProviderSource, terraformbin.ProviderVersion, tc.Mirror)))
	}
	if len(envs) == 0 {
		return append(out, lack("environments", "no environment in "+c.s.Inventories+" has a provision: section",
			"add a provision: section (module, cloud, variables) to an environment's "+envspec.File))
	}
	for _, e := range envs {
		name := fmt.Sprintf("cloud %s (%s)", e.Provision.Cloud, e.Name)
		if err := c.p.CloudEntry(e.Provision.Cloud); err != nil {
			out = append(out, lack(name, err.Error(), fmt.Sprintf("add an entry %q to %s, or correct provision.cloud in %s",
				e.Provision.Cloud, cloudsYAML, e.File)))
			continue
		}
		out = append(out, have(name, fmt.Sprintf("clouds.yaml entry %q found (Terraform authenticates with it)", e.Provision.Cloud)))
	}
	return out
}

// problem is the part of a toolchain error about kind (Find joins them).
func problem(err, kind error) string {
	if err == nil {
		return ""
	}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			if errors.Is(e, kind) {
				return e.Error()
			}
		}
	}
	return err.Error()
}

// root: the developer tools change the machine.
func (c *checker) root(command string) []Check {
	if c.p.Root() {
		return []Check{have("root", "running as root")}
	}
	return []Check{lack("root", "not running as root", "run "+command+" as root")}
}

// packages: Debian packages a job installs through the project's installer.
func (c *checker) packages(ctx context.Context, j Job, pkgs []string, also string) []Check {
	const name = "Debian packages"
	fix := fmt.Sprintf("labplane doctor --install %s (as root)", j)
	if also != "" {
		fix += ", or " + also
	}
	miss, err := c.p.Missing(ctx, pkgs...)
	switch {
	case err != nil:
		return []Check{lack(name, err.Error(), fmt.Sprintf("install %s", strings.Join(pkgs, " ")))}
	case len(miss) > 0:
		return []Check{lack(name, "not installed: "+strings.Join(miss, " "), fix)}
	}
	return []Check{have(name, "installed: "+strings.Join(pkgs, " "))}
}

// computePackages: the packages of the local cloud with compute (local-servers), which only
// that instance needs: reported, never required.
func (c *checker) computePackages(ctx context.Context) []Check {
	const name = "Debian packages for local-servers"
	miss, err := c.p.Missing(ctx, localcloud.ComputePackages...)
	switch {
	case err != nil:
		return []Check{{Name: name, Detail: err.Error()}}
	case len(miss) > 0:
		return []Check{{Name: name, Detail: "not installed: " + strings.Join(miss, " ") +
			" (Nova, Placement and Glance: only the local cloud local-servers runs them)",
			Fix: "labplane dev cloud up --name local-servers, which installs them"}}
	}
	return []Check{{Name: name, OK: true, Detail: "installed: " + strings.Join(localcloud.ComputePackages, " ")}}
}

// testHosts: what `labplane dev hosts up` needs.
func (c *checker) testHosts(ctx context.Context) []Check {
	out := c.root("labplane dev hosts up")
	nctx, cancel := context.WithTimeout(ctx, programTimeout)
	defer cancel()
	if err := c.p.Namespaces(nctx); err != nil {
		out = append(out, lack("network namespaces", err.Error(),
			"run as root, on a kernel that allows network namespaces (not in an unprivileged container)"))
	} else {
		out = append(out, have("network namespaces", "ip netns and unshare --net work"))
	}
	guard := Check{Name: "guard route", Fix: "nothing: labplane dev hosts up adds it before anything else (now: ip route replace unreachable " + testhosts.GuardNetwork + ")"}
	switch present, err := c.p.GuardRoute(nctx); {
	case err != nil:
		guard.Detail = err.Error()
	case present:
		guard.OK, guard.Fix, guard.Detail = true, "", "unreachable "+testhosts.GuardNetwork+": test traffic never leaves the machine"
	default:
		guard.Detail = "no route unreachable " + testhosts.GuardNetwork + " yet"
	}
	out = append(out, guard)
	return append(out, c.packages(ctx, TestHosts, testhosts.Packages(), "labplane dev hosts up, which installs them")...)
}
