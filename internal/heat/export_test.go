package heat

import "time"

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
