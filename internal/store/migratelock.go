package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/labplane/labplane/internal/filelock"
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
// at once (goose has no lock for SQLite): an flock on "<file>.lock" beside the database, waited
// for while ctx allows. An in-memory database needs none.
func lockSQLiteMigrations(ctx context.Context, dsn string) (unlock func(), err error) {
	path, memory := sqliteFile(dsn)
	if memory {
		return func() {}, nil
	}
	release, err := filelock.Lock(ctx, path+".lock")
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	return func() { _ = release() }, nil
}
