package cli_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// config show prints the configuration as labplane uses it, in the file's keys: the defaults
// filled in, each course's policy whole. Written back as the file, it loads to the same
// configuration (a section can be copied), and --output json is the same document.
func TestConfigShow(t *testing.T) {
	s := newSite(t, strings.Replace(goodConfig, "templates:", "  - {name: beta, cloud: elsewhere, max_in_flight: auto, capacity: 10}\ntemplates:", 1)+`policy:
  idle_suspend_after: 5m
  delete_after: 336h
  courses:
    os101: {idle_suspend_after: 1h, max_attempts: 5}
`)
	r := s.run("config", "show")
	if r.code != 0 {
		t.Fatalf("config show: %s", r)
	}
	for _, want := range []string{
		"site: ", "  dsn: " + "labplane.db\n", "    max_in_flight: auto\n", "    in_flight_ceiling: 32\n", "    capacity: 10\n",
		"policy:\n  idle_suspend_after: 5m0s\n  leave_grace: 3m0s\n  delete_after: 336h0m0s\n",
		"  courses:\n    os101:\n      idle_suspend_after: 1h0m0s\n      leave_grace: 3m0s\n      delete_after: 336h0m0s\n",
		"      max_attempts: 5\n", "  max_parallel: 8\n", "  listen: 127.0.0.1:8080\n", "  suspend_every: 15s\n",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("config show has no %q:\n%s", want, r.out)
		}
	}

	// written back as the file: the same configuration
	if err := os.WriteFile(s.config, []byte(r.out), 0o644); err != nil {
		t.Fatal(err)
	}
	if again := s.run("config", "show"); again.code != 0 || again.out != r.out {
		t.Errorf("config show of its own output: %s\nwant the same as before:\n%s", again, r.out)
	}

	j := s.run("config", "show", "--output", "json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(j.out), &doc); j.code != 0 || err != nil {
		t.Fatalf("config show --output json: %s (%v)", j, err)
	}
	policy, _ := doc["policy"].(map[string]any)
	courses, _ := policy["courses"].(map[string]any)
	os101, _ := courses["os101"].(map[string]any)
	if policy["idle_suspend_after"] != "5m0s" || os101["max_attempts"] != 5.0 || len(doc["clouds"].([]any)) != 2 {
		t.Errorf("config show --output json: %s", j.out)
	}
}

// A PostgreSQL DSN (a password in it, written or from ${VAR}) is never shown.
func TestConfigShowHidesTheDSN(t *testing.T) {
	const secret = "Sh0w-n0t-S3cret"
	t.Setenv("LABPLANE_TEST_DB_PASSWORD", secret)
	for name, dsn := range map[string]string{
		"written":  "postgres://labplane:" + secret + "@db.example.com/labplane",
		"variable": "postgres://labplane:${LABPLANE_TEST_DB_PASSWORD}@db.example.com/labplane",
	} {
		s := newSite(t, strings.Replace(goodConfig, "store:\n  dsn: labplane.db", "store:\n  driver: postgres\n  dsn: "+dsn, 1))
		for _, args := range [][]string{{"config", "show"}, {"config", "show", "--output", "json"}} {
			r := s.run(args...)
			if r.code != 0 || strings.Contains(r.out+r.err, secret) || strings.Contains(r.out, "db.example.com") ||
				!strings.Contains(r.out, "(hidden)") {
				t.Errorf("%s DSN, %v: %s", name, args, r)
			}
		}
	}
}
