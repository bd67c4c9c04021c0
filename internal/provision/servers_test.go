package provision_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/dev/localcloud/localcloudtest"
	"github.com/labplane/labplane/internal/provision"
)

// The test here applies the compute module for real: provision/examples/servers on
// local-servers, the local cloud with Nova (fake virt driver) and no Neutron.

// serversCloud is the clouds.yaml entry of local-servers' learner project.
const serversCloud = "local-servers"

// leaseServers leases local-servers for one test and points OS_CLIENT_CONFIG_FILE at it: the
// package's other tests need only local-a, not its 45 s and 1.2 GiB more. The lease is
// released when the test ends (stopping the cloud if this lease started it and no other
// holds it).
func leaseServers(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local cloud (not with -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	l, err := localcloud.Acquire(ctx, os.Stderr, serversCloud)
	if err != nil {
		t.Fatalf("%s: %v", serversCloud, err)
	}
	t.Logf("%s ready in %.1fs (started by this test: %v)", serversCloud, time.Since(start).Seconds(), l.Started(serversCloud))
	t.Cleanup(func() {
		start := time.Now()
		if err := l.Release(context.Background()); err != nil {
			t.Errorf("release %s: %v", serversCloud, err)
		}
		t.Logf("%s released in %.1fs", serversCloud, time.Since(start).Seconds())
	})
	t.Setenv("OS_CLIENT_CONFIG_FILE", l.CloudsYAML())
}

// novaServers are Nova's servers named PREFIX-..., by name.
func novaServers(t *testing.T, sc *gophercloud.ServiceClient, prefix string) map[string]servers.Server {
	t.Helper()
	pages, err := servers.List(sc, servers.ListOpts{Name: "^" + prefix + "-"}).AllPages(context.Background())
	if err != nil {
		t.Fatalf("nova: list servers: %v", err)
	}
	list, err := servers.ExtractServers(pages)
	if err != nil {
		t.Fatalf("nova: list servers: %v", err)
	}
	out := map[string]servers.Server{}
	for _, s := range list {
		out[s.Name] = s
	}
	return out
}

// keypairExists reports whether Nova has the key pair.
func keypairExists(t *testing.T, sc *gophercloud.ServiceClient, name string) bool {
	t.Helper()
	_, err := keypairs.Get(context.Background(), sc, name, nil).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("nova: key pair %s: %v", name, err)
	}
	return true
}

// assertServersGone waits until Nova lists no server of the prefix: the provider's delete
// returns once a server's status is DELETED, a moment before Nova stops listing it; a server
// listed with another status fails the test at once.
func assertServersGone(t *testing.T, sc *gophercloud.ServiceClient, prefix string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		left := novaServers(t, sc, prefix)
		if len(left) == 0 {
			return
		}
		for name, s := range left {
			if s.Status != "DELETED" {
				t.Fatalf("nova after the destroy: server %s is %s", name, s.Status)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nova still lists %v 2 minutes after the destroy", slices.Sorted(maps.Keys(left)))
		}
		time.Sleep(200 * time.Millisecond) // Nova has no way to wait on a delete
	}
}

// deleteServers removes what a failed test left of its servers and key pair (Terraform's
// destroy removes them otherwise).
func deleteServers(t *testing.T, sc *gophercloud.ServiceClient, prefix string) {
	t.Helper()
	for name, s := range novaServers(t, sc, prefix) {
		if err := servers.Delete(context.Background(), sc, s.ID).ExtractErr(); err != nil {
			t.Errorf("cleanup: delete server %s: %v", name, err)
		}
	}
	err := keypairs.Delete(context.Background(), sc, prefix+"-ansible", nil).ExtractErr()
	if err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("cleanup: delete key pair %s-ansible: %v", prefix, err)
	}
}

// plan -> apply -> output -> inventory -> destroy of the compute module on the real Nova
// (provision/examples/servers: servers with no network, a key pair, the local image and
// flavor). Nova's own view of each server: ACTIVE, named PREFIX-SERVICE-N, the module's
// metadata, the key pair, no address of a network; the made-up address Nova holds in the
// metadata is the host's address in the output and the inventory. A second plan changes
// nothing (the provider reads a server without Neutron). After the destroy Nova has no server
// or key pair of the prefix and the state has no resource. Before all that, a service of more
// hosts than the made-up addresses have room for is refused at plan (the module's
// precondition), with nothing made.
func TestServersProvision(t *testing.T) {
	leaseServers(t)
	sc := localcloudtest.Nova(t, serversCloud)
	env := loadEnv(t, "servers")
	prefix := fmt.Sprintf("t%d", time.Now().UnixNano()%1e9)
	env.Provision.Variables["name_prefix"] = prefix
	r := newRealRun(t, env)
	t.Cleanup(func() { deleteServers(t, sc, prefix) })

	// more hosts in a service than its made-up addresses have room for: the plan fails on the
	// module's precondition, once (for cms-31 alone), as bad input (exit 2), and nothing is made
	crowded := loadEnv(t, "servers")
	crowded.Provision.Variables["name_prefix"] = prefix
	crowded.Provision.Variables["services"].(map[string]any)["cms"] = map[string]any{"count": 31}
	_, err := open(t, crowded, provision.Options{Terraform: r.tc.Terraform, CLIConfig: r.tc.CLIConfig}).Plan(context.Background())
	var perr *provision.Error
	if !errors.As(err, &perr) || perr.Op != "plan" || !errors.Is(err, provision.ErrBadInput) || strings.Count(err.Error(), "Resource precondition failed") != 1 ||
		!regexp.MustCompile(`modules/compute/main\.tf:\d+: Resource precondition failed: With no network_id, the hosts' made-up addresses need stand_in_cidr`).MatchString(err.Error()) {
		t.Errorf("a plan of 31 cms hosts: want the precondition's failure for cms-31 alone, got %v", err)
	}
	if left := novaServers(t, sc, prefix); len(left) != 0 {
		t.Fatalf("a refused plan made %v", slices.Sorted(maps.Keys(left)))
	}

	var planned []string
	for _, c := range r.plan().Changes {
		if c.Action != "create" {
			t.Errorf("%s: %s", c.Address, c.Action)
		}
		planned = append(planned, c.Address)
	}
	slices.Sort(planned)
	host := func(key string) string {
		return fmt.Sprintf(`module.environment.module.compute.openstack_compute_instance_v2.host["%s"]`, key)
	}
	want := []string{host("cms-1"), host("guacd-1"), host("lms-1"), host("lms-2"), "module.environment.openstack_compute_keypair_v2.ansible"}
	if !reflect.DeepEqual(planned, want) {
		t.Fatalf("plan: %v, want %v", planned, want)
	}

	hosts := wantHosts(prefix)
	r.apply(hosts, len(want), host("guacd-1"))
	got := novaServers(t, sc, prefix)
	for service, hs := range hosts {
		for _, h := range hs {
			srv, ok := got[h.Name]
			delete(got, h.Name)
			if !ok {
				t.Errorf("nova has no server %s", h.Name)
				continue
			}
			wantMeta := map[string]string{"labplane-environment": prefix, "labplane-service": service, "labplane-stand-in-address": h.Address}
			if srv.Status != "ACTIVE" || !reflect.DeepEqual(srv.Metadata, wantMeta) || srv.KeyName != prefix+"-ansible" || len(srv.Addresses) != 0 {
				t.Errorf("nova: server %s: status %s, metadata %v, key %q, addresses %v; want ACTIVE, %v, %s-ansible, none",
					h.Name, srv.Status, srv.Metadata, srv.KeyName, srv.Addresses, wantMeta, prefix)
			}
		}
	}
	if len(got) != 0 {
		t.Errorf("nova has servers the hosts output does not: %v", slices.Sorted(maps.Keys(got)))
	}
	if !keypairExists(t, sc, prefix+"-ansible") {
		t.Errorf("nova has no key pair %s-ansible", prefix)
	}

	r.destroy(len(want))
	start := time.Now()
	assertServersGone(t, sc, prefix)
	t.Logf("nova listed the servers for %.1fs after the destroy", time.Since(start).Seconds())
	if keypairExists(t, sc, prefix+"-ansible") {
		t.Errorf("nova still has the key pair %s-ansible", prefix)
	}
}
