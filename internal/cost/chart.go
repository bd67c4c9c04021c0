package cost

import (
	"bufio"
	"cmp"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Point is one step of a course's hours over time.
type Point struct {
	At      time.Time `json:"at"`
	Running float64   `json:"running_hours"`
	Used    float64   `json:"used_hours"`
}

// Series is a course's running and used hours, step by step.
type Series struct {
	Course string  `json:"course"`
	Points []Point `json:"points"`
}

// Step is the chart's step for a period: an hour for up to three days, a day for up to a
// year, a week beyond.
func Step(since, until time.Time) time.Duration {
	switch d := until.Sub(since); {
	case d <= 72*time.Hour:
		return time.Hour
	case d <= 366*24*time.Hour:
		return 24 * time.Hour
	}
	return 7 * 24 * time.Hour
}

// Series cuts the report's period into steps (aligned on UTC: whole hours, days at midnight)
// and returns each course's running and used hours in each, courses in order.
func (r Report) Series(step time.Duration) []Series {
	start := r.Since.UTC().Truncate(step)
	n := int(math.Ceil(float64(r.Until.Sub(start)) / float64(step)))
	if n <= 0 {
		return nil
	}
	byCourse := map[string][]Point{}
	spread := func(points []Point, s span, used bool) {
		for i := max(0, int(s.from.Sub(start)/step)); i < n; i++ {
			from := start.Add(time.Duration(i) * step)
			to := from.Add(step)
			if !s.to.After(from) {
				break
			}
			h := earliest(s.to, to).Sub(latest(s.from, from)).Hours()
			if used {
				points[i].Used += h
			} else {
				points[i].Running += h
			}
		}
	}
	for _, ls := range r.stretches {
		points := byCourse[ls.lab.Course]
		if points == nil {
			points = make([]Point, n)
			for i := range points {
				points[i].At = start.Add(time.Duration(i) * step)
			}
			byCourse[ls.lab.Course] = points
		}
		for _, s := range ls.life {
			if s.st == running {
				spread(points, s, false)
			}
		}
		for _, a := range ls.active {
			spread(points, a, true)
		}
	}
	out := make([]Series, 0, len(byCourse))
	for c, p := range byCourse {
		out = append(out, Series{Course: c, Points: p})
	}
	slices.SortFunc(out, func(a, b Series) int { return cmp.Compare(a.Course, b.Course) })
	return out
}

// The chart's layout, in SVG user units.
const (
	chartWidth  = 960
	chartLeft   = 64 // room for the hours on the y axis
	chartRight  = 16
	chartTop    = 56 // the title and the legend
	panelHeight = 150
	panelGap    = 44 // the course's name and the dates under each panel
	maxPanels   = 12
)

// WriteSVG draws the report's running and used hours per course over time: a self-contained
// SVG, one panel per course (the maxPanels with the most running hours), running hours in
// orange behind the hours the learners used in blue, so the orange that shows is what ran
// for nobody.
func (r Report) WriteSVG(w io.Writer) error {
	step := Step(r.Since, r.Until)
	series := r.Series(step)
	left := 0
	if len(series) > maxPanels {
		total := func(s Series) (h float64) {
			for _, p := range s.Points {
				h += p.Running
			}
			return h
		}
		slices.SortStableFunc(series, func(a, b Series) int { return cmp.Compare(total(b), total(a)) })
		left, series = len(series)-maxPanels, series[:maxPanels]
		slices.SortFunc(series, func(a, b Series) int { return cmp.Compare(a.Course, b.Course) })
	}
	height := chartTop + max(1, len(series))*(panelHeight+panelGap) + 8
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	per := map[time.Duration]string{time.Hour: "hour", 24 * time.Hour: "day"}[step]
	if per == "" {
		per = "week"
	}
	title := fmt.Sprintf("Lab-hours running vs used per course, per %s, %s to %s (UTC)", per,
		r.Since.UTC().Format("2006-01-02 15:04"), r.Until.UTC().Format("2006-01-02 15:04"))
	fmt.Fprintf(bw, "<title>%s</title>\n", esc(title))
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartWidth, height)
	fmt.Fprintf(bw, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", chartLeft, esc(title))
	fmt.Fprintf(bw, `<rect x="%d" y="32" width="14" height="10" fill="#f28e2b" fill-opacity="0.55"/><text x="%d" y="41">running (billed)</text>`+"\n", chartLeft, chartLeft+20)
	fmt.Fprintf(bw, `<rect x="%d" y="32" width="14" height="10" fill="#4e79a7" fill-opacity="0.85"/><text x="%d" y="41">used (learner active)</text>`+"\n", chartLeft+150, chartLeft+170)
	if left > 0 {
		fmt.Fprintf(bw, `<text x="%d" y="41" fill="#555">(%d more courses not drawn)</text>`+"\n", chartLeft+330, left)
	}
	if len(series) == 0 {
		fmt.Fprintf(bw, `<text x="%d" y="%d" fill="#555">no lab existed in the period</text>`+"\n", chartLeft, chartTop+20)
	}
	for i, s := range series {
		drawPanel(bw, s, chartTop+i*(panelHeight+panelGap)+18, step)
	}
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

// drawPanel draws one course's series with its top at y.
func drawPanel(w io.Writer, s Series, y int, step time.Duration) {
	plotW := float64(chartWidth - chartLeft - chartRight)
	top := 0.0
	for _, p := range s.Points {
		top = max(top, p.Running, p.Used)
	}
	top = niceCeil(top)
	n := len(s.Points)
	x := func(i int) float64 { return chartLeft + plotW*float64(i)/float64(n) }
	yOf := func(h float64) float64 { return float64(y) + panelHeight - panelHeight*h/top }
	var running, used float64
	for _, p := range s.Points {
		running, used = running+p.Running, used+p.Used
	}
	sum := fmt.Sprintf("running %.0f h, used %.0f h", running, used)
	if used > 0 {
		sum += fmt.Sprintf(": %.2f h running per hour used", running/used)
	}
	fmt.Fprintf(w, `<g><text x="%d" y="%d"><tspan font-weight="bold">%s</tspan> <tspan fill="#555">%s</tspan></text>`+"\n",
		chartLeft, y-6, esc(s.Course), esc(sum))
	fmt.Fprintf(w, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="none" stroke="#ccc"/>`+"\n", chartLeft, y, plotW, panelHeight)
	for _, f := range []float64{0, 0.5, 1} {
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s h</text>`+"\n", chartLeft-6, yOf(top*f)+4, trimFloat(top*f))
	}
	area := func(value func(Point) float64, color string, opacity float64) {
		var b strings.Builder
		fmt.Fprintf(&b, "%.1f,%.1f", x(0), yOf(0))
		for i, p := range s.Points {
			fmt.Fprintf(&b, " %.1f,%.1f %.1f,%.1f", x(i), yOf(value(p)), x(i+1), yOf(value(p)))
		}
		fmt.Fprintf(&b, " %.1f,%.1f", x(n), yOf(0))
		fmt.Fprintf(w, `<polygon points="%s" fill="%s" fill-opacity="%.2f" stroke="%s" stroke-width="0.8"/>`+"\n", b.String(), color, opacity, color)
	}
	area(func(p Point) float64 { return p.Running }, "#f28e2b", 0.55)
	area(func(p Point) float64 { return p.Used }, "#4e79a7", 0.85)
	layout := "Jan 2"
	if step < 24*time.Hour {
		layout = "Jan 2 15:04"
	}
	every := max(1, int(math.Ceil(float64(n)/8)))
	for i := 0; i < n; i += every {
		fmt.Fprintf(w, `<text x="%.1f" y="%d" fill="#555">%s</text>`+"\n", x(i), y+panelHeight+16, esc(s.Points[i].At.UTC().Format(layout)))
	}
	fmt.Fprintln(w, "</g>")
}

// niceCeil rounds h up to 1, 2 or 5 times a power of ten (1 for nothing).
func niceCeil(h float64) float64 {
	if h <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(h)))
	for _, m := range []float64{1, 2, 5, 10} {
		if h <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
	return b.String()
}
