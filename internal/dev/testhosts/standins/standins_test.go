package standins_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/dev/testhosts"
	"github.com/labplane/labplane/internal/dev/testhosts/standins"
	"github.com/labplane/labplane/internal/health"
)

// needPackages installs what the stand-ins are built and run with (dpkg-dev, python3-django,
// gunicorn): not with -short.
func needPackages(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Debian packages installed: not with -short")
	}
	if err := testhosts.EnsurePackages(t.Context(), os.Stderr); err != nil {
		t.Fatal(err)
	}
}

// unpack unpacks a release artifact into a directory of the test's and builds the release's
// virtualenv as the roles do with venv_system_site_packages (seeing the machine's Debian
// packages, its wheels installed offline by the machine's pip): the directory, the release's
// and the virtualenv's python.
func unpack(t *testing.T, ctx context.Context, artifact string) (work, app, python string) {
	t.Helper()
	work = t.TempDir()
	if b, err := exec.CommandContext(ctx, "tar", "-xzf", artifact, "-C", work).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
	app = filepath.Join(work, strings.TrimSuffix(filepath.Base(artifact), ".tar.gz"))
	venv := filepath.Join(app, "venv")
	for _, args := range [][]string{
		{"/usr/bin/python3", "-m", "venv", "--system-site-packages", "--without-pip", venv},
		{filepath.Join(venv, "bin/python"), "-m", "pip", "install", "--no-index", "--find-links", filepath.Join(app, "wheels"), "-r", filepath.Join(app, standins.RequirementsFile)},
	} {
		if b, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, b)
		}
	}
	return work, app, filepath.Join(venv, "bin/python")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// heartbeat gets the stand-in's /heartbeat from gunicorn: the status code, and the checks as
// edx-platform answers them.
func heartbeat(t *testing.T, ctx context.Context, addr string) (int, map[string]health.HeartbeatCheck) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/heartbeat", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var checks map[string]health.HeartbeatCheck
	if err := json.NewDecoder(resp.Body).Decode(&checks); err != nil {
		t.Fatalf("/heartbeat: %d, not edx-platform's answer: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, checks
}

// start runs a server process until the test ends and waits for addr to accept connections.
func start(t *testing.T, addr string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	log := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(log)
	t.Fatalf("%s does not listen on %s:\n%s", name, addr, b)
}

func TestGuacdPackage(t *testing.T) {
	needPackages(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo := t.TempDir()
	if err := standins.GuacdRepository(ctx, repo); err != nil {
		t.Fatal(err)
	}
	index, err := os.ReadFile(filepath.Join(repo, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	deb := "guacd_" + standins.GuacdVersion + "_all.deb"
	for _, want := range []string{"Package: guacd\n", "Version: " + standins.GuacdVersion + "\n", "Filename: ./" + deb + "\n"} {
		if !strings.Contains(string(index), want) {
			t.Errorf("Packages lacks %q:\n%s", want, index)
		}
	}
	if _, err := os.Stat(filepath.Join(repo, "Packages.gz")); err != nil {
		t.Error(err)
	}
	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", filepath.Join(repo, deb), root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v: %s", err, out)
	}
	for _, f := range []string{"usr/sbin/guacd", "etc/init.d/guacd"} {
		if st, err := os.Stat(filepath.Join(root, f)); err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("%s: not an executable in the package (%v)", f, err)
		}
	}

	// the daemon reads guacd.conf as the real one does
	port := freePort(t)
	conf := filepath.Join(t.TempDir(), "guacd.conf")
	if err := os.WriteFile(conf, []byte("[server]\nbind_host = 127.0.0.1\nbind_port = "+strconv.Itoa(port)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	start(t, addr, []string{"GUACD_CONF=" + conf}, "/usr/bin/python3", filepath.Join(root, "usr/sbin/guacd"), "-f")

	args, err := health.Handshake(ctx, addr, "vnc")
	if err != nil {
		t.Fatal(err)
	}
	if len(args) < 2 || args[0] != "VERSION_1_5_0" || args[1] != "hostname" {
		t.Errorf("args: %q", args)
	}

	// an instruction split across writes, then an unknown protocol
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, part := range []string{"6.sel", "ect,3.", "rdp;"} {
		if _, err := c.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if inst, err := health.ReadInstruction(r); err != nil || inst[0] != "args" || !strings.Contains(strings.Join(inst, ","), "domain") {
		t.Errorf("split select rdp: %q %v", inst, err)
	}
	if _, err := c.Write([]byte(health.EncodeInstruction("connect", "h", "5900"))); err != nil {
		t.Fatal(err)
	}
	if inst, err := health.ReadInstruction(r); err != nil || inst[0] != "ready" {
		t.Errorf("connect: %q %v", inst, err)
	}
	if _, err := health.Handshake(ctx, addr, "telnet-over-carrier-pigeon"); err == nil || !strings.Contains(err.Error(), "error") {
		t.Errorf("unknown protocol: %v", err)
	}
}

func TestArtifact(t *testing.T) {
	needPackages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := t.TempDir()
	path, err := standins.Artifact(out, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "edx-platform-r1.tar.gz" {
		t.Errorf("artifact %s", path)
	}
	again, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if p2, err := standins.Artifact(t.TempDir(), "r1"); err != nil {
		t.Fatal(err)
	} else if b, _ := os.ReadFile(p2); string(b) != string(again) {
		t.Errorf("two builds of one release differ")
	}
	if _, err := standins.Artifact(out, "bad/name"); err == nil {
		t.Errorf("a release with a slash: no error")
	}

	work, app, python := unpack(t, ctx, path)
	cfg := filepath.Join(work, "lms.yml")
	write := func(body string) {
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	production := []string{"LMS_CFG=" + cfg, "DJANGO_SETTINGS_MODULE=lms.envs.production", "SERVICE_VARIANT=lms"}
	manage := func(env []string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, python, append([]string{"manage.py"}, args...)...)
		cmd.Dir, cmd.Env = app, append(os.Environ(), env...)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	write("DATABASES: {default: {ENGINE: django.db.backends.sqlite3, NAME: " + filepath.Join(work, "db.sqlite3") + "}}\n")
	if out, err := manage(production, "check"); err == nil || !strings.Contains(out, "missing SECRET_KEY") {
		t.Errorf("settings without SECRET_KEY: %v: %s", err, out)
	}
	static := filepath.Join(work, "static")
	good := "SECRET_KEY: not-a-secret-in-a-test\nSITE_NAME: lms.test\nALLOWED_HOSTS: [127.0.0.1]\nSTATIC_ROOT: " + static + "\n" +
		"DATABASES: {default: {ENGINE: django.db.backends.sqlite3, NAME: " + filepath.Join(work, "db.sqlite3") + "}}\n"
	// the backing services' settings as edx-platform reads them: of the wrong shape, refused
	for setting, want := range map[string]string{
		"DOC_STORE_CONFIG: {host: [m1], port: '27017', db: edxapp}":                                          "DOC_STORE_CONFIG['port'] is '27017', not a int",
		"DOC_STORE_CONFIG: {host: m1, port: 27017, db: edxapp}":                                              "DOC_STORE_CONFIG['host'] is 'm1', not a list",
		"CACHES: {general: {BACKEND: x, LOCATION: y}}":                                                       "CACHES has no default/BACKEND",
		"ELASTIC_SEARCH_CONFIG: [{host: s, port: 9200, use_ssl: 'false'}]":                                   "ELASTIC_SEARCH_CONFIG[0]['use_ssl'] is 'false', not a bool",
		"EMAIL_PORT: 587\nEMAIL_USE_TLS: true\nDEFAULT_FROM_EMAIL: a@example.com":                            "",
		"JWT_AUTH: {JWT_ISSUER: i, JWT_PRIVATE_SIGNING_JWK: {kty: RSA}, JWT_PUBLIC_SIGNING_JWK_SET: '{}'}":   "JWT_AUTH['JWT_PRIVATE_SIGNING_JWK'] is {'kty': 'RSA'}, not a str",
		"JWT_AUTH: {JWT_ISSUER: i, JWT_PRIVATE_SIGNING_JWK: '{kty: RSA}', JWT_PUBLIC_SIGNING_JWK_SET: '{}'}": "JWT_AUTH['JWT_PRIVATE_SIGNING_JWK'] is not JSON",
	} {
		write(good + setting + "\n")
		out, err := manage(production, "check")
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(out, want)) {
			t.Errorf("settings with %s: %v, want %q:\n%s", setting, err, want, out)
		}
	}
	write(good)
	// as edx-platform: settings not named are the development ones, refused on a host; the
	// production ones need SERVICE_VARIANT and the service's config file
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"LMS_CFG=" + cfg}, []string{"lms", "check"}, "lms.envs.devstack: development settings on a deployed host"},
		{[]string{"LMS_CFG=" + cfg, "DJANGO_SETTINGS_MODULE=lms.envs.production"}, []string{"check"}, "SERVICE_VARIANT is None, want 'lms'"},
		{[]string{"DJANGO_SETTINGS_MODULE=lms.envs.production", "SERVICE_VARIANT=lms"}, []string{"check"}, "LMS_CFG is not set"},
	} {
		if out, err := manage(c.env, c.args...); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("manage.py %v with %v: %v, want %q:\n%s", c.args, c.env, err, c.want, out)
		}
	}
	// outside the release's virtualenv, its dependencies are missing
	system := exec.CommandContext(ctx, "/usr/bin/python3", "manage.py", "check")
	system.Dir, system.Env = app, append(os.Environ(), production...)
	if out, err := system.CombinedOutput(); err == nil || !strings.Contains(string(out), "No module named 'standin_runtime'") {
		t.Errorf("manage.py run by the system's python: %v, want the release's dependency missing:\n%s", err, out)
	}
	if out, err := manage([]string{"LMS_CFG=" + cfg}, "lms", "--settings=production", "check"); err != nil {
		t.Errorf("the legacy form, manage.py lms --settings=production: %v: %s", err, out)
	}
	if out, err := manage(production, "collectstatic", "--noinput"); err != nil || !strings.Contains(out, "static file") {
		t.Errorf("collectstatic: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(static, "openedx/standin.css")); err != nil {
		t.Errorf("collectstatic did not collect the release's static file: %v", err)
	}

	// the Celery app (celery --app=lms.celery) takes its broker from the config file's parts, as
	// edx-platform's production settings build it
	write(good + "CELERY_BROKER_TRANSPORT: redis\nCELERY_BROKER_HOSTNAME: 'r.internal:6379'\nCELERY_BROKER_VHOST: '2'\n" +
		"CELERY_BROKER_USER: ''\nCELERY_BROKER_PASSWORD: pw\n")
	if out, err := manage(production, "shell", "-c", "from lms.celery import APP; print(APP.conf.broker_url, APP.conf.task_default_queue)"); err != nil ||
		strings.TrimSpace(out) != "redis://:pw@r.internal:6379/2 edx.lms.core.default" {
		t.Errorf("the LMS's Celery app: %v: %s", err, out)
	}
	write(good)

	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	start(t, addr, production, python, "-m", "gunicorn", "--bind", addr, "--chdir", app, "lms.wsgi:application")
	if code, checks := heartbeat(t, ctx, addr); code != 503 || checks["sql"].Status || !strings.Contains(checks["sql"].Message, "migrations not applied") {
		t.Errorf("heartbeat before migrate: %d %+v", code, checks)
	}
	if out, err := manage([]string{"LMS_CFG=" + cfg}, "lms", "--settings=production", "migrate", "--noinput"); err != nil ||
		!strings.Contains(out, "Applying heartbeat.0001_initial... OK") {
		t.Fatalf("migrate: %v: %s", err, out)
	}
	if out, err := manage(production, "migrate", "--noinput"); err != nil || !strings.Contains(out, "No migrations to apply.") {
		t.Errorf("second migrate: %v: %s", err, out)
	}
	code, checks := heartbeat(t, ctx, addr)
	if code != 200 || !reflect.DeepEqual(checks, map[string]health.HeartbeatCheck{"sql": {Status: true, Message: "OK"}, "modulestore": {Status: true, Message: "OK"}}) {
		t.Errorf("heartbeat: %d %+v", code, checks)
	}
}

// A release built broken on some hosts: it unpacks, migrates and runs, but its /heartbeat
// answers 503 on the hosts named (here, this machine), its modulestore check failing.
func TestArtifactUnhealthyOn(t *testing.T) {
	needPackages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, bad := range []string{"", "a b", `x"y`, "-x"} {
		if _, err := standins.ArtifactWith(t.TempDir(), "rb", standins.ArtifactOptions{UnhealthyOn: []string{bad}}); err == nil {
			t.Errorf("UnhealthyOn %q: no error", bad)
		}
	}
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	path, err := standins.ArtifactWith(t.TempDir(), "rb", standins.ArtifactOptions{UnhealthyOn: []string{"elsewhere", hostname}})
	if err != nil {
		t.Fatal(err)
	}
	work, app, python := unpack(t, ctx, path)
	if b, err := os.ReadFile(filepath.Join(app, "openedx/release.py")); err != nil ||
		!strings.Contains(string(b), `UNHEALTHY_ON = ("elsewhere", "`+hostname+`",)`) {
		t.Errorf("release.py: %v\n%s", err, b)
	}
	cfg := filepath.Join(work, "cms.yml")
	if err := os.WriteFile(cfg, []byte("SECRET_KEY: not-a-secret-in-a-test\nALLOWED_HOSTS: [127.0.0.1]\n"+
		"DATABASES: {default: {ENGINE: django.db.backends.sqlite3, NAME: "+filepath.Join(work, "db.sqlite3")+"}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	production := []string{"CMS_CFG=" + cfg, "DJANGO_SETTINGS_MODULE=cms.envs.production", "SERVICE_VARIANT=cms"}
	cmd := exec.CommandContext(ctx, python, "manage.py", "migrate", "--noinput")
	cmd.Dir, cmd.Env = app, append(os.Environ(), production...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v: %s", err, out)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	start(t, addr, production, python, "-m", "gunicorn", "--bind", addr, "--chdir", app, "cms.wsgi:application")
	code, checks := heartbeat(t, ctx, addr)
	if code != 503 || !checks["sql"].Status || checks["modulestore"].Status || checks["modulestore"].Message != "release rb is broken on "+hostname {
		t.Errorf("heartbeat of a release broken here: %d %+v", code, checks)
	}
}

// A release whose migrations fail on some hosts: there `manage.py migrate` exits 1 and applies
// nothing; elsewhere, and for every other command, it works.
func TestArtifactMigrateFailsOn(t *testing.T) {
	needPackages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := standins.ArtifactWith(t.TempDir(), "rm", standins.ArtifactOptions{MigrateFailsOn: []string{"a b"}}); err == nil {
		t.Errorf("MigrateFailsOn %q: no error", "a b")
	}
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		on   []string
		fail bool
	}{{[]string{"elsewhere"}, false}, {[]string{"elsewhere", hostname}, true}, {[]string{"*"}, true}} {
		path, err := standins.ArtifactWith(t.TempDir(), "rm", standins.ArtifactOptions{MigrateFailsOn: c.on})
		if err != nil {
			t.Fatal(err)
		}
		work, app, python := unpack(t, ctx, path)
		db := filepath.Join(work, "db.sqlite3")
		cfg := filepath.Join(work, "lms.yml")
		if err := os.WriteFile(cfg, []byte("SECRET_KEY: not-a-secret-in-a-test\n"+
			"DATABASES: {default: {ENGINE: django.db.backends.sqlite3, NAME: "+db+"}}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		manage := func(args ...string) (string, error) {
			cmd := exec.CommandContext(ctx, python, append([]string{"manage.py", "lms", "--settings=production"}, args...)...)
			cmd.Dir, cmd.Env = app, append(os.Environ(), "LMS_CFG="+cfg)
			b, err := cmd.CombinedOutput()
			return string(b), err
		}
		if out, err := manage("check"); err != nil {
			t.Errorf("MigrateFailsOn %v: check: %v: %s", c.on, err, out)
		}
		out, err := manage("migrate", "--noinput")
		switch {
		case c.fail && (err == nil || !strings.Contains(out, "this release's migrations fail on "+hostname)):
			t.Errorf("MigrateFailsOn %v: migrate here: %v: %s", c.on, err, out)
		case c.fail:
			if _, err := os.Stat(db); err == nil {
				t.Errorf("MigrateFailsOn %v: the failed migrate made the database", c.on)
			}
		case err != nil || !strings.Contains(out, "Applying heartbeat.0001_initial... OK"):
			t.Errorf("MigrateFailsOn %v: migrate: %v: %s", c.on, err, out)
		}
	}
}

// apt trusts the repository with its key (signed-by), and refuses it with another's: the
// index is fetched and verified by the machine's own apt-get, in a state of its own.
func TestGuacdRepositorySigned(t *testing.T) {
	needPackages(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo, other := t.TempDir(), t.TempDir()
	for _, dir := range []string{repo, other} {
		if err := standins.GuacdRepository(ctx, dir); err != nil {
			t.Fatal(err)
		}
	}
	update := func(key string) (string, error) {
		state := t.TempDir()
		list := filepath.Join(state, "guacd.list")
		if err := os.WriteFile(list, []byte("deb [signed-by="+key+"] file:"+repo+" ./\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(state, "lists", "partial"), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, "apt-get", "update", "-o", "Dir::Etc::sourcelist="+list, "-o", "Dir::Etc::sourceparts=-",
			"-o", "Dir::State::Lists="+filepath.Join(state, "lists"), "-o", "Dir::Cache="+state, "-o", "APT::Get::List-Cleanup=0",
			"-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root").CombinedOutput()
		return string(out), err
	}
	if out, err := update(filepath.Join(repo, standins.GuacdKeyFile)); err != nil || strings.Contains(out, "W: ") {
		t.Errorf("apt-get update with the repository's key: %v\n%s", err, out)
	}
	if out, err := update(filepath.Join(other, standins.GuacdKeyFile)); !strings.Contains(out, "NO_PUBKEY") {
		t.Errorf("apt-get update with another repository's key: %v, want NO_PUBKEY:\n%s", err, out)
	}
}
