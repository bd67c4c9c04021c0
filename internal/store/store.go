// Package store is labplane's registry of labs and its audit trail, on SQLite (the embedded
// default, modernc.org/sqlite) or PostgreSQL (pgx). The SQL is written once with ? placeholders
// and rebound to $n for PostgreSQL; the schema is migrated at Open by goose from migrations
// embedded per dialect.
//
// Concurrency: every lab row carries a version. UpdateLab writes only if the version it was
// given is still the stored one (labs.ErrStale otherwise), and Heartbeat bumps it, so several
// goroutines or processes can share a database without losing an update.
//
// The store also keeps the API's tokens (only their SHA-256; see CreateToken) and gives the
// processes sharing a database named locks (TryLock), so that several replicas can share the
// scheduler's jobs.
//
// Times are stored in UTC with microsecond precision (PostgreSQL's timestamptz) and come back
// in UTC, truncated to the microsecond on both drivers; the zero time is stored as NULL.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The drivers Open accepts.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// sqliteTimeLayout is how SQLite stores times: fixed width, so text order is time order.
const sqliteTimeLayout = "2006-01-02T15:04:05.000000Z"

// liveIndex is the partial unique index that allows one live lab per learner and course.
const liveIndex = "labs_live_learner_course"

// Store is the registry. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	// lockDB, on PostgreSQL, is the pool of the connections that hold TryLock's advisory
	// locks, apart from db: a lock keeps its connection for as long as it is held (a cloud's
	// slots for a whole stack action), and must not starve the queries of their bounded pool.
	lockDB *sql.DB
	driver string
	locks  lockState
	stmts  stmtCache // on SQLite
	beats  beats     // on PostgreSQL
}

// Open opens the database and migrates its schema. driver is "sqlite" (dsn: a file path or
// a file: URI; WAL, foreign keys, a busy timeout and immediate transactions are added as DSN
// parameters unless the DSN sets them) or "postgres" (dsn: a URL or key=value string for pgx).
// Errors never contain the DSN, which may hold a password.
func Open(ctx context.Context, driver, dsn string) (*Store, error) {
	var (
		sqlDriver string
		dialect   goose.Dialect
		connDSN   = dsn
		opts      = []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	)
	switch driver {
	case SQLite:
		sqlDriver, dialect, connDSN = "sqlite", goose.DialectSQLite3, sqliteDSN(dsn)
	case Postgres:
		sqlDriver, dialect = "pgx", goose.DialectPostgres
		// Serialise migrations of processes that open the same database at the same time.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 600))
		if err != nil {
			return nil, fmt.Errorf("open store (%s): migration lock: %w", driver, err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	default:
		return nil, fmt.Errorf("open store: unknown driver %q (accepted: %q, %q)", driver, SQLite, Postgres)
	}
	if strings.TrimSpace(dsn) == "" {
		return nil, fmt.Errorf("open store (%s): empty DSN", driver)
	}
	fail := func(what string, err error) error {
		return &redactedError{
			msg: fmt.Sprintf("open store (%s): %s: %s", driver, what, Redact(err.Error(), dsn, connDSN)),
			err: err,
		}
	}

	if driver == SQLite {
		if err := keepSQLiteFilePrivate(dsn); err != nil {
			return nil, fail("open", err)
		}
	}
	db, err := sql.Open(sqlDriver, connDSN)
	if err != nil {
		return nil, fail("open", err)
	}
	if driver == SQLite {
		// One connection: SQLite has one writer at a time, and a single connection also keeps
		// a :memory: database alive and avoids lock upgrades between connections.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	} else {
		// as many idle as open: a connection closed after a burst costs a new one a SCRAM
		// handshake (a PBKDF2), which under load was most of a heartbeat's CPU
		db.SetMaxOpenConns(maxPostgresConns)
		db.SetMaxIdleConns(maxPostgresConns)
		db.SetConnMaxIdleTime(5 * time.Minute)
	}
	// SQLite: the first connection sets WAL mode and the migrations create the tables; two
	// processes opening a new file at once must take turns (goose has no SQLite lock)
	if driver == SQLite {
		unlock, err := lockSQLiteMigrations(ctx, dsn)
		if err != nil {
			db.Close()
			return nil, fail("migrate", err)
		}
		defer unlock()
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fail("connect", err)
	}

	sub, err := fs.Sub(migrations, "migrations/"+driver)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store (%s): migrations: %w", driver, err)
	}
	if !upToDate(ctx, db, sub) {
		provider, err := goose.NewProvider(dialect, db, sub, opts...)
		if err != nil {
			db.Close()
			return nil, fail("migrations", err)
		}
		if _, err := provider.Up(ctx); err != nil {
			db.Close()
			return nil, fail("migrate", err)
		}
	}
	st := &Store{db: db, driver: driver}
	if driver == Postgres {
		// unbounded: every lock held has one (PostgreSQL's max_connections is the bound);
		// few idle, as locks come and go
		if st.lockDB, err = sql.Open(sqlDriver, connDSN); err != nil {
			db.Close()
			return nil, fail("open", err)
		}
		st.lockDB.SetMaxIdleConns(2)
		st.lockDB.SetConnMaxIdleTime(5 * time.Minute)
	}
	if driver == SQLite {
		st.locks.path, st.locks.memScope = sqliteLockBase(dsn)
	}
	return st, nil
}

// upToDate reports whether the database has the last embedded migration applied: then Open
// does not run goose, which parses every migration file before it looks (a tenth of an
// Open's time, and every command opens the store). Anything else, goose sees to.
func upToDate(ctx context.Context, db *sql.DB, migrations fs.FS) bool {
	names, err := fs.Glob(migrations, "*.sql") // in lexical order: 00001_init.sql first
	if err != nil || len(names) == 0 {
		return false
	}
	number, _, _ := strings.Cut(names[len(names)-1], "_")
	last, err := strconv.ParseInt(number, 10, 64)
	if err != nil {
		return false
	}
	var applied sql.NullInt64
	err = db.QueryRowContext(ctx, `SELECT MAX(version_id) FROM goose_db_version WHERE is_applied`).Scan(&applied)
	return err == nil && applied.Valid && applied.Int64 == last
}

// Close releases every lock TryLock took through this store and closes the database.
func (s *Store) Close() error {
	s.releaseAllLocks()
	s.stmts.close()
	if s.lockDB != nil {
		_ = s.lockDB.Close()
	}
	return s.db.Close()
}

// Driver returns the driver the store was opened with: "sqlite" or "postgres".
func (s *Store) Driver() string { return s.driver }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) (err error) {
	defer markUnavailable(&err)
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", s.driver, err)
	}
	return nil
}

// sqliteDSN adds the parameters labplane relies on to a SQLite DSN, unless it sets them.
func sqliteDSN(dsn string) string {
	lower := strings.ToLower(dsn)
	var add []string
	for _, p := range []struct{ key, param string }{
		// busy_timeout first: the pragmas run in order, and setting WAL mode may wait for
		// another connection (another process migrating the same new file)
		{"busy_timeout", "_pragma=busy_timeout(10000)"},
		{"journal_mode", "_pragma=journal_mode(WAL)"},
		{"foreign_keys", "_pragma=foreign_keys(1)"},
		// BEGIN IMMEDIATE: a transaction takes the write lock up front (waiting busy_timeout
		// for it) rather than failing with SQLITE_BUSY when it first writes.
		{"_txlock", "_txlock=immediate"},
	} {
		if !strings.Contains(lower, p.key) {
			add = append(add, p.param)
		}
	}
	if len(add) == 0 {
		return dsn
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + strings.Join(add, "&")
}

// redactedError is an error whose message has had the DSN and its password removed.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

var kvPassword = regexp.MustCompile(`(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// Redact removes the DSNs, and any password they hold (a URL's, or a key=value password=),
// from msg: for messages about a registry that did not come from Open.
func Redact(msg string, dsns ...string) string {
	var secrets []string
	for _, dsn := range dsns {
		if dsn == "" {
			continue
		}
		secrets = append(secrets, dsn)
		if u, err := url.Parse(dsn); err == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok {
				secrets = append(secrets, pw, url.QueryEscape(pw), url.PathEscape(pw))
			}
		}
		if i := strings.Index(dsn, "://"); i >= 0 {
			// A URL url.Parse rejects: take what lies between the first ':' and the last '@'
			// of the authority.
			rest := dsn[i+3:]
			if j := strings.IndexAny(rest, "/?"); j >= 0 {
				rest = rest[:j]
			}
			if at := strings.LastIndex(rest, "@"); at >= 0 {
				if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
					secrets = append(secrets, pw)
					if un, err := url.PathUnescape(pw); err == nil {
						secrets = append(secrets, un)
					}
				}
			}
		}
		for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
			pw := m[1]
			secrets = append(secrets, pw, strings.Trim(pw, "'"))
		}
	}
	// Longest first, so that a secret containing another is replaced whole.
	sort.SliceStable(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	for _, sec := range secrets {
		if sec != "" {
			msg = strings.ReplaceAll(msg, sec, "[redacted]")
		}
	}
	return msg
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// q returns query with its ? placeholders rebound for the store's driver.
func (s *Store) q(query string) string {
	if s.driver != Postgres {
		return query
	}
	return rebind(query)
}

// rebind turns ? placeholders into $1, $2, ... (outside quoted strings and identifiers).
func rebind(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// stmtCache holds the statements the store has run, each prepared once, on SQLite: SQLite
// parses every statement it runs, and parsing cost about as much as running them (a fifth of
// a reaper pass's CPU). PostgreSQL's driver caches the statements it prepares by itself. The
// statements are the code's own, a few dozen shapes (a filtered listing builds one per set of
// filters); past maxCachedStatements the rest run unprepared.
type stmtCache struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
	// missed are the statements a transaction ran unprepared: prepared once it ends
	missed map[string]bool
}

const maxCachedStatements = 256

// get returns query's prepared statement, nil if it has none. With prepare, one is prepared
// on db the first time (nil if that fails now: the statement then runs unprepared, and its
// error shows there). Not inside a transaction, as preparing takes a connection of the pool
// that the transaction may hold (SQLite's pool has one): a statement a transaction misses is
// prepared by prepareMissed once it ends.
func (c *stmtCache) get(ctx context.Context, db *sql.DB, query string, prepare bool) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.stmts[query]
	full := len(c.stmts) >= maxCachedStatements
	if !ok && !prepare && !full {
		if c.missed == nil {
			c.missed = map[string]bool{}
		}
		c.missed[query] = true
	}
	c.mu.Unlock()
	if ok || !prepare || full {
		return st
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if had, ok := c.stmts[query]; ok { // prepared meanwhile by another caller
		st.Close()
		return had
	}
	if c.stmts == nil {
		c.stmts = map[string]*sql.Stmt{}
	}
	c.stmts[query] = st
	return st
}

// prepareMissed prepares the statements transactions ran unprepared.
func (c *stmtCache) prepareMissed(ctx context.Context, db *sql.DB) {
	c.mu.Lock()
	missed := c.missed
	c.missed = nil
	c.mu.Unlock()
	for query := range missed {
		c.get(ctx, db, query, true)
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = nil
}

// queryRow runs a query for one row on q (the database or a transaction), written with ?
// placeholders.
func (s *Store) queryRow(ctx context.Context, q querier, query string, args ...any) *sql.Row {
	if st := s.stmtOn(ctx, q, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return q.QueryRowContext(ctx, s.q(query), args...)
}

// query runs a query on the database, written with ? placeholders.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := s.stmtOn(ctx, s.db, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.db.QueryContext(ctx, s.q(query), args...)
}

// exec runs a statement on q (the database or a transaction), written with ? placeholders.
func (s *Store) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	if st := s.stmtOn(ctx, q, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return q.ExecContext(ctx, s.q(query), args...)
}

// stmtOn is query's prepared statement for use on q (the database or a transaction) on
// SQLite, prepared now if it is not yet; nil on PostgreSQL. In a transaction, only a
// statement prepared before is used.
func (s *Store) stmtOn(ctx context.Context, q querier, query string) *sql.Stmt {
	if s.driver != SQLite {
		return nil
	}
	tx, inTx := q.(*sql.Tx)
	st := s.stmts.get(ctx, s.db, query, !inTx)
	if inTx && st != nil {
		return tx.StmtContext(ctx, st)
	}
	return st
}

// inTx runs fn in a transaction, committed if fn returns nil and rolled back otherwise.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if s.driver == SQLite {
		s.stmts.prepareMissed(ctx, s.db)
	}
	return nil
}

// timeArg is the value a time is stored as: NULL for the zero time, otherwise UTC truncated
// to the microsecond (as text on SQLite).
func (s *Store) timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	t = normTime(t)
	if s.driver == SQLite {
		return t.Format(sqliteTimeLayout)
	}
	return t
}

// normTime is t as the store returns it: UTC, truncated to the microsecond, no monotonic reading.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// timeDest scans a stored time (NULL, a time.Time or SQLite's text) into *t.
type timeDest struct{ t *time.Time }

func (d timeDest) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*d.t = time.Time{}
	case time.Time:
		*d.t = normTime(x)
	case string:
		return d.parse(x)
	case []byte:
		return d.parse(string(x))
	default:
		return fmt.Errorf("cannot scan %T into a time", v)
	}
	return nil
}

func (d timeDest) parse(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("bad stored time %q: %w", s, err)
	}
	*d.t = normTime(t)
	return nil
}

// uniqueViolation reports whether err is a unique-constraint violation, and whether it is
// the one on the live (learner, course) index rather than on a primary key.
func uniqueViolation(err error) (unique, live bool) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code != "23505" {
			return false, false
		}
		return true, pgErr.ConstraintName == liveIndex
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		switch sqErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return true, strings.Contains(sqErr.Error(), "labs.learner")
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return true, false
		}
	}
	return false, false
}

// maxPostgresConns bounds a PostgreSQL store's connections (per process).
const maxPostgresConns = 16
