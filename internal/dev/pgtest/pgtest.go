// Package pgtest gives tests a real PostgreSQL server: a throwaway cluster in a temporary
// directory, listening on 127.0.0.1 on a free port, started once per test binary (see Main),
// with a fresh database per test (see Server.Database).
//
// If LABPLANE_TEST_POSTGRES_DSN is set, that server is used instead and nothing is started.
// If no PostgreSQL server binary is installed, Start installs Debian's postgresql package
// through the project's one installer (internal/apt: root only, no service started).
// With -short, Main starts nothing and the tests that need the server skip themselves.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/outputtail"
)

// EnvDSN names the environment variable that points the tests at an existing server.
const EnvDSN = "LABPLANE_TEST_POSTGRES_DSN"

// errStopped: the server was stopped (and its databases went with it).
var errStopped = errors.New("pgtest: server stopped")

// Server is a PostgreSQL server for tests: one this package started, or the external one
// named by LABPLANE_TEST_POSTGRES_DSN.
type Server struct {
	dsn      string // admin DSN (database "postgres", or the external one)
	external bool

	dir     string // temporary directory holding data/, the socket and the logs
	binDir  string
	pid     int // the postmaster's PID, from postmaster.pid
	watcher *os.Process
	port    int
	// StartDuration is how long Start took (install excluded; see InstallDuration).
	StartDuration time.Duration
	// InstallDuration is how long the apt-get install took, zero if none was needed.
	InstallDuration time.Duration

	mu       sync.Mutex
	admin    *sql.DB
	stopOnce sync.Once
	stopErr  error
}

// Start starts a throwaway PostgreSQL server in a fresh directory created under dir
// ("" means os.TempDir(); when running as root it must be traversable by the postgres user),
// or, if LABPLANE_TEST_POSTGRES_DSN is set, returns a Server for that one and starts nothing.
// Call Stop when done, whatever happens.
func Start(ctx context.Context, dir string) (*Server, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		s := &Server{dsn: dsn, external: true}
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("pgtest: %s: open: %s", EnvDSN, redact(err.Error(), dsn))
		}
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("pgtest: %s: connect: %s", EnvDSN, redact(err.Error(), dsn))
		}
		s.admin = db
		return s, nil
	}

	s := &Server{}
	began := time.Now()
	binDir, installed, err := findOrInstall(ctx)
	if err != nil {
		return nil, err
	}
	if installed {
		s.InstallDuration = time.Since(began)
	}
	began = time.Now()
	s.binDir = binDir

	s.dir, err = os.MkdirTemp(dir, "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: temp dir: %w", err)
	}
	if err := s.start(ctx); err != nil {
		if serr := s.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
		return nil, err
	}
	s.StartDuration = time.Since(began)
	return s, nil
}

// StartFor starts a server of tb's own as Start does, under the test's deadline only (it may
// install PostgreSQL), and stops it when the test ends, pass or fail.
func StartFor(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start(tb.Context(), "")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stop PostgreSQL: %v", err)
		}
	})
	return s
}

// DSN returns the DSN of the server's admin database.
func (s *Server) DSN() string { return s.dsn }

// Database creates a fresh, uniquely named database and returns its DSN. It is dropped when
// tb's test ends (the whole server goes away at Stop anyway, unless it is an external one).
// On a nil Server (Main with -short) it skips the test.
func (s *Server) Database(tb testing.TB) string {
	tb.Helper()
	if s == nil {
		tb.Skip("needs a PostgreSQL server: not with -short")
	}
	ctx := context.Background()
	name, dsn, err := s.CreateDatabase(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.DropDatabase(context.Background(), name); err != nil && !errors.Is(err, errStopped) {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return dsn
}

// CreateDatabase creates a fresh, uniquely named database and returns its name and DSN.
func (s *Server) CreateDatabase(ctx context.Context) (name, dsn string, err error) {
	name = "t_" + randomHex(8)
	db, err := s.adminDB()
	if err != nil {
		return "", "", err
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	dsn, err = withDatabase(s.dsn, name)
	if err != nil {
		return "", "", err
	}
	return name, dsn, nil
}

// DropDatabase drops a database made by CreateDatabase, closing its connections.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	db, err := s.adminDB()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// Stop stops the server Start started (pg_ctl stop -m fast, then a kill of the PID it recorded
// if that failed) and removes its directory. For an external server it only closes the admin
// connection. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	var errs []error
	s.mu.Lock()
	if s.admin != nil {
		if err := s.admin.Close(); err != nil {
			errs = append(errs, err)
		}
		s.admin = nil
	}
	s.mu.Unlock()
	if s.external {
		return errors.Join(errs...)
	}
	if s.watcher != nil {
		// The watchdog is only there for when this process dies without calling Stop.
		_ = s.watcher.Kill()
		_, _ = s.watcher.Wait()
	}
	if s.pid > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := s.run(ctx, s.bin("pg_ctl"), "stop", "-D", s.dataDir(), "-m", "fast", "-w", "-t", "30")
		cancel()
		// pg_ctl returns once postmaster.pid is gone, an instant before the process exits.
		if !waitExit(s.pid, 5*time.Second) {
			errs = append(errs, fmt.Errorf("pgtest: pg_ctl stop: %v; killing postmaster %d", err, s.pid))
			_ = syscall.Kill(s.pid, syscall.SIGQUIT)
			if !waitExit(s.pid, 10*time.Second) {
				_ = syscall.Kill(s.pid, syscall.SIGKILL)
				if !waitExit(s.pid, 5*time.Second) {
					errs = append(errs, fmt.Errorf("pgtest: postmaster %d survived SIGKILL", s.pid))
				}
			}
		}
	}
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("pgtest: remove %s: %w", s.dir, err))
		}
	}
	return errors.Join(errs...)
}

// Main is for TestMain: it starts a server (or takes LABPLANE_TEST_POSTGRES_DSN), stores it in
// *srv, runs the tests and stops the server whatever happens (tests failing, a panic in TestMain's
// goroutine, SIGINT or SIGTERM; if the process dies without running Stop, for instance on a panic
// in a test goroutine or a go test -timeout, a watchdog process stops the server), then exits.
func Main(m *testing.M, srv **Server) {
	os.Exit(run(m, srv))
}

func run(m *testing.M, srv **Server) (code int) {
	if !flag.Parsed() {
		flag.Parse() // for testing.Verbose; m.Run parses again, harmlessly
	}
	if testing.Short() {
		return m.Run() // *srv stays nil: Database skips
	}
	// no deadline of its own: an install on a busy machine takes what it takes (go test's
	// -timeout still applies)
	s, err := Start(context.Background(), "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: no PostgreSQL server for the tests: %v\n", err)
		return 1
	}
	done := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	defer func() {
		close(done)
		signal.Stop(sigs)
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}()
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "pgtest: %v: stopping PostgreSQL\n", sig)
			_ = s.Stop()
			os.Exit(2)
		case <-done:
		}
	}()

	*srv = s
	if !s.external {
		if s.InstallDuration > 0 {
			fmt.Fprintf(os.Stderr, "pgtest: installed PostgreSQL in %v\n", s.InstallDuration.Round(time.Millisecond))
		}
		if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "pgtest: PostgreSQL started in %v (port %d)\n", s.StartDuration.Round(time.Millisecond), s.port)
		}
	}
	return m.Run()
}

// start runs initdb, configures and starts the server, and records its PID.
func (s *Server) start(ctx context.Context) error {
	asPostgres := os.Geteuid() == 0
	var uid, gid int
	if asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("pgtest: running as root needs the postgres user: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return fmt.Errorf("pgtest: chown %s: %w", s.dir, err)
		}
		if err := s.run(ctx, "test", "-w", s.dir); err != nil {
			return fmt.Errorf("pgtest: the postgres user cannot write to %s: start it under a directory every user can traverse", s.dir)
		}
	}
	password := randomHex(16)
	pwfile := filepath.Join(s.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if asPostgres {
		if err := os.Chown(pwfile, uid, gid); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	if err := s.run(ctx, s.bin("initdb"), "-D", s.dataDir(), "-U", "postgres", "--pwfile="+pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return fmt.Errorf("pgtest: initdb: %w", err)
	}
	_ = os.Remove(pwfile)

	var lastErr error
	for try := 0; try < 3; try++ {
		port, err := freePort()
		if err != nil {
			return fmt.Errorf("pgtest: free port: %w", err)
		}
		conf := strings.Join([]string{
			"",
			"# pgtest",
			"listen_addresses = '127.0.0.1'",
			"port = " + strconv.Itoa(port),
			"unix_socket_directories = '" + s.dir + "'",
			"fsync = off",
			"synchronous_commit = off",
			"full_page_writes = off",
			"max_connections = 300",
			"shared_buffers = 64MB",
			"",
		}, "\n")
		f, err := os.OpenFile(filepath.Join(s.dataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		_, err = f.WriteString(conf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		logFile := filepath.Join(s.dir, "postgres.log")
		err = s.run(ctx, s.bin("pg_ctl"), "start", "-D", s.dataDir(), "-l", logFile, "-w", "-t", "60")
		if pid, perr := readPID(s.dataDir()); perr == nil && processAlive(pid) {
			s.pid = pid
		}
		if err == nil && s.pid > 0 {
			s.port = port
			break
		}
		lastErr = fmt.Errorf("pgtest: pg_ctl start: %w\n%s", err, tail(logFile, 2000))
		if s.pid > 0 {
			return lastErr // it runs but pg_ctl failed: do not try another port
		}
	}
	if s.port == 0 {
		return lastErr
	}
	s.watch()

	s.dsn = (&url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("postgres", password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}).String()
	db, err := sql.Open("pgx", s.dsn)
	if err != nil {
		return fmt.Errorf("pgtest: open admin connection: %w", err)
	}
	s.admin = db
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("pgtest: connect: %s", redact(err.Error(), s.dsn))
	}
	return nil
}

// watch starts a detached watchdog that stops the server if this process goes away without
// calling Stop (a panic in a test, a go test -timeout, SIGKILL).
func (s *Server) watch() {
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 1; done
%s
rm -rf %s`, os.Getpid(), shellJoin(s.asPostgres(s.bin("pg_ctl"), "stop", "-D", s.dataDir(), "-m", "immediate", "-w")), shellQuote(s.dir))
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err == nil {
		s.watcher = cmd.Process
	}
}

func (s *Server) adminDB() (*sql.DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return nil, errStopped
	}
	return s.admin, nil
}

func (s *Server) dataDir() string        { return filepath.Join(s.dir, "data") }
func (s *Server) bin(name string) string { return filepath.Join(s.binDir, name) }

// asPostgres returns argv run as the postgres user when this process is root (postgres
// refuses to run as root), argv itself otherwise.
func (s *Server) asPostgres(argv ...string) []string {
	if os.Geteuid() != 0 {
		return argv
	}
	return append([]string{"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"}, argv...)
}

// run runs a PostgreSQL program (as postgres when root), its output going to a log file in
// the server's directory so that a daemon it starts does not hold a pipe of ours.
func (s *Server) run(ctx context.Context, argv ...string) error {
	name := filepath.Base(argv[0])
	argv = s.asPostgres(argv...)
	out, err := os.CreateTemp(s.dir, "cmd-*.log")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, tail(out.Name(), 2000))
	}
	return nil
}

// findOrInstall returns the bin directory of the newest installed PostgreSQL, installing
// Debian's postgresql package first if there is none.
func findOrInstall(ctx context.Context) (binDir string, installed bool, err error) {
	if d := findBinDir(); d != "" {
		return d, false, nil
	}
	if os.Geteuid() != 0 {
		return "", false, fmt.Errorf("pgtest: no /usr/lib/postgresql/*/bin/postgres and not root: install Debian's postgresql package or set %s", EnvDSN)
	}
	if err := apt.Ensure(ctx, os.Stderr, "postgresql"); err != nil {
		return "", false, err
	}
	if d := findBinDir(); d != "" {
		return d, true, nil
	}
	return "", false, errors.New("pgtest: postgresql installed but no /usr/lib/postgresql/*/bin/postgres found")
}

func findBinDir() string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(matches) == 0 {
		return ""
	}
	version := func(p string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
		return v
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return filepath.Dir(matches[0])
}

// withDatabase returns dsn with its database replaced by name (URL or key=value form).
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("pgtest: cannot parse the server's DSN as a URL")
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// key=value: a later key overrides an earlier one.
	return strings.TrimSpace(dsn) + " dbname=" + name, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func readPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(first))
}

// processAlive reports whether pid runs (a zombie does not).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: comm may hold spaces and parentheses, the state follows the last ')'.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// waitExit waits up to d for pid to exit and reports whether it did.
func waitExit(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// redact removes the DSN and its password from msg.
func redact(msg, dsn string) string {
	if dsn != "" {
		msg = strings.ReplaceAll(msg, dsn, "[dsn]")
	}
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "[password]")
		}
	}
	return msg
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(outputtail.Of(b, n))
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}
