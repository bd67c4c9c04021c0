package console

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/cost"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/lifecycle"
	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/runs"
)

// attention are the statuses of the labs that need an operator: flagged, or whose last
// action failed (the reaper retries those with backoff; an operator may not want to wait).
var attention = []labs.Status{labs.NeedsOperator, labs.Failed}

// pageSize is how many labs a listing shows at once.
const pageSize = 100

// labFilter is the labs page's query: its filters and its page.
type labFilter struct {
	Course, Learner, Cloud, Status, Cursor string
}

// query is the filter as a query string, with status set to st.
func (f labFilter) query(st string) template.URL {
	q := url.Values{}
	for k, v := range map[string]string{"course": f.Course, "learner": f.Learner, "cloud": f.Cloud, "status": st} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return template.URL("/console/?" + q.Encode())
}

// WithStatus is the page's address with another status filter.
func (f labFilter) WithStatus(st string) template.URL { return f.query(st) }

// WithCloud and WithCourse are the page's address with another cloud or course.
func (f labFilter) WithCloud(c string) template.URL {
	f.Cloud = c
	return f.query(f.Status)
}

func (f labFilter) WithCourse(c string) template.URL {
	f.Course = c
	return f.query(f.Status)
}

// Next is the address of the page after one ending at cursor.
func (f labFilter) Next(cursor string) template.URL {
	return template.URL(string(f.query(f.Status)) + "&cursor=" + url.QueryEscape(cursor))
}

// count is a value and how many labs have it.
type count struct {
	Key  string
	Labs int
}

type labsData struct {
	Filter    labFilter
	Statuses  []labs.Status
	Clouds    []Cloud
	ByStatus  []count
	ByCloud   []count
	ByCourse  []count
	Courses   int // distinct courses, when ByCourse shows fewer
	Total     int
	Live      int
	Labs      []labs.Lab
	NextAfter string
}

// coursesShown is how many courses the counts show.
const coursesShown = 30

// labsPage lists the labs a filter selects, with their counts by status, cloud and course.
func (s *Server) labsPage(w http.ResponseWriter, r *http.Request, u user) error {
	q := r.URL.Query()
	f := labFilter{Course: q.Get("course"), Learner: q.Get("learner"), Cloud: q.Get("cloud"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	lf := labs.Filter{Course: f.Course, Learner: f.Learner, Cloud: f.Cloud}
	tallies, err := s.Registry.TallyLabs(r.Context(), lf)
	if err != nil {
		return err
	}
	switch f.Status {
	case "":
		lf.Statuses = labs.LiveStatuses()
	case "all":
	default:
		if !labs.Status(f.Status).Valid() {
			return httpError{http.StatusBadRequest, fmt.Sprintf("Unknown status %q.", f.Status)}
		}
		lf.Statuses = []labs.Status{labs.Status(f.Status)}
	}
	d := labsData{Filter: f, Statuses: labs.Statuses, Clouds: s.Clouds}
	byStatus, byCloud, byCourse := map[string]int{}, map[string]int{}, map[string]int{}
	for _, t := range tallies {
		byStatus[string(t.Status)] += t.Labs
		d.Total += t.Labs
		if t.Status != labs.Deleted {
			d.Live += t.Labs
		}
		if len(lf.Statuses) == 0 || slices.Contains(lf.Statuses, t.Status) {
			byCloud[t.Cloud] += t.Labs
			byCourse[t.Course] += t.Labs
		}
	}
	for _, st := range labs.Statuses {
		d.ByStatus = append(d.ByStatus, count{string(st), byStatus[string(st)]})
	}
	d.ByCloud = sorted(byCloud, len(byCloud))
	d.ByCourse, d.Courses = sorted(byCourse, coursesShown), len(byCourse)
	lf.After, lf.Limit = f.Cursor, pageSize+1
	list, err := s.Registry.ListLabs(r.Context(), lf)
	if err != nil {
		return err
	}
	if len(list) > pageSize {
		list, d.NextAfter = list[:pageSize], list[pageSize-1].ID
	}
	d.Labs = list
	s.render(w, r, "labs", &u, "", "Labs", d)
	return nil
}

// sorted is the n largest counts of m, most labs first, then by key.
func sorted(m map[string]int, n int) []count {
	out := make([]count, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, count{k, m[k]})
	}
	slices.SortStableFunc(out, func(a, b count) int { return cmp.Compare(b.Labs, a.Labs) })
	return out[:min(n, len(out))]
}

// timelineShown is how many of a lab's newest events its page shows.
const timelineShown = 500

type labData struct {
	Lab        labs.Lab
	CourseLink template.URL
	Events     []labs.Event
	More       bool
	Retry      lifecycle.Op
	Requested  string
	Outputs    int
}

// labPage shows a lab and its audit trail (its outputs only on a page of their own).
func (s *Server) labPage(w http.ResponseWriter, r *http.Request, u user) error {
	lab, err := s.Registry.GetLab(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	evs, err := s.Registry.Events(r.Context(), lab.ID, timelineShown+1)
	if err != nil {
		return err
	}
	d := labData{Lab: lab, Events: evs, Outputs: len(lab.Outputs), CourseLink: labFilter{Course: lab.Course}.query("all")}
	if len(evs) > timelineShown {
		d.Events, d.More = evs[1:], true
	}
	slices.Reverse(d.Events) // newest first
	d.Retry, _ = lifecycle.Retry(lab)
	if op := lifecycle.Op(r.URL.Query().Get("requested")); op == lifecycle.OpSuspend || op == lifecycle.OpResume || op == lifecycle.OpDelete {
		d.Requested = string(op)
	}
	s.render(w, r, "lab", &u, "", "Lab "+lab.ID, d)
	return nil
}

type output struct{ Name, Value string }

// outputsPage shows a lab's outputs in full (connection details, passwords): only when
// asked for, never in a listing, never cached, never logged.
func (s *Server) outputsPage(w http.ResponseWriter, r *http.Request, u user) error {
	lab, err := s.Registry.GetLab(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	outs := make([]output, 0, len(lab.Outputs))
	for _, k := range slices.Sorted(maps.Keys(lab.Outputs)) {
		outs = append(outs, output{k, lab.Outputs[k]})
	}
	s.Log.Info("console: outputs shown", "lab", lab.ID, "token", u.Name)
	s.render(w, r, "outputs", &u, "", "Outputs of lab "+lab.ID, map[string]any{"Lab": lab, "Outputs": outs})
	return nil
}

type attentionRow struct {
	labs.Lab
	Retry lifecycle.Op
}

// attentionLimit is how many labs that need an operator the page lists.
const attentionLimit = 500

// attentionPage lists the labs that need an operator, each with what fixes it.
func (s *Server) attentionPage(w http.ResponseWriter, r *http.Request, u user) error {
	list, err := s.Registry.ListLabs(r.Context(), labs.Filter{Statuses: attention, Limit: attentionLimit + 1})
	if err != nil {
		return err
	}
	more := len(list) > attentionLimit
	rows := make([]attentionRow, 0, len(list))
	for _, l := range list[:min(len(list), attentionLimit)] {
		op, _ := lifecycle.Retry(l)
		rows = append(rows, attentionRow{Lab: l, Retry: op})
	}
	s.render(w, r, "attention", &u, "", "Labs that need an operator", map[string]any{"Labs": rows, "More": more})
	return nil
}

// actions are what the console does to a lab, and what each says on its confirmation.
var actions = map[string]string{
	"retry":  "do again the action that failed",
	"delete": "delete the lab's stack and mark the lab deleted, even if the learner is in it",
}

// confirmPage asks the operator to confirm an action (no script: a page of its own).
func (s *Server) confirmPage(w http.ResponseWriter, r *http.Request, u user) error {
	action := r.URL.Query().Get("action")
	if _, ok := actions[action]; !ok {
		return httpError{http.StatusBadRequest, fmt.Sprintf("Unknown action %q: retry or delete.", action)}
	}
	lab, err := s.Registry.GetLab(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	what := action
	if action == "retry" {
		op, ok := lifecycle.Retry(lab)
		if !ok {
			return httpError{http.StatusConflict, fmt.Sprintf("Lab %s is %s (stack %s): no failed action to retry.", lab.ID, lab.Status, orDash(lab.StackStatus))}
		}
		what = string(op)
	}
	s.render(w, r, "confirm", &u, "", "Confirm: "+what+" lab "+lab.ID, map[string]any{"Lab": lab, "Action": action, "Op": what,
		"Explain": actions[action]})
	return nil
}

// retry does again, as the operator, the action that failed on the lab.
func (s *Server) retry(w http.ResponseWriter, r *http.Request, u user) error {
	if err := confirmed(r); err != nil {
		return err
	}
	lab, err := s.Registry.GetLab(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	op, ok := lifecycle.Retry(lab)
	if !ok {
		return httpError{http.StatusConflict, fmt.Sprintf("Lab %s is %s (stack %s): no failed action to retry; nothing was done.", lab.ID, lab.Status, orDash(lab.StackStatus))}
	}
	// a retried suspend is still refused while the learner is in the lab, as the reaper's is
	return s.act(w, r, u, op, lab.ID, false)
}

// delete deletes the lab as the operator: in use or not, as the LMS's delete (confirmed).
func (s *Server) delete(w http.ResponseWriter, r *http.Request, u user) error {
	if err := confirmed(r); err != nil {
		return err
	}
	return s.act(w, r, u, lifecycle.OpDelete, r.PathValue("id"), true)
}

func confirmed(r *http.Request) error {
	if r.PostForm.Get("confirm") != "yes" {
		return httpError{http.StatusBadRequest, "The action was not confirmed: nothing was done."}
	}
	return nil
}

// act claims the action on the lab as the token's (the API's actor: "api:<name>"), carries it
// out in the background, as the API does, and sends the operator to the lab's page.
func (s *Server) act(w http.ResponseWriter, r *http.Request, u user, op lifecycle.Op, id string, force bool) error {
	actor := "api:" + u.Name
	req, err := s.Labs.Claim(r.Context(), op, id, actor, force)
	if err != nil {
		return fmt.Errorf("%s lab %s: %w; nothing was done", op, id, err)
	}
	s.Log.Info("console: action requested", "action", op, "lab", req.Lab.ID, "actor", actor)
	run := func(ctx context.Context) error {
		_, err := s.Labs.Carry(ctx, req)
		return err
	}
	s.Background(string(op), req.Lab.ID, run)
	http.Redirect(w, r, "/console/labs/"+url.PathEscape(req.Lab.ID)+"?requested="+string(op), http.StatusSeeOther)
	return nil
}

type cloudRow struct {
	Cloud
	Live  int
	Drain labs.Drain // drained by an operator (its Actor empty: not)
}

// cloudsPage shows the configured clouds: their live labs, capacity, and whether new labs go
// to them.
func (s *Server) cloudsPage(w http.ResponseWriter, r *http.Request, u user) error {
	tallies, err := s.Registry.TallyLabs(r.Context(), labs.Filter{Statuses: labs.LiveStatuses()})
	if err != nil {
		return err
	}
	drains, err := s.Registry.Drains(r.Context())
	if err != nil {
		return err
	}
	rows := make([]cloudRow, len(s.Clouds))
	for i, c := range s.Clouds {
		rows[i] = cloudRow{Cloud: c, Drain: drains[c.Name]}
		for _, t := range tallies {
			if t.Cloud == c.Name {
				rows[i].Live += t.Labs
			}
		}
	}
	s.render(w, r, "clouds", &u, "", "Clouds", map[string]any{"Clouds": rows})
	return nil
}

// cloud is the configured cloud the request names.
func (s *Server) cloud(r *http.Request) (Cloud, error) {
	for _, c := range s.Clouds {
		if c.Name == r.PathValue("name") {
			return c, nil
		}
	}
	return Cloud{}, httpError{http.StatusNotFound, fmt.Sprintf("No cloud %q is configured.", r.PathValue("name"))}
}

// confirmCloudPage asks the operator to confirm a drain or an undrain.
func (s *Server) confirmCloudPage(w http.ResponseWriter, r *http.Request, u user) error {
	c, err := s.cloud(r)
	if err != nil {
		return err
	}
	action := r.URL.Query().Get("action")
	var explain string
	switch action {
	case "drain":
		explain = "no new lab goes to it (placement skips it, on every replica); its labs stay, and the reaper goes on with them"
	case "undrain":
		explain = "new labs may go to it again"
	default:
		return httpError{http.StatusBadRequest, fmt.Sprintf("Unknown action %q: drain or undrain.", action)}
	}
	s.render(w, r, "confirmcloud", &u, "", "Confirm: "+action+" cloud "+c.Name, map[string]any{"Cloud": c, "Action": action, "Explain": explain})
	return nil
}

// drain drains the cloud as the operator: recorded in the registry with the token's actor.
func (s *Server) drain(w http.ResponseWriter, r *http.Request, u user) error {
	c, err := s.cloud(r)
	if err != nil {
		return err
	}
	if err := confirmed(r); err != nil {
		return err
	}
	actor := "api:" + u.Name
	if err := s.Registry.DrainCloud(r.Context(), labs.Drain{Cloud: c.Name, At: s.now(), Actor: actor}); err != nil {
		return err
	}
	s.Log.Info("console: cloud drained", "cloud", c.Name, "actor", actor)
	http.Redirect(w, r, "/console/clouds", http.StatusSeeOther)
	return nil
}

// undrain ends an operator's drain (not the configuration's).
func (s *Server) undrain(w http.ResponseWriter, r *http.Request, u user) error {
	c, err := s.cloud(r)
	if err != nil {
		return err
	}
	if err := confirmed(r); err != nil {
		return err
	}
	if err := s.Registry.UndrainCloud(r.Context(), c.Name); err != nil {
		return err
	}
	s.Log.Info("console: cloud undrained", "cloud", c.Name, "actor", "api:"+u.Name)
	http.Redirect(w, r, "/console/clouds", http.StatusSeeOther)
	return nil
}

type costData struct {
	Since, Until string
	By           string
	Groupings    []cost.Grouping
	Report       cost.Report
	Chart        template.HTML
}

// defaultCostPeriod is the cost page's period when none is asked for.
const defaultCostPeriod = 7 * 24 * time.Hour

// costPage is `labplane cost report` for a period: its chart and its table.
func (s *Server) costPage(w http.ResponseWriter, r *http.Request, u user) error {
	now := s.now()
	q := r.URL.Query()
	d := costData{Since: q.Get("since"), Until: q.Get("until"), By: cmp.Or(q.Get("by"), string(cost.ByCourse)), Groupings: cost.Groupings}
	o := cost.Options{By: cost.Grouping(d.By), Since: now.Add(-defaultCostPeriod), Until: now, SuspendedCostFactor: s.SuspendedCostFactor}
	if !slices.Contains(cost.Groupings, o.By) {
		return httpError{http.StatusBadRequest, fmt.Sprintf("Unknown grouping %q: course, learner, cloud or lab.", d.By)}
	}
	var err error
	if d.Since != "" {
		if o.Since, err = cost.ParseWhen(d.Since, now); err != nil {
			return httpError{http.StatusBadRequest, fmt.Sprintf("From %q: %v.", d.Since, err)}
		}
	}
	if d.Until != "" {
		if o.Until, err = cost.ParseWhen(d.Until, now); err != nil {
			return httpError{http.StatusBadRequest, fmt.Sprintf("To %q: %v.", d.Until, err)}
		}
	}
	if !o.Since.Before(o.Until) {
		return httpError{http.StatusBadRequest, "The period's start is not before its end."}
	}
	hs, err := cost.Load(r.Context(), s.Registry, o.Since, o.Until)
	if err != nil {
		return err
	}
	d.Report = cost.Compute(hs, o)
	var svg bytes.Buffer
	if err := d.Report.WriteSVG(&svg); err != nil {
		return err
	}
	// the chart is cost's own SVG, its text escaped as XML: safe to put in the page as it is
	d.Chart = template.HTML(svg.String())
	s.render(w, r, "cost", &u, "", "Cost", d)
	return nil
}

// runsShown and promotionsShown bound the deploys page.
const (
	runsShown       = 30
	promotionsShown = 20
)

type hostRecap struct {
	Host string
	runs.HostRecap
}

type runRow struct {
	runs.Run
	Hosts []hostRecap
}

// deploysPage shows the deploy runs, each with its recap per host, and the promotions.
func (s *Server) deploysPage(w http.ResponseWriter, r *http.Request, u user) error {
	env := r.URL.Query().Get("env")
	rs, err := s.Registry.ListRuns(r.Context(), runs.Filter{Environment: env, Limit: runsShown})
	if err != nil {
		return err
	}
	rows := make([]runRow, len(rs))
	for i, run := range rs {
		rows[i].Run = run
		for _, h := range slices.Sorted(maps.Keys(run.Recap)) {
			rows[i].Hosts = append(rows[i].Hosts, hostRecap{h, run.Recap[h]})
		}
	}
	ps, err := s.Registry.ListPromotions(r.Context(), env)
	if err != nil {
		return err
	}
	ps = ps[:min(len(ps), promotionsShown)]
	s.render(w, r, "deploys", &u, "", "Deploys and promotions", map[string]any{"Env": env, "Runs": rows, "Promotions": ps})
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"dash": orDash,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := now.Sub(t)
		switch {
		case d < 0:
			return "just now"
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh ago", int(d.Hours()))
		}
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	},
	"lastActive": func(l labs.Lab) time.Time { return l.LastActivity() },
	"hours":      func(h float64) string { return strconv.FormatFloat(h, 'f', 2, 64) },
	"ratio": func(g cost.Group) string {
		if g.BilledPerUsed == nil {
			return "-"
		}
		return strconv.FormatFloat(*g.BilledPerUsed, 'f', 3, 64)
	},
	"duration": func(r runs.Run, now time.Time) string { return r.Duration(now).Round(time.Second).String() },
	"short": func(id string) string {
		if len(id) > 12 {
			return id[:12]
		}
		return id
	},
	"statusClass": func(v any) string {
		switch labs.Status(fmt.Sprint(v)) {
		case labs.NeedsOperator, labs.Failed:
			return "bad"
		case labs.Active:
			return "good"
		case labs.Deleted, labs.Suspended:
			return "muted"
		}
		return "busy"
	},
	"runClass": func(st string) string {
		switch st {
		case string(runs.Succeeded), string(platform.Promoted):
			return "good"
		case string(runs.Failed), string(runs.Cancelled), string(platform.RolledBack), string(platform.Interrupted): // platform.PromotionFailed is "failed" too
			return "bad"
		}
		return "busy"
	},
	"join": strings.Join,
}
