package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labplane/labplane/internal/filelock"
)

// lockKeyPattern is what a TryLock key may be: it becomes part of a file name on SQLite.
var lockKeyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$`)

// lockState is a Store's part in TryLock: where SQLite lock files go, and the locks held
// through this Store (released by Close).
type lockState struct {
	path     string // SQLite on a file: the database file's absolute path
	memScope string // SQLite in memory: the scope of its process-local locks

	mu     sync.Mutex
	held   map[*heldLock]struct{}
	closed bool
}

// heldLock is one lock TryLock took.
type heldLock struct {
	once sync.Once
	err  error
	// release lets the lock go; with graceful false it does so without talking to the
	// database (Close).
	release func(ctx context.Context, graceful bool) error
	// end makes the lock's held context done, with cause ErrLockLost if it was lost.
	end context.CancelCauseFunc
}

// ErrLockLost is the cause of a held context (TryHold, Hold) that ended because the lock
// was lost while held: its PostgreSQL connection failed, and the server ended the session
// and the lock with it.
var ErrLockLost = errors.New("the lock was lost: its database connection failed")

// How a PostgreSQL lock's connection is checked while the lock is held: a round trip every
// lockCheckEvery, failed if it takes longer than lockCheckTimeout. A lock is learnt lost
// within about their sum.
const (
	lockCheckEvery   = 2 * time.Second
	lockCheckTimeout = 5 * time.Second
)

// memLocks are the locks of in-memory SQLite databases: nothing else can open those, so a
// process-local table is enough. Keys are scope + "\x00" + key.
var (
	memMu     sync.Mutex
	memLocks  = map[string]bool{}
	memScopes atomic.Int64
)

// sqliteLockBase returns the database file that SQLite lock files go beside (absolute, so a
// later chdir does not move them), or the scope of the process-local locks of an in-memory
// database: the DSN for a shared-cache one (other Stores of this process may open it too),
// a scope of its own otherwise.
func sqliteLockBase(dsn string) (path, memScope string) {
	path, memory := sqliteFile(dsn)
	if !memory {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		return path, ""
	}
	if strings.Contains(dsn, "cache=shared") {
		return "", "dsn:" + dsn
	}
	return "", "private:" + strconv.FormatInt(memScopes.Add(1), 10)
}

// TryLock takes the lock named key, shared by every process using this database, without
// waiting: ok is false (and err nil) when another holder has it. The lock is not re-entrant:
// a second TryLock of a held key fails even through the same Store. Call unlock to release
// it; calling unlock again does nothing and returns the first call's result. Close releases
// every lock taken through the Store.
//
// key is 1 to 100 letters, digits, '.', '_', ':' or '-', starting with a letter or a digit.
//
// On PostgreSQL the lock is a session advisory lock (pg_try_advisory_lock on the 64-bit
// FNV-1a hash of "labplane:"+key) held on a connection set aside for it until unlock: if the
// process dies or the connection breaks, the server ends the session and the lock with it.
// The connection is checked every lockCheckEvery while the lock is held; when a check fails
// the connection is closed (so the lock is surely gone, not merely unknown) and the lock is
// lost: TryHold tells its holder. unlock always releases the lock; if it returns an error
// the connection had failed, and the lock may have been lost before unlock was called. A
// connection pooler in transaction mode (PgBouncer) between labplane and PostgreSQL would
// break these session locks.
//
// On SQLite the lock is an flock(LOCK_EX|LOCK_NB) on "<database file>.<key>.lock" beside the
// database (left there after unlock), released by the kernel if the process dies; for an
// in-memory database it is a process-local lock. Neither can be lost while held.
func (s *Store) TryLock(ctx context.Context, key string) (unlock func(context.Context) error, ok bool, err error) {
	_, unlock, ok, err = s.TryHold(ctx, key)
	return unlock, ok, err
}

// TryHold is TryLock that also returns held: a context that is done once the lock is
// released or lost. context.Cause(held) is ErrLockLost (wrapped) when the lock was lost: the
// holder must stop what the lock protects, as another holder may have it now.
func (s *Store) TryHold(ctx context.Context, key string) (held context.Context, unlock func(context.Context) error, ok bool, err error) {
	defer markUnavailable(&err)
	if !lockKeyPattern.MatchString(key) {
		return nil, nil, false, fmt.Errorf("try lock %q: a key is 1 to 100 letters, digits, '.', '_', ':' or '-', starting with a letter or a digit", key)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, false, fmt.Errorf("try lock %q: %w", key, err)
	}
	if s.locksClosed() {
		return nil, nil, false, fmt.Errorf("try lock %q: the store is closed", key)
	}
	held, end := context.WithCancelCause(context.Background())
	var release func(context.Context, bool) error
	switch {
	case s.driver == Postgres:
		release, ok, err = s.tryAdvisoryLock(ctx, key, end)
	case s.locks.memScope != "":
		release, ok = tryMemLock(s.locks.memScope + "\x00" + key)
	default:
		var unlock func() error
		if unlock, ok, err = filelock.TryLock(s.locks.path + "." + key + ".lock"); ok {
			release = func(context.Context, bool) error { return unlock() }
		}
	}
	if err != nil || !ok {
		end(nil)
		if err != nil {
			return nil, nil, false, fmt.Errorf("try lock %q: %w", key, err)
		}
		return nil, nil, false, nil
	}
	h := &heldLock{release: release, end: end}
	s.locks.mu.Lock()
	if s.locks.closed {
		s.locks.mu.Unlock()
		_ = release(context.Background(), false)
		end(nil)
		return nil, nil, false, fmt.Errorf("try lock %q: the store is closed", key)
	}
	if s.locks.held == nil {
		s.locks.held = map[*heldLock]struct{}{}
	}
	s.locks.held[h] = struct{}{}
	s.locks.mu.Unlock()
	return held, func(ctx context.Context) error { return s.unlock(ctx, h, true) }, true, nil
}

func (s *Store) locksClosed() bool {
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	return s.locks.closed
}

func (s *Store) unlock(ctx context.Context, h *heldLock, graceful bool) error {
	h.once.Do(func() {
		s.locks.mu.Lock()
		delete(s.locks.held, h)
		s.locks.mu.Unlock()
		h.err = h.release(ctx, graceful)
		h.end(nil) // a lost lock's context already ended with its cause
	})
	return h.err
}

// releaseAllLocks lets go of every lock held through s, and refuses new ones.
func (s *Store) releaseAllLocks() {
	s.locks.mu.Lock()
	s.locks.closed = true
	held := make([]*heldLock, 0, len(s.locks.held))
	for h := range s.locks.held {
		held = append(held, h)
	}
	s.locks.mu.Unlock()
	for _, h := range held {
		_ = s.unlock(context.Background(), h, false)
	}
}

// advisoryKey is the advisory lock id of key.
func advisoryKey(key string) int64 {
	h := fnv.New64a()
	h.Write([]byte("labplane:" + key))
	return int64(h.Sum64())
}

// tryAdvisoryLock takes a PostgreSQL session advisory lock on a connection of its own, kept
// out of the pool until the lock is released, and watches the connection while it is held:
// lost is called if it fails.
func (s *Store) tryAdvisoryLock(ctx context.Context, key string, lost context.CancelCauseFunc) (func(context.Context, bool) error, bool, error) {
	conn, err := s.lockDB.Conn(ctx)
	if err != nil {
		return nil, false, err
	}
	id := advisoryKey(key)
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, id).Scan(&got); err != nil {
		// The server may have granted it before the failure: end the session to be sure.
		discardConn(conn)
		return nil, false, err
	}
	if !got {
		return nil, false, conn.Close()
	}
	watching, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	var werr error // the check that failed, if one did; read after watched is closed
	go func() {
		defer close(watched)
		if werr = watchLockConn(watching, conn); werr != nil {
			lost(fmt.Errorf("%w: %w", ErrLockLost, werr)) // the holder learns it now, not at its unlock
		}
	}()
	release := func(ctx context.Context, graceful bool) error {
		stopWatch()
		<-watched
		if werr != nil {
			// the watch closed the connection: the lock went with it
			return fmt.Errorf("unlock %q: %w: %w", key, ErrLockLost, werr)
		}
		if !graceful {
			discardConn(conn)
			return nil
		}
		var released bool
		err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock($1)`, id).Scan(&released)
		if err == nil && released {
			return conn.Close() // back to the pool, holding nothing
		}
		discardConn(conn) // ends the session: whatever it held is released
		if err != nil {
			return fmt.Errorf("unlock %q: %w (the connection was closed, releasing the lock; it may have been lost earlier)", key, err)
		}
		return fmt.Errorf("unlock %q: the lock's session no longer held it", key)
	}
	return release, true, nil
}

// watchLockConn checks a lock's connection until ctx ends (nil) or a check fails: then it
// closes the connection, ending the session and any lock it still held, and returns why.
func watchLockConn(ctx context.Context, conn *sql.Conn) error {
	t := time.NewTicker(lockCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, lockCheckTimeout)
		var one int
		err := conn.QueryRowContext(cctx, `SELECT 1`).Scan(&one)
		cancel()
		if ctx.Err() != nil {
			// stopped mid-check: the release decides (an interrupted query may have broken
			// the connection, which the release then finds out)
			return nil
		}
		if err != nil {
			discardConn(conn)
			return err
		}
	}
}

// discardConn closes conn's connection to the server instead of returning it to the pool.
func discardConn(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// tryMemLock takes a process-local lock.
func tryMemLock(k string) (func(context.Context, bool) error, bool) {
	memMu.Lock()
	defer memMu.Unlock()
	if memLocks[k] {
		return nil, false
	}
	memLocks[k] = true
	return func(context.Context, bool) error {
		memMu.Lock()
		delete(memLocks, k)
		memMu.Unlock()
		return nil
	}, true
}
