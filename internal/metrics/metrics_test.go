package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/scheduler"
)

// scrape GETs the handler and returns the body and its parsed families.
func scrape(t *testing.T, h http.Handler, ctx context.Context) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/metrics", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
	body := rec.Body.String()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	return body, mfs
}

// series finds the series of family name with exactly the given labels.
func series(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no series %s%v", name, labels)
	return nil
}

func bounds(h *dto.Histogram) []float64 {
	var b []float64
	for _, bk := range h.GetBucket() {
		if !math.IsInf(bk.GetUpperBound(), +1) { // the text format lists +Inf
			b = append(b, bk.GetUpperBound())
		}
	}
	return b
}

func TestCloudOperationsJobsAndHTTPRequestsAreScraped(t *testing.T) {
	m := New()
	m.ObserveCloud("east", "create", 95*time.Second, nil)
	m.ObserveCloud("east", "create", 30*time.Second, nil)
	m.ObserveCloud("east", "delete", 400*time.Millisecond, errors.New("409 conflict"))
	m.ObserveJob("reap", 3*time.Second, nil)
	m.ObserveJob("reap", time.Second, errors.New("cloud east unreachable"))
	m.ObserveHTTP("/v1/labs/{id}", http.MethodGet, 200, 2*time.Millisecond)
	m.ObserveHTTP("/v1/labs/{id}", http.MethodGet, 404, time.Millisecond)

	_, mfs := scrape(t, m.Handler(), context.Background())

	h := series(t, mfs, "labplane_cloud_operation_seconds", map[string]string{"cloud": "east", "op": "create", "result": "done"}).GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 125 {
		t.Errorf("create: count %d sum %g, want 2 and 125", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, bk := range h.GetBucket() {
		want := uint64(0)
		if bk.GetUpperBound() >= 120 {
			want = 2
		} else if bk.GetUpperBound() >= 30 {
			want = 1
		}
		if bk.GetCumulativeCount() != want {
			t.Errorf("create bucket le=%g: %d, want %d", bk.GetUpperBound(), bk.GetCumulativeCount(), want)
		}
	}
	if b := bounds(h); b[0] != 0.1 || b[len(b)-1] != 600 {
		t.Errorf("cloud buckets %v, want 0.1 s to 10 min", b)
	}
	if h := series(t, mfs, "labplane_cloud_operation_seconds", map[string]string{"cloud": "east", "op": "delete", "result": "failed"}).GetHistogram(); h.GetSampleCount() != 1 {
		t.Errorf("failed delete: count %d", h.GetSampleCount())
	}

	for result, want := range map[string]float64{"done": 1, "failed": 1} {
		if c := series(t, mfs, "labplane_scheduler_job_runs_total", map[string]string{"job": "reap", "result": result}).GetCounter(); c.GetValue() != want {
			t.Errorf("job runs %s: %g", result, c.GetValue())
		}
	}
	h = series(t, mfs, "labplane_scheduler_job_seconds", map[string]string{"job": "reap"}).GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 4 {
		t.Errorf("job seconds: count %d sum %g", h.GetSampleCount(), h.GetSampleSum())
	}
	if b := bounds(h); b[0] != 0.1 || b[len(b)-1] != 1800 {
		t.Errorf("job buckets %v, want 0.1 s to 30 min", b)
	}

	h = series(t, mfs, "labplane_http_request_seconds", map[string]string{"route": "/v1/labs/{id}", "method": "GET", "code": "404"}).GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 0.001 {
		t.Errorf("http 404: count %d sum %g", h.GetSampleCount(), h.GetSampleSum())
	}
	if b := bounds(h); b[0] != 0.0005 || b[len(b)-1] != 5 {
		t.Errorf("http buckets %v, want 0.5 ms to 5 s", b)
	}

	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
}

func TestCountReapCountsEveryOutcome(t *testing.T) {
	m := New()
	a := func(k policy.Kind) policy.Action { return policy.Action{Kind: k, Lab: labs.Lab{ID: "l1"}} }
	m.CountReap(reaper.Result{Outcomes: []reaper.Outcome{
		{Action: a(policy.Suspend), Done: true},
		{Action: a(policy.Suspend), Done: true},
		{Action: a(policy.Suspend)}, // a heartbeat arrived: skipped
		{Action: a(policy.Delete), Error: "heat: 503"},
		{Action: a(policy.Delete), Done: true, Error: "audit: database is locked"}, // an error wins
		{Action: a(policy.DeleteOrphan), Done: true},
	}})
	m.CountAction("flag", Done)

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	want := `
# HELP labplane_actions_total Reaper actions by kind and result (done, failed, or skipped when a fresh read no longer called for it).
# TYPE labplane_actions_total counter
labplane_actions_total{kind="delete",result="failed"} 2
labplane_actions_total{kind="delete-orphan",result="done"} 1
labplane_actions_total{kind="flag",result="done"} 1
labplane_actions_total{kind="suspend",result="done"} 2
labplane_actions_total{kind="suspend",result="skipped"} 1
`
	if err := testutil.ScrapeAndCompare(srv.URL, strings.NewReader(want), "labplane_actions_total"); err != nil {
		t.Error(err)
	}
}

type ctxKey struct{}

func TestLabsGaugeIsCountedAtEachScrapeWithItsContext(t *testing.T) {
	m := New()
	h := m.Handler()

	if body, _ := scrape(t, h, context.Background()); strings.Contains(body, "labplane_labs") {
		t.Error("labplane_labs before LabsBy")
	}

	var calls int
	counts := map[[2]string]int{{"east", "running"}: 3, {"east", "suspended"}: 2, {"west", "running"}: 1}
	var countErr error
	m.LabsBy(func(ctx context.Context) (map[[2]string]int, error) {
		calls++
		if ctx.Value(ctxKey{}) != "scrape" {
			t.Error("count did not get the scrape's context")
		}
		return counts, countErr
	})
	ctx := context.WithValue(context.Background(), ctxKey{}, "scrape")

	_, mfs := scrape(t, h, ctx)
	if mfs["labplane_labs"].GetType() != dto.MetricType_GAUGE {
		t.Errorf("labplane_labs is a %s", mfs["labplane_labs"].GetType())
	}
	for k, n := range counts {
		if g := series(t, mfs, "labplane_labs", map[string]string{"cloud": k[0], "status": k[1]}).GetGauge(); g.GetValue() != float64(n) {
			t.Errorf("labs %v: %g, want %d", k, g.GetValue(), n)
		}
	}

	// The next scrape counts again.
	counts = map[[2]string]int{{"east", "running"}: 4}
	_, mfs = scrape(t, h, ctx)
	if n := len(mfs["labplane_labs"].GetMetric()); n != 1 {
		t.Errorf("%d labs series, want 1", n)
	}
	if g := series(t, mfs, "labplane_labs", map[string]string{"cloud": "east", "status": "running"}).GetGauge(); g.GetValue() != 4 {
		t.Errorf("labs east running: %g, want 4", g.GetValue())
	}
	if calls != 2 {
		t.Errorf("count called %d times for 2 scrapes", calls)
	}

	// A failed count: the scrape still serves everything else, without labplane_labs, and
	// counts a gathering error.
	countErr = errors.New("database is locked")
	m.ObserveJob("reap", time.Second, nil)
	body, mfs := scrape(t, h, ctx)
	if _, ok := mfs["labplane_labs"]; ok {
		t.Error("labplane_labs served from a failed count")
	}
	if _, ok := mfs["labplane_scheduler_job_runs_total"]; !ok {
		t.Error("a failed lab count took the other metrics down")
	}
	// promhttp counts the error after gathering: the next scrape shows it.
	body, mfs = scrape(t, h, ctx)
	if c := series(t, mfs, "promhttp_metric_handler_errors_total", map[string]string{"cause": "gathering"}).GetCounter(); c.GetValue() != 1 {
		t.Errorf("gathering errors %g, want 1\n%s", c.GetValue(), body)
	}
}

// The jobs' runs in progress are read from the scheduler at each scrape: how long each has
// run, and whether it is stuck; a job with no run shows 0 for both.
func TestJobRunsInProgressAreReadAtEachScrape(t *testing.T) {
	m := New()
	h := m.Handler()
	if body, _ := scrape(t, h, context.Background()); strings.Contains(body, "labplane_scheduler_job_stuck") {
		t.Error("job gauges before JobsBy")
	}
	states := []scheduler.JobState{
		{Job: "suspend-idle", Timeout: 10 * time.Minute},
		{Job: "reap", Running: 11 * time.Minute, Timeout: 10 * time.Minute, Stuck: true},
	}
	m.JobsBy(func() []scheduler.JobState { return states })
	_, mfs := scrape(t, h, context.Background())
	for _, tc := range []struct {
		job            string
		running, stuck float64
	}{{"suspend-idle", 0, 0}, {"reap", 660, 1}} {
		job := map[string]string{"job": tc.job}
		if g := series(t, mfs, "labplane_scheduler_job_running_seconds", job).GetGauge(); g.GetValue() != tc.running {
			t.Errorf("%s running %g s, want %g", tc.job, g.GetValue(), tc.running)
		}
		if g := series(t, mfs, "labplane_scheduler_job_stuck", job).GetGauge(); g.GetValue() != tc.stuck {
			t.Errorf("%s stuck %g, want %g", tc.job, g.GetValue(), tc.stuck)
		}
	}

	// the stuck run returned: the next scrape says so
	states = []scheduler.JobState{{Job: "suspend-idle"}, {Job: "reap"}}
	_, mfs = scrape(t, h, context.Background())
	if g := series(t, mfs, "labplane_scheduler_job_stuck", map[string]string{"job": "reap"}).GetGauge(); g.GetValue() != 0 {
		t.Errorf("reap still stuck after its run returned: %g", g.GetValue())
	}
}

func TestLabsCountErrorIsAGatheringError(t *testing.T) {
	m := New()
	m.LabsBy(func(context.Context) (map[[2]string]int, error) { return nil, errors.New("database is locked") })
	c := &countCollector[[2]string]{ctx: context.Background(), desc: m.labsDesc, count: m.count.get(), labels: func(k [2]string) []string { return k[:] }}
	_, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain)
	if err == nil || !strings.Contains(err.Error(), "count labs: database is locked") {
		t.Errorf("collect = %v, want the count's error", err)
	}
}

func TestInstancesDoNotShareRegistries(t *testing.T) {
	a, b := New(), New() // the global registry would panic on the second
	a.CountAction("suspend", Done)
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(body), "labplane_actions_total{") {
		t.Error("b serves a's action")
	}
}

func TestMetricNamesPassLint(t *testing.T) {
	m := New()
	m.ObserveCloud("east", "create", time.Second, nil)
	m.CountAction("suspend", Done)
	m.ObserveJob("reap", time.Second, nil)
	m.ObserveHTTP("/healthz", http.MethodGet, 200, time.Millisecond)
	m.LabsBy(func(context.Context) (map[[2]string]int, error) {
		return map[[2]string]int{{"east", "running"}: 1}, nil
	})
	m.JobsBy(func() []scheduler.JobState { return []scheduler.JobState{{Job: "reap", Running: time.Second}} })
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	labsProblems, err := testutil.CollectAndLint(&countCollector[[2]string]{ctx: context.Background(), desc: m.labsDesc, count: m.count.get(), labels: func(k [2]string) []string { return k[:] }})
	if err != nil {
		t.Fatal(err)
	}
	problems = append(problems, labsProblems...)
	if len(problems) == 0 && testutil.CollectAndCount(&countCollector[[2]string]{ctx: context.Background(), desc: m.labsDesc, count: m.count.get(), labels: func(k [2]string) []string { return k[:] }}) != 1 {
		t.Error("the labs collector collected nothing to lint")
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "labplane_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

// Each cloud's bound is read at each scrape: an adaptive one moves between scrapes.
func TestCloudBoundsAreReadAtEachScrape(t *testing.T) {
	m := New()
	h := m.Handler()
	if body, _ := scrape(t, h, context.Background()); strings.Contains(body, "labplane_cloud_max_in_flight") {
		t.Error("bound gauges before BoundsBy")
	}
	bounds := map[string]int{"private": 4, "public": 2}
	m.BoundsBy(func() map[string]int { return bounds })
	for _, want := range []map[string]int{{"private": 4, "public": 2}, {"private": 4, "public": 9}} {
		bounds = want
		_, mfs := scrape(t, h, context.Background())
		for cloud, n := range want {
			if g := series(t, mfs, "labplane_cloud_max_in_flight", map[string]string{"cloud": cloud}).GetGauge(); g.GetValue() != float64(n) {
				t.Errorf("%s's bound %g, want %d", cloud, g.GetValue(), n)
			}
		}
	}
}

// A client's invented methods fold into one value of the method label: 500 of them make one
// series, not 500 (the route label is the API's pattern, "other" for no route).
func TestHTTPMethodLabelIsBounded(t *testing.T) {
	m := New()
	for i := range 500 {
		m.ObserveHTTP("other", fmt.Sprintf("M%03d", i), 404, time.Millisecond)
	}
	m.ObserveHTTP("other", http.MethodPost, 404, time.Millisecond)
	_, mfs := scrape(t, m.Handler(), context.Background())
	methods := map[string]uint64{}
	for _, s := range mfs["labplane_http_request_seconds"].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "method" {
				methods[l.GetValue()] += s.GetHistogram().GetSampleCount()
			}
		}
	}
	if len(methods) != 2 || methods["other"] != 500 || methods["POST"] != 1 {
		t.Errorf("method label values %v, want other (500) and POST (1)", methods)
	}
}

func TestCloudListedOverdueLabsAndPromotionsAreScraped(t *testing.T) {
	m := New()
	at := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	m.ListedAt("a", at.Add(-time.Hour)) // serve's start
	m.ListedAt("b", at.Add(-time.Hour))
	m.CountReap(reaper.Result{Plan: reaper.Plan{At: at, Listed: []string{"a"}}})
	calls := 0
	m.OverdueBy(func(context.Context) (map[string]int, error) { calls++; return map[string]int{"a": 3}, nil })
	m.PromotionsBy(func(context.Context) (map[[2]string]int, error) {
		return map[[2]string]int{{"production", "rolled_back"}: 1, {"staging", "promoted"}: 1}, nil
	})
	_, mfs := scrape(t, m.Handler(), t.Context())
	if g := series(t, mfs, "labplane_promotion_status", map[string]string{"target": "production", "status": "rolled_back"}); g.GetGauge().GetValue() != 1 {
		t.Errorf("production's latest promotion: %v, want 1", g.GetGauge().GetValue())
	}
	for cloud, want := range map[string]time.Time{"a": at, "b": at.Add(-time.Hour)} {
		if g := series(t, mfs, "labplane_cloud_listed_timestamp_seconds", map[string]string{"cloud": cloud}); g.GetGauge().GetValue() != float64(want.Unix()) {
			t.Errorf("cloud %s listed at %v, want %v", cloud, g.GetGauge().GetValue(), want.Unix())
		}
	}
	if g := series(t, mfs, "labplane_labs_overdue", map[string]string{"cloud": "a"}); g.GetGauge().GetValue() != 3 || calls != 1 {
		t.Errorf("overdue labs on a: %v (counted %d times), want 3, counted once", g.GetGauge().GetValue(), calls)
	}
}
