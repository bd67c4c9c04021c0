package policy

import "time"

// Budget is a learner's time in a course's labs against the course's usage_limit: the hours
// the learner may be active in its labs (all of them, deleted ones included), counted from the
// same spans of heartbeats as a cost report's used hours. At the limit the learner's running
// lab is suspended, and a launch or a resume is refused until an operator adds time.
type Budget struct {
	// Limit is usage_limit plus the time operators added (labs extend); zero: no limit.
	Limit time.Duration `json:"limit"`
	Used  time.Duration `json:"used"`
	// WarnAt is usage_warn_at: with this much left or less, the LMS warns the learner.
	WarnAt time.Duration `json:"warn_at"`
}

// Budget is the learner's budget in a course with these rules, from the time used and the
// time operators added. It is unlimited (the zero Budget) when the course has no usage_limit.
func (r Rules) Budget(used, added time.Duration) Budget {
	if r.UsageLimit <= 0 {
		return Budget{}
	}
	return Budget{Limit: r.UsageLimit + added, Used: used, WarnAt: r.UsageWarnAt}
}

// Limited reports whether the course has a usage_limit.
func (b Budget) Limited() bool { return b.Limit > 0 }

// Left is the time left, never below zero; zero for an unlimited budget.
func (b Budget) Left() time.Duration {
	if !b.Limited() || b.Used >= b.Limit {
		return 0
	}
	return b.Limit - b.Used
}

// Exhausted reports whether the learner has used the whole budget.
func (b Budget) Exhausted() bool { return b.Limited() && b.Used >= b.Limit }

// Warn reports whether the learner is to be warned: usage_warn_at or less left.
func (b Budget) Warn() bool { return b.Limited() && b.Left() <= b.WarnAt }

// BudgetView is a budget as labplane shows it (the API's answers, the CLI's JSON): what the
// LMS shows as "2 hours of lab time left".
type BudgetView struct {
	LimitSeconds int64 `json:"limit_seconds"`
	UsedSeconds  int64 `json:"used_seconds"`
	LeftSeconds  int64 `json:"left_seconds"`
	// Warning: usage_warn_at or less left; Exhausted: none left (launch and resume refused)
	Warning   bool `json:"warning"`
	Exhausted bool `json:"exhausted"`
}

// View is the budget in whole seconds, used rounded down so that used and left make the
// limit; nil for an unlimited budget.
func (b Budget) View() *BudgetView {
	if !b.Limited() {
		return nil
	}
	limit, used := int64(b.Limit/time.Second), int64(b.Used/time.Second)
	return &BudgetView{LimitSeconds: limit, UsedSeconds: used, LeftSeconds: max(limit-used, 0), Warning: b.Warn(), Exhausted: b.Exhausted()}
}
