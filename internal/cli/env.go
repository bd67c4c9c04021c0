package cli

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/api"
	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/inflight"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/store"
)

// labCloud is a cloud as the manager, the reaper and /readyz use it.
type labCloud interface {
	lifecycle.Cloud
	reaper.Cloud
	Check(ctx context.Context) error
}

// env is what a command works with: the configuration, the registry and, when asked for,
// the clouds.
type env struct {
	cfg    *config.Config
	store  *store.Store
	log    *slog.Logger
	logs   *logOutput // where log writes: a progress board may take it for a while
	clouds []labCloud
	now    func() time.Time

	managerOnce sync.Once
	mgr         *lifecycle.Manager
}

// openEnv loads the configuration and opens the registry; with clouds, it also connects to
// every cloud at once (a cloud that cannot be reached stands in as unavailable).
func openEnv(c *cli.Context, stdio IO, withClouds bool) (*env, error) {
	logs := &logOutput{w: stdio.Err}
	log, err := logger(c, logs)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(c.String("config"))
	if err != nil {
		return nil, err
	}
	st, err := store.Open(c.Context, cfg.Store.Driver, cfg.DSN())
	if err != nil {
		return nil, fmt.Errorf("open the %s registry: %w", cfg.Store.Driver, err)
	}
	e := &env{cfg: cfg, store: st, log: log, logs: logs, now: time.Now}
	if withClouds {
		e.clouds = openClouds(c.Context, cfg, log, nil)
	}
	return e, nil
}

func (e *env) Close() { _ = e.store.Close() }

// openClouds connects to every cloud at once. A cloud that cannot be reached stands in as
// unavailable and is tried again on later calls. observe, if set, is told of every operation.
func openClouds(ctx context.Context, cfg *config.Config, log *slog.Logger, observe func(cloud, op string, took time.Duration, err error)) []labCloud {
	out := make([]labCloud, len(cfg.Clouds))
	var wg sync.WaitGroup
	for i, cc := range cfg.Clouds {
		opts := heat.Options{Name: cc.Name, Cloud: cc.Cloud, RequestTimeout: cc.RequestTimeout.D(), Logger: log}
		if observe != nil {
			opts.Observe = func(op string, took time.Duration, err error) { observe(cc.Name, op, took, err) }
		}
		wg.Go(func() { out[i] = connect(ctx, opts, log) })
	}
	wg.Wait()
	return out
}

// connect opens a cloud, or returns a stand-in that reports why and reconnects.
func connect(ctx context.Context, opts heat.Options, log *slog.Logger) labCloud {
	h, err := heat.Open(ctx, opts)
	if err == nil {
		return h
	}
	log.Error("cloud unavailable", "cloud", opts.Name, "err", err)
	return &reconnecting{opts: opts, log: log, err: err, at: time.Now()}
}

// manager is the process's one Manager (the API's and the reaper's): the clouds' adaptive
// bounds and the queue for their slots are the process's.
func (e *env) manager() *lifecycle.Manager {
	e.managerOnce.Do(func() { e.mgr = e.newManager() })
	return e.mgr
}

// pools are the configuration's warm pools, as the lifecycle takes them.
func (e *env) pools() map[string]lifecycle.Pool {
	pools := make(map[string]lifecycle.Pool, len(e.cfg.Pools))
	for course, p := range e.cfg.Pools {
		pools[course] = lifecycle.Pool(p)
	}
	return pools
}

func (e *env) newManager() *lifecycle.Manager {
	targets := make([]lifecycle.Target, len(e.clouds))
	for i, c := range e.clouds {
		cc := e.cfg.Clouds[i]
		targets[i] = lifecycle.Target{Cloud: c, Capacity: cc.Capacity, Drain: cc.Drain, MaxInFlight: cc.MaxInFlight.Fixed}
		if cc.MaxInFlight.Auto {
			targets[i].Adaptive = inflight.New(cc.InFlightFloor, cc.InFlightCeiling)
		}
	}
	return &lifecycle.Manager{
		Site:            e.cfg.Site,
		Registry:        e.store,
		Locks:           e.store,
		Slots:           store.NewWaiter(e.store),
		Targets:         targets,
		Template:        e.cfg.TemplatePath,
		DefaultTemplate: e.cfg.DefaultTemplate,
		Rules:           e.cfg.Rules(),
		Pools:           e.pools(),
		Hooks: lifecycle.Hooks{BeforeSuspend: e.cfg.Hooks.BeforeSuspend, AfterResume: e.cfg.Hooks.AfterResume,
			BeforeDelete: e.cfg.Hooks.BeforeDelete, Timeout: e.cfg.Hooks.Timeout.D(), Env: e.cfg.Hooks.Env,
			MaxParallel: e.cfg.Hooks.MaxParallel},
		Now: e.now,
		Log: e.log,
	}
}

func (e *env) reaper(actorName string) *reaper.Reaper {
	clouds := make([]reaper.Cloud, len(e.clouds))
	for i, c := range e.clouds {
		clouds[i] = c
	}
	return &reaper.Reaper{Site: e.cfg.Site, Registry: e.store, Clouds: clouds, Applier: e.manager(), Rules: e.cfg.Rules(),
		MostInFlight: e.manager().MostInFlight,
		Now:          e.now, Log: e.log, Actor: actorName, PassTimeout: e.cfg.Scheduler.PassTimeout.D()}
}

// reconnecting stands in for a cloud labplane could not connect to: calls fail with the
// reason, so its labs wait while the other clouds carry on, and every retryEvery a call
// tries to connect again (a daemon outlives a cloud's outage); once connected it passes
// every call through.
type reconnecting struct {
	opts heat.Options
	log  *slog.Logger

	mu  sync.Mutex
	h   *heat.Heat
	err error
	at  time.Time
}

const retryEvery = 30 * time.Second

// cloud returns the connected cloud, or the reason there is none.
func (u *reconnecting) cloud(ctx context.Context) (*heat.Heat, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.h == nil && time.Since(u.at) >= retryEvery {
		u.at = time.Now()
		if u.h, u.err = heat.Open(ctx, u.opts); u.err == nil {
			u.log.Info("cloud available again", "cloud", u.opts.Name)
		}
	}
	return u.h, u.err
}

func (u *reconnecting) Name() string { return u.opts.Name }

func (u *reconnecting) Check(ctx context.Context) error {
	h, err := u.cloud(ctx)
	if err != nil {
		return err
	}
	return h.Check(ctx)
}

func (u *reconnecting) List(ctx context.Context, tags ...string) ([]labs.Stack, error) {
	h, err := u.cloud(ctx)
	if err != nil {
		return nil, err
	}
	return h.List(ctx, tags...)
}

func (u *reconnecting) Create(ctx context.Context, r cloud.CreateRequest) (labs.Stack, error) {
	h, err := u.cloud(ctx)
	if err != nil {
		return labs.Stack{}, err
	}
	return h.Create(ctx, r)
}

func (u *reconnecting) Get(ctx context.Context, name, id string) (labs.Stack, error) {
	return u.stackOp(ctx, name, id, (*heat.Heat).Get)
}

func (u *reconnecting) Suspend(ctx context.Context, name, id string) (labs.Stack, error) {
	return u.stackOp(ctx, name, id, (*heat.Heat).Suspend)
}

func (u *reconnecting) Resume(ctx context.Context, name, id string) (labs.Stack, error) {
	return u.stackOp(ctx, name, id, (*heat.Heat).Resume)
}

func (u *reconnecting) Delete(ctx context.Context, name, id string) (labs.Stack, error) {
	return u.stackOp(ctx, name, id, (*heat.Heat).Delete)
}

func (u *reconnecting) stackOp(ctx context.Context, name, id string, op func(*heat.Heat, context.Context, string, string) (labs.Stack, error)) (labs.Stack, error) {
	h, err := u.cloud(ctx)
	if err != nil {
		return labs.Stack{}, err
	}
	return op(h, ctx, name, id)
}

// readiness is what /readyz checks: the registry and every cloud.
func (e *env) readiness() []api.Check {
	checks := []api.Check{{Name: "store", Check: e.store.Ping}}
	for _, c := range e.clouds {
		checks = append(checks, api.Check{Name: "cloud " + c.Name(), Check: c.Check})
	}
	return checks
}

// latestPromotions feeds the promotions gauge: each target's latest promotion's status.
func (e *env) latestPromotions(ctx context.Context) (map[[2]string]int, error) {
	ps, err := e.store.LatestPromotions(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[[2]string]int, len(ps))
	for _, p := range ps {
		out[[2]string{p.To, string(p.Status)}] = 1
	}
	return out, nil
}

// labCounts feeds the labs gauge.
func (e *env) labCounts(ctx context.Context) (map[[2]string]int, error) {
	counts, err := e.store.LabCounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[[2]string]int, len(counts))
	for k, n := range counts {
		out[[2]string{k.Cloud, string(k.Status)}] = n
	}
	return out, nil
}
