package api_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the baseline's PostgreSQL driver
	_ "modernc.org/sqlite"             // the baseline's SQLite driver

	"github.com/labplane/labplane/internal/api"
	"github.com/labplane/labplane/internal/apt"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/store"
)

// load is what a wrk run measured.
type load struct {
	requests int
	errors   int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (l load) rate() float64 { return float64(l.requests) / l.elapsed.Seconds() }

// wrkScript sends heartbeats to random labs hb00000..hb<n-1> with the test token.
const wrkScript = `
math.randomseed(os.time())
request = function()
  local id = string.format("hb%%05d", math.random(0, %d - 1))
  return wrk.format("POST", "/v1/labs/" .. id .. "/heartbeat", {["Authorization"] = "Bearer %s"}, "")
end
`

var (
	wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPct  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)`)
	wrkErrs = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
)

// driveWrk runs wrk (Debian's package, installed if missing) against addr: a load generator
// in C, in its own process, so that the server under test has the CPU the Go one would take.
func driveWrk(b *testing.B, addr string, labsN, conns int, d time.Duration) load {
	b.Helper()
	if err := apt.Ensure(b.Context(), os.Stderr, "wrk"); err != nil {
		b.Fatal(err)
	}
	script := filepath.Join(b.TempDir(), "heartbeat.lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(wrkScript, labsN, token)), 0o600); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("wrk", "-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())),
		"--latency", "-s", script, "http://"+addr).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	var l load
	m := wrkRate.FindSubmatch(out)
	if m == nil {
		b.Fatalf("wrk printed no rate:\n%s", out)
	}
	rate, _ := strconv.ParseFloat(string(m[1]), 64)
	l.elapsed = d
	l.requests = int(rate * d.Seconds())
	for _, p := range wrkPct.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(p[2]), 64)
		dur := time.Duration(v * float64(map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(p[3])]))
		if string(p[1]) == "50" {
			l.p50 = dur
		} else {
			l.p99 = dur
		}
	}
	if e := wrkErrs.Find(out); e != nil {
		l.errors = 1
		b.Logf("wrk: %s", e)
	}
	return l
}

// driveWarm is driveWrk after a warm-up of warmUp, not counted: the connections, the
// database's backends and the statements they prepare are made then (their cost put 400 ms
// into a cold run's p99 on PostgreSQL, and nothing into the rest).
func driveWarm(b *testing.B, addr string, labsN, conns int, d time.Duration) load {
	b.Helper()
	driveWrk(b, addr, labsN, conns, warmUp)
	return driveWrk(b, addr, labsN, conns, d)
}

const warmUp = 2 * time.Second

// heartbeatRig is the API on one store with n active labs.
func heartbeatRig(b *testing.B, driver, dsn string, n int) (*store.Store, *http.Server, string) {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("hb%05d", i) // as wrkScript names them
		if _, err := st.CreateLab(ctx, labs.Lab{ID: id, Learner: id, Course: "bench", Template: "lab", Cloud: "a",
			StackName: "lab-" + id, StackID: "s" + id, Status: labs.Active, CreatedAt: now},
			labs.Event{At: now, Actor: "bench", Action: "launch"}); err != nil {
			b.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr := &lifecycle.Manager{Site: "bench", Registry: st, Locks: st, Targets: []lifecycle.Target{{Cloud: fakecloud.New("a", 4, 0)}},
		Rules: policy.Set{Default: policy.Rules{IdleSuspendAfter: time.Minute}}, Now: time.Now, Log: log}
	a := &api.Server{Labs: mgr, Registry: st, Auth: tokens{}, Log: log, Policy: mgr.Rules, Now: time.Now}
	srv, addr := listen(b, a.Handler())
	return st, srv, addr
}

func listen(b *testing.B, h http.Handler) (*http.Server, string) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return srv, ln.Addr().String()
}

// baseline is a bare net/http handler doing the same single-row write on the same database.
func baseline(b *testing.B, driver, dsn string) (*http.Server, string, *sql.DB) {
	b.Helper()
	sqlDriver, q := "pgx", `UPDATE labs SET last_heartbeat = $1, version = version + 1 WHERE id = $2`
	var at func(time.Time) any = func(t time.Time) any { return t }
	if driver == store.SQLite {
		sqlDriver = "sqlite"
		q = strings.NewReplacer("$1", "?", "$2", "?").Replace(q)
		dsn += "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)"
		at = func(t time.Time) any { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }
	}
	db, err := sql.Open(sqlDriver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	if driver == store.SQLite {
		db.SetMaxOpenConns(1)
	} else {
		db.SetMaxOpenConns(16)
		db.SetMaxIdleConns(16)
	}
	srv, addr := listen(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := db.ExecContext(r.Context(), q, at(time.Now()), r.PathValue("id")); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	mux := http.NewServeMux()
	mux.Handle("POST /v1/labs/{id}/heartbeat", srv.Handler)
	srv.Handler = mux
	return srv, addr, db
}

// BenchmarkHeartbeats drives heartbeats at the API over loopback, on SQLite and on PostgreSQL,
// beside a bare net/http handler doing the same single-row write: throughput and p99 of each,
// after a warm-up.
//
//	go test ./internal/api -run '^$' -bench Heartbeats -benchtime 1x
func BenchmarkHeartbeats(b *testing.B) {
	const labsN, workers, d = 1000, 32, 5 * time.Second
	for _, driver := range []string{store.SQLite, store.Postgres} {
		b.Run(driver, func(b *testing.B) {
			for b.Loop() {
				dsn := b.TempDir() + "/bench.db"
				if driver == store.Postgres {
					dsn = pg.Database(b)
				}
				st, srv, addr := heartbeatRig(b, driver, dsn, labsN)
				got := driveWarm(b, addr, labsN, workers, d)
				srv.Close()
				st.Close()
				bsrv, baddr, db := baseline(b, driver, dsn)
				base := driveWarm(b, baddr, labsN, workers, d)
				bsrv.Close()
				db.Close()
				if got.errors > 0 || base.errors > 0 {
					b.Fatalf("errors: api %d, baseline %d", got.errors, base.errors)
				}
				fmt.Printf("heartbeats on %s, %d connections, %s each:\n", driver, workers, d)
				fmt.Printf("  labplane API:      %7.0f/s  p50 %6s  p99 %6s\n", got.rate(), got.p50.Round(10*time.Microsecond), got.p99.Round(10*time.Microsecond))
				fmt.Printf("  bare handler:      %7.0f/s  p50 %6s  p99 %6s  (the same single-row write)\n", base.rate(), base.p50.Round(10*time.Microsecond), base.p99.Round(10*time.Microsecond))
				fmt.Printf("  API / bare:        %7.2f x throughput, %.2f x p99\n", got.rate()/base.rate(), got.p99.Seconds()/base.p99.Seconds())
				b.ReportMetric(got.rate(), "api_req/s")
				b.ReportMetric(float64(got.p99.Microseconds())/1000, "api_p99_ms")
				b.ReportMetric(base.rate(), "bare_req/s")
				b.ReportMetric(float64(base.p99.Microseconds())/1000, "bare_p99_ms")
			}
		})
	}
}
