package store

import (
	"context"
	"fmt"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// Orphans returns when labplane first saw each recorded orphan stack. It writes nothing, so a
// dry run can tell how long an orphan has been seen.
func (s *Store) Orphans(ctx context.Context) (_ map[labs.StackKey]time.Time, err error) {
	defer markUnavailable(&err)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT cloud, stack_id, first_seen FROM orphans`))
	if err != nil {
		return nil, fmt.Errorf("list orphans: %w", err)
	}
	defer rows.Close()
	out := map[labs.StackKey]time.Time{}
	for rows.Next() {
		var k labs.StackKey
		var first time.Time
		if err := rows.Scan(&k.Cloud, &k.ID, timeDest{&first}); err != nil {
			return nil, fmt.Errorf("list orphans: %w", err)
		}
		out[k] = first
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list orphans: %w", err)
	}
	return out, nil
}
