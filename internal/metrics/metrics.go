// Package metrics is labplane's Prometheus instrumentation: cloud operation latency, reaper
// actions, scheduler job runs (and the runs in progress, stuck ones told apart), HTTP
// requests, the clouds' bounds on work in flight, and the labs by cloud and status counted at
// scrape time. Everything is registered on the Metrics' own registry (with the Go and process
// collectors), never on the global one, so tests and several instances do not collide.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/scheduler"
)

// Results, the values of the result labels.
const (
	Done    = "done"
	Failed  = "failed"
	Skipped = "skipped"
)

// Buckets, in seconds.
var (
	// CloudBuckets: a Heat operation, from a quick delete (0.1 s) to a slow create (10 min).
	CloudBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600}
	// HTTPBuckets: an API request, 0.5 ms to 5 s.
	HTTPBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	// JobBuckets: a scheduler job run, 0.1 s to 30 min (a reaper pass waits for Heat).
	JobBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800}
)

// Metrics holds labplane's metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	cloudOps *prometheus.HistogramVec
	actions  *prometheus.CounterVec
	jobRuns  *prometheus.CounterVec
	jobTime  *prometheus.HistogramVec
	httpReqs *prometheus.HistogramVec

	listedAt *prometheus.GaugeVec
	labHours *prometheus.CounterVec

	labsDesc    *prometheus.Desc
	overdueDesc *prometheus.Desc
	promoDesc   *prometheus.Desc
	// what is read at scrape time, set by serve once it has it
	count      source[func(ctx context.Context) (map[[2]string]int, error)]
	overdue    source[func(ctx context.Context) (map[string]int, error)]
	promotions source[func(ctx context.Context) (map[[2]string]int, error)]
	jobs       source[func() []scheduler.JobState]
	bounds     source[func() map[string]int]
}

// source is a function Metrics reads at scrape time: nil until set; a later set replaces it.
type source[F any] struct{ p atomic.Pointer[F] }

func (s *source[F]) set(f F) { s.p.Store(&f) }

func (s *source[F]) get() (f F) {
	if p := s.p.Load(); p != nil {
		return *p
	}
	return f
}

// New returns Metrics on a registry of their own, with the Go and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		cloudOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "labplane_cloud_operation_seconds",
			Help:    "Time a cloud operation (create, suspend, resume, delete) took, its wait for Heat included.",
			Buckets: CloudBuckets,
		}, []string{"cloud", "op", "result"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labplane_actions_total",
			Help: "Reaper actions by kind and result (done, failed, or skipped when a fresh read no longer called for it).",
		}, []string{"kind", "result"}),
		jobRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labplane_scheduler_job_runs_total",
			Help: "Scheduler job runs on this replica by job and result (done, failed).",
		}, []string{"job", "result"}),
		jobTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "labplane_scheduler_job_seconds",
			Help:    "Time a scheduler job run took on this replica.",
			Buckets: JobBuckets,
		}, []string{"job"}),
		httpReqs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "labplane_http_request_seconds",
			Help:    "Time an HTTP request took, by route pattern, method and status code.",
			Buckets: HTTPBuckets,
		}, []string{"route", "method", "code"}),
		listedAt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labplane_cloud_listed_timestamp_seconds",
			Help: "When a reaper pass of this replica last listed the cloud's stacks (Unix time; the replica's start until one has): a cloud not listed for minutes is down, or its jobs run nowhere.",
		}, []string{"cloud"}),
		labHours: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labplane_lab_hours_total",
			Help: "Lab hours metered by this replica, by cloud, course and state: running and suspended (as the cloud bills them), used (a learner active in the lab). Summed over the replicas, the whole.",
		}, []string{"cloud", "course", "state"}),
		labsDesc: prometheus.NewDesc("labplane_labs",
			"Labs in the registry by cloud and status, counted at scrape time.",
			[]string{"cloud", "status"}, nil),
		overdueDesc: prometheus.NewDesc("labplane_labs_overdue",
			"Running labs the policy would have suspended a minute ago already (idle past their course's idle_suspend_after, or left leave_grace ago, by over a minute), by cloud, counted at scrape time: the suspend backlog.",
			[]string{"cloud"}, nil),
		promoDesc: prometheus.NewDesc("labplane_promotion_status",
			"The latest promotion to each target environment: 1 for its status (running, promoted, rolled_back, failed, interrupted), read from the registry at scrape time.",
			[]string{"target", "status"}, nil),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.cloudOps, m.actions, m.jobRuns, m.jobTime, m.httpReqs, m.listedAt, m.labHours,
		&jobsCollector{m: m,
			running: prometheus.NewDesc("labplane_scheduler_job_running_seconds",
				"How long the job's run in progress on this replica has gone on; 0 when none is.",
				[]string{"job"}, nil),
			stuck: prometheus.NewDesc("labplane_scheduler_job_stuck",
				"1 when the job's run on this replica has gone on past its timeout and the grace to return: it ignores its deadline and holds its lock (the reaper's: every suspend waits).",
				[]string{"job"}, nil)},
		&boundsCollector{m: m, desc: prometheus.NewDesc("labplane_cloud_max_in_flight",
			"The bound on the operations in flight on the cloud now, as this replica sees it: its max_in_flight, or where that is auto, the bound it has learnt.",
			[]string{"cloud"}, nil)},
	)
	return m
}

// Handler serves the metrics in the Prometheus text format. A scrape whose lab count fails
// is still served with every other metric (labplane_labs is absent from it); the error is
// logged and counted in promhttp_metric_handler_errors_total{cause="gathering"}.
func (m *Metrics) Handler() http.Handler {
	opts := promhttp.HandlerOpts{
		ErrorLog:      errorLog{},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Collectors get no context, so the lab count, which must use the scrape's, is
		// gathered from a registry made for this request.
		g := prometheus.Gatherers{m.reg}
		scrape := prometheus.NewRegistry()
		if count := m.count.get(); count != nil {
			scrape.MustRegister(&countCollector[[2]string]{ctx: r.Context(), desc: m.labsDesc, count: count,
				labels: func(k [2]string) []string { return k[:] }})
		}
		if promotions := m.promotions.get(); promotions != nil {
			scrape.MustRegister(&countCollector[[2]string]{ctx: r.Context(), desc: m.promoDesc, count: promotions,
				labels: func(k [2]string) []string { return k[:] }})
		}
		if overdue := m.overdue.get(); overdue != nil {
			scrape.MustRegister(&countCollector[string]{ctx: r.Context(), desc: m.overdueDesc, count: overdue,
				labels: func(cloud string) []string { return []string{cloud} }})
		}
		g = append(g, scrape)
		promhttp.HandlerFor(g, opts).ServeHTTP(w, r)
	})
}

// ObserveCloud records one cloud operation: labplane_cloud_operation_seconds{cloud,op,result}.
func (m *Metrics) ObserveCloud(cloud, op string, took time.Duration, err error) {
	m.cloudOps.WithLabelValues(cloud, op, result(err)).Observe(took.Seconds())
}

// CountAction counts one action: labplane_actions_total{kind,result}; result is Done, Failed
// or Skipped.
func (m *Metrics) CountAction(kind, result string) {
	m.actions.WithLabelValues(kind, result).Inc()
}

// CountReap counts a reaper pass's outcomes: done, failed (Error set) or skipped (not done,
// no error: a fresh read no longer called for it); and the clouds it listed (ListedAt).
func (m *Metrics) CountReap(res reaper.Result) {
	for _, cloud := range res.Plan.Listed {
		m.ListedAt(cloud, res.Plan.At)
	}
	for _, o := range res.Outcomes {
		r := Skipped
		switch {
		case o.Error != "":
			r = Failed
		case o.Done:
			r = Done
		}
		m.CountAction(string(o.Action.Kind), r)
	}
}

// ObserveJob records one scheduler job run: labplane_scheduler_job_runs_total{job,result} and
// labplane_scheduler_job_seconds{job}. It is a scheduler.Observer.
func (m *Metrics) ObserveJob(job string, took time.Duration, err error) {
	m.jobRuns.WithLabelValues(job, result(err)).Inc()
	m.jobTime.WithLabelValues(job).Observe(took.Seconds())
}

// ObserveHTTP records one HTTP request: labplane_http_request_seconds{route,method,code}.
// route is the route's pattern ("/v1/labs/{id}"), never the raw path, to bound the series.
func (m *Metrics) ObserveHTTP(route, method string, code int, took time.Duration) {
	m.httpReqs.WithLabelValues(route, knownMethod(method), strconv.Itoa(code)).Observe(took.Seconds())
}

// knownMethod is method if HTTP defines it, else "other": the label's values are bounded,
// whatever a client sends (500 invented methods would make 500 series).
func knownMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "other"
}

// LabsBy sets how labplane_labs{cloud,status} is counted: count is called on every scrape
// with the scrape's context and returns the number of labs per [cloud, status]. An error
// fails that scrape's lab count only (see Handler). A later call replaces count.
func (m *Metrics) LabsBy(count func(ctx context.Context) (map[[2]string]int, error)) {
	m.count.set(count)
}

// PromotionsBy sets how labplane_promotion_status{target,status} is read: promotions is called
// on every scrape and returns 1 for each target's latest promotion's [target, status].
func (m *Metrics) PromotionsBy(promotions func(ctx context.Context) (map[[2]string]int, error)) {
	m.promotions.set(promotions)
}

// AddLabHours adds hours to labplane_lab_hours_total{cloud,course,state} (cost.Meter's Add).
func (m *Metrics) AddLabHours(cloud, course, state string, hours float64) {
	m.labHours.WithLabelValues(cloud, course, state).Add(hours)
}

// OverdueGrace is how long past its bound a running lab must be to count in
// labplane_labs_overdue: four suspend-idle runs at the default suspend_every.
const OverdueGrace = time.Minute

// OverdueBy sets how labplane_labs_overdue{cloud} is counted: overdue is called on every scrape
// with the scrape's context (reaper.Overdue with OverdueGrace). An error fails that scrape's
// count only.
func (m *Metrics) OverdueBy(overdue func(ctx context.Context) (map[string]int, error)) {
	m.overdue.set(overdue)
}

// ListedAt records that a reaper pass listed the cloud's stacks at:
// labplane_cloud_listed_timestamp_seconds{cloud}. serve sets each cloud's to its start.
func (m *Metrics) ListedAt(cloud string, at time.Time) {
	m.listedAt.WithLabelValues(cloud).Set(float64(at.Unix()))
}

// JobsBy sets where labplane_scheduler_job_running_seconds{job} and
// labplane_scheduler_job_stuck{job} come from: states is called on every scrape (a
// scheduler's States). A later call replaces it.
func (m *Metrics) JobsBy(states func() []scheduler.JobState) {
	m.jobs.set(states)
}

func (m *Metrics) jobStates() []scheduler.JobState {
	if states := m.jobs.get(); states != nil {
		return states()
	}
	return nil
}

// BoundsBy sets where labplane_cloud_max_in_flight{cloud} comes from: bounds is called on
// every scrape and returns each cloud's bound. A later call replaces it.
func (m *Metrics) BoundsBy(bounds func() map[string]int) {
	m.bounds.set(bounds)
}

// boundsCollector reads the clouds' bounds at scrape time: an adaptive one moves with every
// operation.
type boundsCollector struct {
	m    *Metrics
	desc *prometheus.Desc
}

func (c *boundsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *boundsCollector) Collect(ch chan<- prometheus.Metric) {
	bounds := c.m.bounds.get()
	if bounds == nil {
		return
	}
	for cloud, n := range bounds() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), cloud)
	}
}

// jobsCollector reads the scheduler's jobs at scrape time: a run in progress has no end to
// observe yet, and a stuck one may never have one.
type jobsCollector struct {
	m              *Metrics
	running, stuck *prometheus.Desc
}

func (c *jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.running; ch <- c.stuck }

func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.m.jobStates() {
		stuck := 0.0
		if st.Stuck {
			stuck = 1
		}
		ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, st.Running.Seconds(), st.Job)
		ch <- prometheus.MustNewConstMetric(c.stuck, prometheus.GaugeValue, stuck, st.Job)
	}
}

func result(err error) string {
	if err != nil {
		return Failed
	}
	return Done
}

// countCollector is a gauge counted from the registry for one scrape: labplane_labs by
// [cloud, status], labplane_labs_overdue by cloud.
type countCollector[K comparable] struct {
	ctx    context.Context
	desc   *prometheus.Desc
	count  func(context.Context) (map[K]int, error)
	labels func(K) []string
}

func (c *countCollector[K]) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *countCollector[K]) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.count(c.ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, fmt.Errorf("count labs: %w", err))
		return
	}
	for k, n := range counts {
		g, err := prometheus.NewConstMetric(c.desc, prometheus.GaugeValue, float64(n), c.labels(k)...)
		if err != nil {
			g = prometheus.NewInvalidMetric(c.desc, err)
		}
		ch <- g
	}
}

// errorLog sends promhttp's errors to slog.
type errorLog struct{}

func (errorLog) Println(v ...any) {
	slog.Default().Warn("metrics scrape error", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}
