package cli

import "github.com/urfave/cli/v2"

// devCommand groups the tools for the demo and the tests, apart from the operator's commands.
func devCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "tools for the demo and the tests: a local OpenStack cloud, SSH test hosts",
		Description: "Neither is for production: the local cloud is Keystone + Heat on 127.0.0.1, the test hosts are\n" +
			"network namespaces on this machine. Both need root and install Debian packages when missing.",
		Subcommands: []*cli.Command{localCloudCommand(stdio), testHostsCommand(stdio)},
	}
}
