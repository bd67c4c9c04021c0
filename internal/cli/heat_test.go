package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/dev/localcloud"
	"github.com/labplane/labplane/internal/labs"
)

// lease holds the local cloud local-a for TestCommandsAgainstRealHeat (nil with -short).
var lease *localcloud.Lease

// The commands an operator types, against the real Keystone + Heat, with debug logs: what
// they print, what they change, and that no password or token shows anywhere.
func TestCommandsAgainstRealHeat(t *testing.T) {
	if lease == nil {
		t.Skip("needs the local cloud (not with -short)")
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", lease.CloudsYAML())
	tmpl := exampleTemplate(t)
	course := fmt.Sprintf("cli-%d", time.Now().UnixNano()%1e6)
	s := newSite(t, fmt.Sprintf(`site: %s
store:
  dsn: labplane.db
clouds:
  - name: local-a
    cloud: local-a
templates:
  lab: %s
policy:
  idle_suspend_after: 3s
`, course, tmpl))
	var all strings.Builder
	run := func(wantCode int, args ...string) result {
		t.Helper()
		res := s.run(append([]string{"--log-level", "debug"}, args...)...)
		all.WriteString(res.out + res.err)
		if res.code != wantCode {
			t.Fatalf("labplane %s: want exit %d, got %s", strings.Join(args, " "), wantCode, res)
		}
		return res
	}

	res := run(0, "labs", "launch", "--learner", "ann", "--course", course, "--output", "json")
	var lab labs.Lab
	if err := json.Unmarshal([]byte(res.out), &lab); err != nil || lab.Status != labs.Active || lab.StackID == "" {
		t.Fatalf("launch: %v %+v", err, lab)
	}
	t.Cleanup(func() { s.run("labs", "delete", lab.ID, "--yes", "--force") })
	if lab.Outputs["guacamole_password"] != "(hidden)" || lab.Outputs["guacamole_host"] == "" {
		t.Errorf("outputs: %v", lab.Outputs)
	}
	run(2, "labs", "launch", "--learner", "ann", "--course", course)                       // she has one
	run(2, "labs", "launch", "--learner", "bob", "--course", course, "--template", "nope") // not configured
	if res := run(0, "labs", "list", "--all", "--output", "json"); strings.Count(res.out, `"id"`) != 1 {
		t.Errorf("bad launches wrote labs: %s", res.out)
	}

	time.Sleep(4 * time.Second) // idle past idle_suspend_after
	res = run(0, "reap", "--once", "--dry-run", "--output", "json")
	if !strings.Contains(res.out, `"kind": "suspend"`) || !strings.Contains(res.out, lab.ID) {
		t.Errorf("dry run: want a suspend of %s, got %s", lab.ID, res.out)
	}
	if res := run(0, "labs", "show", lab.ID, "--output", "json"); !strings.Contains(res.out, `"status": "active"`) {
		t.Errorf("the dry run changed the lab: %s", res.out)
	}
	res = run(0, "reap", "--once", "--output", "json") // suspends only: no confirmation needed
	if !strings.Contains(res.out, `"done": true`) {
		t.Errorf("reap: %s", res.out)
	}
	if res := run(0, "labs", "show", lab.ID); !strings.Contains(res.out, "status SUSPEND_COMPLETE") || !strings.Contains(res.out, "req-") {
		t.Errorf("after the reap: %s", res.out)
	}
	run(0, "labs", "resume", lab.ID)
	run(2, "labs", "suspend", lab.ID) // resumed just now: in use
	run(2, "labs", "delete", lab.ID)  // no terminal, no --yes
	res = run(0, "labs", "delete", lab.ID, "--yes", "--force", "--output", "json")
	if !strings.Contains(res.out, `"status": "deleted"`) {
		t.Errorf("delete: %s", res.out)
	}
	run(2, "labs", "heartbeat", lab.ID) // deleted

	raw, err := os.ReadFile(lease.CloudsYAML())
	if err != nil {
		t.Fatal(err)
	}
	secrets := regexp.MustCompile(`password:\s*(\S+)`).FindAllStringSubmatch(string(raw), -1)
	if len(secrets) == 0 {
		t.Fatal("no passwords found in clouds.yaml to look for")
	}
	for _, m := range secrets {
		if strings.Contains(all.String(), m[1]) {
			t.Errorf("a cloud password appears in the output")
		}
	}
	if strings.Contains(all.String(), "gAAAAA") || strings.Contains(strings.ToLower(all.String()), "x-auth-token") {
		t.Error("a Keystone token appears in the output")
	}
	if !strings.Contains(all.String(), "level=DEBUG") {
		t.Error("the run was meant to log at debug level")
	}
}
