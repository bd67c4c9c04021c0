package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
// Its directory must exist (a mistyped path is an error, not a new directory), and others may
// not write into it unless its sticky bit keeps them from replacing the owner's files
// (OpenDirectory says how open it is). An in-memory database has no file.
func keepSQLiteFilePrivate(dsn string) error {
	path, memory := sqliteFile(dsn)
	if memory {
		return nil
	}
	// a directory that cannot be read is for the open below to report (the DSN, the whole
	// path, redacted from its error)
	if dir, err := os.Stat(filepath.Dir(path)); err == nil && dir.Mode()&0o022 != 0 && dir.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("%w: %s is writable by others (mode %04o): they could replace the registry; make it 0700 (chmod 700 %s)",
			ErrOpenDirectory, filepath.Dir(path), dir.Mode().Perm(), filepath.Dir(path))
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

// ErrOpenDirectory: the SQLite registry's directory lets others replace its files.
var ErrOpenDirectory = errors.New("the registry's directory is open to others")

// OpenDirectory returns the directory of a SQLite registry and its mode, open when others may
// read or enter it (the registry's files are 0600 whatever it is, but a 0700 directory hides
// even their names and sizes); open is false for a 0700 directory, an in-memory database or
// another driver's DSN.
func OpenDirectory(driver, dsn string) (dir string, mode fs.FileMode, open bool) {
	path, memory := sqliteFile(dsn)
	if driver != SQLite || memory {
		return "", 0, false
	}
	dir = filepath.Dir(path)
	info, err := os.Stat(dir)
	if err != nil {
		return dir, 0, false // opening the registry says what is wrong
	}
	return dir, info.Mode().Perm() | info.Mode()&os.ModeSticky, info.Mode().Perm()&0o077 != 0
}
