package store

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// sqliteFile returns the database file a SQLite DSN names, or memory=true for an in-memory
// database.
func sqliteFile(dsn string) (path string, memory bool) {
	path, _, _ = strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	if path == "" || strings.HasPrefix(path, ":memory:") || strings.Contains(dsn, "mode=memory") {
		return "", true
	}
	return path, false
}

// lockSQLiteMigrations serialises the migrations of processes that open the same SQLite file
// at once (goose has no lock for SQLite): an flock on "<file>.lock" beside the database. An
// in-memory database needs none.
func lockSQLiteMigrations(dsn string) (unlock func(), err error) {
	path, memory := sqliteFile(dsn)
	if memory {
		return func() {}, nil
	}
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("migration lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}
