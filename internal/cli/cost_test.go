package cli_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

// costConfig has two clouds: alpha bills a suspended lab at half the price of a running one.
const costConfig = `store:
  dsn: labplane.db
clouds:
  - name: alpha
    cloud: nowhere
    suspended_cost_factor: 0.5
  - name: beta
    cloud: nowhere
templates:
  lab: lab.yaml
`

// history writes a lab's life to the registry: created at its first step, then each step
// (minutes after t0) moves it to a status with an event.
type step struct {
	min    int
	action string
	to     labs.Status
	err    string
}

func history(t *testing.T, st *store.Store, l labs.Lab, steps ...step) {
	t.Helper()
	l.Template, l.StackName, l.Status, l.CreatedAt = "lab", "lab-"+l.ID, steps[0].to, minutes(steps[0].min)
	cur, err := st.CreateLab(context.Background(), l, labs.Event{At: l.CreatedAt, Actor: "test", Action: steps[0].action, To: steps[0].to})
	if err != nil {
		t.Fatal(err)
	}
	advance(t, st, cur.ID, steps[1:]...)
}

// advance takes a lab through more steps.
func advance(t *testing.T, st *store.Store, id string, steps ...step) {
	t.Helper()
	ctx := context.Background()
	cur, err := st.GetLab(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		from := cur.Status
		cur.Status = s.to
		if s.to == labs.Deleted {
			cur.DeletedAt = minutes(s.min)
		}
		if cur, err = st.UpdateLab(ctx, cur, labs.Event{At: minutes(s.min), Actor: "test", Action: s.action, From: from, To: s.to, Error: s.err}); err != nil {
			t.Fatal(err)
		}
	}
}

func minutes(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

// costSite: ann's lab on alpha ran an hour (used 54 minutes of it), then was suspended for
// four, then deleted; bob's on beta ran all ten hours without a heartbeat, a suspend failing.
func costSite(t *testing.T) *site {
	s := newSite(t, costConfig)
	st := s.open()
	history(t, st, labs.Lab{ID: "ann1", Learner: "ann", Course: "os101", Cloud: "alpha"},
		step{0, "launch", labs.Launching, ""}, step{6, "launched", labs.Active, ""})
	for m := 6; m <= 60; m++ {
		if _, err := st.Heartbeat(context.Background(), "ann1", minutes(m)); err != nil {
			t.Fatal(err)
		}
	}
	advance(t, st, "ann1", step{62, "suspend", labs.Suspended, ""}, step{300, "delete", labs.Deleted, ""})
	history(t, st, labs.Lab{ID: "bob1", Learner: "bob", Course: "k8s", Cloud: "beta"},
		step{0, "launch", labs.Launching, ""}, step{60, "launched", labs.Active, ""},
		step{120, "suspend", labs.Failed, "SUSPEND_FAILED: injected"})
	return s
}

func within(t0h float64) string {
	return t0.Add(time.Duration(t0h * float64(time.Hour))).Format(time.RFC3339)
}

func TestCostReport(t *testing.T) {
	s := costSite(t)
	period := []string{"--since", within(0), "--until", within(10)}

	res := s.run(append([]string{"cost", "report", "--output", "json"}, period...)...)
	if res.code != 0 {
		t.Fatalf("json: %s", res)
	}
	var r struct {
		Groups []map[string]any
		Waste  struct {
			NoActivity []struct{ ID string } `json:"running_without_activity"`
			Failed     []struct {
				LabID string `json:"lab_id"`
				Count int
			} `json:"failed_suspends"`
		}
	}
	if err := json.Unmarshal([]byte(res.out), &r); err != nil {
		t.Fatalf("%v\n%s", err, res.out)
	}
	groups := map[string]map[string]float64{} // key -> field -> number
	for _, g := range r.Groups {
		m := map[string]float64{}
		for k, v := range g {
			if f, ok := v.(float64); ok {
				m[k] = f
			}
		}
		groups[g["key"].(string)] = m
	}
	want := map[string]map[string]float64{
		// ann: running 0-62 min, suspended 62-300 min at half price, used 6-60 min
		"os101": {"labs": 1, "existed_hours": 5, "running_hours": 62.0 / 60, "suspended_hours": 238.0 / 60,
			"billed_hours": 62.0/60 + 0.5*238/60, "used_hours": 0.9, "idle_running_hours": 8.0 / 60},
		// bob: running (launching, active, then failed) all ten hours, never used
		"k8s": {"labs": 1, "existed_hours": 10, "running_hours": 10, "suspended_hours": 0, "billed_hours": 10, "used_hours": 0, "idle_running_hours": 10},
	}
	for key, fields := range want {
		for f, w := range fields {
			if got := groups[key][f]; math.Abs(got-w) > 1e-9 {
				t.Errorf("%s %s = %v, want %v", key, f, got, w)
			}
		}
	}
	if ratio := groups["os101"]["billed_per_used"]; math.Abs(ratio-(62.0/60+0.5*238/60)/0.9) > 1e-9 {
		t.Errorf("os101 billed per used = %v", ratio)
	}
	if _, ok := groups["k8s"]["billed_per_used"]; ok {
		t.Error("k8s was never used: no ratio")
	}
	if len(r.Waste.NoActivity) != 1 || r.Waste.NoActivity[0].ID != "bob1" || len(r.Waste.Failed) != 1 || r.Waste.Failed[0].Count != 1 {
		t.Errorf("waste = %+v", r.Waste)
	}

	// text, by cloud, with the chart
	chart := filepath.Join(s.dir, "cost.svg")
	res = s.run(append([]string{"cost", "report", "--by", "cloud", "--chart", chart}, period...)...)
	if res.code != 0 {
		t.Fatalf("text: %s", res)
	}
	for _, w := range []string{"by cloud", "CLOUD", "alpha", "beta", "TOTAL", "3.0", // ann's billed: 1.03 + 0.5 x 3.97
		"labs that ran while their learner was never active", "bob1", "longest stretches", "a suspend failed", "SUSPEND_FAILED", "chart: " + chart} {
		if !strings.Contains(res.out, w) {
			t.Errorf("the report does not say %q:\n%s", w, res.out)
		}
	}
	svg, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	if err := wellFormed(svg); err != nil || !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("os101")) {
		t.Errorf("the chart is not an SVG with the courses (%v):\n%s", err, svg)
	}

	// csv, by learner
	res = s.run(append([]string{"cost", "report", "--by", "learner", "-o", "csv"}, period...)...)
	if res.code != 0 {
		t.Fatalf("csv: %s", res)
	}
	recs, err := csv.NewReader(strings.NewReader(res.out)).ReadAll()
	if err != nil || len(recs) != 4 || strings.Join(recs[0], ",") !=
		"learner,labs,existed_hours,running_hours,suspended_hours,billed_hours,used_hours,billed_per_used,idle_running_hours" ||
		recs[1][0] != "ann" || recs[2][0] != "bob" || recs[3][0] != "total" || recs[3][2] != "15.0000" || recs[2][7] != "" {
		t.Errorf("csv (%v):\n%s", err, res.out)
	}
}

func wellFormed(doc []byte) error {
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		if _, err := d.Token(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func TestCostAndSimBadFlagsExit2(t *testing.T) {
	s := costSite(t)
	existing := filepath.Join(s.dir, "taken.db")
	if err := os.WriteFile(existing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(s.dir, "never.png")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"cost", "report", "--by", "weekday"}, `--by "weekday": use course, learner, cloud or lab`},
		{[]string{"cost", "report", "--output", "yaml"}, `--output "yaml": use text, json or csv`},
		{[]string{"cost", "report", "--since", "last tuesday"}, `--since "last tuesday": use a date (2026-11-02)`},
		{[]string{"cost", "report", "--until", "-5h"}, `--until "-5h"`},
		{[]string{"cost", "report", "--since", "2026-11-03", "--until", "2026-11-02"}, "is not before --until"},
		{[]string{"cost", "report", "--chart", chart}, "the chart is an SVG"},
		{[]string{"cost", "report", "--db", filepath.Join(s.dir, "nope.db")}, "no such file"},
		{[]string{"cost", "bogus"}, `"bogus"`},
		{[]string{"sim", "--trace", "rush"}, `--trace "rush": use one of [steady class]`},
		{[]string{"sim", "--policy", "never"}, `--policy "never": use one of [labplane hastexo always-on labplane-idle15m labplane-idle15m-leave80 labplane-pool]`},
		{[]string{"sim", "--output", "csv"}, `--output "csv"`},
		{[]string{"sim", "--db", existing}, "exists"},
		{[]string{"sim", "--stack", "vms"}, `--stack "vms": use lab or servers`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			if res := s.run(tt.args...); res.code != 2 || !strings.Contains(res.err, tt.want) {
				t.Fatalf("want exit 2 and %q on stderr, got %s", tt.want, res)
			}
		})
	}
	if _, err := os.Stat(chart); err == nil {
		t.Error("a refused report wrote a chart")
	}
	for _, args := range [][]string{{"cost", "report", "--help"}, {"sim", "--help"}} {
		res := s.run(args...)
		if res.code != 0 || !strings.Contains(res.out, "--db") || !strings.Contains(res.out, "--output") {
			t.Errorf("%v: %s", args, res)
		}
	}
}

// TestCostReportOnSimulation: the report over the registry `labplane sim` leaves behind
// agrees with the simulation's own numbers.
func TestCostReportOnSimulation(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a class's month (some 15 CPU-seconds): not with -short")
	}
	db := filepath.Join(t.TempDir(), "sim.db")
	res := runCLI("", false, "sim", "--trace", "class", "--policy", "labplane", "--db", db, "--output", "json")
	if res.code != 0 {
		t.Fatalf("sim: %s", res)
	}
	var rows []struct {
		Policy, Trace string
		Billed        float64 `json:"billed_hours"`
		Used          float64 `json:"used_hours"`
		Ratio         float64
		ReportBilled  float64 `json:"report_billed_hours"`
	}
	if err := json.Unmarshal([]byte(res.out), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("sim --output json: %v\n%s", err, res.out)
	}
	sim := rows[0]
	if sim.Policy != "labplane" || sim.Trace != "class" || sim.Ratio > 1.05 || math.Abs(sim.Ratio-sim.Billed/sim.Used) > 1e-9 {
		t.Errorf("sim row = %+v", sim)
	}

	// no configuration needed with --db; the default period, up to now, covers the simulated month
	res = runCLI("", false, "--config", filepath.Join(t.TempDir(), "none.yaml"), "cost", "report", "--db", db, "--output", "json")
	if res.code != 0 {
		t.Fatalf("cost report: %s", res)
	}
	var r struct {
		Groups []struct {
			Key    string
			Labs   int
			Billed float64 `json:"billed_hours"`
			Used   float64 `json:"used_hours"`
		}
		Notes []string
	}
	if err := json.Unmarshal([]byte(res.out), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Groups) != 1 || r.Groups[0].Key != "class-labplane" || r.Groups[0].Labs != 300 ||
		math.Abs(r.Groups[0].Used-sim.Used) > 1e-6 || math.Abs(r.Groups[0].Billed-sim.ReportBilled) > 1e-6 || len(r.Notes) != 0 {
		t.Errorf("the report over the simulation's registry: %+v; the simulation: %+v", r, sim)
	}
	res = runCLI("", false, "cost", "report", "--db", db, "--by", "cloud")
	if res.code != 0 || !strings.Contains(res.out, "labplane") || !strings.Contains(res.out, "300") {
		t.Errorf("text by cloud: %s", res)
	}
}
