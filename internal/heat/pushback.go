package heat

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gophercloud/gophercloud/v2"
)

// A busy cloud (a public one's rate limit, an API in front of a loaded engine) answers 429
// Too Many Requests, or 503 Service Unavailable, with Retry-After: the request was not served,
// so it is sent again after the time asked for, up to maxPushbacks times, and only if the cloud
// asks for no more than maxRetryAfter (longer, the call fails as transient and the reaper
// tries again at a later pass, holding no slot meanwhile). A 429 without Retry-After waits
// pushbackStep times the tries; a 503 without it is not retried here (Heat's own transient
// failures are ridden out by the waits).
const (
	maxPushbacks  = 3
	maxRetryAfter = 30 * time.Second
	pushbackStep  = time.Second
)

// retryAfter is gophercloud's RetryBackoffFunc, called on a 429: nil to send again. gophercloud
// calls it on a 498 too (a token refused, by some proxies): no pushback, it fails at once.
func (h *Heat) retryAfter(ctx context.Context, ue *gophercloud.ErrUnexpectedResponseCode, err error, tries uint) error {
	if ue.Actual != http.StatusTooManyRequests {
		if err == nil {
			err = *ue
		}
		return err
	}
	return h.pushedBack(ctx, ue, err, tries)
}

// retry503 is gophercloud's RetryFunc, called on any other failure: it sends again only a 503
// that says when.
func (h *Heat) retry503(ctx context.Context, _, _ string, _ *gophercloud.RequestOpts, err error, tries uint) error {
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) || ue.Actual != http.StatusServiceUnavailable || ue.ResponseHeader.Get("Retry-After") == "" {
		return err
	}
	return h.pushedBack(ctx, &ue, err, tries)
}

// pushedBack waits as the cloud asked (nil: send the request again), or returns err.
func (h *Heat) pushedBack(ctx context.Context, ue *gophercloud.ErrUnexpectedResponseCode, err error, tries uint) error {
	if err == nil {
		err = *ue // gophercloud passes none on a 429, and takes nil for "send it again"
	}
	if tries > maxPushbacks {
		return err
	}
	wait, ok := parseRetryAfter(ue.ResponseHeader.Get("Retry-After"), time.Now())
	if !ok {
		wait = time.Duration(tries) * pushbackStep
	}
	if wait > maxRetryAfter {
		h.log.Warn("the cloud asks to wait longer than labplane holds a request: giving up for now",
			"status", ue.Actual, "retry_after", wait, "most", maxRetryAfter)
		return err
	}
	h.pushbacks.Add(1)
	h.log.Info("the cloud pushed back: sending again after the time it asked for", "status", ue.Actual,
		"method", ue.Method, "retry_after", wait, "try", tries)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return err
	}
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date (RFC 9110 10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(s) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(0, at.Sub(now)), true
	}
	return 0, false
}

// Pushbacks reports how many times the cloud asked labplane to wait and send a request again.
func (h *Heat) Pushbacks() int64 { return h.pushbacks.Load() }
