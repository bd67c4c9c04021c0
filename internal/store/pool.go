package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/labplane/labplane/internal/labs"
)

// The statements of a course's warm pool: its labs have no learner (labs.Lab.Pooled).
const (
	poolCountSQL = `SELECT COUNT(*) FROM labs WHERE learner = '' AND course = ? AND ` + liveCond
	// the oldest pool lab ready to be taken: suspended, and no action claimed on it
	poolReadySQL = `SELECT ` + labColumns + ` FROM labs
		WHERE learner = '' AND course = ? AND status = 'suspended' AND claimed_at IS NULL
		ORDER BY created_at, id LIMIT 1`
	poolTakeSQL = `UPDATE labs SET learner = ?, last_heartbeat = ?, updated_at = ?, version = version + 1
		WHERE id = ? AND version = ? AND learner = ''`
)

// PoolSize counts the live labs of a course's warm pool, the ones still launching included.
func (s *Store) PoolSize(ctx context.Context, course string) (n int, err error) {
	defer markUnavailable(&err)
	if err := s.queryRow(ctx, s.db, poolCountSQL, course).Scan(&n); err != nil {
		return 0, fmt.Errorf("pool of %s: %w", course, err)
	}
	return n, nil
}

// poolTakeTries bounds how often TakePooled tries again when another launch took the lab it
// chose first.
const poolTakeTries = 5

// TakePooled gives the learner the oldest ready lab of the course's warm pool (suspended, no
// action claimed on it), with the event, at once, and returns it. The take is the learner's
// activity (its last heartbeat), as a new lab's creation is: the lab is in use for
// idle_suspend_after from it, even if its resume's outcome is lost. labs.ErrNotFound: the
// pool has no lab ready; labs.ErrExists: the learner has a live lab for the course already.
func (s *Store) TakePooled(ctx context.Context, course, learner string, ev labs.Event) (_ labs.Lab, err error) {
	defer markUnavailable(&err)
	if learner == "" || ev.At.IsZero() {
		return labs.Lab{}, fmt.Errorf("take a lab of the %s pool: a learner and an event time are needed", course)
	}
	for range poolTakeTries {
		lab, err := scanLab(s.queryRow(ctx, s.db, poolReadySQL, course))
		if errors.Is(err, sql.ErrNoRows) {
			return labs.Lab{}, fmt.Errorf("take a lab of the %s pool: none ready: %w", course, labs.ErrNotFound)
		}
		if err != nil {
			return labs.Lab{}, fmt.Errorf("take a lab of the %s pool: %w", course, err)
		}
		ev.LabID = lab.ID
		var taken labs.Lab
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			res, err := s.exec(ctx, tx, poolTakeSQL, learner, s.timeArg(ev.At), s.timeArg(ev.At), lab.ID, lab.Version)
			if err != nil {
				if unique, live := uniqueViolation(err); unique && live {
					return fmt.Errorf("learner %q, course %q: %w", learner, course, labs.ErrExists)
				}
				return err
			}
			if err := s.oneRow(ctx, tx, res, lab.ID, lab.Version); err != nil {
				return err
			}
			if err := s.insertEvent(ctx, tx, ev); err != nil {
				return err
			}
			taken, err = s.getLab(ctx, tx, lab.ID)
			return err
		})
		switch {
		case err == nil:
			return taken, nil
		case errors.Is(err, labs.ErrStale), errors.Is(err, labs.ErrNotFound):
			continue // another launch took it, or it changed: the next one
		default:
			return labs.Lab{}, fmt.Errorf("take lab %s of the %s pool: %w", lab.ID, course, err)
		}
	}
	return labs.Lab{}, fmt.Errorf("take a lab of the %s pool: taken by other launches %d times: %w", course, poolTakeTries, labs.ErrStale)
}
