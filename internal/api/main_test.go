package api_test

import (
	"testing"

	"github.com/labplane/labplane/internal/dev/pgtest"
)

// pg is a PostgreSQL server for the tests and benchmarks on PostgreSQL, started once.
var pg *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }
