package cli_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/dev/heattest"
	"github.com/labplane/labplane/internal/dev/servetest"
	"github.com/labplane/labplane/internal/dev/syncbuffer"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/store"
)

// The Grafana dashboard shipped in internal/metrics/grafana, against a real Prometheus
// (Debian's) scraping a real serve whose lab is launched, used, left idle and suspended, with a
// promotion on record: every panel's every query returns data, with the cloud variable at All,
// as Grafana sends it.
func TestDashboardQueriesReturnData(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Debian's prometheus: not with -short")
	}
	if err := apt.Ensure(t.Context(), os.Stderr, "prometheus"); err != nil {
		t.Fatal(err)
	}
	var dashboard struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	raw, err := os.ReadFile("../metrics/grafana/labplane.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dashboard); err != nil || len(dashboard.Panels) == 0 {
		t.Fatalf("the dashboard: %v, %d panels", err, len(dashboard.Panels))
	}

	// serve, with one cloud and a lab that goes through launch, use, idleness and suspend
	heat := newFaultHeat(t)
	useCloudsYAML(t, map[string]*heattest.Server{"a": heat})
	addr := servetest.FreeAddr(t)
	s := newSite(t, fmt.Sprintf(`site: dashboard
store: {dsn: labplane.db}
clouds:
  - {name: a, cloud: a}
templates: {lab: lab.yaml}
policy: {idle_suspend_after: 2s}
scheduler: {suspend_every: 1s, reap_every: 1s, reconcile_every: 1s, launch_timeouts_every: 1s}
serve: {listen: %s, shutdown_grace: 2s}
`, addr))
	if err := os.WriteFile(filepath.Join(s.dir, "lab.yaml"), []byte(faultTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	// a promotion on record, as `labplane promote` leaves one: rolled back
	st, err := store.Open(t.Context(), store.SQLite, filepath.Join(s.dir, "labplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	err = st.SavePromotion(t.Context(), platform.Promotion{ID: "0194-promo", From: "staging", To: "production", Release: "r2",
		Previous: "r1", Actor: "ci", StartedAt: time.Now(), FinishedAt: time.Now(), Status: platform.RolledBack})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, s, addr)

	// Prometheus scraping it every second
	promAddr := servetest.FreeAddr(t)
	dir := t.TempDir()
	config := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: labplane\n    static_configs: [{targets: [%q]}]\n", addr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr, "--log.level=warn")
	var promLog syncbuffer.Buffer
	prom.Stdout, prom.Stderr = &promLog, &promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prom.Process.Kill()
		_ = prom.Wait()
	})
	query := func(expr string) (int, error) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(expr))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var r struct {
			Status, Error string
			Data          struct{ Result []json.RawMessage }
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return 0, err
		}
		if r.Status != "success" {
			return 0, fmt.Errorf("%s: %s", r.Status, r.Error)
		}
		return len(r.Data.Result), nil
	}

	id := d.launch("ann", "os101")
	d.waitFor("the lab to be active", 20*time.Second, func() bool { return d.status(id) == "active" })
	hb := startHeartbeats(d, id, 200*time.Millisecond)
	d.waitFor("Prometheus to scrape serve", 30*time.Second, func() bool {
		n, err := query(`up{job="labplane"} == 1`)
		return err == nil && n == 1
	})
	d.waitFor("a few scrapes with the lab in use", 30*time.Second, func() bool {
		n, err := query(`count_over_time(labplane_lab_hours_total{state="used"}[1m]) >= 3`)
		return err == nil && n > 0
	})
	hb.end()
	d.waitFor("the idle lab to be suspended", 30*time.Second, func() bool { return d.status(id) == "suspended" })
	d.waitFor("a scrape after the suspend", 30*time.Second, func() bool {
		n, err := query(`labplane_actions_total{kind="suspend",result="done"} > 0`)
		return err == nil && n > 0
	})

	// every counter the panels rate has two samples in its window a scrape or two after it
	// first appears: wait for that, then name each panel that still has nothing
	var missing []string
	check := func() bool {
		missing = missing[:0]
		for _, p := range dashboard.Panels {
			for _, target := range p.Targets {
				expr := strings.ReplaceAll(target.Expr, "$cloud", ".*") // the variable at All
				if n, err := query(expr); err != nil || n == 0 {
					missing = append(missing, fmt.Sprintf("panel %q: %s: %d series, %v", p.Title, expr, n, err))
				}
			}
		}
		return len(missing) == 0
	}
	pollUntil(t.Context(), 20*time.Second, check)
	for _, m := range missing {
		t.Error(m)
	}
	if t.Failed() {
		t.Logf("prometheus:\n%s", promLog.String())
	}
}
