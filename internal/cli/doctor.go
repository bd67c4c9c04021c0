package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/doctor"
)

func doctorCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "what this machine has and lacks for each job, with the command that fixes each lack",
		UsageText: "labplane doctor [JOB...] [--install] [--output text|json]",
		Description: "Checks, for each of labplane's jobs, what this machine has and what it lacks, and prints under each\n" +
			"lack the command that fixes it:\n\n" +
			"  labs        labplane.yaml, the registry, each cloud (its clouds.yaml entry authenticates with Keystone,\n" +
			"              its Heat answers), each lab template's file\n" +
			"  serve       labplane.yaml, the registry (opened and pinged), the listen address, each cloud\n" +
			"  deploy      ansible-playbook and its ansible.posix.jsonl callback, ssh, the project's playbooks, the\n" +
			"              registry (runs are recorded there), an environment\n" +
			"  promote     deploy's checks, and two environments (a source and a target)\n" +
			"  provision   terraform >= 1.5 and the OpenStack provider in labplane's mirror (found, never built here:\n" +
			"              `labplane provision ENV plan` builds them), each provision.cloud's clouds.yaml entry\n" +
			"  localcloud  root, the Debian packages of Keystone, Heat and what they run on\n" +
			"  testhosts   root, network namespaces, the guard route, the Debian packages the hosts and roles need\n\n" +
			"A job is configured when labplane.yaml (--config) has clouds (labs, serve), when environments\n" +
			"(--inventories: inventories/ENV/environment.yml) exist (deploy; promote with two), when an environment\n" +
			"has a provision: section (provision). localcloud and testhosts are developer tools: reported, required\n" +
			"only when named. Naming jobs checks only those, and requires them. The registry is opened as every\n" +
			"command opens it (a SQLite file is created when there is none); neither its DSN nor a password is shown.\n\n" +
			"--install first installs, as root and with the project's one installer, the Debian packages of deploy,\n" +
			"localcloud and testhosts (of the jobs named, if any), progress on stderr; then it checks.\n\n" +
			"Exit 0 nothing a configured job needs is missing; 1 something is (or --install failed: not root, apt\n" +
			"failed); 2 bad usage (an unknown job) or a bad labplane.yaml or environment.yml (file and field named).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "install", Usage: "first install the Debian packages of deploy, localcloud and testhosts (the jobs named, if any); needs root"},
			outputFlag,
		},
		Action: func(c *cli.Context) error {
			args, err := interspersedArgs(c)
			if err != nil {
				return err
			}
			out, err := output(c)
			if err != nil {
				return err
			}
			jobs, err := doctor.ParseJobs(args)
			if errors.Is(err, doctor.ErrUnknownJob) {
				return badInput{err}
			} else if err != nil {
				return err
			}
			log, err := logger(c, stdio.Err)
			if err != nil {
				return err
			}
			p := projectOf(c)
			setup, err := doctor.Load(c.String("config"), p.dir, p.inventories, jobs)
			if err != nil {
				return err
			}
			if c.Bool("install") {
				if err := doctor.Install(c.Context, stdio.Err, jobs); err != nil {
					return err
				}
			}
			report := doctor.Run(c.Context, setup, doctor.MachineProbes(log))
			if out == "json" {
				err = writeJSON(stdio.Out, report)
			} else {
				err = doctor.WriteText(stdio.Out, report)
			}
			if err != nil {
				return err
			}
			if lacking := report.Lacking(); len(lacking) > 0 {
				names := make([]string, len(lacking))
				for i, j := range lacking {
					names[i] = string(j)
				}
				return fmt.Errorf("doctor: something a configured job needs is missing: %s", strings.Join(names, ", "))
			}
			return nil
		},
	}
}
