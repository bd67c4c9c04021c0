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
	Name string `json:"name"`
	// Scope is what the token may do (auth.Scope: read, lms, operator).
	Scope     string    `json:"scope"`
	CreatedAt time.Time `json:"created_at"`
	RevokedAt time.Time `json:"revoked_at"` // zero = live
}

// A TokenEvent is a line of the tokens' audit trail: a token created or revoked, by whom.
type TokenEvent struct {
	At     time.Time `json:"at"`
	Action string    `json:"action"` // created, revoked
	Name   string    `json:"name"`
	Scope  string    `json:"scope"`
	Actor  string    `json:"actor"`
}

// Live reports whether the token has not been revoked.
func (t Token) Live() bool { return t.RevokedAt.IsZero() }

// tokenLiveIndex is the partial unique index that allows one live token per name.
const tokenLiveIndex = "tokens_live_name"

// CreateToken stores t as a live token whose hash is hash, and the creation, by actor, in the
// tokens' audit trail, at once. It fails with an error wrapping ErrTokenExists if a live token
// has t's name (a revoked one does not count). Neither the error nor anything stored holds
// more of the token than hash.
func (s *Store) CreateToken(ctx context.Context, t Token, hash []byte, actor string) (err error) {
	defer markUnavailable(&err)
	switch {
	case t.Name == "":
		return errors.New("create token: empty name")
	case t.Scope == "":
		return fmt.Errorf("create token %q: empty scope", t.Name)
	case len(hash) == 0:
		return fmt.Errorf("create token %q: empty hash", t.Name)
	case t.CreatedAt.IsZero():
		return fmt.Errorf("create token %q: time is zero", t.Name)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO tokens (name, scope, hash, created_at) VALUES (?, ?, ?, ?)`),
			t.Name, t.Scope, hash, s.timeArg(t.CreatedAt)); err != nil {
			return err
		}
		return s.addTokenEvent(ctx, tx, TokenEvent{At: t.CreatedAt, Action: "created", Name: t.Name, Scope: t.Scope, Actor: actor})
	})
	if err != nil {
		if liveTokenViolation(err) {
			return fmt.Errorf("create token %q: %w", t.Name, ErrTokenExists)
		}
		return fmt.Errorf("create token %q: %w", t.Name, err)
	}
	return nil
}

func (s *Store) addTokenEvent(ctx context.Context, tx *sql.Tx, ev TokenEvent) error {
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO token_events (at, action, name, scope, actor) VALUES (?, ?, ?, ?, ?)`),
		s.timeArg(ev.At), ev.Action, ev.Name, ev.Scope, ev.Actor)
	return err
}

// TokenLog returns the tokens' audit trail, oldest first.
func (s *Store) TokenLog(ctx context.Context) (_ []TokenEvent, err error) {
	defer markUnavailable(&err)
	rows, err := s.db.QueryContext(ctx, `SELECT at, action, name, scope, actor FROM token_events ORDER BY at, id`)
	if err != nil {
		return nil, fmt.Errorf("token log: %w", err)
	}
	defer rows.Close()
	var out []TokenEvent
	for rows.Next() {
		var ev TokenEvent
		if err := rows.Scan(timeDest{&ev.At}, &ev.Action, &ev.Name, &ev.Scope, &ev.Actor); err != nil {
			return nil, fmt.Errorf("token log: %w", err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("token log: %w", err)
	}
	return out, nil
}

// TokenByHash returns the live token whose hash is hash, or an error wrapping
// labs.ErrNotFound if there is none (unknown or revoked).
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (_ Token, err error) {
	defer markUnavailable(&err)
	if len(hash) == 0 {
		return Token{}, fmt.Errorf("token by hash: %w", labs.ErrNotFound)
	}
	var t Token
	err = s.db.QueryRowContext(ctx, s.q(`SELECT name, scope, created_at, revoked_at FROM tokens
			WHERE hash = ? AND revoked_at IS NULL`), hash).
		Scan(&t.Name, &t.Scope, timeDest{&t.CreatedAt}, timeDest{&t.RevokedAt})
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
	rows, err := s.db.QueryContext(ctx, `SELECT name, scope, created_at, revoked_at FROM tokens ORDER BY name, created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		if err := rows.Scan(&t.Name, &t.Scope, timeDest{&t.CreatedAt}, timeDest{&t.RevokedAt}); err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken revokes the live token named name at at, and records it, by actor, in the
// tokens' audit trail, at once; with no live token of that name it fails with an error
// wrapping labs.ErrNotFound.
func (s *Store) RevokeToken(ctx context.Context, name string, at time.Time, actor string) (err error) {
	defer markUnavailable(&err)
	if at.IsZero() {
		return fmt.Errorf("revoke token %q: time is zero", name)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var scope string
		err := tx.QueryRowContext(ctx, s.q(`UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL RETURNING scope`),
			s.timeArg(at), name).Scan(&scope)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("no live token of that name: %w", labs.ErrNotFound)
		}
		if err != nil {
			return err
		}
		return s.addTokenEvent(ctx, tx, TokenEvent{At: at, Action: "revoked", Name: name, Scope: scope, Actor: actor})
	})
	if err != nil {
		return fmt.Errorf("revoke token %q: %w", name, err)
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
