package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/dev/localcloud"
)

func localCloudCommand(stdio IO) *cli.Command {
	nameFlag := &cli.StringSliceFlag{Name: "name", Value: cli.NewStringSlice("local-a"),
		Usage: fmt.Sprintf("which local clouds (%v)", localcloud.Names())}
	each := func(c *cli.Context, do func(localcloud.Instance) error) error {
		for _, n := range c.StringSlice("name") {
			in, err := localcloud.Named(n)
			if err != nil {
				return usageError("--name: %v", err)
			}
			if err := do(in); err != nil {
				return fmt.Errorf("local cloud %s: %w", n, err)
			}
		}
		return nil
	}
	return &cli.Command{
		Name:  "cloud",
		Usage: "a real Keystone + Heat on 127.0.0.1 for the demo and the tests (Debian packages, installed when missing)",
		Description: "Starts OpenStack Keystone and Heat (with RabbitMQ and a private PostgreSQL) from Debian's packages,\n" +
			"bound to 127.0.0.1 only, and writes a clouds.yaml for them. local-a, local-b and local-quota have no\n" +
			"Nova or Neutron: lab templates there use only resources such as OS::Heat::TestResource,\n" +
			"RandomString, ResourceGroup and nested stacks (examples/templates/lab.yaml). local-servers also runs\n" +
			"Nova (the fake virt driver: servers, no VMs), Placement and Glance, about 45 s and 1.2 GiB more:\n" +
			"its labs are real servers (examples/templates/servers.yaml; no Neutron, so no networks).\n" +
			"Needs root (apt-get, the postgres user switch).",
		Subcommands: []*cli.Command{
			{
				Name:  "up",
				Usage: "install what is missing and start the local clouds (idempotent; fast when already up)",
				Flags: []cli.Flag{nameFlag},
				Action: func(c *cli.Context) error {
					return each(c, func(in localcloud.Instance) error {
						if err := in.Up(c.Context, stdio.Err); err != nil {
							return err
						}
						nova := ""
						if in.Compute.Enabled() {
							nova = ", nova " + in.NovaURL()
						}
						fmt.Fprintf(stdio.Out, "%s: up (keystone %s, heat %s%s); clouds.yaml: %s\n", in.Name, in.KeystoneURL(), in.HeatURL(), nova, in.CloudsYAML())
						return nil
					})
				},
			},
			{
				Name:  "down",
				Usage: "stop the local clouds' processes (exactly those it started)",
				Flags: []cli.Flag{nameFlag, &cli.BoolFlag{Name: "purge", Usage: "also delete their state (databases, keys)"}},
				Action: func(c *cli.Context) error {
					return each(c, func(in localcloud.Instance) error {
						if err := in.Down(c.Context, c.Bool("purge")); err != nil {
							return err
						}
						fmt.Fprintf(stdio.Out, "%s: down\n", in.Name)
						return nil
					})
				},
			},
			{
				Name:      "env",
				Usage:     "print the shell line that points OpenStack clients (and labplane) at the local cloud's clouds.yaml",
				UsageText: "eval \"$(labplane dev cloud env)\"",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "name", Value: "local-a", Usage: fmt.Sprintf("which local cloud (%v)", localcloud.Names())}},
				Action: func(c *cli.Context) error {
					in, err := localcloud.Named(c.String("name"))
					if err != nil {
						return usageError("--name: %v", err)
					}
					_, err = fmt.Fprintf(stdio.Out, "export OS_CLIENT_CONFIG_FILE=%s\n", in.CloudsYAML())
					return err
				},
			},
			{
				Name:  "status",
				Usage: "say whether the local clouds are up",
				Flags: []cli.Flag{nameFlag, outputFlag},
				Action: func(c *cli.Context) error {
					out, err := output(c)
					if err != nil {
						return err
					}
					type status struct {
						Name       string `json:"name"`
						Up         bool   `json:"up"`
						Keystone   string `json:"keystone"`
						Heat       string `json:"heat"`
						Nova       string `json:"nova,omitempty"`
						CloudsYAML string `json:"clouds_yaml"`
					}
					var all []status
					if err := each(c, func(in localcloud.Instance) error {
						all = append(all, status{in.Name, in.Running(c.Context), in.KeystoneURL(), in.HeatURL(), in.NovaURL(), in.CloudsYAML()})
						return nil
					}); err != nil {
						return err
					}
					if out == "json" {
						return writeJSON(stdio.Out, all)
					}
					for _, st := range all {
						state := "down"
						if st.Up {
							state = "up"
						}
						nova := ""
						if st.Nova != "" {
							nova = ", nova " + st.Nova
						}
						fmt.Fprintf(stdio.Out, "%s: %s (keystone %s, heat %s%s, clouds.yaml %s)\n", st.Name, state, st.Keystone, st.Heat, nova, st.CloudsYAML)
					}
					return nil
				},
			},
		},
	}
}
