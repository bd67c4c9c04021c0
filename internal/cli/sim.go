package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/sim"
)

func simCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:      "sim",
		Usage:     "simulate a month of learners: lab-hours billed per hour used under labplane's policy, hastexo-xblock's and always-on",
		UsageText: "labplane sim [--output text|json] [--db FILE] [--trace steady|class] [--policy labplane|hastexo|always-on] [--stack lab|servers]",
		Description: "Replays 30 days of learners' sessions through labplane's real policy, reaper and lifecycle, on a\n" +
			"SQLite registry, with a fake cloud whose create, suspend, resume and delete take the times measured on\n" +
			"the local Heat (--stack: those of the example lab of stand-in resources, the default, or of the lab of\n" +
			"two real servers on the local cloud with Nova), on a virtual clock (a month takes about a minute and a half). Two traces: \"steady\",\n" +
			"1,000 learners working 30 to 45 minutes every day or every other day, and \"class\", 300 learners\n" +
			"meeting on weekdays from 14:00 who all stop at 15:30. Three policies: \"labplane\" (the defaults:\n" +
			"suspend 90 s after the last heartbeat, checked every 15 s, max_in_flight 4), \"hastexo\" (hastexo-\n" +
			"xblock's defaults: every 60 s suspend at most 4 stacks idle for 120 s; delete after 14 days unused)\n" +
			"and \"always-on\". For each: lab-hours billed (what the cloud metered: every moment a stack was not\n" +
			"suspended), lab-hours used (the learners' heartbeats), their ratio, what `labplane cost report` makes\n" +
			"of the registry, and how long a returning learner waited for the lab (p50, p99, max).\n\n" +
			"--output json prints a list of rows with policy, trace, billed_hours, used_hours and ratio.\n" +
			"--db leaves the registry (every run's labs, audit trail and activity) in a new SQLite file, for\n" +
			"`labplane cost report --db FILE`: each run is a course named <trace>-<policy>, on a cloud named\n" +
			"after the policy.",
		Flags: []cli.Flag{
			outputFlag,
			&cli.StringFlag{Name: "db", Usage: "leave the simulated registry in this new SQLite `FILE`"},
			&cli.StringSliceFlag{Name: "trace", Usage: "only these traces: steady, class (default: both)"},
			&cli.StringSliceFlag{Name: "policy", Usage: "only these policies: labplane, hastexo, always-on (the default: all three), " +
				"labplane-idle15m (heartbeats only while the learner acts: idle_suspend_after 15m), labplane-idle15m-leave80 " +
				"(the same, the LMS sending leave at the end of 80% of sessions: suspended leave_grace, 3m, later), labplane-pool " +
				"(the defaults with a warm pool the size of the trace: a first visit resumes a lab of the pool)"},
			&cli.StringFlag{Name: "stack", Value: "lab", Usage: "whose latencies the simulated cloud takes: lab (examples/templates/lab.yaml, " +
				"stand-in resources, on local-a) or servers (servers.yaml, two servers on local-servers' Nova)"},
		},
		Action: func(c *cli.Context) error {
			out, err := output(c)
			if err != nil {
				return err
			}
			cfg := sim.Default()
			switch c.String("stack") {
			case "lab":
				cfg.Latencies = sim.LabStack
			case "servers":
				cfg.Latencies = sim.ServersStack
			default:
				return usageError("--stack %q: use lab or servers", c.String("stack"))
			}
			if cfg.Traces, err = only(c, "trace", cfg.Traces, func(t sim.Trace) string { return t.Name }); err != nil {
				return err
			}
			if c.IsSet("policy") {
				if cfg.Policies, err = only(c, "policy", sim.Policies(), func(p sim.Policy) string { return p.Name }); err != nil {
					return err
				}
			}
			if cfg.DB = c.String("db"); cfg.DB != "" {
				if _, err := os.Stat(cfg.DB); !errors.Is(err, fs.ErrNotExist) {
					return usageError("--db %s exists: the simulation leaves its registry in a new file", cfg.DB)
				}
			}
			log, err := logger(c, stdio.Err)
			if err != nil {
				return err
			}
			// the simulated labplane logs every action: only with --log-level debug
			if !log.Enabled(c.Context, slog.LevelDebug) {
				log = slog.New(slog.DiscardHandler)
			}
			cfg.Log = log
			// a month of garbage, collected less often: a third faster, for a few hundred MB
			defer debug.SetGCPercent(debug.SetGCPercent(400))
			res, err := sim.Run(c.Context, cfg)
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(stdio.Out, res.Rows)
			}
			return printSim(stdio.Out, res)
		},
	}
}

// only keeps the items a repeatable flag names (all when it names none).
func only[T any](c *cli.Context, flag string, all []T, name func(T) string) ([]T, error) {
	want := c.StringSlice(flag)
	if len(want) == 0 {
		return all, nil
	}
	var names []string
	for _, x := range all {
		names = append(names, name(x))
	}
	var out []T
	for _, w := range want {
		i := slices.Index(names, w)
		if i < 0 {
			return nil, usageError("--%s %q: use one of %v", flag, w, names)
		}
		out = append(out, all[i])
	}
	return out, nil
}

func printSim(w io.Writer, res sim.Result) error {
	fmt.Fprintf(w, "simulated %s to %s (UTC) in %s\n", res.Start.Format(time.DateOnly), res.End.Format(time.DateOnly), res.Elapsed.Round(time.Second))
	rows := make([][]string, len(res.Rows))
	secs := func(s float64) string { return strconv.FormatFloat(s, 'f', 2, 64) + " s" }
	for i, r := range res.Rows {
		rows[i] = []string{r.Policy, r.Trace, hours(r.BilledHours), hours(r.UsedHours), strconv.FormatFloat(r.Ratio, 'f', 3, 64),
			hours(r.ReportBilledHours), secs(r.LaunchWaitP50), secs(r.LaunchWaitP99), strconv.Itoa(r.Returns), secs(r.ResumeWaitP50),
			secs(r.ResumeWaitP99), secs(r.ResumeWaitMax)}
	}
	if err := table(w, "POLICY\tTRACE\tBILLED h\tUSED h\tBILLED/USED\tREPORT BILLED h\tFIRST LAUNCH WAIT p50\tp99\tRETURNS\tRESUME WAIT p50\tp99\tmax", rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "billed: what the cloud metered (every moment a stack was not suspended); used: the learners' heartbeats;\n"+
		"report billed: what `labplane cost report` makes of the audit trail (it leaves out the seconds each resume takes)")
	if res.DB != "" {
		fmt.Fprintf(w, "registry left in %s: labplane cost report --db %s --since %s --until %s\n", res.DB, res.DB,
			res.Start.Format(time.DateOnly), res.End.Format(time.DateOnly))
	}
	return nil
}
