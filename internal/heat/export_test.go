package heat

import (
	"context"
	"net/http"
	"time"
)

// SetGraces shortens the waits' grace periods for tests.
func SetGraces(h *Heat, stale, transient time.Duration) {
	h.staleGrace, h.transientGrace = stale, transient
}

// SetListPage changes List's page size for tests; it returns a function restoring it.
func SetListPage(n int) (restore func()) {
	old := listPage
	listPage = n
	return func() { listPage = old }
}

// SendDelete sends one DELETE of the stack and does not wait: another actor's delete.
func SendDelete(ctx context.Context, h *Heat, name, id string) error {
	_, err := h.request(ctx, http.MethodDelete, h.stackURL(name, id), nil, nil, 204)
	return err
}
