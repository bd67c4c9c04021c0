package lifecycle_test

import (
	"testing"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
)

// Retry names the action an operator's retry does again (the console's button).
func TestRetry(t *testing.T) {
	for _, tc := range []struct {
		status labs.Status
		stack  string
		want   lifecycle.Op
	}{
		{labs.NeedsOperator, "SUSPEND_FAILED", lifecycle.OpSuspend},
		{labs.NeedsOperator, "SUSPEND_IN_PROGRESS", lifecycle.OpSuspend},
		{labs.Failed, "RESUME_FAILED", lifecycle.OpResume},
		{labs.NeedsOperator, "DELETE_FAILED", lifecycle.OpDelete},
		{labs.NeedsOperator, "CREATE_FAILED", lifecycle.OpDelete},
		{labs.NeedsOperator, "", lifecycle.OpDelete},
		{labs.NeedsOperator, "SUSPEND_COMPLETE", ""}, // sound: the reaper syncs it
		{labs.Active, "SUSPEND_FAILED", ""},          // not failed nor flagged
		{labs.Suspended, "SUSPEND_COMPLETE", ""},
	} {
		got, ok := lifecycle.Retry(labs.Lab{Status: tc.status, StackStatus: tc.stack})
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("Retry(%s, %s) = %q, %v; want %q", tc.status, tc.stack, got, ok, tc.want)
		}
	}
}
