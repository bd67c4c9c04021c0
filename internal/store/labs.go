package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

const labColumns = `id, learner, course, template, cloud, stack_name, stack_id, status, stack_status,
	stack_status_since, created_at, last_heartbeat, last_resumed_at, attempts, next_attempt_at,
	last_error, outputs, updated_at, deleted_at, version`

// liveCond selects live labs: every status but deleted.
const liveCond = `status <> 'deleted'`

// CreateLab inserts lab with Version 1 and appends ev (its LabID set to lab.ID) in one
// transaction. CreatedAt defaults to ev.At when zero; UpdatedAt is set to ev.At (as UpdateLab
// does). It returns the stored lab. It fails with labs.ErrExists if the learner already has a
// live lab for the course, and with another error if the id is taken.
func (s *Store) CreateLab(ctx context.Context, lab labs.Lab, ev labs.Event) (_ labs.Lab, err error) {
	defer markUnavailable(&err)
	if err := checkLab(lab); err != nil {
		return labs.Lab{}, fmt.Errorf("create lab %q: %w", lab.ID, err)
	}
	if ev.At.IsZero() {
		return labs.Lab{}, fmt.Errorf("create lab %q: event time is zero", lab.ID)
	}
	if lab.CreatedAt.IsZero() {
		lab.CreatedAt = ev.At
	}
	lab.UpdatedAt = ev.At
	lab.Version = 1
	ev.LabID = lab.ID
	outputs, err := outputsArg(lab.Outputs)
	if err != nil {
		return labs.Lab{}, fmt.Errorf("create lab %q: %w", lab.ID, err)
	}

	var stored labs.Lab
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO labs (`+labColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			lab.ID, lab.Learner, lab.Course, lab.Template, lab.Cloud, lab.StackName, lab.StackID,
			string(lab.Status), lab.StackStatus, s.timeArg(lab.StackStatusSince), s.timeArg(lab.CreatedAt),
			s.timeArg(lab.LastHeartbeat), s.timeArg(lab.LastResumedAt), lab.Attempts,
			s.timeArg(lab.NextAttemptAt), lab.LastError, outputs, s.timeArg(lab.UpdatedAt),
			s.timeArg(lab.DeletedAt), lab.Version)
		if err != nil {
			if unique, live := uniqueViolation(err); unique {
				if live {
					return fmt.Errorf("learner %q, course %q: %w", lab.Learner, lab.Course, labs.ErrExists)
				}
				return fmt.Errorf("a lab with this id already exists: %w", err)
			}
			return fmt.Errorf("insert: %w", err)
		}
		if err := s.insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		stored, err = s.getLab(ctx, tx, lab.ID)
		return err
	})
	if err != nil {
		return labs.Lab{}, fmt.Errorf("create lab %q: %w", lab.ID, err)
	}
	return stored, nil
}

// GetLab returns the lab with that id, or labs.ErrNotFound.
func (s *Store) GetLab(ctx context.Context, id string) (_ labs.Lab, err error) {
	defer markUnavailable(&err)
	l, err := s.getLab(ctx, s.db, id)
	if err != nil {
		return labs.Lab{}, fmt.Errorf("get lab %q: %w", id, err)
	}
	return l, nil
}

func (s *Store) getLab(ctx context.Context, q querier, id string) (labs.Lab, error) {
	l, err := scanLab(q.QueryRowContext(ctx, s.q(`SELECT `+labColumns+` FROM labs WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return labs.Lab{}, labs.ErrNotFound
	}
	return l, err
}

// FindLive returns the learner's live (not deleted) lab for the course, or labs.ErrNotFound.
func (s *Store) FindLive(ctx context.Context, learner, course string) (_ labs.Lab, err error) {
	defer markUnavailable(&err)
	l, err := scanLab(s.db.QueryRowContext(ctx,
		s.q(`SELECT `+labColumns+` FROM labs WHERE learner = ? AND course = ? AND `+liveCond),
		learner, course))
	if errors.Is(err, sql.ErrNoRows) {
		err = labs.ErrNotFound
	}
	if err != nil {
		return labs.Lab{}, fmt.Errorf("find live lab of learner %q for course %q: %w", learner, course, err)
	}
	return l, nil
}

// ListLabs returns the labs f selects, ordered by creation time, then id.
func (s *Store) ListLabs(ctx context.Context, f labs.Filter) (_ []labs.Lab, err error) {
	defer markUnavailable(&err)
	var (
		where []string
		args  []any
	)
	for _, c := range []struct{ col, val string }{{"cloud", f.Cloud}, {"course", f.Course}, {"learner", f.Learner}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if len(f.Statuses) > 0 {
		marks := make([]string, len(f.Statuses))
		for i, st := range f.Statuses {
			marks[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, "status IN ("+strings.Join(marks, ", ")+")")
	}
	query := `SELECT ` + labColumns + ` FROM labs`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY created_at, id`

	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list labs: %w", err)
	}
	defer rows.Close()
	var out []labs.Lab
	for rows.Next() {
		l, err := scanLab(rows)
		if err != nil {
			return nil, fmt.Errorf("list labs: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list labs: %w", err)
	}
	return out, nil
}

// UpdateLab writes every mutable field of lab (all but ID, Learner, Course and CreatedAt) if
// the stored version is still lab.Version, bumps the version, sets UpdatedAt to ev.At and
// appends ev (its LabID set to lab.ID), all in one transaction. It returns the stored lab.
// It fails with labs.ErrStale if the lab changed since lab was read, labs.ErrNotFound if there
// is no such lab, labs.ErrExists if it would revive a lab while the learner has another live
// one for the course; then nothing is written.
func (s *Store) UpdateLab(ctx context.Context, lab labs.Lab, ev labs.Event) (_ labs.Lab, err error) {
	defer markUnavailable(&err)
	if err := checkLab(lab); err != nil {
		return labs.Lab{}, fmt.Errorf("update lab %q: %w", lab.ID, err)
	}
	if ev.At.IsZero() {
		return labs.Lab{}, fmt.Errorf("update lab %q: event time is zero", lab.ID)
	}
	ev.LabID = lab.ID
	outputs, err := outputsArg(lab.Outputs)
	if err != nil {
		return labs.Lab{}, fmt.Errorf("update lab %q: %w", lab.ID, err)
	}

	var stored labs.Lab
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE labs SET
				template = ?, cloud = ?, stack_name = ?, stack_id = ?, status = ?, stack_status = ?,
				stack_status_since = ?, last_heartbeat = ?, last_resumed_at = ?, attempts = ?,
				next_attempt_at = ?, last_error = ?, outputs = ?, updated_at = ?, deleted_at = ?,
				version = version + 1
			WHERE id = ? AND version = ?`),
			lab.Template, lab.Cloud, lab.StackName, lab.StackID, string(lab.Status), lab.StackStatus,
			s.timeArg(lab.StackStatusSince), s.timeArg(lab.LastHeartbeat), s.timeArg(lab.LastResumedAt),
			lab.Attempts, s.timeArg(lab.NextAttemptAt), lab.LastError, outputs, s.timeArg(ev.At),
			s.timeArg(lab.DeletedAt), lab.ID, lab.Version)
		if err != nil {
			if unique, live := uniqueViolation(err); unique && live {
				return fmt.Errorf("learner %q, course %q: %w", lab.Learner, lab.Course, labs.ErrExists)
			}
			return fmt.Errorf("update: %w", err)
		}
		if err := s.oneRow(ctx, tx, res, lab.ID, lab.Version); err != nil {
			return err
		}
		if err := s.insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		stored, err = s.getLab(ctx, tx, lab.ID)
		return err
	})
	if err != nil {
		return labs.Lab{}, fmt.Errorf("update lab %q: %w", lab.ID, err)
	}
	return stored, nil
}

// Heartbeat records that the lab is in use at at: LastHeartbeat becomes the later of the
// stored one and at, and the version is bumped (so an actor holding an older copy gets
// labs.ErrStale and re-reads). No event is written. It is one statement (heartbeats are the
// hottest path). A deleted lab is not touched: labs.ErrDeleted. It returns the stored lab.
func (s *Store) Heartbeat(ctx context.Context, id string, at time.Time) (_ labs.Lab, err error) {
	defer markUnavailable(&err)
	if at.IsZero() {
		return labs.Lab{}, fmt.Errorf("heartbeat lab %q: time is zero", id)
	}
	t := s.timeArg(at)
	stored, err := scanLab(s.db.QueryRowContext(ctx, s.q(`UPDATE labs SET
			last_heartbeat = CASE WHEN last_heartbeat IS NULL OR last_heartbeat < ? THEN ? ELSE last_heartbeat END,
			version = version + 1
		WHERE id = ? AND `+liveCond+` RETURNING `+labColumns), t, t, id))
	if errors.Is(err, sql.ErrNoRows) {
		// not there, or deleted
		if stored, err = s.getLab(ctx, s.db, id); err == nil {
			err = labs.ErrDeleted
		}
	}
	if err != nil {
		return stored, fmt.Errorf("heartbeat lab %q: %w", id, err)
	}
	return stored, nil
}

// CountLive returns the number of live labs (every status but deleted, suspended ones
// included) per cloud.
func (s *Store) CountLive(ctx context.Context) (_ map[string]int, err error) {
	defer markUnavailable(&err)
	rows, err := s.db.QueryContext(ctx, `SELECT cloud, COUNT(*) FROM labs WHERE `+liveCond+` GROUP BY cloud`)
	if err != nil {
		return nil, fmt.Errorf("count live labs: %w", err)
	}
	defer rows.Close()
	out := make(map[string]int)
	for rows.Next() {
		var (
			cloud string
			n     int
		)
		if err := rows.Scan(&cloud, &n); err != nil {
			return nil, fmt.Errorf("count live labs: %w", err)
		}
		out[cloud] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count live labs: %w", err)
	}
	return out, nil
}

// LabCount is a key of LabCounts: a cloud and a status.
type LabCount struct {
	Cloud  string
	Status labs.Status
}

// LabCounts counts the labs per cloud and status, deleted ones included (for metrics).
// Pairs with no lab are absent.
func (s *Store) LabCounts(ctx context.Context) (_ map[LabCount]int, err error) {
	defer markUnavailable(&err)
	rows, err := s.db.QueryContext(ctx, `SELECT cloud, status, COUNT(*) FROM labs GROUP BY cloud, status`)
	if err != nil {
		return nil, fmt.Errorf("count labs: %w", err)
	}
	defer rows.Close()
	out := make(map[LabCount]int)
	for rows.Next() {
		var (
			k      LabCount
			status string
			n      int
		)
		if err := rows.Scan(&k.Cloud, &status, &n); err != nil {
			return nil, fmt.Errorf("count labs: %w", err)
		}
		k.Status = labs.Status(status)
		out[k] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count labs: %w", err)
	}
	return out, nil
}

// oneRow checks that an optimistic update changed a row: if not, the lab is gone
// (labs.ErrNotFound) or has another version (labs.ErrStale).
func (s *Store) oneRow(ctx context.Context, tx *sql.Tx, res sql.Result, id string, version int64) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if n == 1 {
		return nil
	}
	var current int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT version FROM labs WHERE id = ?`), id).Scan(&current)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return labs.ErrNotFound
	case err != nil:
		return fmt.Errorf("check version: %w", err)
	}
	return fmt.Errorf("version %d, stored %d: %w", version, current, labs.ErrStale)
}

func checkLab(l labs.Lab) error {
	if l.ID == "" {
		return errors.New("empty lab id")
	}
	if !l.Status.Valid() {
		return fmt.Errorf("invalid status %q", l.Status)
	}
	return nil
}

// outputsArg is the JSON text outputs are stored as: NULL for a nil map.
func outputsArg(m map[string]string) (any, error) {
	if m == nil {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("outputs: %w", err)
	}
	return string(b), nil
}

func scanLab(row interface{ Scan(...any) error }) (labs.Lab, error) {
	var (
		l       labs.Lab
		status  string
		outputs sql.NullString
	)
	err := row.Scan(&l.ID, &l.Learner, &l.Course, &l.Template, &l.Cloud, &l.StackName, &l.StackID,
		&status, &l.StackStatus, timeDest{&l.StackStatusSince}, timeDest{&l.CreatedAt},
		timeDest{&l.LastHeartbeat}, timeDest{&l.LastResumedAt}, &l.Attempts, timeDest{&l.NextAttemptAt},
		&l.LastError, &outputs, timeDest{&l.UpdatedAt}, timeDest{&l.DeletedAt}, &l.Version)
	if err != nil {
		return labs.Lab{}, err
	}
	l.Status = labs.Status(status)
	if outputs.Valid {
		if err := json.Unmarshal([]byte(outputs.String), &l.Outputs); err != nil {
			return labs.Lab{}, fmt.Errorf("lab %q: stored outputs: %w", l.ID, err)
		}
	}
	return l, nil
}
