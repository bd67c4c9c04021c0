package ansible

import (
	"bufio"
	"context"
	"fmt"
	osexec "os/exec"
	"regexp"
	"slices"
	"strings"

	"github.com/labplane/labplane/internal/outputtail"
)

// Plan is what a run will do, as ansible-playbook --list-hosts --list-tasks lists it with the
// run's options (its --limit, --tags): each play's hosts and tasks. It is static: the tasks an
// include brings and the handlers are not in it (the include is).
type Plan struct {
	Plays []PlannedPlay `json:"plays"`
}

// PlannedPlay is one play of a Plan.
type PlannedPlay struct {
	Name string `json:"name"`
	// Hosts are sorted (Ansible lists them in no fixed order).
	Hosts []string `json:"hosts"`
	// Tasks are the tasks' names as events name them ("common : Install the base packages").
	Tasks []string `json:"tasks"`
}

// Hosts lists the plan's hosts in the order the plays first name them.
func (pl Plan) Hosts() []string {
	var hosts []string
	seen := map[string]bool{}
	for _, p := range pl.Plays {
		for _, h := range p.Hosts {
			if !seen[h] {
				seen[h] = true
				hosts = append(hosts, h)
			}
		}
	}
	return hosts
}

// Tasks counts the tasks planned for host, in every play that has it.
func (pl Plan) Tasks(host string) int {
	n := 0
	for _, p := range pl.Plays {
		for _, h := range p.Hosts {
			if h == host {
				n += len(p.Tasks)
				break
			}
		}
	}
	return n
}

// List lists what p would do, without running it (a second or so: Ansible parses the
// playbooks and the inventory, and connects to no host).
func List(ctx context.Context, p Playbook) (Plan, error) {
	cmd := p.command()
	cmd.PlaybookOptions.ListHosts, cmd.PlaybookOptions.ListTasks = true, true
	args, err := cmd.Command()
	if err != nil {
		return Plan{}, fmt.Errorf("list the playbook's tasks: %w", err)
	}
	c := osexec.CommandContext(ctx, args[0], args[1:]...)
	c.Dir = p.Dir
	c.Env = p.childEnv()
	stderr := &outputtail.Buffer{Max: stderrTail}
	c.Stderr = stderr
	out, err := c.Output()
	if err != nil {
		return Plan{}, fmt.Errorf("list the playbook's tasks: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parsePlan(string(out))
}

// playLine is a play's heading in the listing: "  play #1 (lms): Deploy the LMS\tTAGS: []".
var playLine = regexp.MustCompile(`^  play #\d+ \(.*?\): (.*)\tTAGS: \[.*\]$`)

// parsePlan reads ansible-playbook's listing (--list-hosts --list-tasks).
func parsePlan(listing string) (Plan, error) {
	var plan Plan
	var section string // "hosts" or "tasks", within the last play
	sc := bufio.NewScanner(strings.NewReader(listing))
	for sc.Scan() {
		line := sc.Text()
		if m := playLine.FindStringSubmatch(line); m != nil {
			plan.Plays = append(plan.Plays, PlannedPlay{Name: m[1]})
			section = ""
			continue
		}
		if len(plan.Plays) == 0 {
			continue // "playbook: site.yml", warnings
		}
		play := &plan.Plays[len(plan.Plays)-1]
		switch item := strings.TrimSpace(line); {
		case strings.HasPrefix(line, "    hosts ("):
			section = "hosts"
		case line == "    tasks:":
			section = "tasks"
		case strings.HasPrefix(line, "    "):
			if !strings.HasPrefix(line, "      ") {
				section = "" // "pattern: [...]"
				continue
			}
			switch section {
			case "hosts":
				play.Hosts = append(play.Hosts, item)
			case "tasks":
				name, _, _ := strings.Cut(item, "\tTAGS: ")
				play.Tasks = append(play.Tasks, name)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Plan{}, fmt.Errorf("read the playbook's listing: %w", err)
	}
	for _, p := range plan.Plays {
		slices.Sort(p.Hosts)
	}
	if len(plan.Plays) == 0 {
		return Plan{}, fmt.Errorf("read the playbook's listing: no play in it")
	}
	return plan, nil
}

// Tracker follows a run against its plan: how many of each host's planned tasks are done. Not
// safe for concurrent use (a run's events come from one goroutine).
type Tracker struct {
	plan Plan
	next int // the plan's next play
	// left is, for each host, how many times each task of the play under way is still due
	left map[string]map[string]int
	done map[string]int
}

// NewTracker follows a run of plan.
func NewTracker(plan Plan) *Tracker {
	return &Tracker{plan: plan, left: map[string]map[string]int{}, done: map[string]int{}}
}

// Done takes the run's next event and tells how many of a host's planned tasks it completes,
// and whose: 1 for the result of a planned task (an include's tasks and handlers are not
// planned, and a task's result counts once per host); at the recap of a host that neither
// failed nor was unreachable, the planned tasks it never reported (a meta task such as
// flush_handlers has no result); otherwise none.
func (t *Tracker) Done(e Event) (host string, n int) {
	switch e.Kind {
	case PlayStart:
		t.startPlay(e.Play)
	case OK, Changed, Failed, Unreachable, Skipped:
		if due := t.left[e.Host]; due[e.Task] > 0 {
			due[e.Task]--
			t.done[e.Host]++
			return e.Host, 1
		}
	case Recap:
		if e.Recap != nil && e.Recap.Failed == 0 && e.Recap.Unreachable == 0 {
			if n := t.plan.Tasks(e.Host) - t.done[e.Host]; n > 0 {
				t.done[e.Host] += n
				return e.Host, n
			}
		}
	}
	return "", 0
}

// startPlay makes the plan's next play of that name the one under way.
func (t *Tracker) startPlay(name string) {
	clear(t.left)
	for i := t.next; i < len(t.plan.Plays); i++ {
		if p := t.plan.Plays[i]; p.Name == name {
			t.next = i + 1
			for _, h := range p.Hosts {
				due := map[string]int{}
				for _, task := range p.Tasks {
					due[task]++
				}
				t.left[h] = due
			}
			return
		}
	}
}
