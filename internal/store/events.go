package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

const eventColumns = `id, lab_id, at, actor, action, from_status, to_status, cloud, stack_id, request_id, error, detail`

// insertEventSQL appends an event.
const insertEventSQL = `INSERT INTO events
	(lab_id, at, actor, action, from_status, to_status, cloud, stack_id, request_id, error, detail)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// AddEvent appends an event that changes no lab row (a hook failure, an orphan stack deleted):
// its LabID may name no lab.
func (s *Store) AddEvent(ctx context.Context, ev labs.Event) (err error) {
	defer markUnavailable(&err)
	if err := s.insertEvent(ctx, s.db, ev); err != nil {
		return fmt.Errorf("add event for lab %q: %w", ev.LabID, err)
	}
	return nil
}

func (s *Store) insertEvent(ctx context.Context, q querier, ev labs.Event) error {
	if ev.At.IsZero() {
		return errors.New("event time is zero")
	}
	_, err := s.exec(ctx, q, insertEventSQL,
		ev.LabID, s.timeArg(ev.At), ev.Actor, ev.Action, string(ev.From), string(ev.To), ev.Cloud,
		ev.StackID, ev.RequestID, ev.Error, ev.Detail)
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}

// Events returns the events of the lab labID ("" for every lab), oldest first (by time, then
// by id). With limit > 0 it returns only the newest limit events, still oldest first.
func (s *Store) Events(ctx context.Context, labID string, limit int) (_ []labs.Event, err error) {
	defer markUnavailable(&err)
	query := `SELECT ` + eventColumns + ` FROM events`
	var args []any
	if labID != "" {
		query += ` WHERE lab_id = ?`
		args = append(args, labID)
	}
	if limit > 0 {
		query += ` ORDER BY at DESC, id DESC LIMIT ?`
		args = append(args, limit)
	} else {
		query += ` ORDER BY at, id`
	}
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("events of lab %q: %w", labID, err)
	}
	defer rows.Close()
	out, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("events of lab %q: %w", labID, err)
	}
	if limit > 0 {
		slices.Reverse(out)
	}
	return out, nil
}

// scanEvents reads rows of eventColumns.
func scanEvents(rows *sql.Rows) ([]labs.Event, error) {
	var out []labs.Event
	for rows.Next() {
		var (
			ev       labs.Event
			from, to string
		)
		if err := rows.Scan(&ev.ID, &ev.LabID, timeDest{&ev.At}, &ev.Actor, &ev.Action, &from, &to,
			&ev.Cloud, &ev.StackID, &ev.RequestID, &ev.Error, &ev.Detail); err != nil {
			return nil, err
		}
		ev.From, ev.To = labs.Status(from), labs.Status(to)
		out = append(out, ev)
	}
	return out, rows.Err()
}

// SeeOrphan records that the stack stackID on cloud is an orphan (tagged by labplane, owned
// by no live lab), seen at now, and returns when labplane first saw it.
func (s *Store) SeeOrphan(ctx context.Context, cloud, stackID, stackName string, now time.Time) (_ time.Time, err error) {
	defer markUnavailable(&err)
	if now.IsZero() {
		return time.Time{}, fmt.Errorf("see orphan stack %q on %q: time is zero", stackID, cloud)
	}
	var first time.Time
	err = s.db.QueryRowContext(ctx, s.q(`INSERT INTO orphans (cloud, stack_id, stack_name, first_seen, last_seen)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (cloud, stack_id) DO UPDATE SET stack_name = excluded.stack_name, last_seen = excluded.last_seen
			RETURNING first_seen`),
		cloud, stackID, stackName, s.timeArg(now), s.timeArg(now)).Scan(timeDest{&first})
	if err != nil {
		return time.Time{}, fmt.Errorf("see orphan stack %q on %q: %w", stackID, cloud, err)
	}
	return first, nil
}

// ForgetOrphan forgets an orphan stack (it is gone, or a lab owns it). Forgetting one that is
// not recorded is not an error.
func (s *Store) ForgetOrphan(ctx context.Context, cloud, stackID string) (err error) {
	defer markUnavailable(&err)
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM orphans WHERE cloud = ? AND stack_id = ?`), cloud, stackID); err != nil {
		return fmt.Errorf("forget orphan stack %q on %q: %w", stackID, cloud, err)
	}
	return nil
}
