package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/labplane/labplane/internal/platform"
)

// ErrNoPromotion: no promotion has that id.
var ErrNoPromotion = errors.New("no such promotion")

// SavePromotion records a promotion: inserted the first time, replaced whole afterwards.
func (s *Store) SavePromotion(ctx context.Context, p platform.Promotion) (err error) {
	defer markUnavailable(&err)
	if p.ID == "" || p.From == "" || p.To == "" || p.Release == "" || p.StartedAt.IsZero() {
		return fmt.Errorf("save promotion %q: id, from, to, release and start time are required", p.ID)
	}
	detail, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("save promotion %s: %w", p.ID, err)
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO promotions (id, source, target, release, status, started_at, finished_at, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, finished_at = excluded.finished_at, detail = excluded.detail`),
		p.ID, p.From, p.To, p.Release, string(p.Status), s.timeArg(p.StartedAt), s.timeArg(p.FinishedAt), string(detail))
	if err != nil {
		return fmt.Errorf("save promotion %s: %w", p.ID, err)
	}
	return nil
}

// GetPromotion returns a promotion by its id, or by a prefix of it that only one has.
func (s *Store) GetPromotion(ctx context.Context, id string) (_ platform.Promotion, err error) {
	defer markUnavailable(&err)
	if id == "" || strings.ContainsAny(id, "%_") {
		return platform.Promotion{}, fmt.Errorf("promotion %q: %w", id, ErrNoPromotion)
	}
	found, err := s.promotions(ctx, `WHERE id LIKE ? ORDER BY id LIMIT 2`, id+"%")
	if err != nil {
		return platform.Promotion{}, fmt.Errorf("promotion %q: %w", id, err)
	}
	switch {
	case len(found) == 0:
		return platform.Promotion{}, fmt.Errorf("promotion %q: %w", id, ErrNoPromotion)
	case len(found) > 1 && found[0].ID != id:
		return platform.Promotion{}, fmt.Errorf("promotion %q: several start with it; give more of the id: %w", id, ErrNoPromotion)
	}
	return found[0], nil
}

// ListPromotions returns the promotions to target (all when empty), newest first.
func (s *Store) ListPromotions(ctx context.Context, target string) (_ []platform.Promotion, err error) {
	defer markUnavailable(&err)
	q, args := `ORDER BY started_at DESC, id DESC`, []any{}
	if target != "" {
		q, args = `WHERE target = ? `+q, append(args, target)
	}
	out, err := s.promotions(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list promotions: %w", err)
	}
	return out, nil
}

// LatestPromotions returns the newest promotion to each target.
func (s *Store) LatestPromotions(ctx context.Context) (_ []platform.Promotion, err error) {
	defer markUnavailable(&err)
	out, err := s.promotions(ctx, `p WHERE started_at = (SELECT MAX(started_at) FROM promotions WHERE target = p.target)
		ORDER BY target, started_at DESC, id DESC`)
	if err != nil {
		return nil, fmt.Errorf("list the latest promotions: %w", err)
	}
	// two promotions to a target started at the same instant: the first, by id, stands
	return slices.CompactFunc(out, func(a, b platform.Promotion) bool { return a.To == b.To }), nil
}

func (s *Store) promotions(ctx context.Context, where string, args ...any) ([]platform.Promotion, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT detail FROM promotions `+where), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []platform.Promotion
	for rows.Next() {
		var detail string
		if err := rows.Scan(&detail); err != nil {
			return nil, err
		}
		var p platform.Promotion
		if err := json.Unmarshal([]byte(detail), &p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// LockEnvironment takes the environment for one deploy or promotion, without waiting. The
// exclusion is TryHold("env:ENV"), which ends with the process that holds it (a crash leaves
// nothing to clean up); the env_locks row names the holder for whoever is refused, who gets a
// *platform.LockedError. held is done once the lock is released or lost (PostgreSQL's
// connection dropped: context.Cause says ErrLockLost); unlock releases both.
func (s *Store) LockEnvironment(ctx context.Context, l platform.Lock) (held context.Context, unlock func(context.Context) error, err error) {
	defer markUnavailable(&err)
	held, tryUnlock, ok, err := s.TryHold(ctx, "env:"+l.Environment)
	if err != nil {
		return nil, nil, fmt.Errorf("lock environment %s: %w", l.Environment, err)
	}
	if !ok {
		holder, err := s.environmentLock(ctx, l.Environment)
		if err != nil {
			return nil, nil, fmt.Errorf("lock environment %s: %w", l.Environment, err)
		}
		return nil, nil, &platform.LockedError{Environment: l.Environment, Held: holder}
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO env_locks (environment, kind, holder, actor, pid, host, since)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (environment) DO UPDATE SET kind = excluded.kind, holder = excluded.holder, actor = excluded.actor,
			pid = excluded.pid, host = excluded.host, since = excluded.since`),
		l.Environment, l.Kind, l.Holder, l.Actor, l.PID, l.Host, s.timeArg(l.Since))
	if err != nil {
		_ = tryUnlock(ctx)
		return nil, nil, fmt.Errorf("lock environment %s: %w", l.Environment, err)
	}
	return held, func(ctx context.Context) error {
		_, derr := s.db.ExecContext(ctx, s.q(`DELETE FROM env_locks WHERE environment = ? AND pid = ? AND host = ?`),
			l.Environment, l.PID, l.Host)
		return errors.Join(derr, tryUnlock(ctx))
	}, nil
}

// environmentLock is the recorded holder of an environment (zero if none recorded).
func (s *Store) environmentLock(ctx context.Context, env string) (platform.Lock, error) {
	l := platform.Lock{Environment: env}
	err := s.db.QueryRowContext(ctx, s.q(`SELECT kind, holder, actor, pid, host, since FROM env_locks WHERE environment = ?`), env).
		Scan(&l.Kind, &l.Holder, &l.Actor, &l.PID, &l.Host, timeDest{&l.Since})
	if errors.Is(err, sql.ErrNoRows) {
		return platform.Lock{Environment: env}, nil
	}
	return l, err
}
