package api_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the baseline's PostgreSQL driver
	_ "modernc.org/sqlite"             // the baseline's SQLite driver

	"github.com/labplane/labplane/internal/api"
	"github.com/labplane/labplane/internal/fakecloud"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/policy"
	"github.com/labplane/labplane/internal/store"
)

// load is what a load run measured.
type load struct {
	requests int
	errors   int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (l load) rate() float64 { return float64(l.requests) / l.elapsed.Seconds() }

// drive sends POST url(i) from workers connections for d and measures each request.
func drive(b *testing.B, workers int, d time.Duration, url func(r *rand.Rand) string) load {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers,
		DialContext: (&net.Dialer{}).DialContext}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			var mine []time.Duration
			bad := 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				req, _ := http.NewRequest("POST", url(rng), nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					bad++
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			errs += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(float64(len(all))*p))] }
	return load{requests: len(all), errors: errs, elapsed: elapsed, p50: pct(0.50), p99: pct(0.99)}
}

// heartbeatRig is the API on one store with n active labs.
func heartbeatRig(b *testing.B, driver, dsn string, n int) (*store.Store, []string, *http.Server, string) {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	now := time.Now()
	for i := range ids {
		ids[i] = fmt.Sprintf("hb%05d", i)
		if _, err := st.CreateLab(ctx, labs.Lab{ID: ids[i], Learner: ids[i], Course: "bench", Template: "lab", Cloud: "a",
			StackName: "lab-" + ids[i], StackID: "s" + ids[i], Status: labs.Active, CreatedAt: now},
			labs.Event{At: now, Actor: "bench", Action: "launch"}); err != nil {
			b.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr := &lifecycle.Manager{Site: "bench", Registry: st, Targets: []lifecycle.Target{{Cloud: fakecloud.New("a", 4, 0)}},
		Rules: policy.Set{Default: policy.Rules{IdleSuspendAfter: time.Minute}}, Now: time.Now, Log: log}
	a := &api.Server{Labs: mgr, Registry: st, Auth: tokens{}, Log: log}
	srv, addr := listen(b, a.Handler())
	return st, ids, srv, addr
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
// beside a bare net/http handler doing the same single-row write: throughput and p99 of each.
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
				st, ids, srv, addr := heartbeatRig(b, driver, dsn, labsN)
				got := drive(b, workers, d, func(r *rand.Rand) string {
					return "http://" + addr + "/v1/labs/" + ids[r.IntN(len(ids))] + "/heartbeat"
				})
				srv.Close()
				st.Close()
				bsrv, baddr, db := baseline(b, driver, dsn)
				base := drive(b, workers, d, func(r *rand.Rand) string {
					return "http://" + baddr + "/v1/labs/" + ids[r.IntN(len(ids))] + "/heartbeat"
				})
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
