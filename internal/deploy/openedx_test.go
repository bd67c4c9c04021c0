package deploy_test

// The openedx role (used by roles/lms and roles/cms) over real SSH to test hosts of their own,
// through the Deployer: what a failed run leaves behind (restarts still due, the releases a
// rollback needs) and where migrations run.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/deploy"
	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/dev/testhosts/standins"
	"github.com/labplane/labplane/internal/dev/testhosts/testhoststest"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/health"
	"github.com/labplane/labplane/internal/release"
	"github.com/labplane/labplane/internal/runs"
	"gopkg.in/yaml.v3"
)

// lmsOnly deploys the LMS play only: the tests below are about the openedx role, and the cms
// and guacd hosts the spec needs are left alone.
var lmsOnly = runs.Options{Limit: "lms"}

// newRoleFixture brings up a set of test hosts of its own (names; taken down when the test
// ends) with the platform laid out as layout, and a Deployer recording into a fresh registry.
func newRoleFixture(t *testing.T, names []string, layout map[string][]string, extra string, releases ...string) *fixture {
	t.Helper()
	if hosts == nil {
		t.Skip("needs test hosts: not with -short")
	}
	set := testhoststest.New(t, testhosts.Options{Names: names})
	return fixtureOn(t, testhoststest.NewPlatformWith(t, testhoststest.PlatformOptions{Set: set, Hosts: layout,
		Releases: releases, Extra: extra}))
}

// deployVars is deploy with variables the spec cannot set passed with --extra-vars to the
// deploy's playbook (site.yml; not to the read-back after a failed run), as an operator running
// it by hand would (-e openedx_keep_releases=1).
func (f *fixture) deployVars(ctx context.Context, t *testing.T, release string, opts runs.Options, vars map[string]any) (runs.Run, []ansible.Event, error) {
	t.Helper()
	f.d.Run = func(ctx context.Context, p ansible.Playbook, on func(ansible.Event), log io.Writer) (ansible.Result, error) {
		if slices.ContainsFunc(p.Playbooks, func(pb string) bool { return filepath.Base(pb) == "site.yml" }) {
			extra := map[string]any{}
			maps.Copy(extra, p.ExtraVars)
			maps.Copy(extra, vars)
			p.ExtraVars = extra
		}
		return ansible.Run(ctx, p, on, log)
	}
	defer func() { f.d.Run = nil }()
	return f.deploy(ctx, t, release, opts)
}

// mustSucceed fails the test now unless the deploy succeeded.
func mustSucceed(t *testing.T, what string, run runs.Run, err error) runs.Run {
	t.Helper()
	if err != nil || run.Status != runs.Succeeded {
		t.Fatalf("%s: %s, %v (failures %+v)", what, run.Status, err, run.Failures)
	}
	return run
}

// editSpec replaces old by new in the platform's environment.yml, as an operator edits it.
func editSpec(t *testing.T, p *testhoststest.Platform, old, new string) {
	t.Helper()
	path := filepath.Join(p.Inventories, p.Env, envspec.File)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q:\n%s", path, old, b)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// assertLMS checks every lms host as its clients reach it, asking for siteName: the service
// answers that name only if the config file it read when it started has it (Django refuses a
// name not in ALLOWED_HOSTS), passes edx-platform's heartbeat checks and runs release; and its
// config file names the database engine.
func assertLMS(ctx context.Context, t *testing.T, p *testhoststest.Platform, release, siteName, engine string) {
	t.Helper()
	port := p.Environment(t).Endpoints()["lms"].Port
	for _, name := range p.Hosts["lms"] {
		h, _ := p.Set.Host(name)
		st, err := health.Service(ctx, "http://"+net.JoinHostPort(h.Address, strconv.Itoa(port)), siteName, "")
		if err != nil || st.Release != release {
			t.Errorf("%s lms as %s: %+v, %v; want release %q", name, siteName, st, err, release)
		}
		cfg, err := os.ReadFile(filepath.Join(p.Set.UpperDir(name), "edx/etc/lms.yml"))
		if err != nil || !strings.Contains(string(cfg), "ENGINE: django.db.backends."+engine+"\n") {
			t.Errorf("%s lms.yml: %v, want the %s engine:\n%s", name, err, engine, cfg)
		}
	}
}

// ranOn lists the hosts a task reported a result for (ok, changed or failed: not skipped),
// sorted (the hosts of a batch report in any order).
func ranOn(events []ansible.Event, task string) []string {
	var out []string
	for _, e := range events {
		if strings.HasSuffix(e.Task, task) && e.Host != "" &&
			(e.Kind == ansible.OK || e.Kind == ansible.Changed || e.Kind == ansible.Failed) {
			out = append(out, e.Host)
		}
	}
	slices.Sort(out)
	return out
}

// A configuration change must restart the service even when the run that made it failed
// before its handlers ran. Two lms hosts in one batch; release r2's migrations fail on lms2.
// The run deploying r2 with a new site name rewrites the config file on both hosts (and
// notifies the restart), then lms2 fails the migrations: max_fail_percentage 0 stops the play
// on both hosts before the handlers are flushed. The operator rolls back to r1, keeping the
// new site name: the config files already hold it, the release link never moved, so that run
// has nothing left to change, and yet both services must now run with the new name.
func TestRestartDueAfterFailedRun(t *testing.T) {
	t.Parallel()
	f := newRoleFixture(t, []string{"lms1", "lms2", "cms1", "guacd1"},
		map[string][]string{"lms": {"lms1", "lms2"}, "cms": {"cms1"}, "guacd": {"guacd1"}}, "", "r1")
	f.p.AddArtifact(t, "r2", standins.ArtifactOptions{MigrateFailsOn: []string{"lms2"}})
	ctx := t.Context()

	run, _, err := f.deploy(ctx, t, "", lmsOnly)
	mustSucceed(t, "deploy r1", run, err)
	assertLMS(ctx, t, f.p, "r1", "lms.test", "sqlite3")

	editSpec(t, f.p, "lms_site_name: lms.test\n", "lms_site_name: learn.test\n")
	run, _, err = f.deploy(ctx, t, "r2", lmsOnly)
	if !errors.Is(err, deploy.ErrFailed) || len(run.Failures) != 1 || run.Failures[0].Host != "lms2" ||
		!strings.Contains(run.Failures[0].Task, "migrations") {
		t.Fatalf("deploy r2: %v, failures %+v: want lms2 failing the migrations", err, run.Failures)
	}
	for _, h := range []string{"lms1", "lms2"} {
		// the run did change what the service runs with (the premise of this test)
		cfg, err := os.ReadFile(filepath.Join(f.p.Set.UpperDir(h), "edx/etc/lms.yml"))
		if err != nil || !strings.Contains(string(cfg), "SITE_NAME: learn.test\n") {
			t.Fatalf("%s: the failed run did not rewrite the config file (%v)", h, err)
		}
	}
	assertLMS(ctx, t, f.p, "r1", "lms.test", "sqlite3") // the play stopped: nothing restarted yet
	// lms1's recap shows no failure, but Ansible stopped it before the switch: the record says
	// what it runs, read back, not the run's release (issue 20, defect 3)
	if r := run.Recap["lms1"]; r.Failed != 0 || r.Release != "r1" || run.Recap["lms2"].Release != "r1" {
		t.Errorf("recap %+v: want lms1 without failures and both read back running r1", run.Recap)
	}
	all, err := f.st.ListRuns(ctx, runs.Filter{Environment: f.p.Env})
	if err != nil {
		t.Fatal(err)
	}
	if st := release.HostStates(all)["lms1"]; st.Release != "r1" || st.Failed {
		t.Errorf("lms1's recorded state %+v after the failed r2 run: want r1, not failed", st)
	}

	run, _, err = f.deploy(ctx, t, "r1", lmsOnly)
	mustSucceed(t, "roll back to r1 with the new site name", run, err)
	assertLMS(ctx, t, f.p, "r1", "learn.test", "sqlite3")

	// check mode, then the same release again: nothing changes (the rollback left nothing
	// due, and neither did the check)
	t.Run("check mode changes nothing", func(t *testing.T) {
		editSpec(t, f.p, "lms_site_name: learn.test\n", "lms_site_name: study.test\n")
		run, _, err := f.deploy(ctx, t, "r2", runs.Options{Limit: "lms", Check: true})
		mustSucceed(t, "check r2", run, err)
		assertLMS(ctx, t, f.p, "r1", "learn.test", "sqlite3")
		editSpec(t, f.p, "lms_site_name: study.test\n", "lms_site_name: learn.test\n")
		run, _, err = f.deploy(ctx, t, "r1", lmsOnly)
		mustSucceed(t, "deploy r1 after the check", run, err)
		for _, h := range []string{"lms1", "lms2"} {
			if r := run.Recap[h]; r.OK == 0 || r.Changed != 0 {
				t.Errorf("%s recap %+v after a check: want changed=0 (the rollback or the check left something due)", h, r)
			}
		}
	})

	// Interrupted after both hosts switched their link to r3, before the restart: the hosts
	// still run r1, and that is what is recorded (read back from the service's process, not
	// from the link); the next run restarts them on r3.
	t.Run("interrupted after the link switched", func(t *testing.T) {
		f.p.AddArtifact(t, "r3", standins.ArtifactOptions{})
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var mu sync.Mutex
		switched := map[string]bool{}
		f.d.Run = func(ctx context.Context, p ansible.Playbook, on func(ansible.Event), log io.Writer) (ansible.Result, error) {
			return ansible.Run(ctx, p, func(e ansible.Event) {
				on(e)
				if e.Kind == ansible.Changed && strings.HasSuffix(e.Task, "Point the current link at the release") {
					mu.Lock()
					defer mu.Unlock()
					if switched[e.Host] = true; len(switched) == 2 {
						cancel() // Ctrl-C
					}
				}
			}, log)
		}
		run, _, err := f.deploy(cctx, t, "r3", lmsOnly)
		f.d.Run = nil
		if !errors.Is(err, deploy.ErrFailed) || run.Status != runs.Cancelled || len(switched) != 2 {
			t.Fatalf("run %+v, err %v, links switched on %v: want it cancelled once both links switched", run, err, switched)
		}
		for _, h := range []string{"lms1", "lms2"} {
			if link, err := os.Readlink(filepath.Join(f.p.Set.UpperDir(h), "edx/app/edxapp/edx-platform")); err != nil || filepath.Base(link) != "r3" {
				t.Fatalf("%s: the current link is %q (%v), want r3 (the premise of this test)", h, link, err)
			}
			if r := run.Recap[h]; r.Release != "r1" {
				t.Errorf("%s recap %+v: want it read back running r1 (its process was not restarted)", h, r)
			}
		}
		assertLMS(ctx, t, f.p, "r1", "learn.test", "sqlite3")
		all, err := f.st.ListRuns(ctx, runs.Filter{Environment: f.p.Env})
		if err != nil {
			t.Fatal(err)
		}
		if st := release.HostStates(all)["lms2"]; st.Release != "r1" {
			t.Errorf("lms2's recorded state %+v after the interrupted r3 run: want r1", st)
		}

		run, _, err = f.deploy(ctx, t, "r3", lmsOnly)
		mustSucceed(t, "deploy r3 again", run, err)
		assertLMS(ctx, t, f.p, "r3", "learn.test", "sqlite3")
	})
}

// Migrations run once per batch on a database the hosts share, and on every host with sqlite3
// (each host's own file). Three lms hosts deployed two at a time: batches [lms1 lms2] [lms3].
func TestMigrationsOncePerBatch(t *testing.T) {
	t.Parallel()
	f := newRoleFixture(t, []string{"lms1", "lms2", "lms3", "cms1", "guacd1", "db1"},
		map[string][]string{"lms": {"lms1", "lms2", "lms3"}, "cms": {"cms1"}, "guacd": {"guacd1"}},
		"rollout: {serial: \"2\"}\n", "r1")
	ctx := t.Context()
	const migrate = "Run the database migrations"

	run, events, err := f.deploy(ctx, t, "", lmsOnly)
	mustSucceed(t, "deploy r1 on sqlite3", run, err)
	if got := ranOn(events, migrate); !slices.Equal(got, []string{"lms1", "lms2", "lms3"}) {
		t.Errorf("sqlite3: migrations ran on %v, want every host's own database: [lms1 lms2 lms3]", got)
	}
	assertLMS(ctx, t, f.p, "r1", "lms.test", "sqlite3")

	// PostgreSQL on db1, the database every lms host now shares; its log names the client of
	// each DDL statement.
	db, _ := f.p.Set.Host("db1")
	password := rand.Text()
	passwordEnv := testhoststest.SetUniqueEnv(t, "LABPLANE_TEST_DATABASE_PASSWORD", password)
	startPostgres(ctx, t, f.p.Set, "db1", password)
	editSpec(t, f.p, "settings:\n", "settings:\n  database: {engine: postgresql, host: "+db.Address+", name: edxapp, user: edxapp}\n")
	editSpec(t, f.p, "secrets:\n", "secrets:\n  database_password: {env: "+passwordEnv+"}\n")
	// and the backing services, with secrets of their own: Redis on db1 for real, the Celery
	// workers' broker; the stand-in uses none of the others, but refuses settings of the wrong
	// shape, as edx-platform's would fail on them
	mongoPassword, smtpPassword, redisPassword := rand.Text(), rand.Text(), rand.Text()
	startRedis(ctx, t, f.p.Set, "db1", redisPassword)
	privateJWK, publicJWKSet := jwkPair(t)
	if err := os.WriteFile(filepath.Join(f.p.Inventories, f.p.Env, "jwks.json"), []byte(publicJWKSet), 0o644); err != nil {
		t.Fatal(err)
	}
	editSpec(t, f.p, "settings:\n", "settings:\n"+`  mongodb: {hosts: [mongo-1.internal, mongo-2.internal], user: edxapp, replica_set: rs0}
  redis: {host: `+db.Address+`, db: 2}
  smtp: {host: smtp.example.com, user: mailer, starttls: true, from: noreply@example.com}
  search: {url: "https://search.internal:9201"}
  jwt: {public_signing_jwk_set: jwks.json}
`)
	editSpec(t, f.p, "secrets:\n", "secrets:\n  mongodb_password: {env: "+testhoststest.SetUniqueEnv(t, "LABPLANE_TEST_MONGODB_PASSWORD", mongoPassword)+
		"}\n  smtp_password: {env: "+testhoststest.SetUniqueEnv(t, "LABPLANE_TEST_SMTP_PASSWORD", smtpPassword)+
		"}\n  redis_password: {env: "+testhoststest.SetUniqueEnv(t, "LABPLANE_TEST_REDIS_PASSWORD", redisPassword)+
		"}\n  jwt_private_signing_jwk: {env: "+testhoststest.SetUniqueEnv(t, "LABPLANE_TEST_JWK", privateJWK)+"}\n")

	run, events, err = f.deploy(ctx, t, "", lmsOnly)
	mustSucceed(t, "deploy r1 on postgresql", run, err)
	if got := ranOn(events, migrate); !slices.Equal(got, []string{"lms1", "lms3"}) {
		t.Errorf("postgresql: migrations ran on %v, want once per batch, on its first host: [lms1 lms3]", got)
	}
	assertLMS(ctx, t, f.p, "r1", "lms.test", "postgresql")
	var cfg struct {
		DocStore struct {
			Host       []string `yaml:"host"`
			Port       any      `yaml:"port"`
			Password   string   `yaml:"password"`
			ReplicaSet string   `yaml:"replicaSet"`
		} `yaml:"DOC_STORE_CONFIG"`
		Caches map[string]struct {
			Location string `yaml:"LOCATION"`
		} `yaml:"CACHES"`
		Broker        string           `yaml:"CELERY_BROKER_HOSTNAME"`
		EmailPassword string           `yaml:"EMAIL_HOST_PASSWORD"`
		EmailTLS      any              `yaml:"EMAIL_USE_TLS"`
		Search        []map[string]any `yaml:"ELASTIC_SEARCH_CONFIG"`
		JWT           map[string]any   `yaml:"JWT_AUTH"`
	}
	raw, err := os.ReadFile(filepath.Join(f.p.Set.UpperDir("lms3"), "edx/etc/lms.yml"))
	if err == nil {
		err = yaml.Unmarshal(raw, &cfg)
	}
	if err != nil || !slices.Equal(cfg.DocStore.Host, []string{"mongo-1.internal", "mongo-2.internal"}) || cfg.DocStore.Port != 27017 ||
		cfg.DocStore.Password != mongoPassword || cfg.DocStore.ReplicaSet != "rs0" || cfg.Caches["course_structure_cache"].Location != "redis://"+db.Address+":6379/2" ||
		cfg.Broker != db.Address+":6379" || cfg.EmailPassword != smtpPassword || cfg.EmailTLS != true ||
		len(cfg.Search) != 1 || cfg.Search[0]["port"] != 9201 || cfg.Search[0]["use_ssl"] != true ||
		cfg.JWT["JWT_ISSUER"] != "https://lms.test/oauth2" || !jsonEqual(cfg.JWT["JWT_PRIVATE_SIGNING_JWK"], privateJWK) ||
		!jsonEqual(cfg.JWT["JWT_PUBLIC_SIGNING_JWK_SET"], publicJWKSet) {
		t.Errorf("lms3's lms.yml: %v, %+v", err, cfg)
	}
	if log, err := os.ReadFile(run.LogPath); err != nil || strings.Contains(string(log), mongoPassword) || strings.Contains(string(log), smtpPassword) ||
		strings.Contains(string(log), privateJWK) || strings.Contains(string(log), redisPassword) {
		t.Errorf("the run's log holds a backing service's password (%v)", err)
	}
	// the Celery workers run the release on the broker: a task sent from lms3 is answered by an
	// lms host's worker, in r1's directory
	out, err := f.p.Set.SSH(ctx, "lms3", `cd /edx/app/edxapp/edx-platform &&
DJANGO_SETTINGS_MODULE=lms.envs.production SERVICE_VARIANT=lms LMS_CFG=/edx/etc/lms.yml venv/bin/python manage.py shell -c '
import json
from openedx.heartbeat.tasks import ping
print(json.dumps(ping.delay().get(timeout=60)))'`)
	var pong struct{ Release, Service, Host, Cwd, Prefix string }
	if err == nil {
		err = json.Unmarshal([]byte(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), &pong)
	}
	if err != nil || pong.Release != "r1" || pong.Service != "lms" || !slices.Contains(f.p.Hosts["lms"], pong.Host) ||
		pong.Cwd != "/edx/app/edxapp/releases/r1" || pong.Prefix != "/edx/app/edxapp/edx-platform/venv" {
		t.Errorf("a task sent to the lms workers: %+v, %v: %s; want it run by an lms host's worker on r1, in its virtualenv", pong, err, out)
	}

	log, err := f.p.Set.SSH(ctx, "db1", "cat /srv/pgdata/server.log")
	if err != nil {
		t.Fatalf("the server's log: %v: %s", err, log)
	}
	clients := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^client=(\S+) LOG:  statement: CREATE TABLE`).FindAllStringSubmatch(log, -1) {
		clients[m[1]] = true
	}
	lms1, _ := f.p.Set.Host("lms1")
	if len(clients) != 1 || !clients[lms1.Address] {
		t.Errorf("tables created by %v, want by lms1 (%s) alone:\n%s", slices.Sorted(maps.Keys(clients)), lms1.Address, log)
	}
}

// startRedis runs a Redis server on a test host, on the host's address and port 6379, with
// password (the machine's redis-server: installed here if missing, no service started). It is
// stopped when the test ends (and with the host in any case).
func startRedis(ctx context.Context, t *testing.T, s *testhosts.Set, name, password string) {
	t.Helper()
	if err := apt.Ensure(ctx, os.Stderr, "redis-server"); err != nil {
		t.Fatal(err)
	}
	h, _ := s.Host(name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := s.SSH(ctx, name, `if [ -f /run/labplane-test-redis.pid ]; then kill "$(cat /run/labplane-test-redis.pid)"; fi`); err != nil {
			t.Errorf("stop Redis on %s: %v: %s", name, err, out)
		}
	})
	out, err := s.SSH(ctx, name, `set -e
umask 077
cat >/etc/labplane-test-redis.conf <<'END'
bind `+h.Address+`
port 6379
requirepass `+password+`
daemonize yes
pidfile /run/labplane-test-redis.pid
logfile /tmp/labplane-test-redis.log
dir /tmp
save ""
appendonly no
END
redis-server /etc/labplane-test-redis.conf
for i in $(seq 50); do redis-cli -h `+h.Address+` ping 2>/dev/null | grep -q NOAUTH && exit 0; sleep 0.1; done
echo "Redis did not answer"; exit 1`)
	if err != nil {
		t.Fatalf("start Redis on %s: %v: %s", name, err, out)
	}
}

// startPostgres runs a PostgreSQL server on a test host (the machine's packages are the
// host's), listening on the host's address, with a database edxapp owned by a role edxapp
// whose password is password. It logs every DDL statement with its client's address. The
// server is stopped when the test ends (and with the host in any case).
func startPostgres(ctx context.Context, t *testing.T, s *testhosts.Set, name, password string) {
	t.Helper()
	// the test hosts see the machine's packages: the server for db1, the driver for the lms
	// hosts (installed here whatever ran before, no service started)
	if err := apt.Ensure(ctx, os.Stderr, "postgresql", "python3-psycopg2"); err != nil {
		t.Fatal(err)
	}
	h, _ := s.Host(name)
	script := `set -e
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
install -d -o postgres -g postgres -m 0700 /srv/pgdata
runuser -u postgres -- "$bin/initdb" -D /srv/pgdata --auth-local=peer --auth-host=scram-sha-256 >/dev/null
cat >>/srv/pgdata/postgresql.conf <<EOF
listen_addresses = '` + h.Address + `'
unix_socket_directories = '/tmp'
log_statement = 'ddl'
log_line_prefix = 'client=%h '
EOF
echo 'host all all ` + s.Network + ` scram-sha-256' >>/srv/pgdata/pg_hba.conf
runuser -u postgres -- "$bin/pg_ctl" -D /srv/pgdata -l /srv/pgdata/server.log -w start >/dev/null
runuser -u postgres -- psql -h /tmp -q -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE edxapp LOGIN PASSWORD '` + password + `'" -c "CREATE DATABASE edxapp OWNER edxapp"
`
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := s.SSH(ctx, name, `bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
if [ -f /srv/pgdata/postmaster.pid ]; then runuser -u postgres -- "$bin/pg_ctl" -D /srv/pgdata -m fast -w stop; fi`); err != nil {
			t.Errorf("stop PostgreSQL on %s: %v: %s", name, err, out)
		}
	})
	t0 := time.Now()
	if out, err := s.SSH(ctx, name, script); err != nil {
		t.Fatalf("start PostgreSQL on %s: %v: %s", name, err, out)
	}
	t.Logf("PostgreSQL on %s (%s) in %.1fs", name, h.Address, time.Since(t0).Seconds())
}

// A release that fails its health check must leave the releases a rollback needs: with one
// release kept, r1 stays while r2 (unhealthy on lms1) fails, and the rollback to r1 downloads
// nothing. Once a release passes its health check (r3, from a path on the controller), the
// old ones go.
func TestPruneAfterHealthCheck(t *testing.T) {
	t.Parallel()
	f := newRoleFixture(t, []string{"lms1", "cms1", "guacd1"}, nil, "", "r1")
	f.p.AddArtifact(t, "r2", standins.ArtifactOptions{UnhealthyOn: []string{"lms1"}})
	ctx := t.Context()
	keepOne := map[string]any{"openedx_keep_releases": 1}

	run, _, err := f.deployVars(ctx, t, "", lmsOnly, keepOne)
	mustSucceed(t, "deploy r1", run, err)
	testhoststest.AssertReleases(t, f.p.Set, "lms1", "r1")

	run, _, err = f.deployVars(ctx, t, "r2", lmsOnly, keepOne)
	if !errors.Is(err, deploy.ErrFailed) || len(run.Failures) != 1 || run.Failures[0].Host != "lms1" ||
		!strings.Contains(run.Failures[0].Task, "heartbeat") {
		t.Fatalf("deploy r2: %v, failures %+v: want lms1 failing the heartbeat", err, run.Failures)
	}
	testhoststest.AssertReleases(t, f.p.Set, "lms1", "r1 r2")

	// r1's artifact cannot be had any more: the rollback must find its directory
	gone := map[string]any{"openedx_keep_releases": 1, "openedx_artifact": f.p.Base + "/gone.tar.gz"}
	run, _, err = f.deployVars(ctx, t, "r1", lmsOnly, gone)
	mustSucceed(t, "roll back to r1", run, err)
	assertLMS(ctx, t, f.p, "r1", "lms.test", "sqlite3")

	r3, err := standins.Artifact(t.TempDir(), "r3")
	if err != nil {
		t.Fatal(err)
	}
	run, _, err = f.deployVars(ctx, t, "r3", lmsOnly, map[string]any{"openedx_keep_releases": 1, "openedx_artifact": r3})
	mustSucceed(t, "deploy r3 from a path on the controller", run, err)
	assertLMS(ctx, t, f.p, "r3", "lms.test", "sqlite3")
	testhoststest.AssertReleases(t, f.p.Set, "lms1", "r3")
}

// HTTPS: with a certificate, nginx serves the LMS over TLS on 443 with it, the health checks
// verify it for the site name against the spec's CA, and Django's cookies are secure; behind a
// load balancer, the hosts serve HTTP and Django trusts the balancer's X-Forwarded-Proto.
func TestTLS(t *testing.T) {
	t.Parallel()
	f := newRoleFixture(t, []string{"lms1", "cms1", "guacd1"}, nil, "", "r1")
	ctx := t.Context()
	dir := filepath.Join(f.p.Inventories, f.p.Env)
	files, err := standins.Certificate(dir, "lms.test", "studio.test")
	if err != nil {
		t.Fatal(err)
	}
	editSpec(t, f.p, "settings:\n", "settings:\n  tls: {mode: certificate, cert_file: cert.pem, key_file: key.pem, ca_file: ca.pem}\n")
	run, events, err := f.deploy(ctx, t, "", lmsOnly)
	mustSucceed(t, "deploy with a certificate", run, err)
	for _, e := range events {
		if strings.Contains(e.Task, "private key") && strings.Contains(string(e.Result), "PRIVATE KEY") {
			t.Errorf("the private key is in the run's events: %s", e.Task)
		}
	}
	lms, _ := f.p.Set.Host("lms1")
	base := "https://" + net.JoinHostPort(lms.Address, "443")
	if st, err := health.Service(ctx, base, "lms.test", files.CA); err != nil || st.Release != "r1" {
		t.Errorf("lms1 over https, verified against the CA: %+v %v", st, err)
	}
	if _, err := health.Service(ctx, base, "lms.test", ""); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("lms1 over https with the system's CAs: %v, want the certificate refused", err)
	}
	for _, hb := range f.p.Heartbeats(ctx) { // as labplane's gate checks them: https, the spec's CA
		if hb.Service == "lms" && (hb.Err != nil || hb.Status.Release != "r1") {
			t.Errorf("%s lms, checked as the gate does: %+v %v", hb.Host, hb.Status, hb.Err)
		}
	}
	assertSettings(t, f.p, "lms1", "SESSION_COOKIE_SECURE: true", "CSRF_COOKIE_SECURE: true")

	editSpec(t, f.p, "tls: {mode: certificate, cert_file: cert.pem, key_file: key.pem, ca_file: ca.pem}", "tls: {mode: load_balancer}")
	run, _, err = f.deploy(ctx, t, "", lmsOnly)
	mustSucceed(t, "deploy behind a load balancer", run, err)
	assertLMS(ctx, t, f.p, "r1", "lms.test", "sqlite3") // plain HTTP on port 80
	assertSettings(t, f.p, "lms1", "SESSION_COOKIE_SECURE: true", "- HTTP_X_FORWARDED_PROTO\n")
}

// assertSettings checks that a host's lms.yml holds each line.
func assertSettings(t *testing.T, p *testhoststest.Platform, host string, lines ...string) {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(p.Set.UpperDir(host), "edx/etc/lms.yml"))
	for _, l := range lines {
		if err != nil || !strings.Contains(string(cfg), l) {
			t.Errorf("%s lms.yml lacks %q (%v):\n%s", host, l, err, cfg)
		}
	}
}

// jwkPair is a new RSA signing key as edx-platform takes it: the private JWK and the public JWK
// set, as JSON text.
func jwkPair(t *testing.T) (private, publicSet string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.Bytes()) }
	public := map[string]string{"kty": "RSA", "kid": "labplane-test", "use": "sig", "alg": "RS512",
		"n": b64(key.N), "e": b64(big.NewInt(int64(key.E)))}
	priv := maps.Clone(public)
	key.Precompute()
	for k, v := range map[string]*big.Int{"d": key.D, "p": key.Primes[0], "q": key.Primes[1], "dp": key.Precomputed.Dp,
		"dq": key.Precomputed.Dq, "qi": key.Precomputed.Qinv} {
		priv[k] = b64(v)
	}
	p, _ := json.Marshal(priv)
	s, _ := json.Marshal(map[string]any{"keys": []map[string]string{public}})
	return string(p), string(s)
}

// jsonEqual tells whether got is JSON text holding the same value as want's.
func jsonEqual(got any, want string) bool {
	text, ok := got.(string)
	var a, b any
	return ok && json.Unmarshal([]byte(text), &a) == nil && json.Unmarshal([]byte(want), &b) == nil && reflect.DeepEqual(a, b)
}
