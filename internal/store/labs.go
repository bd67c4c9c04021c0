package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

const labColumns = `id, learner, course, template, cloud, stack_name, stack_id, status, stack_status,
	stack_status_since, created_at, last_heartbeat, last_resumed_at, attempts, next_attempt_at,
	last_error, outputs, updated_at, deleted_at, claimed_at, claimed_by, sent_at, version, left_at`

// liveCond selects live labs: every status but deleted.
const liveCond = `status <> 'deleted'`

// The statements of the hot paths.
const (
	insertLabSQL = `INSERT INTO labs (` + labColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	getLabSQL   = `SELECT ` + labColumns + ` FROM labs WHERE id = ?`
	findLiveSQL = `SELECT ` + labColumns + ` FROM labs WHERE learner = ? AND course = ? AND ` + liveCond
	// where a page of labs begins (ListLabs), and the placement's count
	afterSQL     = `SELECT created_at FROM labs WHERE id = ?`
	countLiveSQL = `SELECT cloud, COUNT(*) FROM labs WHERE ` + liveCond + ` GROUP BY cloud`
	// the metered lab hours: a cloud's live labs by course and status, and the used ones
	courseCountsSQL = `SELECT course, status, COUNT(*),
		COALESCE(SUM(CASE WHEN last_heartbeat >= ? OR last_resumed_at >= ? THEN 1 ELSE 0 END), 0)
		FROM labs WHERE cloud = ? AND ` + liveCond + ` GROUP BY course, status`
	updateLabSQL = `UPDATE labs SET
		template = ?, cloud = ?, stack_name = ?, stack_id = ?, status = ?, stack_status = ?,
		stack_status_since = ?, last_heartbeat = ?, last_resumed_at = ?, attempts = ?,
		next_attempt_at = ?, last_error = ?, outputs = ?, updated_at = ?, deleted_at = ?,
		claimed_at = ?, claimed_by = ?, sent_at = ?, left_at = ?, version = version + 1
		WHERE id = ? AND version = ?`

	// A heartbeat within the open span (the last one less than the gap before it), most of
	// them: the span's end moves, nothing else. If it matches no row (no span, a silence longer
	// than the gap, a deleted or unknown lab), one of the statements below runs instead.
	beatInSpanSQL = `UPDATE labs SET last_heartbeat = CASE WHEN last_heartbeat < ? THEN ? ELSE last_heartbeat END,
		version = version + 1
		WHERE id = ? AND ` + liveCond + ` AND active_since IS NOT NULL AND last_heartbeat >= ? RETURNING ` + labColumns

	// The learner left the lab (closed its page): the latest leave is kept.
	leaveSQL = `UPDATE labs SET left_at = CASE WHEN left_at IS NULL OR left_at < ? THEN ? ELSE left_at END,
		version = version + 1
		WHERE id = ? AND ` + liveCond + ` RETURNING ` + labColumns

	// A heartbeat that opens a span, on PostgreSQL: one statement. The row is locked first, so
	// that two heartbeats at once never both close the same span.
	beatPostgresSQL = `WITH prev AS (
			SELECT id AS prev_id, active_since AS prev_since, last_heartbeat AS prev_last
			FROM labs WHERE id = ? AND ` + liveCond + ` FOR UPDATE
		), closed AS (
			INSERT INTO activity (lab_id, started_at, ended_at)
			SELECT prev_id, prev_since, prev_last FROM prev WHERE prev_since IS NOT NULL AND prev_last < ?
		)
		UPDATE labs SET ` + heartbeatSetPrev + `
		FROM prev WHERE id = prev_id RETURNING ` + labColumns
	// The same on SQLite: two statements in a transaction (SQLite has one writer).
	closeSpanSQLite = `INSERT INTO activity (lab_id, started_at, ended_at)
		SELECT id, active_since, last_heartbeat FROM labs
		WHERE id = ? AND ` + liveCond + ` AND active_since IS NOT NULL AND last_heartbeat < ?`
	beatSQLite = `UPDATE labs SET ` + heartbeatSetRow + ` WHERE id = ? AND ` + liveCond + ` RETURNING ` + labColumns

	// The SET of a heartbeat, from the open span's start and the last heartbeat before it (the
	// previous row's, or the row's own). Its parameters: the gap's start, then the heartbeat's
	// time three times. A span opens when there is none or the last heartbeat is older than
	// the gap.
	heartbeatSetPrev = `active_since = CASE WHEN prev_since IS NULL OR prev_last < ? THEN ? ELSE prev_since END,
		last_heartbeat = CASE WHEN prev_last IS NULL OR prev_last < ? THEN ? ELSE prev_last END,
		version = version + 1`
	heartbeatSetRow = `active_since = CASE WHEN active_since IS NULL OR last_heartbeat < ? THEN ? ELSE active_since END,
		last_heartbeat = CASE WHEN last_heartbeat IS NULL OR last_heartbeat < ? THEN ? ELSE last_heartbeat END,
		version = version + 1`
)

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
		_, err := s.exec(ctx, tx, insertLabSQL,
			lab.ID, lab.Learner, lab.Course, lab.Template, lab.Cloud, lab.StackName, lab.StackID,
			string(lab.Status), lab.StackStatus, s.timeArg(lab.StackStatusSince), s.timeArg(lab.CreatedAt),
			s.timeArg(lab.LastHeartbeat), s.timeArg(lab.LastResumedAt), lab.Attempts,
			s.timeArg(lab.NextAttemptAt), lab.LastError, outputs, s.timeArg(lab.UpdatedAt),
			s.timeArg(lab.DeletedAt), s.timeArg(lab.ClaimedAt), lab.ClaimedBy, s.timeArg(lab.SentAt), lab.Version,
			s.timeArg(lab.LeftAt))
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
	l, err := scanLab(s.queryRow(ctx, q, getLabSQL, id))
	if errors.Is(err, sql.ErrNoRows) {
		return labs.Lab{}, labs.ErrNotFound
	}
	return l, err
}

// FindLive returns the learner's live (not deleted) lab for the course, or labs.ErrNotFound.
func (s *Store) FindLive(ctx context.Context, learner, course string) (_ labs.Lab, err error) {
	defer markUnavailable(&err)
	l, err := scanLab(s.queryRow(ctx, s.db, findLiveSQL, learner, course))
	if errors.Is(err, sql.ErrNoRows) {
		err = labs.ErrNotFound
	}
	if err != nil {
		return labs.Lab{}, fmt.Errorf("find live lab of learner %q for course %q: %w", learner, course, err)
	}
	return l, nil
}

// dueLabsSQL selects the labs that may be due to be brought to rest (DueLabs).
const dueLabsSQL = `SELECT ` + labColumns + ` FROM labs
	WHERE status IN ('suspending', 'deleting')
	   OR (status IN ('active', 'failed') AND created_at <= ?
	       AND (last_heartbeat IS NULL OR last_heartbeat <= ?) AND (last_resumed_at IS NULL OR last_resumed_at <= ?))
	   OR (status IN ('active', 'failed') AND left_at <= ?
	       AND (last_heartbeat IS NULL OR last_heartbeat <= left_at) AND (last_resumed_at IS NULL OR last_resumed_at <= left_at))
	ORDER BY created_at, id`

// DueLabs returns the labs that may be due to be brought to rest: those running (or whose
// last action failed) with no activity after idleBefore or whose learner left before
// leftBefore, and those with a suspend or delete under way. The rest cannot be: the
// suspend-idle job reads no other lab, and no other stack.
func (s *Store) DueLabs(ctx context.Context, idleBefore, leftBefore time.Time) (_ []labs.Lab, err error) {
	defer markUnavailable(&err)
	t := s.timeArg(idleBefore)
	return s.listLabs(ctx, 0, dueLabsSQL, t, t, t, s.timeArg(leftBefore))
}

// ListLabs returns the labs f selects, ordered by creation time, then id.
func (s *Store) ListLabs(ctx context.Context, f labs.Filter) (_ []labs.Lab, err error) {
	defer markUnavailable(&err)
	where, args := labsWhere(f)
	if f.After != "" {
		// keyset paging: a lab gone from the listing since (deleted, filtered out) still
		// marks where the next page begins. Its creation time is read first: compared with
		// values, not a subquery, the pair follows the index, labs created at the same
		// instant included.
		var createdAt any
		switch err := s.queryRow(ctx, s.db, afterSQL, f.After).Scan(&createdAt); {
		case errors.Is(err, sql.ErrNoRows):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("list labs after %q: %w", f.After, err)
		}
		where = append(where, "(created_at, id) > (?, ?)")
		args = append(args, createdAt, f.After)
	}
	query := `SELECT ` + labColumns + ` FROM labs`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY created_at, id`
	if f.Limit > 0 {
		query += ` LIMIT ?` // a parameter: one statement for every page size
		args = append(args, f.Limit)
	}
	return s.listLabs(ctx, f.Limit, query, args...)
}

// labsWhere is the conditions (with ? placeholders) and arguments of f's cloud, course,
// learner and statuses.
func labsWhere(f labs.Filter) (where []string, args []any) {
	for _, c := range []struct{ col, val string }{{"cloud", f.Cloud}, {"course", f.Course}, {"learner", f.Learner}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	switch {
	case slices.Equal(f.Statuses, labs.LiveStatuses()):
		// the listing of every pass and check: one condition, not a list of every live status,
		// so that a page of it follows the index on (created_at, id), not the one on status
		where = append(where, liveCond)
	case len(f.Statuses) > 0:
		marks := make([]string, len(f.Statuses))
		for i, st := range f.Statuses {
			marks[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, "status IN ("+strings.Join(marks, ", ")+")")
	}
	return where, args
}

// TallyLabs counts the labs f selects (its cloud, course, learner and statuses; not its page)
// per course, cloud and status, in that order. Triples with no lab are absent.
func (s *Store) TallyLabs(ctx context.Context, f labs.Filter) (_ []labs.Tally, err error) {
	defer markUnavailable(&err)
	where, args := labsWhere(f)
	query := `SELECT course, cloud, status, COUNT(*) FROM labs`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` GROUP BY course, cloud, status ORDER BY course, cloud, status`
	rows, err := s.db.QueryContext(ctx, s.q(query), args...) // not prepared: as many forms as filters
	if err != nil {
		return nil, fmt.Errorf("tally labs: %w", err)
	}
	defer rows.Close()
	var out []labs.Tally
	for rows.Next() {
		var (
			t      labs.Tally
			status string
		)
		if err := rows.Scan(&t.Course, &t.Cloud, &status, &t.Labs); err != nil {
			return nil, fmt.Errorf("tally labs: %w", err)
		}
		t.Status = labs.Status(status)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tally labs: %w", err)
	}
	return out, nil
}

// listLabs runs a listing of at most limit labs (0: no limit).
func (s *Store) listLabs(ctx context.Context, limit int, query string, args ...any) ([]labs.Lab, error) {
	out, err := s.queryLabs(ctx, limit, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list labs: %w", err)
	}
	return out, nil
}

// queryLabs runs a query of labColumns (with ? placeholders) and scans its rows; limit, if
// not 0, is the most rows it can return: their room is made at once.
func (s *Store) queryLabs(ctx context.Context, limit int, query string, args ...any) ([]labs.Lab, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]labs.Lab, 0, limit)
	for rows.Next() {
		l, err := scanLab(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
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
		res, err := s.exec(ctx, tx, updateLabSQL,
			lab.Template, lab.Cloud, lab.StackName, lab.StackID, string(lab.Status), lab.StackStatus,
			s.timeArg(lab.StackStatusSince), s.timeArg(lab.LastHeartbeat), s.timeArg(lab.LastResumedAt),
			lab.Attempts, s.timeArg(lab.NextAttemptAt), lab.LastError, outputs, s.timeArg(ev.At),
			s.timeArg(lab.DeletedAt), s.timeArg(lab.ClaimedAt), lab.ClaimedBy, s.timeArg(lab.SentAt), s.timeArg(lab.LeftAt),
			lab.ID, lab.Version)
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
// labs.ErrStale and re-reads). No event is written. A deleted lab is not touched:
// labs.ErrDeleted. It returns the stored lab.
//
// It also keeps the learner's activity: the lab's open span runs from its first heartbeat to
// its last; a heartbeat more than labs.ActivityGap after the last one moves that span into the
// activity table and opens a new one. Heartbeats are the hottest path: one that extends the
// open span (most) is one UPDATE; one that opens a span is one more statement on PostgreSQL
// (the row is locked first, so two heartbeats at once never close the same span twice), one
// more transaction on SQLite.
func (s *Store) Heartbeat(ctx context.Context, id string, at time.Time) (_ labs.Lab, err error) {
	defer markUnavailable(&err)
	if at.IsZero() {
		return labs.Lab{}, fmt.Errorf("heartbeat lab %q: time is zero", id)
	}
	gap := at.Add(-labs.ActivityGap)
	t, gapStart := s.timeArg(at), s.timeArg(gap)
	// most heartbeats extend the open span: one plain UPDATE, batched on PostgreSQL
	var stored labs.Lab
	if s.driver == Postgres {
		stored, err = s.beatInSpan(ctx, id, at, gap)
	} else {
		stored, err = scanLab(s.queryRow(ctx, s.db, beatInSpanSQL, t, t, id, gapStart))
	}
	switch {
	case !errors.Is(err, sql.ErrNoRows):
	case s.driver == Postgres:
		stored, err = scanLab(s.queryRow(ctx, s.db, beatPostgresSQL, id, gapStart, gapStart, t, t, t))
	default:
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			if _, err := s.exec(ctx, tx, closeSpanSQLite, id, gapStart); err != nil {
				return fmt.Errorf("close activity span: %w", err)
			}
			var err error
			stored, err = scanLab(s.queryRow(ctx, tx, beatSQLite, gapStart, t, t, t, id))
			return err
		})
	}
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

// Leave records that the lab's learner left it at (the LMS saw its page closed): a lab whose
// learner left, and showed no activity since, is suspended after its course's leave_grace.
// A deleted lab's leave is labs.ErrDeleted.
func (s *Store) Leave(ctx context.Context, id string, at time.Time) (_ labs.Lab, err error) {
	defer markUnavailable(&err)
	if at.IsZero() {
		return labs.Lab{}, fmt.Errorf("leave lab %q: time is zero", id)
	}
	t := s.timeArg(at)
	stored, err := scanLab(s.queryRow(ctx, s.db, leaveSQL, t, t, id))
	if errors.Is(err, sql.ErrNoRows) {
		// not there, or deleted
		if stored, err = s.getLab(ctx, s.db, id); err == nil {
			err = labs.ErrDeleted
		}
	}
	if err != nil {
		return stored, fmt.Errorf("leave lab %q: %w", id, err)
	}
	return stored, nil
}

// CountLive returns the number of live labs (every status but deleted, suspended ones
// included) per cloud.
func (s *Store) CountLive(ctx context.Context) (_ map[string]int, err error) {
	defer markUnavailable(&err)
	rows, err := s.query(ctx, countLiveSQL)
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

// CourseCounts counts a cloud's live labs per course and status, and those of them with a
// heartbeat or a resume at usedSince or later (labs.CourseCount), for the metered lab hours.
func (s *Store) CourseCounts(ctx context.Context, cloud string, usedSince time.Time) (_ []labs.CourseCount, err error) {
	defer markUnavailable(&err)
	t := s.timeArg(usedSince)
	rows, err := s.query(ctx, courseCountsSQL, t, t, cloud)
	if err != nil {
		return nil, fmt.Errorf("count the labs of cloud %s: %w", cloud, err)
	}
	defer rows.Close()
	var out []labs.CourseCount
	for rows.Next() {
		var (
			c      labs.CourseCount
			status string
		)
		if err := rows.Scan(&c.Course, &status, &c.Labs, &c.Used); err != nil {
			return nil, fmt.Errorf("count the labs of cloud %s: %w", cloud, err)
		}
		c.Status = labs.Status(status)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count the labs of cloud %s: %w", cloud, err)
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
		&l.LastError, &outputs, timeDest{&l.UpdatedAt}, timeDest{&l.DeletedAt}, timeDest{&l.ClaimedAt},
		&l.ClaimedBy, timeDest{&l.SentAt}, &l.Version, timeDest{&l.LeftAt})
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
