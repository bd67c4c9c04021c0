package store

import (
	"context"
	"fmt"
	"os"
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

// keepSQLiteFilePrivate makes the registry's file readable by its owner only before SQLite
// opens it (its WAL and shared-memory files take its mode): it holds the labs' connection
// details and the token hashes. A new file is made 0600, one others could read is made 0600.
// Its directory must exist (a mistyped path is an error, not a new directory). An in-memory
// database has no file.
func keepSQLiteFilePrivate(dsn string) error {
	path, memory := sqliteFile(dsn)
	if memory {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return f.Chmod(0o600)
	}
	return nil
}
