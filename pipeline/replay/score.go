package replay

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Detected is an incident a detector opened, as Score reads it: from the
// incidents table of a whole-stack run, or straight from a detector in a
// test.
type Detected struct {
	Service, Environment string
	StartedAt            time.Time
	// DetectedAt is the event time by which the detector had opened the
	// incident (the end of the minute that decided it), when known; zero
	// otherwise. A replay at full speed cannot tell it from the tables.
	DetectedAt time.Time
	// SuspectVersion is the version of the pinned suspect; "" when none.
	SuspectVersion string
	Signal         string // what the detector saw, when it says; printed only
	Note           string // anything else the table should print
}

// Result is how one Expected incident fared.
type Result struct {
	Expected
	// Match is the detected incident that matched, if any.
	Match *Detected
	// Detected: matched, and on time when the detection moment is known.
	Detected bool
	// Late: matched, but DetectedAt lies beyond Start+MaxDelay.
	Late bool
	// Delay runs from Start to DetectedAt when known, else to StartedAt.
	Delay time.Duration
	// Measured says Delay came from DetectedAt.
	Measured bool
	// SuspectRight: matched and pinned on SuspectVersion (or on nothing
	// when SuspectVersion is "").
	SuspectRight bool
}

// Report is a detector's score on a scenario.
type Report struct {
	Results []Result
	// False are the detected incidents that match no Expected one.
	False []Detected
}

// Score matches detected incidents to the expected ones. A detected
// incident matches an Expected one of the same service and environment
// when its StartedAt lies within [Start-2m, Start+MaxDelay]: a little early
// is fine (a detector may date an incident by the first doubtful minute),
// later means it was found by chance or too late to matter. Each Expected
// takes the earliest such incident; a second one in the window is a
// repeat and counts as false, like any incident that matches nothing.
func Score(exp []Expected, got []Detected) Report {
	order := make([]int, len(got))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return got[a].StartedAt.Compare(got[b].StartedAt) })
	used := make([]bool, len(got))
	var r Report
	for _, e := range exp {
		res := Result{Expected: e}
		for _, i := range order {
			d := got[i]
			if used[i] || d.Service != e.Service || d.Environment != e.Environment ||
				d.StartedAt.Before(e.Start.Add(-2*time.Minute)) || d.StartedAt.After(e.Start.Add(e.MaxDelay)) {
				continue
			}
			used[i] = true
			res.Match = &got[i]
			res.Delay = d.StartedAt.Sub(e.Start)
			if !d.DetectedAt.IsZero() {
				res.Delay, res.Measured = d.DetectedAt.Sub(e.Start), true
			}
			res.Late = res.Measured && res.Delay > e.MaxDelay
			res.Detected = !res.Late
			res.SuspectRight = d.SuspectVersion == e.SuspectVersion
			break
		}
		r.Results = append(r.Results, res)
	}
	for _, i := range order {
		if !used[i] {
			r.False = append(r.False, got[i])
		}
	}
	return r
}

// Recall returns how many Expected incidents were detected in time, of how
// many.
func (r Report) Recall() (detected, total int) {
	for _, x := range r.Results {
		if x.Detected {
			detected++
		}
	}
	return detected, len(r.Results)
}

// Suspects returns how many matched incidents were pinned right, of how
// many matched.
func (r Report) Suspects() (right, matched int) {
	for _, x := range r.Results {
		if x.Match != nil {
			matched++
			if x.SuspectRight {
				right++
			}
		}
	}
	return right, matched
}

// Perfect reports whether every Expected incident was detected in time with
// the right suspect, and nothing else was detected.
func (r Report) Perfect() bool {
	d, n := r.Recall()
	s, m := r.Suspects()
	return d == n && s == m && m == n && len(r.False) == 0
}

// Summary is one line: "recall R/N, false F, suspects right S/M".
func (r Report) Summary() string {
	d, n := r.Recall()
	s, m := r.Suspects()
	return fmt.Sprintf("recall %d/%d, false %d, suspects right %d/%d", d, n, len(r.False), s, m)
}

// String prints a table of the Expected incidents, then the false ones
// (with the Expected incident each overlaps, when one does: a late or
// repeated opening rather than a wrong one), then the summary line.
func (r Report) String() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	clock := func(t time.Time) string { return t.UTC().Format("15:04") }
	fmt.Fprintln(w, "name\tservice/env\tsignal\tstart-end\tdetected\tstarted\tdelay\tsuspect\twant\tverdict")
	for _, x := range r.Results {
		det, started, delay, suspect, verdict := "no", "-", "-", "-", ""
		if m := x.Match; m != nil {
			det, started, suspect = "yes", clock(m.StartedAt), m.SuspectVersion
			if x.Late {
				det = "late"
			}
			delay = signed(x.Delay)
			if !x.Measured {
				delay += " (start)"
			}
			if suspect == "" {
				suspect = "(none)"
			}
			verdict = map[bool]string{true: "right", false: "wrong"}[x.SuspectRight]
			if m.Note != "" {
				verdict += "; " + m.Note
			}
		}
		want := x.SuspectVersion
		if want == "" {
			want = "(none)"
		}
		fmt.Fprintf(w, "%s\t%s/%s\t%s\t%s-%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Name, x.Service, x.Environment, x.Signal,
			clock(x.Start), clock(x.End), det, started, delay, suspect, want, verdict)
	}
	w.Flush()
	for _, f := range r.False {
		fmt.Fprintf(&b, "false: %s/%s started %s, suspect %q", f.Service, f.Environment, clock(f.StartedAt), f.SuspectVersion)
		if f.Signal != "" {
			fmt.Fprintf(&b, ", signal %s", f.Signal)
		}
		for _, x := range r.Results {
			if x.Service == f.Service && x.Environment == f.Environment && !f.StartedAt.Before(x.Start) && f.StartedAt.Before(x.End) {
				fmt.Fprintf(&b, " (during %s: late or repeated)", x.Name)
			}
		}
		if f.Note != "" {
			fmt.Fprintf(&b, "; %s", f.Note)
		}
		b.WriteByte('\n')
	}
	b.WriteString(r.Summary())
	return b.String()
}

func signed(d time.Duration) string {
	if d < 0 {
		return "-" + (-d).String()
	}
	return "+" + d.String()
}
