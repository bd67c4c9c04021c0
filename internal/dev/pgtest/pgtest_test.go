package pgtest

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"
)

func TestStartStop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts (and may install) PostgreSQL: not with -short")
	}
	t.Setenv(EnvDSN, "")
	ctx := t.Context()
	began := time.Now()
	s, err := Start(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %v (install %v) at port %d", time.Since(began), s.InstallDuration, s.port)
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	if !strings.HasPrefix(s.DSN(), "postgres://postgres:") || !strings.Contains(s.DSN(), "@127.0.0.1:") {
		t.Errorf("DSN %q", s.DSN())
	}
	if !processAlive(s.pid) {
		t.Fatalf("postmaster %d not running", s.pid)
	}

	// A fresh database per call, reachable with the password in the DSN.
	name1, dsn1, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name2, _, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if name1 == name2 {
		t.Errorf("two databases named %s", name1)
	}
	var cur string
	if err := query(ctx, dsn1, "SELECT current_database()", &cur); err != nil || cur != name1 {
		t.Errorf("current_database() = %q, %v; want %q", cur, err, name1)
	}
	var fsync string
	if err := query(ctx, dsn1, "SHOW fsync", &fsync); err != nil || fsync != "off" {
		t.Errorf("fsync = %q, %v; want off", fsync, err)
	}
	if err := s.DropDatabase(ctx, name1); err != nil {
		t.Error(err)
	}
	if err := query(ctx, dsn1, "SELECT 1", new(int)); err == nil {
		t.Error("dropped database still reachable")
	}

	// An external server (LABPLANE_TEST_POSTGRES_DSN): used, not started nor stopped.
	t.Setenv(EnvDSN, s.DSN())
	ext, err := Start(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !ext.external || ext.DSN() != s.DSN() || ext.pid != 0 {
		t.Errorf("external server: %+v", ext)
	}
	extDB := ext.Database(t)
	if err := query(ctx, extDB, "SELECT 1", new(int)); err != nil {
		t.Errorf("database on the external server: %v", err)
	}
	if err := ext.Stop(); err != nil {
		t.Error(err)
	}
	if !processAlive(s.pid) {
		t.Fatal("stopping the external server stopped the real one")
	}

	pid, dir := s.pid, s.dir
	stopped = true
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if processAlive(pid) {
		t.Errorf("postmaster %d still running after Stop", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Stop: %v", dir, err)
	}
}

func TestWithDatabase(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"postgres://u:p%40w@127.0.0.1:5433/postgres?sslmode=disable", "postgres://u:p%40w@127.0.0.1:5433/t_1?sslmode=disable"},
		{"postgresql://u@h/db", "postgresql://u@h/t_1"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=t_1"},
	} {
		got, err := withDatabase(c.in, "t_1")
		if err != nil || got != c.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func query(ctx context.Context, dsn, q string, dest any) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.QueryRowContext(ctx, q).Scan(dest)
}

func TestStartUnreachableDir(t *testing.T) {
	if testing.Short() {
		t.Skip("starts (and may install) PostgreSQL: not with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("only root runs the server as another user")
	}
	t.Setenv(EnvDSN, "")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := Start(t.Context(), dir)
	if err == nil {
		s.Stop()
		t.Fatal("Start under a directory postgres cannot traverse: want an error")
	}
	if !strings.Contains(err.Error(), "cannot write") {
		t.Errorf("unclear error: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Start left %d entries in %s", len(entries), dir)
	}
}
