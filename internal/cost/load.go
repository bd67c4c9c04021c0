package cost

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// Source is where Load reads histories: the registry (*store.Store). A zero since means from
// the beginning, a zero until up to now.
type Source interface {
	// LabsExisting returns the labs that existed at some time in [since, until).
	LabsExisting(ctx context.Context, since, until time.Time) ([]labs.Lab, error)
	// EventsOfLabsExisting returns all their events, by lab, in the order they were recorded.
	EventsOfLabsExisting(ctx context.Context, since, until time.Time) ([]labs.Event, error)
	// Activity returns the spans of learner activity overlapping [since, until).
	Activity(ctx context.Context, since, until time.Time) ([]labs.Activity, error)
}

// Load reads the history of every lab that existed in [since, until).
func Load(ctx context.Context, src Source, since, until time.Time) ([]History, error) {
	ls, err := src.LabsExisting(ctx, since, until)
	if err != nil {
		return nil, fmt.Errorf("read the labs: %w", err)
	}
	evs, err := src.EventsOfLabsExisting(ctx, since, until)
	if err != nil {
		return nil, fmt.Errorf("read the audit trail: %w", err)
	}
	act, err := src.Activity(ctx, since, until)
	if err != nil {
		return nil, fmt.Errorf("read the learners' activity: %w", err)
	}
	hs := make([]History, len(ls))
	byID := make(map[string]*History, len(ls))
	for i, l := range ls {
		hs[i].Lab = l
		byID[l.ID] = &hs[i]
	}
	for _, ev := range evs {
		if h := byID[ev.LabID]; h != nil {
			h.Events = append(h.Events, ev)
		}
	}
	for _, a := range act {
		if h := byID[a.LabID]; h != nil {
			h.Activity = append(h.Activity, a)
		}
	}
	return hs, nil
}

// ParseWhen reads the time that bounds a report's period, as an operator gives it: a date
// (2026-11-02), RFC 3339 (2026-11-02T09:00:00Z), or a duration back from now (720h).
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, errors.New("use a date (2026-11-02), a time (2026-11-02T09:00:00Z) or a duration back from now (720h)")
}
