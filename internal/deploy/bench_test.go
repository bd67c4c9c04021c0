package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/deploy"
	"github.com/labplane/labplane/internal/inventory"
	"github.com/labplane/labplane/internal/runs"
)

// BenchmarkDeployOverhead compares `labplane deploy` (the jsonl callback, events parsed and
// streamed, the log written, the run recorded) with plain ansible-playbook running the same
// command line on the same inventory, in the same run, alternating, on converged hosts (the
// steady state: every run changes nothing). The goal: overhead at most 5%.
//
//	go test ./internal/deploy -run '^$' -bench DeployOverhead -benchtime 1x
func BenchmarkDeployOverhead(b *testing.B) {
	if hosts == nil {
		b.Skip("needs test hosts: not with -short")
	}
	const rounds = 3
	for range b.N {
		var plain, labplane []time.Duration
		f := newFixture(b, "r1")
		env := f.p.Environment(b)
		inv, err := inventory.Write(env, env.Hosts)
		if err != nil {
			b.Fatal(err)
		}
		req := deploy.Request{Env: env, Inventory: inv, Actor: "bench"}
		if _, err := f.d.Deploy(b.Context(), req); err != nil { // converge first
			b.Fatal(err)
		}
		pb := f.d.Playbook(req)
		args, err := pb.Command()
		if err != nil {
			b.Fatal(err)
		}
		for range rounds {
			t0 := time.Now()
			cmd := exec.CommandContext(b.Context(), args[0], args[1:]...)
			cmd.Dir = pb.Dir
			cmd.Env = os.Environ()
			for k, v := range pb.Environment() {
				if k != "ANSIBLE_STDOUT_CALLBACK" { // ansible's default output
					cmd.Env = append(cmd.Env, k+"="+v)
				}
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("ansible-playbook: %v\n%s", err, out)
			}
			plain = append(plain, time.Since(t0))

			t0 = time.Now()
			run, err := f.d.Deploy(b.Context(), req)
			if err != nil {
				b.Fatal(err)
			}
			labplane = append(labplane, time.Since(t0))
			if run.Status != runs.Succeeded {
				b.Fatalf("run %+v", run)
			}
		}
		mp, ml := median(plain), median(labplane)
		ratio := ml.Seconds() / mp.Seconds()
		b.ReportMetric(mp.Seconds(), "plain-s")
		b.ReportMetric(ml.Seconds(), "labplane-s")
		b.ReportMetric(ratio, "ratio")
		fmt.Printf("deploy of 3 hosts, converged, median of %d: ansible-playbook %.2fs, labplane deploy %.2fs, ratio %.3f (goal <= 1.05)\n  ansible-playbook %v\n  labplane deploy  %v\n",
			rounds, mp.Seconds(), ml.Seconds(), ratio, round(plain), round(labplane))
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func round(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}
