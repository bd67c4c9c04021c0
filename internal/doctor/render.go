package doctor

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteText prints the report: a block per job (a line per check: ok, MISSING, or note for a
// check that is not required; the fix under each that failed), then a summary line.
func WriteText(w io.Writer, r Report) error {
	b := bufio.NewWriter(w)
	for i, j := range r.Jobs {
		if i > 0 {
			fmt.Fprintln(b)
		}
		state := "not configured"
		if j.Configured {
			state = "configured"
		}
		fmt.Fprintf(b, "%s: %s (%s)\n", j.Job, state, j.Reason)
		width := 0
		for _, c := range j.Checks {
			width = max(width, len(c.Name))
		}
		indent := strings.Repeat(" ", 2+7+2+width+2)
		for _, c := range j.Checks {
			status := "ok"
			switch {
			case !c.OK && c.Required:
				status = "MISSING"
			case !c.OK:
				status = "note"
			}
			fmt.Fprintf(b, "  %-7s  %-*s  %s\n", status, width, c.Name, strings.ReplaceAll(c.Detail, "\n", "\n"+indent))
			if !c.OK && c.Fix != "" {
				fmt.Fprintf(b, "%sfix: %s\n", indent, c.Fix)
			}
		}
	}
	fmt.Fprintln(b)
	fmt.Fprintln(b, summary(r))
	return b.Flush()
}

// summary is the report's last line.
func summary(r Report) string {
	var configured []string
	for _, j := range r.Jobs {
		if j.Configured {
			configured = append(configured, string(j.Job))
		}
	}
	switch {
	case !r.OK:
		return fmt.Sprintf("MISSING something a configured job needs: %s (the fixes are above)", joinJobs(r.Lacking()))
	case len(configured) == 0:
		return "ok: no job is configured here, so nothing is missing (name a job to check it: labplane doctor JOB)"
	}
	return "ok: the configured jobs have what they need: " + strings.Join(configured, ", ")
}
