package heat_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/labs"
)

// BenchmarkLatencies measures how long each action on the example lab stack takes on the real
// local Heat as labplane waits for it (the default 1 s status polling, one action at a time):
// the latencies internal/sim gives its fake cloud. It prints the median and the range of five
// rounds of create, suspend, resume and delete.
//
//	go test ./internal/heat -run '^$' -bench Latencies -benchtime 1x
func BenchmarkLatencies(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local cloud (not with -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	h, err := heat.Open(ctx, heat.Options{Name: "local-a", Cloud: "local-a", Logger: quietLogger()})
	if err != nil {
		b.Fatalf("open local-a: %v", err)
	}
	for b.Loop() {
		measureLatencies(ctx, b, h, "lab.yaml")
	}
}

// BenchmarkLatenciesServers is BenchmarkLatencies on a lab of two real servers
// (examples/templates/servers.yaml) on local-servers, the local cloud with Nova, which it
// leases itself: the package's other tests do not need that cloud's 45 s and 1.2 GiB.
//
//	go test ./internal/heat -run '^$' -bench LatenciesServers -benchtime 1x
func BenchmarkLatenciesServers(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local cloud (not with -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	l, err := localcloud.Acquire(ctx, os.Stderr, "local-servers")
	if err != nil {
		b.Fatalf("local-servers: %v", err)
	}
	defer func() {
		if err := l.Release(context.WithoutCancel(ctx)); err != nil {
			b.Errorf("release local-servers: %v", err)
		}
	}()
	h, err := heat.Open(ctx, heat.Options{Name: "local-servers", ConfigFile: l.CloudsYAML(), Logger: quietLogger()})
	if err != nil {
		b.Fatalf("open local-servers: %v", err)
	}
	for b.Loop() {
		measureLatencies(ctx, b, h, "servers.yaml")
	}
}

// measureLatencies creates, suspends, resumes and deletes a stack of template five times, one
// action at a time, and reports the median of each.
func measureLatencies(ctx context.Context, b *testing.B, h *heat.Heat, template string) {
	const rounds = 5
	took := map[string][]time.Duration{}
	timed := func(op string, fn func() (labs.Stack, error)) labs.Stack {
		start := time.Now()
		st, err := fn()
		if err != nil {
			b.Fatalf("%s: %v", op, err)
		}
		took[op] = append(took[op], time.Since(start))
		return st
	}
	for i := range rounds {
		name := stackName("latency")
		st := timed("create", func() (labs.Stack, error) {
			return h.Create(ctx, cloud.CreateRequest{Name: name, TemplateFile: templatePath(b, template),
				Params: map[string]string{"lab_id": fmt.Sprint("L", i), "course": "bench", "learner": "bench"},
				Tags:   []string{labs.TagManaged, runTag}, Timeout: 5 * time.Minute})
		})
		timed("suspend", func() (labs.Stack, error) { return h.Suspend(ctx, st.Name, st.ID) })
		timed("resume", func() (labs.Stack, error) { return h.Resume(ctx, st.Name, st.ID) })
		timed("delete", func() (labs.Stack, error) { return h.Delete(ctx, st.Name, st.ID) })
	}
	fmt.Printf("%s on %s:\n", template, h.Name())
	for _, op := range []string{"create", "suspend", "resume", "delete"} {
		d := slices.Clone(took[op])
		slices.Sort(d)
		med := d[len(d)/2]
		fmt.Printf("%-8s median %6.2fs  (%d rounds: %.2fs - %.2fs)\n", op, med.Seconds(), len(d), d[0].Seconds(), d[len(d)-1].Seconds())
		b.ReportMetric(med.Seconds(), "s_"+op)
	}
}
