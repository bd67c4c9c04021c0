package config_test

import (
	"strings"
	"testing"

	"github.com/labplane/labplane/internal/config"
)

// FuzzParse: whatever labplane.yaml holds, Parse returns a configuration or an error that
// names the file, and never panics.
func FuzzParse(f *testing.F) {
	f.Add(minimal)
	f.Add(minimal + "policy:\n  idle_suspend_after: 5m\n  leave_grace: 1m\n  courses:\n    \"course-v1:a+b+c\":\n      delete_after: 336h\n")
	f.Add(minimal + "clouds:\n  - {name: a, cloud: x, max_in_flight: auto, in_flight_floor: 8, in_flight_ceiling: 4}\n")
	f.Add("clouds: [{name: a, cloud: x}]\ntemplates: {lab: lab.yaml}\nhooks: {env: [\"A=B\"], max_parallel: -1}\n")
	f.Add("{{{")
	f.Add("store: {driver: postgres, dsn: '${NOPE}'}\n")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := config.Parse("fuzz/labplane.yaml", []byte(raw))
		if err == nil {
			if c == nil {
				t.Fatal("no configuration and no error")
			}
			return
		}
		if !strings.Contains(err.Error(), "labplane.yaml") {
			t.Fatalf("an error that does not name the file: %v", err)
		}
	})
}
