package cli

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/provision"
	"github.com/labplane/labplane/internal/rollout"
	"github.com/labplane/labplane/internal/terraformbin"
)

func provisionCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:      "provision",
		Usage:     "create an environment's LMS, CMS and guacd hosts on OpenStack with Terraform",
		UsageText: "labplane provision ENV plan|apply|output|destroy [--yes] [--output text|json]",
		Description: "For an environment whose inventories/ENV/environment.yml has a provision: section, runs Terraform\n" +
			"on the module it names, with its variables, authenticating as its cloud (a clouds.yaml entry, or OS_*\n" +
			"variables; never written anywhere). One working directory and state per environment, under\n" +
			"STATE-DIR/provision/ENV (0700; state and plans 0600).\n\n" +
			"  plan     initialize, validate and save a plan, and print what it changes\n" +
			"  apply    apply exactly the saved plan (asks at a terminal; --yes elsewhere), print the hosts;\n" +
			"           at a terminal, a line with the changes done of the plan's, updated in place\n" +
			"  output   print the hosts of each service the module outputs (what `inventory render` uses)\n" +
			"  destroy  plan the destruction of everything, print it, and apply it (asks; --yes elsewhere)\n\n" +
			"Terraform and the OpenStack provider come from labplane's own install step when missing: terraform\n" +
			"on PATH (>= " + terraformbin.MinTerraformVersion + ") or built from source, the provider built into a mirror under\n" +
			"~/.cache/labplane/terraform, once per machine (a few minutes the first time; needs Go).\n" +
			"Exit 2 for bad input (unknown environment, a module variable missing, bad credentials), with nothing\n" +
			"changed and no state written; exit 1 when Terraform fails (the resource and its message are printed).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask before apply or destroy (needed when stdin is not a terminal)"},
			outputFlag,
		},
		Action: func(c *cli.Context) error {
			name, action, err := provisionArgs(c)
			if err != nil {
				return err
			}
			out, err := output(c)
			if err != nil {
				return err
			}
			env, err := projectOf(c).environment(name)
			if err != nil {
				return err
			}
			if env.Provision == nil {
				return usageError("environment %s lists its hosts under hosts: in %s; it has no provision: section", env.Name, env.File)
			}
			view := &applyProgress{terminalBoard: terminalBoard{stdio: stdio, logs: &logOutput{w: stdio.Err}}}
			ws, err := openWorkspace(c, stdio, env, view)
			if err != nil {
				return err
			}
			p := provisioner{c: c, stdio: stdio, out: out, ws: ws, env: env, view: view}
			switch action {
			case "plan":
				err = p.plan()
			case "apply":
				err = p.apply()
			case "output":
				err = p.output()
			case "destroy":
				err = p.destroy()
			}
			return rollout.ProvisionError(env, err)
		},
	}
}

var provisionActions = []string{"plan", "apply", "output", "destroy"}

// provisionArgs reads ENV, the action and the flags around them.
func provisionArgs(c *cli.Context) (env, action string, err error) {
	args, err := interspersedArgs(c)
	if err != nil {
		return "", "", err
	}
	if len(args) != 2 || !slices.Contains(provisionActions, args[1]) {
		return "", "", usageError("usage: labplane provision ENV plan|apply|output|destroy (see labplane provision --help)")
	}
	return args[0], args[1], nil
}

// openWorkspace finds or builds Terraform and the provider, and opens env's workspace under
// the state directory, its log and an apply's progress shown by view.
func openWorkspace(c *cli.Context, stdio IO, env *envspec.Environment, view *applyProgress) (*provision.Workspace, error) {
	log, err := logger(c, view.logs)
	if err != nil {
		return nil, err
	}
	tc, err := terraformbin.Ensure(c.Context, terraformbin.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	log.Debug("terraform", "path", tc.Terraform, "version", tc.Version, "built", tc.Built, "cli_config", tc.CLIConfig)
	return platformOf(c).Workspace(env, provision.Options{Terraform: tc.Terraform, CLIConfig: tc.CLIConfig, Logger: log, Progress: view, Applied: view.applied})
}

// provisioner runs one provision action and prints its outcome.
type provisioner struct {
	c     *cli.Context
	stdio IO
	out   string
	ws    *provision.Workspace
	env   *envspec.Environment
	view  *applyProgress
}

func (p provisioner) plan() error {
	s, err := p.ws.Plan(p.c.Context)
	if err != nil {
		return err
	}
	if p.out == "json" {
		return writeJSON(p.stdio.Out, s)
	}
	if err := printSummary(p.stdio.Out, s); err != nil {
		return err
	}
	fmt.Fprintf(p.stdio.Out, "saved as %s; apply it with: labplane provision %s apply\n", s.PlanFile, p.env.Name)
	return nil
}

func (p provisioner) apply() error {
	s, err := p.ws.SavedPlan(p.c.Context, false)
	if err != nil {
		return err
	}
	question := fmt.Sprintf("Apply this plan to %s (%d to add, %d to change, %d to destroy)?", p.env.Name, s.Add, s.Change, s.Remove)
	return p.confirmed(s, question, p.ws.Apply)
}

func (p provisioner) destroy() error {
	s, err := p.ws.PlanDestroy(p.c.Context)
	if err != nil {
		return err
	}
	if s.Remove == 0 {
		if p.out == "json" {
			return writeJSON(p.stdio.Out, s)
		}
		fmt.Fprintf(p.stdio.Out, "nothing to destroy in %s\n", p.env.Name)
		return nil
	}
	question := fmt.Sprintf("Destroy %d resources of %s? This cannot be undone.", s.Remove, p.env.Name)
	return p.confirmed(s, question, p.ws.Destroy)
}

// confirmed shows the saved plan, asks (or takes --yes), applies it and prints the outcome.
func (p provisioner) confirmed(s provision.Summary, question string, apply func(context.Context) (provision.Result, error)) error {
	if p.out == "text" {
		if err := printSummary(p.stdio.Out, s); err != nil {
			return err
		}
	}
	if err := confirm(p.stdio, p.c.Bool("yes"), question); err != nil {
		return err
	}
	p.view.start(p.c.Context, p.part(), s.Add+s.Change+s.Remove)
	res, err := apply(p.c.Context)
	p.view.stop()
	if err != nil {
		return err
	}
	return p.printResult(res)
}

// part names the progress line of an apply: the environment and its cloud.
func (p provisioner) part() string {
	if p.env.Provision.Cloud == "" {
		return p.env.Name
	}
	return p.env.Name + " on " + p.env.Provision.Cloud
}

func (p provisioner) output() error {
	hosts, err := p.ws.Output(p.c.Context)
	if err != nil {
		return err
	}
	if p.out == "json" {
		return writeJSON(p.stdio.Out, struct {
			Environment string                     `json:"environment"`
			Hosts       map[string][]platform.Host `json:"hosts"`
		}{p.env.Name, hosts})
	}
	return printHosts(p.stdio.Out, hosts)
}

func (p provisioner) printResult(res provision.Result) error {
	if p.out == "json" {
		return writeJSON(p.stdio.Out, res)
	}
	verb := "applied"
	if res.Destroy {
		verb = "destroyed"
	}
	fmt.Fprintf(p.stdio.Out, "%s %s in %.1fs: %d added, %d changed, %d destroyed\n", verb, p.env.Name, res.Seconds, res.Add, res.Change, res.Remove)
	if res.Destroy {
		return nil
	}
	return printHosts(p.stdio.Out, res.Hosts)
}

func printSummary(w io.Writer, s provision.Summary) error {
	kind := "plan"
	if s.Destroy {
		kind = "destroy plan"
	}
	fmt.Fprintf(w, "%s for %s (module %s, cloud %s, made %s): %d to add, %d to change, %d to destroy\n",
		kind, s.Environment, s.Module, s.Cloud, s.PlannedAt.Local().Format("2006-01-02 15:04:05"), s.Add, s.Change, s.Remove)
	if len(s.Changes) == 0 {
		return nil
	}
	rows := make([][]string, len(s.Changes))
	for i, ch := range s.Changes {
		rows[i] = []string{ch.Action, ch.Address}
	}
	return table(w, "ACTION\tRESOURCE", rows)
}

// printHosts prints validated hosts (only the known services), in deploy order.
func printHosts(w io.Writer, hosts map[string][]platform.Host) error {
	var rows [][]string
	for _, svc := range platform.Services {
		for _, h := range hosts[svc] {
			rows = append(rows, []string{svc, h.Name, h.Address})
		}
	}
	return table(w, "SERVICE\tHOST\tADDRESS", rows)
}
