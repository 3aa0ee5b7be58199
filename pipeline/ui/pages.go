package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/processors/dora"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
)

// pages holds each page's template, parsed with the shared layout.
type pages struct{ t map[string]*template.Template }

var pageNames = []string{"incidents", "incident", "deploy", "dora", "error"}

func parsePages() (*pages, error) {
	p := &pages{t: map[string]*template.Template{}}
	for _, n := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("ui template %s: %w", n, err)
		}
		p.t[n] = t
	}
	return p, nil
}

// render writes a page; a template error is caught before anything is
// sent, so the visitor gets a clean 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var b bytes.Buffer
	if err := s.pages.t[name].Execute(&b, data); err != nil {
		s.log.Error("ui render", "page", name, "path", r.URL.Path, "err", err)
		http.Error(w, "faultline UI: could not render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"hm": func(t time.Time) string { return t.UTC().Format("15:04") },
	"tsp": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"dur":  fmtDuration,
	"secs": func(s *float64) string { return fmtSeconds(s) },
	"pct": func(f *float64) string {
		if f == nil || math.IsNaN(*f) {
			return "–"
		}
		return strconv.FormatFloat(*f*100, 'f', 1, 64) + "%"
	},
	"conf": func(f float32) string { return strconv.FormatFloat(float64(f), 'f', 2, 32) },
	"band": func(b dora.Band) string {
		if b == dora.None {
			return "no data"
		}
		return string(b)
	},
	"bandclass": func(b dora.Band) string {
		if b == dora.None {
			return "none"
		}
		return string(b)
	},
	"perday": func(d float64, n uint64) string {
		switch {
		case n == 0:
			return "none"
		case d >= 1:
			return strconv.FormatFloat(d, 'f', 1, 64) + " / day"
		case d*7 >= 1:
			return strconv.FormatFloat(d*7, 'f', 1, 64) + " / week"
		}
		return strconv.FormatFloat(d*30, 'f', 1, 64) + " / month"
	},
	"path": func(prefix, id string) string { return prefix + urlPathEscape(id) },
}

func fmtDuration(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		if d%time.Minute == 0 {
			return fmt.Sprintf("%dm", int(d.Minutes()))
		}
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func fmtSeconds(s *float64) string {
	if s == nil || math.IsNaN(*s) {
		return "–"
	}
	return fmtDuration(time.Duration(*s * float64(time.Second)))
}

// figure is a figure's SQL as shown under it.
type figure struct {
	Title string
	SQL   string
}

func fig(title string, q clickhouse.Query) figure { return figure{Title: title, SQL: q.Literal()} }

type errorView struct {
	Code            int
	Status, Message string
}

// ---- / : incidents ----

type incidentsView struct {
	Incidents            []incidentRow
	Environment, Service string
	Environments         []string
	Services             []string
	Figures              []figure
}

type incidentRow struct {
	clickhouse.Incident
	Duration string
}

func (s *Server) incidentsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkParams(q, "environment", "service"); err != nil {
		s.failErr(w, r, err)
		return
	}
	env, err := nameParam(q, "environment")
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	svc, err := nameParam(q, "service")
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	keys, err := s.reader.ServiceKeys(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	is, iq, err := s.reader.Incidents(ctx, clickhouse.IncidentFilter{Environment: env, Service: svc})
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	v := incidentsView{Environment: env, Service: svc, Figures: []figure{fig("Incidents", iq)}}
	for _, k := range keys {
		if !slices.Contains(v.Environments, k.Environment) {
			v.Environments = append(v.Environments, k.Environment)
		}
		if !slices.Contains(v.Services, k.Service) {
			v.Services = append(v.Services, k.Service)
		}
	}
	sort.Strings(v.Services)
	now := s.now()
	for _, i := range is {
		row := incidentRow{Incident: i}
		switch {
		case i.ResolvedAt != nil:
			row.Duration = fmtDuration(i.ResolvedAt.Sub(i.StartedAt))
		case now.After(i.StartedAt):
			row.Duration = "open for " + fmtDuration(now.Sub(i.StartedAt))
		default:
			row.Duration = "open"
		}
		v.Incidents = append(v.Incidents, row)
	}
	s.render(w, r, http.StatusOK, "incidents", v)
}

// ---- /incidents/{id} ----

type incidentView struct {
	clickhouse.Incident
	Duration string
	Suspects []clickhouse.Suspect
	Timeline []event
	Chart    chartData
	HasLogs  bool
	HasReqs  bool
	Figures  []figure
	From, To time.Time
}

// event is one moment of an incident's story, on the chart and in the
// timeline below it.
type event struct {
	At     time.Time `json:"-"`
	T      int64     `json:"t"`
	Kind   string    `json:"kind"` // deploy, rollback, start, detected, resolved
	Label  string    `json:"label"`
	Detail string    `json:"-"`
	Link   string    `json:"-"`
	OnPlot bool      `json:"-"`
}

// chartData is what app.js draws: per-minute series by service.version
// and the events as vertical markers.
type chartData struct {
	X        []int64      `json:"x"` // unix seconds of each minute
	Logs     []seriesPair `json:"logs"`
	Requests []seriesPair `json:"requests"`
	Markers  []event      `json:"markers"`
}

// seriesPair is one version's totals and failures per minute (log records
// and errors, or requests and 5xx), with the p95 latency for requests.
type seriesPair struct {
	Version string     `json:"version"`
	Total   []uint64   `json:"total"`
	Failed  []uint64   `json:"failed"`
	P95     []*float64 `json:"p95,omitempty"`
}

// incidentWindow is the time the chart covers: from half an hour before
// the start (or ten minutes before the top suspect went live, up to three
// hours back) to twenty minutes after the resolution, or an hour past the
// start while open (up to now, within six hours).
func incidentWindow(i clickhouse.Incident, ss []clickhouse.Suspect, now time.Time) (time.Time, time.Time) {
	from := i.StartedAt.Add(-30 * time.Minute)
	for _, s := range ss {
		if s.Rank == 1 && s.DeployedAt != nil {
			if t := s.DeployedAt.Add(-10 * time.Minute); t.Before(from) {
				from = t
			}
		}
	}
	if min := i.StartedAt.Add(-3 * time.Hour); from.Before(min) {
		from = min
	}
	var to time.Time
	if i.ResolvedAt != nil {
		to = i.ResolvedAt.Add(20 * time.Minute)
	} else {
		to = i.StartedAt.Add(time.Hour)
		if now.After(to) && now.Before(i.StartedAt.Add(6*time.Hour)) {
			to = now.Add(time.Minute)
		}
	}
	return from.Truncate(time.Minute), to.Truncate(time.Minute).Add(time.Minute)
}

func (s *Server) incidentPage(w http.ResponseWriter, r *http.Request) {
	if err := checkParams(r.URL.Query()); err != nil {
		s.failErr(w, r, err)
		return
	}
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	inc, iq, err := s.reader.Incident(ctx, id)
	if err != nil {
		if errors.Is(err, clickhouse.ErrNotFound) {
			s.fail(w, r, http.StatusNotFound, fmt.Sprintf("no incident %q", id))
			return
		}
		s.failErr(w, r, err)
		return
	}
	ss, sq, err := s.reader.Suspects(ctx, id)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	from, to := incidentWindow(inc, ss, s.now())
	win := clickhouse.Window{Service: inc.Service, Environment: inc.Environment, From: from, To: to}
	logs, lq, err := s.reader.LogMinutes(ctx, win)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	reqs, rq, err := s.reader.RequestMinutes(ctx, win)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	var ids []string
	for _, x := range ss {
		ids = append(ids, x.DeployID)
	}
	if inc.RestoredByDeployID != "" {
		ids = append(ids, inc.RestoredByDeployID)
	}
	deploys, dq, err := s.reader.Deploys(ctx, win, ids)
	if err != nil {
		s.failErr(w, r, err)
		return
	}

	v := incidentView{Incident: inc, Suspects: ss, From: from, To: to}
	if inc.ResolvedAt != nil {
		v.Duration = fmtDuration(inc.ResolvedAt.Sub(inc.StartedAt))
	} else {
		v.Duration = "open"
	}
	v.Timeline = timeline(inc, ss, deploys, from, to)
	v.Chart = buildChart(from, to, logs, reqs, v.Timeline)
	v.HasLogs, v.HasReqs = len(v.Chart.Logs) > 0, len(v.Chart.Requests) > 0
	v.Figures = []figure{
		fig("The incident (detection, start, resolution, suspect, confidence, reason)", iq),
		fig("Suspects, ranked", sq),
		fig("Log records and errors per minute by service.version", lq),
		fig("HTTP requests, 5xx and p95 latency per minute by service.version (http.server.request.duration)", rq),
		fig("Deploys marked on the chart", dq),
	}
	s.render(w, r, http.StatusOK, "incident", v)
}

// timeline orders what happened: deploys of the service in the window and
// the suspects and restoring deploy wherever they are, the first bad
// minute, the first record of the incident (detection, on live data), and
// the resolution.
func timeline(inc clickhouse.Incident, ss []clickhouse.Suspect, ds []clickhouse.Deploy, from, to time.Time) []event {
	rank := map[string]uint16{}
	for _, s := range ss {
		rank[s.DeployID] = s.Rank
	}
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	var es []event
	for _, d := range ds {
		kind, label := "deploy", d.Version
		if d.Type == "rollback" {
			kind, label = "rollback", "rollback to "+d.Version
		}
		if d.Service != inc.Service {
			label = d.Service + " " + label
		}
		var notes []string
		if r, ok := rank[d.ID]; ok {
			notes = append(notes, fmt.Sprintf("suspect #%d", r))
		}
		if d.ID == inc.RestoredByDeployID {
			notes = append(notes, "restored service")
		}
		if d.Status != "succeeded" {
			notes = append(notes, d.Status+", never live")
		}
		detail := d.Type + " of " + d.Service + " " + d.Version
		if len(notes) > 0 {
			detail += " (" + strings.Join(notes, ", ") + ")"
		}
		es = append(es, event{At: d.DeployedAt, Kind: kind, Label: label, Detail: detail, Link: "/deploys/" + urlPathEscape(d.ID), OnPlot: in(d.DeployedAt)})
	}
	es = append(es, event{At: inc.StartedAt, Kind: "start", Label: "first bad minute",
		Detail: "the incident starts (" + inc.Signal + ")", OnPlot: in(inc.StartedAt)})
	if !inc.FirstRecordedAt.IsZero() {
		detail := "faultline first recorded the incident (wall-clock time of its first row"
		if inc.Source != "detected" {
			detail = "reported by " + inc.Source + "; first recorded by faultline (wall-clock time"
		}
		detail += fmt.Sprintf(", %s after the first bad minute; a replay records it long after)", fmtDuration(inc.FirstRecordedAt.Sub(inc.StartedAt)))
		es = append(es, event{At: inc.FirstRecordedAt, Kind: "detected", Label: "detected", Detail: detail, OnPlot: in(inc.FirstRecordedAt)})
	}
	if inc.ResolvedAt != nil {
		detail := "resolved after " + fmtDuration(inc.ResolvedAt.Sub(inc.StartedAt))
		if inc.RestoredByDeployID != "" {
			detail += ", restored by deploy " + inc.RestoredByDeployID
		}
		es = append(es, event{At: *inc.ResolvedAt, Kind: "resolved", Label: "resolved", Detail: detail, OnPlot: in(*inc.ResolvedAt)})
	}
	sort.SliceStable(es, func(a, b int) bool { return es[a].At.Before(es[b].At) })
	for i := range es {
		es[i].T = es[i].At.Unix()
	}
	return es
}

// buildChart lays the per-minute rows on the window's minutes, zero where a
// version sent nothing, so lines drop to zero rather than bridge gaps.
func buildChart(from, to time.Time, logs []clickhouse.LogMinute, reqs []clickhouse.RequestMinute, es []event) chartData {
	var c chartData
	idx := map[int64]int{}
	for t := from; t.Before(to); t = t.Add(time.Minute) {
		idx[t.Unix()] = len(c.X)
		c.X = append(c.X, t.Unix())
	}
	n := len(c.X)
	pair := func(list *[]seriesPair, version string, p95 bool) *seriesPair {
		for i := range *list {
			if (*list)[i].Version == version {
				return &(*list)[i]
			}
		}
		sp := seriesPair{Version: version, Total: make([]uint64, n), Failed: make([]uint64, n)}
		if p95 {
			sp.P95 = make([]*float64, n)
		}
		*list = append(*list, sp)
		return &(*list)[len(*list)-1]
	}
	for _, m := range logs {
		i, ok := idx[m.Minute.Unix()]
		if !ok {
			continue
		}
		p := pair(&c.Logs, m.Version, false)
		p.Total[i] += m.Records
		p.Failed[i] += m.Errors
	}
	var reqTotal uint64
	for _, m := range reqs {
		i, ok := idx[m.Minute.Unix()]
		if !ok {
			continue
		}
		p := pair(&c.Requests, m.Version, true)
		p.Total[i] += m.Requests
		p.Failed[i] += m.Failed
		p.P95[i] = m.P95Seconds
		reqTotal += m.Requests
	}
	if reqTotal == 0 {
		c.Requests = nil // baselines only: nothing to draw
	}
	for _, e := range es {
		if e.OnPlot {
			c.Markers = append(c.Markers, e)
		}
	}
	return c
}

// ---- /deploys/{id} ----

type deployView struct {
	clickhouse.Deploy
	Replaced  *clickhouse.Deploy
	Incidents []clickhouse.DeployIncident
	Figures   []figure
}

func (s *Server) deployPage(w http.ResponseWriter, r *http.Request) {
	if err := checkParams(r.URL.Query()); err != nil {
		s.failErr(w, r, err)
		return
	}
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	d, prev, q, err := s.reader.Deploy(ctx, id)
	if err != nil {
		if errors.Is(err, clickhouse.ErrNotFound) {
			s.fail(w, r, http.StatusNotFound, fmt.Sprintf("no deploy %q", id))
			return
		}
		s.failErr(w, r, err)
		return
	}
	is, iq, err := s.reader.DeployIncidents(ctx, id)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "deploy", deployView{Deploy: d, Replaced: prev, Incidents: is,
		Figures: []figure{fig("The deploy and the one it replaced", q), fig("Incidents it is a suspect of, or restored", iq)}})
}

// ---- /dora ----

type doraView struct {
	Since                string
	SinceDate            time.Time
	Environment, Service string
	Summaries            []dora.Summary
	Weeks                map[string][]clickhouse.DoraWeek
	Trend                trendData
	Figures              []figure
}

// trendData is the weekly trend app.js draws: one series per environment
// and service.
type trendData struct {
	X      []int64       `json:"x"` // unix seconds of each week's Monday
	Series []trendSeries `json:"series"`
}

type trendSeries struct {
	Key         string     `json:"key"`
	Deployments []uint64   `json:"deployments"`
	FailureRate []*float64 `json:"failure_rate"`
}

var sinceRE = regexp.MustCompile(`^([0-9]{1,4})([dw])$`)

// parseSince reads ?since: a count of days or weeks back from today
// (30d, 12w) or a date (2026-11-01); windows start on whole days.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		v = "30d"
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	m := sinceRE.FindStringSubmatch(v)
	if m == nil {
		return time.Time{}, &badRequest{fmt.Sprintf("since %q: want a number of days or weeks (30d, 12w, up to 4 digits) or a date (2026-11-01)", v)}
	}
	n, _ := strconv.Atoi(m[1])
	if m[2] == "w" {
		n *= 7
	}
	d := now.UTC().AddDate(0, 0, -n)
	return time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC), nil
}

func (s *Server) doraPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkParams(q, "since", "environment", "service"); err != nil {
		s.failErr(w, r, err)
		return
	}
	since, err := parseSince(q.Get("since"), s.now())
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	env, err := nameParam(q, "environment")
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	svc, err := nameParam(q, "service")
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	f := clickhouse.DoraFilter{Environment: env, Service: svc, Since: since}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	sums, sq, err := s.reader.Dora(ctx, f)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	weeks, wq, err := s.reader.DoraWeeks(ctx, f)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	v := doraView{Since: q.Get("since"), SinceDate: since, Environment: env, Service: svc, Summaries: sums,
		Weeks: map[string][]clickhouse.DoraWeek{}, Trend: weeklyTrend(weeks, since, s.now()),
		Figures: []figure{fig("The four keys per environment and service", sq), fig("Weekly trend", wq)}}
	if v.Since == "" {
		v.Since = "30d"
	}
	for _, wk := range weeks {
		k := wk.Environment + "/" + wk.Service
		v.Weeks[k] = append(v.Weeks[k], wk)
	}
	s.render(w, r, http.StatusOK, "dora", v)
}

// weeklyTrend lays the weeks on a common axis, every week of the window
// from the one holding since to the current one (or the last with data,
// if later), zero deployments where a key had none.
func weeklyTrend(ws []clickhouse.DoraWeek, since, now time.Time) trendData {
	var t trendData
	if len(ws) == 0 {
		return t
	}
	first, last := monday(since), monday(now)
	for _, w := range ws {
		if w.Week.After(last) {
			last = w.Week
		}
	}
	idx := map[int64]int{}
	for d := first; !d.After(last); d = d.AddDate(0, 0, 7) {
		idx[d.Unix()] = len(t.X)
		t.X = append(t.X, d.Unix())
	}
	keys := map[string]int{}
	for _, w := range ws {
		k := w.Environment + "/" + w.Service
		si, ok := keys[k]
		if !ok {
			si = len(t.Series)
			keys[k] = si
			t.Series = append(t.Series, trendSeries{Key: k, Deployments: make([]uint64, len(t.X)), FailureRate: make([]*float64, len(t.X))})
		}
		i, ok := idx[w.Week.Unix()]
		if !ok {
			continue
		}
		t.Series[si].Deployments[i] = w.Deployments
		if w.Deployments > 0 {
			r := float64(w.ChangeFailures) / float64(w.Deployments)
			t.Series[si].FailureRate[i] = &r
		}
	}
	return t
}

// monday is the start of t's ISO week, as ClickHouse's toMonday counts.
func monday(t time.Time) time.Time {
	t = t.UTC()
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

// urlPathEscape escapes an id for a path segment, as the webhooks' links
// do.
func urlPathEscape(id string) string { return url.PathEscape(id) }
