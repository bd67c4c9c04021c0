package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/atomicfile"
	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/dev/testhosts/standins"
	"github.com/labplane/labplane/internal/envspec"
)

// TestHostsSecretEnv is the variable the test hosts' environment reads its secret key from.
const TestHostsSecretEnv = "LABPLANE_TESTHOSTS_SECRET_KEY"

func testHostsCommand(stdio IO) *cli.Command {
	dirFlag := &cli.StringFlag{Name: "dir", Value: "/var/lib/labplane-testhosts",
		Usage: "the hosts' directory (not under /tmp: the hosts do not see the machine's /tmp)"}
	return &cli.Command{
		Name:  "hosts",
		Usage: "SSH test hosts on this machine to deploy the platform to (the demo and the tests)",
		Description: "`labplane dev hosts up` makes three hosts (lms1, cms1, guacd1), each with its own network namespace on\n" +
			"10.251.N.0/24, root filesystem, hostname and sshd, as root; builds stand-ins for what cannot be\n" +
			"downloaded here (an edx-platform release artifact: a small Django project with real migrations\n" +
			"and a /heartbeat view; a guacd Debian package whose daemon answers the Guacamole handshake, in an\n" +
			"apt repository); and writes inventories/ENV/environment.yml for them. `labplane deploy ENV`\n" +
			"then deploys to them. The route `unreachable 10.251.0.0/16` is added first and stays, so test\n" +
			"traffic never leaves the machine. `labplane dev hosts down` stops every process they run.",
		Subcommands: []*cli.Command{
			{
				Name:      "up",
				Usage:     "make the hosts, build the stand-ins, write the environment",
				UsageText: "labplane dev hosts up [--dir DIR] [--env local] [--release R]...",
				Flags: []cli.Flag{
					dirFlag,
					&cli.StringFlag{Name: "env", Value: "local", Usage: "the environment to write under the inventories directory"},
					&cli.StringSliceFlag{Name: "release", Value: cli.NewStringSlice("demo.1"), Usage: "releases to build artifacts of (the first is the spec's)"},
					outputFlag,
				},
				Action: func(c *cli.Context) error {
					out, err := output(c)
					if err != nil {
						return err
					}
					dir, err := filepath.Abs(c.String("dir"))
					if err != nil {
						return err
					}
					if dir == "/tmp" || strings.HasPrefix(dir, "/tmp/") {
						return usageError("--dir %s: the hosts do not see the machine's /tmp; choose a directory elsewhere", dir)
					}
					name := c.String("env")
					releases := c.StringSlice("release")
					if err := testhosts.EnsurePackages(c.Context, c.App.ErrWriter); err != nil {
						return err
					}
					www := filepath.Join(dir, "www")
					if err := os.MkdirAll(www, 0o755); err != nil {
						return err
					}
					for _, r := range releases {
						if _, err := standins.Artifact(www, r); err != nil {
							return err
						}
					}
					if err := standins.GuacdRepository(c.Context, filepath.Join(www, "repo")); err != nil {
						return err
					}
					set, err := testhosts.Up(c.Context, testhosts.Options{Names: testhosts.PlatformNames, Dir: filepath.Join(dir, "hosts")})
					if err != nil {
						return err
					}
					spec, err := set.EnvironmentSpec(testhosts.Spec{Release: releases[0],
						Artifact:         filepath.Join(www, standins.ArtifactName("{release}")),
						ArtifactChecksum: standins.ArtifactChecksum(www),
						AptRepository:    "deb file:" + filepath.Join(www, "repo") + " ./",
						AptKey:           filepath.Join(www, "repo", standins.GuacdKeyFile),
						GuacdVersion:     standins.GuacdVersion,
						SecretEnv:        TestHostsSecretEnv})
					envDir := filepath.Join(projectOf(c).inventories, name)
					if err == nil {
						err = os.MkdirAll(envDir, 0o755)
					}
					if err == nil {
						err = atomicfile.Write(filepath.Join(envDir, envspec.File), spec, 0o644)
					}
					if err != nil {
						_ = set.Down(c.Context)
						return err
					}
					if err := set.Detach(); err != nil {
						return err
					}
					if out == "json" {
						return writeJSON(stdio.Out, map[string]any{"environment": name, "spec": filepath.Join(envDir, envspec.File),
							"hosts": set.Hosts, "dir": dir})
					}
					rows := make([][]string, len(set.Hosts))
					for i, h := range set.Hosts {
						rows[i] = []string{h.Name, h.Address}
					}
					if err := table(stdio.Out, "HOST\tADDRESS", rows); err != nil {
						return err
					}
					fmt.Fprintf(stdio.Out, "environment %s: %s\nset %s to any secret, then: labplane deploy %s --yes\nstop them with: labplane dev hosts down --dir %s\n",
						name, filepath.Join(envDir, envspec.File), TestHostsSecretEnv, name, dir)
					return nil
				},
			},
			{
				Name:      "down",
				Usage:     "stop the hosts and remove them",
				UsageText: "labplane dev hosts down [--dir DIR]",
				Flags:     []cli.Flag{dirFlag},
				Action: func(c *cli.Context) error {
					dir, err := filepath.Abs(c.String("dir"))
					if err != nil {
						return err
					}
					set, err := testhosts.Open(c.Context, filepath.Join(dir, "hosts"))
					if err != nil {
						return err
					}
					if err := set.Down(c.Context); err != nil {
						return err
					}
					fmt.Fprintln(stdio.Out, "test hosts down")
					return nil
				},
			},
		},
	}
}
