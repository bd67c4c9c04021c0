package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/labs"
)

// beats batches the heartbeats that extend an open activity span, on PostgreSQL: the ones that
// arrive while a batch is at the database go together in the next one, a single statement, so
// a busy LMS's heartbeats cost a round trip and a commit per batch instead of one each (group
// commit). A heartbeat waits for no timer: one that finds no batch under way goes at once. At
// most one batch is at the database at a time.
type beats struct {
	mu      sync.Mutex
	pending []*beat
	running bool
}

// beat is one heartbeat waiting for its batch.
type beat struct {
	id       string
	at, gap  time.Time
	done     chan struct{}
	lab      labs.Lab
	extended bool // the open span was extended: lab is the row after it
	err      error
}

// beatTimeout bounds a batch's statement.
const beatTimeout = 30 * time.Second

// beatInSpanBatchSQL is beatInSpanSQL for a batch: $1 the labs' ids, $2 the heartbeats' times,
// $3 the gaps' starts (one each per lab).
var beatInSpanBatchSQL = `UPDATE labs SET last_heartbeat = CASE WHEN labs.last_heartbeat < b.at THEN b.at ELSE labs.last_heartbeat END,
		version = labs.version + 1
	FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS b(id, at, gap)
	WHERE labs.id = b.id AND labs.` + liveCond + ` AND labs.active_since IS NOT NULL AND labs.last_heartbeat >= b.gap
	RETURNING ` + qualified("labs", labColumns)

// qualified prefixes each of columns (a comma-separated list) with table.
func qualified(table, columns string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = table + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// beatInSpan extends lab id's open span to at, in the next batch: beatInSpanSQL's answer,
// sql.ErrNoRows when the lab has no open span that at extends (the heartbeat opens one), or
// is deleted or unknown.
func (s *Store) beatInSpan(ctx context.Context, id string, at, gap time.Time) (labs.Lab, error) {
	b := &beat{id: id, at: normTime(at), gap: normTime(gap), done: make(chan struct{})}
	s.beats.mu.Lock()
	s.beats.pending = append(s.beats.pending, b)
	lead := !s.beats.running
	s.beats.running = true
	s.beats.mu.Unlock()
	if lead {
		s.sendBeats(context.WithoutCancel(ctx))
	}
	select {
	case <-b.done:
		if b.err == nil && !b.extended {
			return labs.Lab{}, sql.ErrNoRows
		}
		return b.lab, b.err
	case <-ctx.Done():
		return labs.Lab{}, ctx.Err()
	}
}

// sendBeats sends the pending heartbeats as one batch; the heartbeats that arrived meanwhile
// go in the next, sent by a goroutine of its own (the caller's own heartbeat is done).
func (s *Store) sendBeats(ctx context.Context) {
	s.beats.mu.Lock()
	batch := s.beats.pending
	s.beats.pending = nil
	s.beats.mu.Unlock()

	s.runBeats(ctx, batch)

	s.beats.mu.Lock()
	defer s.beats.mu.Unlock()
	if len(s.beats.pending) == 0 {
		s.beats.running = false
		return
	}
	go s.sendBeats(ctx)
}

// runBeats runs one batch and hands each heartbeat its answer. A lab beaten twice in the batch
// is sent once, at the later time (the row ends the same as after both, one after the other).
func (s *Store) runBeats(ctx context.Context, batch []*beat) {
	ctx, cancel := context.WithTimeout(ctx, beatTimeout)
	defer cancel()
	latest := map[string]*beat{}
	for _, b := range batch {
		if l, ok := latest[b.id]; !ok || b.at.After(l.at) {
			latest[b.id] = b
		}
	}
	ids, ats, gaps := make([]string, 0, len(latest)), make([]time.Time, 0, len(latest)), make([]time.Time, 0, len(latest))
	for id, b := range latest {
		ids, ats, gaps = append(ids, id), append(ats, b.at), append(gaps, b.gap)
	}
	extended, err := s.queryBeats(ctx, ids, ats, gaps)
	for _, b := range batch {
		b.lab, b.extended = extended[b.id]
		b.err = err
		close(b.done)
	}
}

func (s *Store) queryBeats(ctx context.Context, ids []string, ats, gaps []time.Time) (map[string]labs.Lab, error) {
	rows, err := s.db.QueryContext(ctx, beatInSpanBatchSQL, ids, ats, gaps)
	if err != nil {
		return nil, fmt.Errorf("heartbeats: %w", err)
	}
	defer rows.Close()
	out := map[string]labs.Lab{}
	for rows.Next() {
		l, err := scanLab(rows)
		if err != nil {
			return nil, fmt.Errorf("heartbeats: %w", err)
		}
		out[l.ID] = l
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("heartbeats: %w", err)
	}
	return out, nil
}
