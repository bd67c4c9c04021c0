package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// usageSQL reads the spans of a learner's activity in a course: the closed ones and each lab's
// open one, deleted labs' included. Its parameters: the learner and the course, twice.
const usageSQL = `SELECT a.started_at, a.ended_at FROM activity a JOIN labs l ON l.id = a.lab_id
		WHERE l.learner = ? AND l.course = ?
	UNION ALL
	SELECT active_since, last_heartbeat FROM labs
		WHERE learner = ? AND course = ? AND active_since IS NOT NULL`

// Usage returns the time a learner was active in a course's labs (the lengths of the spans of
// heartbeats a cost report counts as used) and the time operators added to their budget.
func (s *Store) Usage(ctx context.Context, learner, course string) (used, added time.Duration, err error) {
	defer markUnavailable(&err)
	rows, err := s.query(ctx, usageSQL, learner, course, learner, course)
	if err != nil {
		return 0, 0, fmt.Errorf("usage of %s in %s: %w", learner, course, err)
	}
	defer rows.Close()
	for rows.Next() {
		var span labs.Activity
		if err := rows.Scan(timeDest{&span.From}, timeDest{&span.To}); err != nil {
			return 0, 0, fmt.Errorf("usage of %s in %s: %w", learner, course, err)
		}
		used += span.To.Sub(span.From)
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("usage of %s in %s: %w", learner, course, err)
	}
	var seconds int64
	if err := s.queryRow(ctx, s.db, `SELECT COALESCE(SUM(seconds), 0) FROM usage_added WHERE learner = ? AND course = ?`,
		learner, course).Scan(&seconds); err != nil {
		return 0, 0, fmt.Errorf("time added for %s in %s: %w", learner, course, err)
	}
	return used, time.Duration(seconds) * time.Second, nil
}

// AddUsage adds time to the budget of a lab's learner in its course, with the event that
// says so on the lab, at once. by is rounded down to the second.
func (s *Store) AddUsage(ctx context.Context, lab labs.Lab, by time.Duration, ev labs.Event) (err error) {
	defer markUnavailable(&err)
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO usage_added (learner, course, lab_id, seconds, actor, at) VALUES (?, ?, ?, ?, ?, ?)`,
			lab.Learner, lab.Course, lab.ID, int64(by/time.Second), ev.Actor, s.timeArg(ev.At)); err != nil {
			return err
		}
		return s.insertEvent(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("add %s to the budget of %s in %s: %w", by, lab.Learner, lab.Course, err)
	}
	return nil
}
