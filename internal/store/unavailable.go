package store

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/labplane/labplane/internal/labs"
)

// ErrUnavailable is labs.ErrUnavailable: the errors of the Store's methods wrap it when the
// database could not be reached (PostgreSQL stopped, restarting or out of reach).
var ErrUnavailable = labs.ErrUnavailable

// unavailableError is a failure to reach the database: its message is the cause's, and it
// is both the cause and ErrUnavailable for errors.Is and errors.As.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string   { return e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{e.err, ErrUnavailable} }

// markUnavailable makes *err wrap ErrUnavailable when it says that the database could not be
// reached. The Store's methods defer it.
func markUnavailable(err *error) {
	if *err != nil && !errors.Is(*err, ErrUnavailable) && unreachable(*err) {
		*err = &unavailableError{*err}
	}
}

// unreachable reports whether err is a failure to reach the database rather than an answer
// from it: no connection could be made, the connection broke, or the server said it is
// shutting down or starting up.
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot
		// connect now (starting up); 57P05: idle session timeout
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" ||
			pgErr.Code == "57P03" || pgErr.Code == "57P05"
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
