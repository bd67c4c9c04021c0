package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/labplane/labplane/internal/labs"
)

// DrainCloud records that no new lab goes to cloud from at on (placement skips it; its labs
// stay), as actor asked. A cloud drained already stays as it was recorded.
func (s *Store) DrainCloud(ctx context.Context, d labs.Drain) (err error) {
	defer markUnavailable(&err)
	if d.Cloud == "" || d.At.IsZero() || d.Actor == "" {
		return errors.New("drain a cloud: its name, the time and who asked are required")
	}
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO cloud_drains (cloud, drained_at, actor) VALUES (?, ?, ?)
		ON CONFLICT (cloud) DO NOTHING`), d.Cloud, s.timeArg(d.At), d.Actor); err != nil {
		return fmt.Errorf("drain cloud %s: %w", d.Cloud, err)
	}
	return nil
}

// UndrainCloud ends a drain DrainCloud recorded (none: nothing changes).
func (s *Store) UndrainCloud(ctx context.Context, cloud string) (err error) {
	defer markUnavailable(&err)
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM cloud_drains WHERE cloud = ?`), cloud); err != nil {
		return fmt.Errorf("undrain cloud %s: %w", cloud, err)
	}
	return nil
}

// Drains returns the clouds drained at run time, by name.
func (s *Store) Drains(ctx context.Context) (_ map[string]labs.Drain, err error) {
	defer markUnavailable(&err)
	rows, err := s.db.QueryContext(ctx, `SELECT cloud, drained_at, actor FROM cloud_drains`)
	if err != nil {
		return nil, fmt.Errorf("list drained clouds: %w", err)
	}
	defer rows.Close()
	out := map[string]labs.Drain{}
	for rows.Next() {
		var d labs.Drain
		if err := rows.Scan(&d.Cloud, timeDest{&d.At}, &d.Actor); err != nil {
			return nil, fmt.Errorf("list drained clouds: %w", err)
		}
		out[d.Cloud] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list drained clouds: %w", err)
	}
	return out, nil
}
