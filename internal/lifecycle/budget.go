package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/policy"
)

// BudgetActor is the actor of the suspends a spent time budget calls for.
const BudgetActor = "budget"

// MaxExtension bounds the time one extension adds to a budget.
const MaxExtension = 1000 * time.Hour

// Budget is a learner's time budget in a course: unlimited (the zero Budget, and no registry
// read) when the course has no usage_limit.
func (m *Manager) Budget(ctx context.Context, learner, course string) (policy.Budget, error) {
	rules := m.Rules.For(course)
	if rules.UsageLimit <= 0 {
		return policy.Budget{}, nil
	}
	used, added, err := m.Registry.Usage(ctx, learner, course)
	if err != nil {
		return policy.Budget{}, err
	}
	return rules.Budget(used, added), nil
}

// checkBudget refuses a launch or a resume for a learner whose budget in the course is spent.
func (m *Manager) checkBudget(ctx context.Context, learner, course string) error {
	b, err := m.Budget(ctx, learner, course)
	if err != nil || !b.Exhausted() {
		return err
	}
	return fmt.Errorf("%w: learner %s has used %s of the %s allowed in course %s; an operator can add time (labplane labs extend)",
		ErrBudgetExhausted, learner, b.Used.Round(time.Second), b.Limit, course)
}

// SuspendSpent claims a suspend of a running lab whose learner has just used up the course's
// time budget b (read by the caller with Budget, at the heartbeat that crossed it), forced:
// the learner is in it. The caller carries it out (Carry). ok is false when there is nothing
// to suspend: the budget is not spent, or the lab is not running. A budget is spent only while
// the learner is active, so the heartbeat that spends it is where it is enforced.
func (m *Manager) SuspendSpent(ctx context.Context, lab labs.Lab, b policy.Budget) (r Request, ok bool, err error) {
	if lab.Status != labs.Active || lab.StackID == "" || !b.Exhausted() {
		return Request{Lab: lab}, false, nil
	}
	c, err := m.Cloud(lab.Cloud)
	if err != nil {
		return Request{Lab: lab}, false, err
	}
	r, err = m.claim(ctx, Request{Lab: lab, op: OpSuspend, actor: BudgetActor, force: true, cloud: c,
		reason: fmt.Sprintf("time budget exhausted: %s used of %s (usage_limit and time added)", b.Used.Round(time.Second), b.Limit)})
	return r, err == nil, err
}

// Extend adds time to the budget of the lab's learner in its course, recorded on the lab as
// actor's. A course with no usage_limit has no budget to extend (ErrInvalid).
func (m *Manager) Extend(ctx context.Context, id string, by time.Duration, actor string) (labs.Lab, policy.Budget, error) {
	if by < time.Second || by > MaxExtension {
		return labs.Lab{}, policy.Budget{}, fmt.Errorf("%w: extend by %s: give from 1s to %s", ErrInvalid, by, MaxExtension)
	}
	lab, err := m.Registry.GetLab(ctx, id)
	if err != nil {
		return lab, policy.Budget{}, err
	}
	if m.Rules.For(lab.Course).UsageLimit <= 0 {
		return lab, policy.Budget{}, fmt.Errorf("%w: course %s has no usage_limit: there is no time budget to extend", ErrInvalid, lab.Course)
	}
	by = by.Truncate(time.Second)
	ev := labs.Event{LabID: lab.ID, At: m.Now(), Actor: actor, Action: "extend",
		Detail: fmt.Sprintf("added %s to the time budget of %s in %s", by, lab.Learner, lab.Course)}
	if err := m.Registry.AddUsage(ctx, lab, by, ev); err != nil {
		return lab, policy.Budget{}, err
	}
	b, err := m.Budget(ctx, lab.Learner, lab.Course)
	return lab, b, err
}
