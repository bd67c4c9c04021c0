package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/api"
	"github.com/labplane/labplane/internal/auth"
	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/console"
	"github.com/labplane/labplane/internal/cost"
	"github.com/labplane/labplane/internal/metrics"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/scheduler"
	"github.com/labplane/labplane/internal/tlsreload"
)

func serveCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "run the HTTP API for the LMS and the scheduler that keeps labs affordable",
		UsageText: "labplane serve [--listen ADDR]",
		Description: "Serves the API under /v1 (bearer tokens from `labplane token create`), /healthz, /readyz and\n" +
			"/metrics, the operators' web console under /console (log in with an operator or read token), and\n" +
			"runs the reaper's jobs on the configured intervals (scheduler.*): suspending idle labs,\n" +
			"the full reap, reconciling zombies and orphans, timing out launches. Several replicas may share one\n" +
			"PostgreSQL registry: every request works on any of them, and each job runs on one replica at a time\n" +
			"(the reaper's jobs share one lock: a PostgreSQL advisory lock, or with SQLite a file lock beside the\n" +
			"database, so two of them never act on the same lab at once).\n\n" +
			"SIGTERM or Ctrl-C: stop accepting requests, let actions in flight finish (serve.shutdown_grace, then\n" +
			"they are cancelled and still recorded), exit 0.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Usage: "the API's address, host:port (default: serve.listen, 127.0.0.1:8080)"},
		},
		Action: func(c *cli.Context) error {
			e, err := openEnv(c, stdio, false)
			if err != nil {
				return err
			}
			defer e.Close()
			listen := e.cfg.Serve.Listen
			if l := c.String("listen"); l != "" {
				if _, _, err := net.SplitHostPort(l); err != nil {
					return usageError("--listen %q: use host:port", l)
				}
				listen = l
			}
			if err := e.cfg.Serve.CheckListen(listen); err != nil {
				return usageError("--listen or serve.listen: %v", err)
			}
			m := metrics.New()
			e.clouds = openClouds(c.Context, e.cfg, e.log, m.ObserveCloud)
			m.LabsBy(e.labCounts)
			m.PromotionsBy(e.latestPromotions)
			return serve(c.Context, stdio, e, m, listen)
		},
	}
}

// JobName names a cloud's job in the logs and the metrics: "suspend-idle:local-a".
func JobName(job, cloud string) string { return job + ":" + cloud }

// maxHeaderBytes bounds a request's headers (a bearer token and a few more fit many times).
const maxHeaderBytes = 32 << 10

// newHTTPServer is serve's HTTP server: every phase of a connection is bounded, so that a
// slow, silent or oversized client holds no handler and no connection for long.
func newHTTPServer(h http.Handler, s config.Serve) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: min(10*time.Second, s.ReadTimeout.D()), ReadTimeout: s.ReadTimeout.D(),
		WriteTimeout: s.WriteTimeout.D(), IdleTimeout: s.IdleTimeout.D(), MaxHeaderBytes: maxHeaderBytes}
}

// reloadOnHangup reads the TLS certificate again at each SIGHUP (a renewed certificate), until
// stop; connections already made keep theirs, and a failed reload keeps the one in use. Without
// TLS (cert nil) a SIGHUP is logged and does nothing: never the default, which ends the process.
func reloadOnHangup(log *slog.Logger, cert *tlsreload.Certificate) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				if cert == nil {
					log.Info("SIGHUP: no TLS certificate to reload")
					continue
				}
				if err := cert.Reload(); err != nil {
					log.Error("SIGHUP: the TLS certificate was not reloaded; the one in use stays", "err", err)
				} else {
					log.Info("SIGHUP: reloaded the TLS certificate")
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// serve runs the API and the scheduler until ctx is done.
func serve(ctx context.Context, stdio IO, e *env, m *metrics.Metrics, listen string) error {
	mgr := e.manager()
	tokens := auth.NewVerifier(e.store, e.cfg.Serve.TokenCache.D(), e.now)
	server := &api.Server{Labs: mgr, Registry: e.store, Auth: tokens,
		Ready: e.readiness(), Metrics: m.Handler(), Observe: m, Log: e.log, Policy: mgr.Rules, Now: e.now,
		RateLimit: api.RateLimit(e.cfg.Serve.RateLimit)}
	clouds := make([]console.Cloud, len(e.cfg.Clouds))
	for i, cc := range e.cfg.Clouds {
		clouds[i] = console.Cloud{Name: cc.Name, Capacity: cc.Capacity, Drain: cc.Drain}
	}
	// the operators' console: the same registry, tokens and lifecycle as the API; its
	// actions run as the API's background work, which shutdown waits for
	web := &console.Server{Registry: e.store, Labs: mgr, Tokens: tokens, Background: server.Background, Clouds: clouds,
		SuspendedCostFactor: e.cfg.SuspendedCostFactors(), Now: e.now, Log: e.log, Observe: m}
	routes, consoleRoutes := http.NewServeMux(), web.Handler()
	routes.Handle("/console", consoleRoutes)
	routes.Handle("/console/", consoleRoutes)
	routes.Handle("/", server.Handler())
	host, _ := os.Hostname()
	replica := fmt.Sprintf("%s/%d", host, os.Getpid())
	all := e.reaper("scheduler@" + replica)
	m.OverdueBy(func(ctx context.Context) (map[string]int, error) { return all.Overdue(ctx, metrics.OverdueGrace) })
	for _, cc := range e.cfg.Clouds {
		m.ListedAt(cc.Name, e.now()) // until a pass lists it
	}
	job := func(run func(context.Context, func(policy.Action) bool) (reaper.Result, error), keep func(policy.Action) bool) func(context.Context) error {
		return func(ctx context.Context) error {
			res, err := run(ctx, keep)
			if err != nil {
				return err
			}
			m.CountReap(res)
			if res.Failed() {
				return fmt.Errorf("%d actions failed, %d clouds unavailable", failures(res), len(res.Plan.CloudErrors))
			}
			return nil
		}
	}
	sc := e.cfg.Scheduler
	meter := &cost.Meter{Registry: e.store, Add: m.AddLabHours, Now: e.now, MaxStep: 2 * sc.SuspendEvery.D()}
	// suspend-idle, then the lab hours metered since its last run (under the cloud's lock)
	suspendIdle := func(cloud string, r *reaper.Reaper) func(context.Context) error {
		run := job(r.RunDue, reaper.SuspendIdle)
		return func(ctx context.Context) error {
			err := run(ctx)
			if merr := meter.Tick(ctx, cloud); merr != nil {
				e.log.Warn("lab hours not metered", "cloud", cloud, "err", merr)
			}
			return err
		}
	}
	// A run is a pass, bounded as the reaper bounds it; one that goes on past it (and the
	// grace to record what it cut short) ignores its deadline: /readyz and the metrics say so.
	bound := sc.PassTimeout.D()
	// Each cloud has its four jobs, under its own lock: one lock for a cloud's four, so two of
	// them never act on the same lab at once, and one per cloud, so that replicas share the
	// clouds' work and no cloud's pass waits for another's. suspend-idle reads only the labs
	// due and their stacks; the others make a full pass of their cloud.
	var jobs []scheduler.Job
	for _, cc := range e.cfg.Clouds {
		r, lock := all.ForCloud(cc.Name), reaper.LockKey(cc.Name)
		jobs = append(jobs,
			scheduler.Job{Name: JobName("suspend-idle", cc.Name), Lock: lock, Every: sc.SuspendEvery.D(), Timeout: bound, Run: suspendIdle(cc.Name, r)},
			scheduler.Job{Name: JobName("reap", cc.Name), Lock: lock, Every: sc.ReapEvery.D(), Timeout: bound, Run: job(r.RunOnly, reaper.All)},
			scheduler.Job{Name: JobName("reconcile", cc.Name), Lock: lock, Every: sc.ReconcileEvery.D(), Timeout: bound, Run: job(r.RunOnly, reaper.Reconcile)},
			scheduler.Job{Name: JobName("launch-timeouts", cc.Name), Lock: lock, Every: sc.LaunchTimeoutsEvery.D(), Timeout: bound, Run: job(r.RunOnly, reaper.LaunchTimeouts)})
	}
	// the warm pools, filled up (one process at a time per course: lifecycle.Manager.Fill)
	if len(e.cfg.Pools) > 0 {
		jobs = append(jobs, scheduler.Job{Name: "fill-pools", Lock: "pools", Every: sc.PoolsEvery.D(), Timeout: bound, Run: func(ctx context.Context) error {
			var errs []error
			for course := range e.cfg.Pools {
				if _, err := mgr.Fill(ctx, course); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}})
	}
	sched, err := scheduler.New(scheduler.Options{Locker: e.store, Observe: m.ObserveJob, Logger: e.log, Replica: replica, Jobs: jobs})
	if err != nil {
		return err
	}
	server.Ready = append(server.Ready, api.Check{Name: "scheduler", Check: sched.Check, Public: true})
	m.JobsBy(sched.States)
	m.BoundsBy(mgr.Bounds)

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return badInput{fmt.Errorf("listen on %s: %w", listen, err)}
	}
	httpServer := newHTTPServer(routes, e.cfg.Serve)
	serveOn, scheme := httpServer.Serve, "http"
	var hangup *tlsreload.Certificate // what a SIGHUP reloads: nothing without TLS
	if t := e.cfg.Serve.TLS; t.Enabled() {
		cert, err := tlsreload.Load(tlsreload.Files{Cert: t.CertFile, Key: t.KeyFile, ClientCA: t.ClientCAFile})
		if err != nil {
			ln.Close()
			return badInput{fmt.Errorf("serve.tls: %w", err)}
		}
		httpServer.TLSConfig = cert.Config()
		serveOn, scheme = func(ln net.Listener) error { return httpServer.ServeTLS(ln, "", "") }, "https"
		hangup = cert
	}
	defer reloadOnHangup(e.log, hangup)()
	served := make(chan error, 1)
	go func() { served <- serveOn(ln) }()
	sched.Start()
	e.log.Info("serving", "listen", ln.Addr().String(), "tls", scheme == "https", "replica", replica, "store", e.cfg.Store.Driver)
	fmt.Fprintf(stdio.Err, "labplane: serving on %s://%s (replica %s)\n", scheme, ln.Addr(), replica)
	if scheme == "http" {
		where := "loopback only"
		if !config.Loopback(listen) {
			where = "NOT loopback: serve.insecure_listen, a TLS proxy must be in front"
		}
		fmt.Fprintf(stdio.Err, "labplane: without TLS (%s): tokens and lab passwords cross the network in clear\n", where)
	}

	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	}
	e.log.Info("shutting down", "grace", e.cfg.Serve.ShutdownGrace.D())
	grace, cancel := context.WithTimeout(context.Background(), e.cfg.Serve.ShutdownGrace.D())
	defer cancel()
	errs := []error{httpServer.Shutdown(grace)}
	server.Shutdown(grace)
	errs = append(errs, sched.Shutdown(grace))
	if err := errors.Join(errs...); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shut down: %w", err)
	}
	e.log.Info("stopped")
	return nil
}
