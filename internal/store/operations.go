package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/labplane/labplane/internal/labs"
)

// StartOperation records op in its slot before it is sent to the cloud. The caller holds the
// slot's lock (Waiter.Take): the row it replaces, if any, was one the cloud is done with.
func (s *Store) StartOperation(ctx context.Context, op labs.Operation) (err error) {
	defer markUnavailable(&err)
	if op.SentAt.IsZero() {
		return fmt.Errorf("record %s of stack %q on %q: time is zero", op.Op, op.StackName, op.Cloud)
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO operations (cloud, slot, op, stack_name, stack_id, sent_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (cloud, slot) DO UPDATE SET op = excluded.op, stack_name = excluded.stack_name,
				stack_id = excluded.stack_id, sent_at = excluded.sent_at`),
		op.Cloud, op.Slot, op.Op, op.StackName, op.StackID, s.timeArg(op.SentAt))
	if err != nil {
		return fmt.Errorf("record %s of stack %q on %q: %w", op.Op, op.StackName, op.Cloud, err)
	}
	return nil
}

// EndOperation clears op from its slot, unless the slot holds another operation by now.
func (s *Store) EndOperation(ctx context.Context, op labs.Operation) (err error) {
	defer markUnavailable(&err)
	_, err = s.db.ExecContext(ctx, s.q(`DELETE FROM operations WHERE cloud = ? AND slot = ? AND stack_name = ? AND sent_at = ?`),
		op.Cloud, op.Slot, op.StackName, s.timeArg(op.SentAt))
	if err != nil {
		return fmt.Errorf("clear %s of stack %q on %q: %w", op.Op, op.StackName, op.Cloud, err)
	}
	return nil
}

// Operation returns the operation recorded in a cloud's slot; ok is false when there is none.
func (s *Store) Operation(ctx context.Context, cloud string, slot int) (op labs.Operation, ok bool, err error) {
	defer markUnavailable(&err)
	err = s.db.QueryRowContext(ctx, s.q(`SELECT op, stack_name, stack_id, sent_at FROM operations WHERE cloud = ? AND slot = ?`),
		cloud, slot).Scan(&op.Op, &op.StackName, &op.StackID, timeDest{&op.SentAt})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return labs.Operation{}, false, nil
	case err != nil:
		return labs.Operation{}, false, fmt.Errorf("read slot %d of %q: %w", slot, cloud, err)
	}
	op.Cloud, op.Slot = cloud, slot
	return op, true, nil
}
