package cost

import (
	"context"
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
