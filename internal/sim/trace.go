package sim

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Session is one visit of a learner to the lab: from arriving (asking the LMS for the lab) to
// leaving (the last heartbeat).
type Session struct {
	Arrive, Leave time.Time
}

// Learner is a learner's sessions in a trace, in order.
type Learner struct {
	Name     string
	Sessions []Session
}

// Trace is a month of learners' sessions on one course.
type Trace struct {
	Name     string
	Learners []Learner
}

// Sessions counts the trace's sessions.
func (t Trace) Sessions() int {
	n := 0
	for _, l := range t.Learners {
		n += len(l.Sessions)
	}
	return n
}

// Steady is a steady load: n learners (1,000 in the issue), half of them working every day,
// half every other day, each at a time of day of their own between 07:00 and 22:00 (give or
// take half an hour each day), for 30 to 45 minutes.
func Steady(start time.Time, days, n int, seed uint64) Trace {
	rng := rand.New(rand.NewPCG(seed, 1))
	t := Trace{Name: "steady", Learners: make([]Learner, n)}
	end := start.AddDate(0, 0, days)
	for i := range t.Learners {
		l := &t.Learners[i]
		l.Name = fmt.Sprintf("s%04d", i)
		every, first := 1, 0
		if i%2 == 1 {
			every, first = 2, rng.IntN(2)
		}
		timeOfDay := 7*time.Hour + time.Duration(rng.Int64N(int64(15*time.Hour)))
		for d := first; d < days; d += every {
			jitter := time.Duration(rng.Int64N(int64(time.Hour))) - 30*time.Minute
			arrive := start.AddDate(0, 0, d).Add(timeOfDay + jitter).Truncate(time.Second)
			work := 30*time.Minute + time.Duration(rng.Int64N(int64(15*time.Minute))).Truncate(time.Second)
			if arrive.Add(work).Before(end) {
				l.Sessions = append(l.Sessions, Session{Arrive: arrive, Leave: arrive.Add(work)})
			}
		}
	}
	return t
}

// Class is a class of n learners (300 in the issue) meeting every weekday from 14:00: each
// arrives in the first ten minutes, and all stop in the same minute, at 15:30.
func Class(start time.Time, days, n int, seed uint64) Trace {
	rng := rand.New(rand.NewPCG(seed, 2))
	t := Trace{Name: "class", Learners: make([]Learner, n)}
	for i := range t.Learners {
		t.Learners[i].Name = fmt.Sprintf("c%04d", i)
	}
	for d := range days {
		day := start.AddDate(0, 0, d)
		if wd := day.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		for i := range t.Learners {
			arrive := day.Add(14*time.Hour + time.Duration(rng.Int64N(int64(10*time.Minute)))).Truncate(time.Second)
			leave := day.Add(15*time.Hour + 30*time.Minute + time.Duration(rng.Int64N(int64(time.Minute)))).Truncate(time.Second)
			t.Learners[i].Sessions = append(t.Learners[i].Sessions, Session{Arrive: arrive, Leave: leave})
		}
	}
	return t
}
