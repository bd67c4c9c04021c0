package metrics

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/scheduler"
)

// The alerting rules shipped in prometheus/ pass `promtool check rules` and their unit tests
// (`promtool test rules`), with Debian's prometheus package (installed if missing).
func TestAlertRules(t *testing.T) {
	if testing.Short() {
		t.Skip("installs Debian's prometheus for promtool: not with -short")
	}
	if err := apt.Ensure(t.Context(), os.Stderr, "prometheus"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.CommandContext(t.Context(), "promtool", args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Every labplane metric the alerting rules use is one serve exports: a renamed metric fails
// here, not in an operator's silent Prometheus.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	m := New()
	m.ObserveCloud("a", "suspend", time.Second, nil)
	m.CountReap(reaper.Result{Plan: reaper.Plan{At: time.Now(), Listed: []string{"a"}}})
	m.ObserveJob("suspend-idle:a", time.Second, nil)
	m.ObserveHTTP("/v1/labs", "POST", 201, time.Millisecond)
	m.LabsBy(func(context.Context) (map[[2]string]int, error) { return map[[2]string]int{{"a", "active"}: 1}, nil })
	m.OverdueBy(func(context.Context) (map[string]int, error) { return map[string]int{"a": 1}, nil })
	m.PromotionsBy(func(context.Context) (map[[2]string]int, error) {
		return map[[2]string]int{{"production", "failed"}: 1}, nil
	})
	m.JobsBy(func() []scheduler.JobState { return []scheduler.JobState{{Job: "reap:a"}} })
	m.BoundsBy(func() map[string]int { return map[string]int{"a": 4} })
	_, families := scrape(t, m.Handler(), t.Context())
	exported := map[string]bool{}
	for name, mf := range families {
		exported[name] = true
		if mf.GetType().String() == "HISTOGRAM" {
			exported[name+"_count"], exported[name+"_sum"], exported[name+"_bucket"] = true, true, true
		}
	}
	used := regexp.MustCompile(`\blabplane_[a-z_]+`).FindAllString(string(rules), -1)
	slices.Sort(used)
	used = slices.Compact(used)
	if len(used) < 6 {
		t.Fatalf("the rules use %d labplane metrics: %v", len(used), used)
	}
	for _, name := range used {
		if !exported[name] {
			t.Errorf("alerts.yml uses %s, which serve does not export", name)
		}
	}
}
