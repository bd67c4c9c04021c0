package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// The history of a period, for cost reports: the labs that existed in it, their whole audit
// trail (a lab's state when the period starts depends on what happened before) and the
// learners' activity. A zero since means from the beginning, a zero until up to now.

// existedIn is the condition on labs for [since, until) and its arguments: created before
// until, and not deleted before since.
func (s *Store) existedIn(since, until time.Time) (string, []any) {
	conds, args := []string{"1 = 1"}, []any{}
	if !until.IsZero() {
		conds, args = append(conds, "created_at < ?"), append(args, s.timeArg(until))
	}
	if !since.IsZero() {
		conds, args = append(conds, "(deleted_at IS NULL OR deleted_at >= ?)"), append(args, s.timeArg(since))
	}
	return strings.Join(conds, " AND "), args
}

// LabsExisting returns the labs, deleted ones included, that existed at some time in
// [since, until), ordered by creation time, then id.
func (s *Store) LabsExisting(ctx context.Context, since, until time.Time) (_ []labs.Lab, err error) {
	defer markUnavailable(&err)
	cond, args := s.existedIn(since, until)
	out, err := s.queryLabs(ctx, 0, `SELECT `+labColumns+` FROM labs WHERE `+cond+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("labs existing in a period: %w", err)
	}
	return out, nil
}

// EventsOfLabsExisting returns every event of the labs LabsExisting returns for the same
// period, whenever it happened, ordered by lab, then in the order they were recorded (the
// order of their ids; their times come from the clocks of the processes that recorded them).
func (s *Store) EventsOfLabsExisting(ctx context.Context, since, until time.Time) (_ []labs.Event, err error) {
	defer markUnavailable(&err)
	cond, args := s.existedIn(since, until)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+eventColumns+` FROM events
		WHERE lab_id IN (SELECT id FROM labs WHERE `+cond+`) ORDER BY lab_id, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("events of labs existing in a period: %w", err)
	}
	defer rows.Close()
	out, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("events of labs existing in a period: %w", err)
	}
	return out, nil
}

// Activity returns the spans of learner activity that overlap [since, until), ordered by lab,
// then start: the closed ones and every lab's open one (its heartbeats so far), deleted labs'
// included.
func (s *Store) Activity(ctx context.Context, since, until time.Time) (_ []labs.Activity, err error) {
	defer markUnavailable(&err)
	closed := `SELECT lab_id, started_at, ended_at FROM activity WHERE 1 = 1`
	open := `SELECT id, active_since, last_heartbeat FROM labs WHERE active_since IS NOT NULL`
	var closedArgs, openArgs []any
	if !since.IsZero() {
		closed, closedArgs = closed+` AND ended_at >= ?`, append(closedArgs, s.timeArg(since))
		open, openArgs = open+` AND last_heartbeat >= ?`, append(openArgs, s.timeArg(since))
	}
	if !until.IsZero() {
		closed, closedArgs = closed+` AND started_at < ?`, append(closedArgs, s.timeArg(until))
		open, openArgs = open+` AND active_since < ?`, append(openArgs, s.timeArg(until))
	}
	rows, err := s.db.QueryContext(ctx, s.q(closed+` UNION ALL `+open+` ORDER BY 1, 2`), append(closedArgs, openArgs...)...)
	if err != nil {
		return nil, fmt.Errorf("activity in a period: %w", err)
	}
	defer rows.Close()
	var out []labs.Activity
	for rows.Next() {
		var a labs.Activity
		if err := rows.Scan(&a.LabID, timeDest{&a.From}, timeDest{&a.To}); err != nil {
			return nil, fmt.Errorf("activity in a period: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("activity in a period: %w", err)
	}
	return out, nil
}

// Import copies the labs, the audit trail and the learners' activity of another SQLite
// registry (the file at path, of the same schema version) into this one, also SQLite:
// `labplane sim` simulates its runs in registries of their own, at once, and leaves them in
// one. Events keep their order and get new ids; tokens, orphans and locks are not copied.
func (s *Store) Import(ctx context.Context, path string) (err error) {
	if s.driver != SQLite {
		return fmt.Errorf("import %s: only into a SQLite registry", path)
	}
	conn, err := s.db.Conn(ctx) // ATTACH is per connection
	if err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS other`, path); err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	defer func() {
		if _, derr := conn.ExecContext(context.WithoutCancel(ctx), `DETACH DATABASE other`); derr != nil && err == nil {
			err = fmt.Errorf("import %s: %w", path, derr)
		}
	}()
	const eventCols = `lab_id, at, actor, action, from_status, to_status, cloud, stack_id, request_id, error, detail`
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	for _, q := range []string{
		`INSERT INTO labs (` + labColumns + `, active_since) SELECT ` + labColumns + `, active_since FROM other.labs`,
		`INSERT INTO events (` + eventCols + `) SELECT ` + eventCols + ` FROM other.events ORDER BY id`,
		`INSERT INTO activity (lab_id, started_at, ended_at) SELECT lab_id, started_at, ended_at FROM other.activity`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("import %s: %w", path, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	return nil
}
