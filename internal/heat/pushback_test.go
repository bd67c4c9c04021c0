package heat_test

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/dev/heattest"
)

// A cloud that pushes back (429 or 503 with Retry-After) on the action request gets it again
// after the time it asked for; one that asks for too long, or a 503 that says nothing, fails
// the call as transient at once.
func TestFakePushback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		code       int
		retryAfter string
		refusals   int32
		ok         bool
		waits      time.Duration // at least
	}{
		{"429 with seconds", http.StatusTooManyRequests, "1", 2, true, 2 * time.Second},
		{"503 with seconds", http.StatusServiceUnavailable, "1", 1, true, time.Second},
		{"429 with a date", http.StatusTooManyRequests, "date", 1, true, 0},
		{"429 without Retry-After", http.StatusTooManyRequests, "", 1, true, time.Second},
		{"503 without Retry-After", http.StatusServiceUnavailable, "", 1, false, 0},
		{"429 asking for too long", http.StatusTooManyRequests, "120", 1, false, 0},
		{"429 more times than labplane tries", http.StatusTooManyRequests, "0", 10, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := heattest.New(t)
			f.ActionDur = 50 * time.Millisecond
			s := f.Add("lab-p", "CREATE_COMPLETE")
			var refused atomic.Int32
			f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/actions") || refused.Load() >= tc.refusals {
					return false
				}
				refused.Add(1)
				switch tc.retryAfter {
				case "":
				case "date":
					w.Header().Set("Retry-After", time.Now().Add(time.Second).UTC().Format(http.TimeFormat))
				default:
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				heattest.WriteJSON(w, tc.code, map[string]any{"code": tc.code, "title": http.StatusText(tc.code), "explanation": "slow down"})
				return true
			}
			h := openFake(t, f)
			start := time.Now()
			st, err := h.Suspend(testCtx(t, 30*time.Second), s.Name, s.ID)
			took := time.Since(start)
			if !tc.ok {
				if !errors.Is(err, cloud.ErrTransient) {
					t.Fatalf("suspend = %v, want a transient failure", err)
				}
				if took > 5*time.Second {
					t.Errorf("gave up after %s: it waited for nothing", took)
				}
				return
			}
			if err != nil || st.Status != "SUSPEND_COMPLETE" {
				t.Fatalf("suspend = %s %v, want it done once the cloud took it", st.Status, err)
			}
			if took < tc.waits {
				t.Errorf("done in %s: it did not wait the %s asked for", took, tc.waits)
			}
			if got := h.Pushbacks(); got != int64(tc.refusals) {
				t.Errorf("Pushbacks() = %d, want %d", got, tc.refusals)
			}
		})
	}
}
