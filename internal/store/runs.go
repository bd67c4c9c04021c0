package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/runs"
)

const runColumns = `id, kind, environment, release, actor, started_at, finished_at, status, options, recap, failures, error, log_path`

// CreateRun records a run that starts (status running). One statement: the row is there
// whole or not at all.
func (s *Store) CreateRun(ctx context.Context, r runs.Run) (err error) {
	defer markUnavailable(&err)
	switch {
	case r.ID == "" || r.Environment == "" || r.Kind == "":
		return fmt.Errorf("create run: id, kind and environment are required")
	case r.StartedAt.IsZero():
		return fmt.Errorf("create run %s: start time is zero", r.ID)
	}
	options, recap, failures, err := runJSON(r)
	if err != nil {
		return fmt.Errorf("create run %s: %w", r.ID, err)
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO runs (`+runColumns+`) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)`),
		r.ID, string(r.Kind), r.Environment, r.Release, r.Actor, s.timeArg(r.StartedAt), string(runs.Running),
		options, recap, failures, r.Error, r.LogPath)
	if err != nil {
		return fmt.Errorf("create run %s: %w", r.ID, err)
	}
	return nil
}

// FinishRun records how a running run ended: its status, finish time, recap, failures and
// error, in one statement. A run that is not running any more is not changed (ErrFinished).
func (s *Store) FinishRun(ctx context.Context, r runs.Run) (err error) {
	defer markUnavailable(&err)
	if r.Status == runs.Running || r.Status == "" || r.FinishedAt.IsZero() {
		return fmt.Errorf("finish run %s: a final status and a finish time are required", r.ID)
	}
	_, recap, failures, err := runJSON(r)
	if err != nil {
		return fmt.Errorf("finish run %s: %w", r.ID, err)
	}
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE runs SET status = ?, finished_at = ?, recap = ?, failures = ?, error = ?
		WHERE id = ? AND status = ?`),
		string(r.Status), s.timeArg(r.FinishedAt), recap, failures, r.Error, r.ID, string(runs.Running))
	if err != nil {
		return fmt.Errorf("finish run %s: %w", r.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("finish run %s: %w", r.ID, err)
	} else if n == 0 {
		if _, err := s.GetRun(ctx, r.ID); err != nil {
			return fmt.Errorf("finish run: %w", err)
		}
		return fmt.Errorf("finish run %s: %w", r.ID, runs.ErrFinished)
	}
	return nil
}

func runJSON(r runs.Run) (options, recap, failures string, err error) {
	if r.Recap == nil {
		r.Recap = map[string]runs.HostRecap{}
	}
	if r.Failures == nil {
		r.Failures = []runs.Failure{}
	}
	var b [3][]byte
	for i, v := range []any{r.Options, r.Recap, r.Failures} {
		if b[i], err = json.Marshal(v); err != nil {
			return "", "", "", err
		}
	}
	return string(b[0]), string(b[1]), string(b[2]), nil
}

// GetRun returns a run by its id, or by a prefix of it that only one run has.
func (s *Store) GetRun(ctx context.Context, id string) (_ runs.Run, err error) {
	defer markUnavailable(&err)
	if id == "" || strings.ContainsAny(id, "%_") {
		return runs.Run{}, fmt.Errorf("run %q: %w", id, runs.ErrNotFound)
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+runColumns+` FROM runs WHERE id LIKE ? ORDER BY id LIMIT 2`), id+"%")
	if err != nil {
		return runs.Run{}, fmt.Errorf("run %q: %w", id, err)
	}
	found, err := scanRuns(rows)
	if err != nil {
		return runs.Run{}, fmt.Errorf("run %q: %w", id, err)
	}
	switch {
	case len(found) == 0:
		return runs.Run{}, fmt.Errorf("run %q: %w", id, runs.ErrNotFound)
	case len(found) > 1 && found[0].ID != id:
		return runs.Run{}, fmt.Errorf("run %q: several runs start with it; give more of the id: %w", id, runs.ErrNotFound)
	}
	return found[0], nil
}

// ListRuns returns runs, newest first.
func (s *Store) ListRuns(ctx context.Context, f runs.Filter) (_ []runs.Run, err error) {
	defer markUnavailable(&err)
	var where []string
	var args []any
	if f.Environment != "" {
		where, args = append(where, "environment = ?"), append(args, f.Environment)
	}
	if f.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, string(f.Kind))
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	q := `SELECT ` + runColumns + ` FROM runs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY started_at DESC, id DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	out, err := scanRuns(rows)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

func scanRuns(rows *sql.Rows) ([]runs.Run, error) {
	defer rows.Close()
	var out []runs.Run
	for rows.Next() {
		var r runs.Run
		var kind, status, options, recap, failures string
		if err := rows.Scan(&r.ID, &kind, &r.Environment, &r.Release, &r.Actor, timeDest{&r.StartedAt}, timeDest{&r.FinishedAt},
			&status, &options, &recap, &failures, &r.Error, &r.LogPath); err != nil {
			return nil, err
		}
		r.Kind, r.Status = runs.Kind(kind), runs.Status(status)
		if err := errors.Join(json.Unmarshal([]byte(options), &r.Options), json.Unmarshal([]byte(recap), &r.Recap),
			json.Unmarshal([]byte(failures), &r.Failures)); err != nil {
			return nil, fmt.Errorf("run %s: %w", r.ID, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Now is the registry's clock: PostgreSQL's, which every replica and CI runner shares; the
// machine's for SQLite (a local file: the processes using it share the machine's clock).
// Run and promotion times come from it, so runs order and soak the same whoever records them.
func (s *Store) Now(ctx context.Context) (_ time.Time, err error) {
	defer markUnavailable(&err)
	if s.driver != Postgres {
		return time.Now().UTC(), nil
	}
	var t time.Time
	if err := s.db.QueryRowContext(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("the registry's clock: %w", err)
	}
	return t.UTC(), nil
}
