package replay

import (
	"strings"
	"testing"
	"time"
)

func TestScore(t *testing.T) {
	at := func(min int) time.Time { return T0.Add(time.Duration(min) * time.Minute) }
	exp := []Expected{
		{Name: "regress", Service: "checkout", Environment: "production", Start: at(20), End: at(40), Signal: SignalErrors, SuspectVersion: "v2", MaxDelay: 3 * time.Minute},
		{Name: "outage", Service: "search", Environment: "production", Start: at(60), End: at(70), Signal: SignalErrors, MaxDelay: 3 * time.Minute},
		{Name: "latency", Service: "catalog", Environment: "production", Start: at(80), End: at(90), Signal: SignalLatency, SuspectVersion: "v5", MaxDelay: 5 * time.Minute},
	}
	checkout := func(start int, suspect string) Detected {
		return Detected{Service: "checkout", Environment: "production", StartedAt: at(start), SuspectVersion: suspect}
	}
	search := Detected{Service: "search", Environment: "production", StartedAt: at(61)}
	catalog := Detected{Service: "catalog", Environment: "production", StartedAt: at(84), SuspectVersion: "v5"}
	for _, c := range []struct {
		name    string
		got     []Detected
		summary string
		perfect bool
		delay   time.Duration // of regress, when detected
		// Lines String must hold.
		want []string
	}{
		{name: "perfect", got: []Detected{checkout(20, "v2"), search, catalog},
			summary: "recall 3/3, false 0, suspects right 3/3", perfect: true,
			want: []string{"regress", "+0s (start)", "v2 right", "outage", "(none) (none) right", "latency", "+4m0s (start)"}},
		{name: "nothing", summary: "recall 0/3, false 0, suspects right 0/0",
			want: []string{"regress checkout/production errors 10:20-10:40 no"}},
		{name: "two minutes early is fine", got: []Detected{checkout(18, "v2"), search, catalog},
			summary: "recall 3/3, false 0, suspects right 3/3", perfect: true, delay: -2 * time.Minute,
			want: []string{"-2m0s (start)"}},
		{name: "three minutes early is another incident", got: []Detected{checkout(17, "v2"), search, catalog},
			summary: "recall 2/3, false 1, suspects right 2/2",
			want:    []string{`false: checkout/production started 10:17, suspect "v2"`}},
		{name: "a start beyond MaxDelay misses and is false", got: []Detected{checkout(24, "v2"), search, catalog},
			summary: "recall 2/3, false 1, suspects right 2/2",
			want:    []string{"(during regress: late or repeated)"}},
		{name: "a known detection moment beyond MaxDelay is late", got: []Detected{
			{Service: "checkout", Environment: "production", StartedAt: at(20), DetectedAt: at(25), SuspectVersion: "v2"}, search, catalog},
			summary: "recall 2/3, false 0, suspects right 3/3", delay: 5 * time.Minute,
			want: []string{"late", "+5m0s v2"}},
		{name: "a known detection moment in time", got: []Detected{
			{Service: "checkout", Environment: "production", StartedAt: at(20), DetectedAt: at(22).Add(10 * time.Second), SuspectVersion: "v2"}, search, catalog},
			summary: "recall 3/3, false 0, suspects right 3/3", perfect: true, delay: 2*time.Minute + 10*time.Second,
			want: []string{"+2m10s v2"}},
		{name: "wrong suspect", got: []Detected{checkout(20, "v1"), search, catalog},
			summary: "recall 3/3, false 0, suspects right 2/3",
			want:    []string{"v1 v2 wrong"}},
		{name: "pinned where nothing should be", got: []Detected{checkout(20, "v2"),
			{Service: "search", Environment: "production", StartedAt: at(60), SuspectVersion: "v9"}, catalog},
			summary: "recall 3/3, false 0, suspects right 2/3",
			want:    []string{"v9 (none) wrong"}},
		{name: "nothing pinned where something should be", got: []Detected{checkout(20, ""), search, catalog},
			summary: "recall 3/3, false 0, suspects right 2/3",
			want:    []string{"(none) v2 wrong"}},
		{name: "another environment", got: []Detected{{Service: "checkout", Environment: "staging", StartedAt: at(20), SuspectVersion: "v2"}, search, catalog},
			summary: "recall 2/3, false 1, suspects right 2/2",
			want:    []string{`false: checkout/staging started 10:20, suspect "v2"`}},
		{name: "a repeat in the window is false", got: []Detected{checkout(21, "v2"), checkout(20, "v2"), search, catalog},
			summary: "recall 3/3, false 1, suspects right 3/3", delay: 0,
			want: []string{"false: checkout/production started 10:21"}},
		{name: "noise elsewhere", got: []Detected{checkout(20, "v2"), search, catalog,
			{Service: "notifications", Environment: "production", StartedAt: at(5), Signal: "errors", Note: "8% errors"}},
			summary: "recall 3/3, false 1, suspects right 3/3",
			want:    []string{`false: notifications/production started 10:05, suspect "", signal errors; 8% errors`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Score(exp, c.got)
			if got := r.Summary(); got != c.summary {
				t.Errorf("summary %q, want %q", got, c.summary)
			}
			if r.Perfect() != c.perfect {
				t.Errorf("Perfect() = %v, want %v", r.Perfect(), c.perfect)
			}
			if x := r.Results[0]; x.Match != nil && x.Delay != c.delay {
				t.Errorf("regress delay %s, want %s", x.Delay, c.delay)
			}
			s := r.String()
			flat := strings.Join(strings.Fields(s), " ") // the table's padding aside
			for _, w := range append(c.want, c.summary) {
				if !strings.Contains(flat, w) {
					t.Errorf("report lacks %q:\n%s", w, s)
				}
			}
		})
	}
}
