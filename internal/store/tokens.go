package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/labplane/labplane/internal/labs"
)

// ErrTokenExists: a live token with that name exists (revoke it first).
var ErrTokenExists = errors.New("a live token with this name exists")

// Token is an API token as the registry keeps it: its name (the client it was given to) and
// its history. The token itself is never stored, only its hash, and the hash never leaves
// the store.
type Token struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	RevokedAt time.Time `json:"revoked_at"` // zero = live
}

// Live reports whether the token has not been revoked.
func (t Token) Live() bool { return t.RevokedAt.IsZero() }

// tokenLiveIndex is the partial unique index that allows one live token per name.
const tokenLiveIndex = "tokens_live_name"

// CreateToken stores a live token named name whose hash is hash, created at at. It fails
// with an error wrapping ErrTokenExists if a live token has that name (a revoked one does
// not count). Neither the error nor anything stored holds more of the token than hash.
func (s *Store) CreateToken(ctx context.Context, name string, hash []byte, at time.Time) (err error) {
	defer markUnavailable(&err)
	switch {
	case name == "":
		return errors.New("create token: empty name")
	case len(hash) == 0:
		return fmt.Errorf("create token %q: empty hash", name)
	case at.IsZero():
		return fmt.Errorf("create token %q: time is zero", name)
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO tokens (name, hash, created_at) VALUES (?, ?, ?)`),
		name, hash, s.timeArg(at))
	if err != nil {
		if liveTokenViolation(err) {
			return fmt.Errorf("create token %q: %w", name, ErrTokenExists)
		}
		return fmt.Errorf("create token %q: %w", name, err)
	}
	return nil
}

// TokenByHash returns the live token whose hash is hash, or an error wrapping
// labs.ErrNotFound if there is none (unknown or revoked).
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (_ Token, err error) {
	defer markUnavailable(&err)
	if len(hash) == 0 {
		return Token{}, fmt.Errorf("token by hash: %w", labs.ErrNotFound)
	}
	var t Token
	err = s.db.QueryRowContext(ctx, s.q(`SELECT name, created_at, revoked_at FROM tokens
			WHERE hash = ? AND revoked_at IS NULL`), hash).
		Scan(&t.Name, timeDest{&t.CreatedAt}, timeDest{&t.RevokedAt})
	if errors.Is(err, sql.ErrNoRows) {
		err = labs.ErrNotFound
	}
	if err != nil {
		return Token{}, fmt.Errorf("token by hash: %w", err)
	}
	return t, nil
}

// ListTokens returns every token, live and revoked, by name, then by creation.
func (s *Store) ListTokens(ctx context.Context) (_ []Token, err error) {
	defer markUnavailable(&err)
	rows, err := s.db.QueryContext(ctx, `SELECT name, created_at, revoked_at FROM tokens ORDER BY name, created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		if err := rows.Scan(&t.Name, timeDest{&t.CreatedAt}, timeDest{&t.RevokedAt}); err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken revokes the live token named name at at; with no live token of that name it
// fails with an error wrapping labs.ErrNotFound.
func (s *Store) RevokeToken(ctx context.Context, name string, at time.Time) (err error) {
	defer markUnavailable(&err)
	if at.IsZero() {
		return fmt.Errorf("revoke token %q: time is zero", name)
	}
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL`),
		s.timeArg(at), name)
	if err != nil {
		return fmt.Errorf("revoke token %q: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("revoke token %q: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("revoke token %q: no live token of that name: %w", name, labs.ErrNotFound)
	}
	return nil
}

// liveTokenViolation reports whether err is the violation of the one-live-token-per-name index.
func liveTokenViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505" && pgErr.ConstraintName == tokenLiveIndex
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE && strings.Contains(sqErr.Error(), "tokens.name")
	}
	return false
}
