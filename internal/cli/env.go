package cli

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/config"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/reaper"
	"github.com/labplane/labplane/internal/store"
)

// labCloud is a cloud as the manager and the reaper use it.
type labCloud interface {
	lifecycle.Cloud
	reaper.Cloud
}

// env is what a command works with: the configuration, the registry and, when asked for,
// the clouds.
type env struct {
	cfg    *config.Config
	store  *store.Store
	log    *slog.Logger
	clouds []labCloud
	now    func() time.Time
}

// openEnv loads the configuration and opens the registry; with clouds, it also connects to
// every cloud at once (a cloud that cannot be reached stands in as unavailable).
func openEnv(c *cli.Context, stdio IO, withClouds bool) (*env, error) {
	log, err := logger(c, stdio.Err)
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
	e := &env{cfg: cfg, store: st, log: log, now: time.Now}
	if withClouds {
		e.clouds = openClouds(c.Context, cfg, log)
	}
	return e, nil
}

func (e *env) Close() { _ = e.store.Close() }

func openClouds(ctx context.Context, cfg *config.Config, log *slog.Logger) []labCloud {
	out := make([]labCloud, len(cfg.Clouds))
	var wg sync.WaitGroup
	for i, cc := range cfg.Clouds {
		wg.Go(func() {
			h, err := cloud.Open(ctx, cloud.Options{Name: cc.Name, Cloud: cc.Cloud, MaxInFlight: cc.MaxInFlight,
				Logger: log})
			if err != nil {
				log.Error("cloud unavailable", "cloud", cc.Name, "err", err)
				out[i] = unavailable{name: cc.Name, err: err}
				return
			}
			out[i] = h
		})
	}
	wg.Wait()
	return out
}

func (e *env) manager() *lifecycle.Manager {
	targets := make([]lifecycle.Target, len(e.clouds))
	for i, c := range e.clouds {
		cc := e.cfg.Clouds[i]
		targets[i] = lifecycle.Target{Cloud: c, Capacity: cc.Capacity, Drain: cc.Drain}
	}
	return &lifecycle.Manager{
		Site:            e.cfg.Site,
		Registry:        e.store,
		Targets:         targets,
		Template:        e.cfg.TemplatePath,
		DefaultTemplate: e.cfg.DefaultTemplate,
		Rules:           e.cfg.Rules(),
		Hooks: lifecycle.Hooks{BeforeSuspend: e.cfg.Hooks.BeforeSuspend, AfterResume: e.cfg.Hooks.AfterResume,
			BeforeDelete: e.cfg.Hooks.BeforeDelete, Timeout: e.cfg.Hooks.Timeout.D()},
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
		Now: e.now, Log: e.log, Actor: actorName}
}

// unavailable stands in for a cloud labplane could not connect to: every call fails with
// the reason, so its labs wait while the other clouds carry on.
type unavailable struct {
	name string
	err  error
}

func (u unavailable) Name() string { return u.name }
func (u unavailable) List(context.Context, ...string) ([]labs.Stack, error) {
	return nil, u.err
}
func (u unavailable) Create(context.Context, cloud.CreateRequest) (labs.Stack, error) {
	return labs.Stack{}, u.err
}
func (u unavailable) Get(context.Context, string, string) (labs.Stack, error) {
	return labs.Stack{}, u.err
}
func (u unavailable) Suspend(context.Context, string, string) (labs.Stack, error) {
	return labs.Stack{}, u.err
}
func (u unavailable) Resume(context.Context, string, string) (labs.Stack, error) {
	return labs.Stack{}, u.err
}
func (u unavailable) Delete(context.Context, string, string) (labs.Stack, error) {
	return labs.Stack{}, u.err
}
