package cli

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/cost"
	"github.com/labplane/labplane/internal/store"
)

func costCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:  "cost",
		Usage: "what the labs cost: the hours they ran, were suspended and were used",
		Subcommands: []*cli.Command{{
			Name:  "report",
			Usage: "the hours each lab existed, ran, was suspended and was used, what the clouds bill, and the waste",
			UsageText: "labplane cost report [--since TIME] [--until TIME] [--by course|learner|cloud|lab]\n" +
				"                     [--output text|json|csv] [--chart FILE.svg] [--db FILE]",
			Description: "From the registry's audit trail and the learners' heartbeats, per course (or learner, cloud, lab):\n" +
				"the hours each lab stack existed, ran (from its launch, or a resume, to its suspend or delete:\n" +
				"launching, resuming, failing and stuck stacks count as running) and was suspended; the hours the\n" +
				"learner was active (heartbeats less than 5 minutes apart make one span); billed hours (running\n" +
				"hours, plus suspended hours times the cloud's suspended_cost_factor from the configuration); and\n" +
				"billed hours per hour used. Then the waste: labs that ran while nobody used them, the longest\n" +
				"stretches a lab ran idle, suspends that failed. Notes say where a lab's history was incomplete or\n" +
				"out of order (an event timed before the one recorded before it is taken at that one's time;\n" +
				"a stretch between missing events counts as running if either side says so).\n\n" +
				"TIME is 2026-11-02, 2026-11-02T09:00:00Z (RFC 3339), or a duration back from now such as 720h.\n" +
				"--chart writes an SVG of the running and used hours of each course over time.\n" +
				"--db reads a SQLite registry file (such as `labplane sim --db` leaves) instead of the\n" +
				"configuration's store; every cloud's suspended_cost_factor is then 0.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "since", Usage: "the period's start (default: the first record)"},
				&cli.StringFlag{Name: "until", Usage: "the period's end (default: now)"},
				&cli.StringFlag{Name: "by", Value: string(cost.ByCourse), Usage: "group by course, learner, cloud or lab"},
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text, json or csv (the groups and the total)"},
				&cli.StringFlag{Name: "chart", Usage: "also write an SVG chart of running vs used hours per course over time to `FILE.svg`"},
				&cli.StringFlag{Name: "db", Usage: "read this SQLite registry `FILE` instead of the configuration's store"},
			},
			Action: func(c *cli.Context) error {
				now := time.Now()
				o, out, err := costOptions(c, now)
				if err != nil {
					return err
				}
				chart := c.String("chart")
				if chart != "" && !strings.HasSuffix(strings.ToLower(chart), ".svg") {
					return usageError("--chart %q: the chart is an SVG; name a .svg file", chart)
				}
				src, closeSrc, err := costSource(c, stdio, &o)
				if err != nil {
					return err
				}
				defer closeSrc()
				hs, err := cost.Load(c.Context, src, o.Since, o.Until)
				if err != nil {
					return err
				}
				r := cost.Compute(hs, o)
				if chart != "" {
					if err := writeChart(chart, r); err != nil {
						return err
					}
				}
				switch out {
				case "json":
					return writeJSON(stdio.Out, r)
				case "csv":
					return writeCostCSV(stdio.Out, r)
				}
				if err := printCost(stdio.Out, r); err != nil {
					return err
				}
				if chart != "" {
					fmt.Fprintf(stdio.Out, "chart: %s\n", chart)
				}
				return nil
			},
		}},
	}
}

// costOptions reads the report's flags.
func costOptions(c *cli.Context, now time.Time) (cost.Options, string, error) {
	out := c.String("output")
	if !slices.Contains([]string{"text", "json", "csv"}, out) {
		return cost.Options{}, "", usageError("--output %q: use text, json or csv", out)
	}
	o := cost.Options{By: cost.Grouping(c.String("by")), Until: now}
	if !slices.Contains(cost.Groupings, o.By) {
		return o, "", usageError("--by %q: use course, learner, cloud or lab", o.By)
	}
	var err error
	if s := c.String("since"); s != "" {
		if o.Since, err = cost.ParseWhen(s, now); err != nil {
			return o, "", usageError("--since %q: %v", s, err)
		}
	}
	if s := c.String("until"); s != "" {
		if o.Until, err = cost.ParseWhen(s, now); err != nil {
			return o, "", usageError("--until %q: %v", s, err)
		}
	}
	if !o.Since.IsZero() && !o.Since.Before(o.Until) {
		return o, "", usageError("--since %s is not before --until %s", o.Since.Format(time.RFC3339), o.Until.Format(time.RFC3339))
	}
	return o, out, nil
}

// costSource opens the registry to report on: --db, or the configuration's store (whose
// clouds give the suspended cost factors).
func costSource(c *cli.Context, stdio IO, o *cost.Options) (cost.Source, func(), error) {
	if db := c.String("db"); db != "" {
		if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, usageError("--db %s: no such file", db)
		}
		st, err := store.Open(c.Context, store.SQLite, db)
		if err != nil {
			return nil, nil, err
		}
		return st, func() { _ = st.Close() }, nil
	}
	e, err := openEnv(c, stdio, false)
	if err != nil {
		return nil, nil, err
	}
	o.SuspendedCostFactor = e.cfg.SuspendedCostFactors()
	return e.store, e.Close, nil
}

func writeChart(path string, r cost.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return badInput{fmt.Errorf("--chart: %w", err)}
	}
	if err := r.WriteSVG(f); err != nil {
		f.Close()
		return fmt.Errorf("write the chart: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the chart: %w", err)
	}
	return nil
}

// hours prints hours to the 36 seconds.
func hours(h float64) string { return strconv.FormatFloat(h, 'f', 2, 64) }

func ratio(g cost.Group) string {
	if g.BilledPerUsed == nil {
		return "-"
	}
	return strconv.FormatFloat(*g.BilledPerUsed, 'f', 3, 64)
}

func groupRow(g cost.Group) []string {
	return []string{g.Key, strconv.Itoa(g.Labs), hours(g.Existed), hours(g.Running), hours(g.Suspended), hours(g.Billed),
		hours(g.Used), ratio(g), hours(g.IdleRunning)}
}

// notesShown is how many notes the text report prints.
const notesShown = 10

func printCost(w io.Writer, r cost.Report) error {
	fmt.Fprintf(w, "cost report %s to %s (UTC), by %s; billed = running + suspended x the cloud's suspended_cost_factor\n",
		r.Since.UTC().Format("2006-01-02 15:04"), r.Until.UTC().Format("2006-01-02 15:04"), r.By)
	rows := make([][]string, 0, len(r.Groups)+1)
	for _, g := range r.Groups {
		rows = append(rows, groupRow(g))
	}
	rows = append(rows, groupRow(r.Total))
	rows[len(rows)-1][0] = "TOTAL"
	if err := table(w, strings.ToUpper(string(r.By))+"\tLABS\tEXISTED h\tRUNNING h\tSUSPENDED h\tBILLED h\tUSED h\tBILLED/USED\tIDLE RUNNING h", rows); err != nil {
		return err
	}
	wa := r.Waste
	rows = rows[:0]
	for _, l := range wa.NoActivity {
		rows = append(rows, []string{"  " + l.ID, l.Course, l.Learner, l.Cloud, hours(l.Running)})
	}
	if err := section(w, "labs that ran while their learner was never active", "  LAB\tCOURSE\tLEARNER\tCLOUD\tRUNNING h", rows); err != nil {
		return err
	}
	rows = rows[:0]
	for _, s := range wa.LongestIdle {
		rows = append(rows, []string{"  " + s.LabID, s.Course, s.Learner, s.Cloud, s.From.UTC().Format("2006-01-02 15:04"),
			s.To.UTC().Format("2006-01-02 15:04"), hours(s.Hours)})
	}
	if err := section(w, "the longest stretches a lab ran while its learner was not active", "  LAB\tCOURSE\tLEARNER\tCLOUD\tFROM\tTO\tHOURS", rows); err != nil {
		return err
	}
	rows = rows[:0]
	for _, f := range wa.FailedSuspends {
		rows = append(rows, []string{"  " + f.LabID, f.Course, f.Cloud, strconv.Itoa(f.Count), f.Last.UTC().Format("2006-01-02 15:04"), f.LastError})
	}
	if err := section(w, "labs a suspend failed on (they kept running)", "  LAB\tCOURSE\tCLOUD\tFAILURES\tLAST\tLAST ERROR", rows); err != nil {
		return err
	}
	if len(r.Notes) > 0 {
		fmt.Fprintf(w, "\nnotes (%d): where the history was incomplete or out of order\n", len(r.Notes))
		for _, n := range r.Notes[:min(notesShown, len(r.Notes))] {
			fmt.Fprintln(w, "  "+n)
		}
		if len(r.Notes) > notesShown {
			fmt.Fprintf(w, "  ... and %d more (--output json lists them all)\n", len(r.Notes)-notesShown)
		}
	}
	return nil
}

// section prints a list of waste, if it has rows.
func section(w io.Writer, title, header string, rows [][]string) error {
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nwaste: "+title)
	return table(w, header, rows)
}

func writeCostCSV(w io.Writer, r cost.Report) error {
	cw := csv.NewWriter(w)
	rec := func(g cost.Group) []string {
		ratio := ""
		if g.BilledPerUsed != nil {
			ratio = strconv.FormatFloat(*g.BilledPerUsed, 'f', 4, 64)
		}
		f := func(h float64) string { return strconv.FormatFloat(h, 'f', 4, 64) }
		return []string{g.Key, strconv.Itoa(g.Labs), f(g.Existed), f(g.Running), f(g.Suspended), f(g.Billed), f(g.Used), ratio, f(g.IdleRunning)}
	}
	_ = cw.Write([]string{string(r.By), "labs", "existed_hours", "running_hours", "suspended_hours", "billed_hours", "used_hours",
		"billed_per_used", "idle_running_hours"})
	for _, g := range r.Groups {
		_ = cw.Write(rec(g))
	}
	_ = cw.Write(rec(r.Total))
	cw.Flush()
	return cw.Error()
}
