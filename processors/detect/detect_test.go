package detect

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func agg(svc string, min int, total, errors uint64) Aggregate {
	return Aggregate{Service: svc, Environment: "production", Version: "v1", Minute: t0.Add(time.Duration(min) * time.Minute).Unix(), Total: total, Errors: errors}
}

// run feeds minute-by-minute aggregates and advances after each one, as a
// live stream would.
func run(aggs []Aggregate) []Transition {
	d := NewDetector(DefaultRules())
	var out []Transition
	for _, a := range aggs {
		d.Observe(a)
		out = append(out, d.Advance()...)
	}
	return out
}

func profileOf(svc string, from int, profile []struct{ total, errors uint64 }) []Aggregate {
	var out []Aggregate
	for i, p := range profile {
		out = append(out, agg(svc, from+i, p.total, p.errors))
	}
	return out
}

type te = struct{ total, errors uint64 }

func repeat(n int, v te) []te {
	out := make([]te, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func cat(parts ...[]te) []te {
	var out []te
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestRuleEdges(t *testing.T) {
	clean := te{200, 0}
	for _, tc := range []struct {
		name    string
		profile []te
		opens   bool
		startAt int // minute of StartedAt
	}{
		{"exactly 10 errors at exactly 5%", cat(repeat(8, clean), repeat(2, te{200, 10}), repeat(8, clean)), true, 8},
		{"the first minutes only teach", cat(repeat(3, clean), repeat(2, te{200, 10}), repeat(8, clean)), false, 0},
		{"9 errors is not enough", cat(repeat(8, clean), repeat(2, te{100, 9}), repeat(8, clean)), false, 0},
		{"10 errors below 5%", cat(repeat(8, clean), repeat(2, te{201, 10}), repeat(8, clean)), false, 0},
		{"one breaching bucket does not open", cat(repeat(8, clean), repeat(1, te{100, 50}), repeat(8, clean)), false, 0},
		{"breach, clean, breach does not open", cat(repeat(8, clean), []te{{100, 50}, clean, {100, 50}}, repeat(8, clean)), false, 0},
		{"erring so since first seen is its normal", repeat(20, te{200, 20}), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A second service keeps event time moving.
			aggs := append(profileOf("checkout", 0, tc.profile), profileOf("clock", 0, repeat(len(tc.profile)+10, clean))...)
			tr := run(sortByMinute(aggs))
			var opened []Transition
			for _, x := range tr {
				if !x.Resolved && x.Service == "checkout" {
					opened = append(opened, x)
				}
			}
			if tc.opens != (len(opened) == 1) || len(opened) > 1 {
				t.Fatalf("transitions %+v, want opened=%v", tr, tc.opens)
			}
			if tc.opens && !opened[0].StartedAt.Equal(t0.Add(time.Duration(tc.startAt)*time.Minute)) {
				t.Fatalf("started %s, want +%dm", opened[0].StartedAt, tc.startAt)
			}
		})
	}
}

func sortByMinute(a []Aggregate) []Aggregate {
	out := append([]Aggregate(nil), a...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Minute < out[j-1].Minute; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func TestResolveAfterFiveCleanAndWhenSilent(t *testing.T) {
	clean := te{200, 0}
	bad := te{200, 40}
	// Errors from +7m to +11m, clean from +12m: resolves at +12m once +16m is judged.
	aggs := sortByMinute(append(profileOf("checkout", 0, cat(repeat(7, clean), repeat(5, bad), repeat(10, clean))), profileOf("clock", 0, repeat(30, clean))...))
	tr := run(aggs)
	if len(tr) != 2 || tr[0].Resolved || !tr[1].Resolved || !tr[0].StartedAt.Equal(t0.Add(7*time.Minute)) || !tr[1].ResolvedAt.Equal(t0.Add(12*time.Minute)) {
		t.Fatalf("transitions %+v", tr)
	}
	// A service that stops sending while failing resolves: silence is clean.
	aggs = sortByMinute(append(profileOf("checkout", 0, cat(repeat(6, clean), repeat(3, bad))), profileOf("clock", 0, repeat(25, clean))...))
	tr = run(aggs)
	if len(tr) != 2 || !tr[1].Resolved || !tr[1].ResolvedAt.Equal(t0.Add(9*time.Minute)) {
		t.Fatalf("silent service: %+v", tr)
	}
}

// TestOrderAndSplitDoNotMatter: the same records split across workers (many
// partial aggregates per bucket) and shuffled within the lateness give the
// same transitions as in order.
func TestOrderAndSplitDoNotMatter(t *testing.T) {
	clean := te{300, 1}
	bad := te{300, 60}
	base := sortByMinute(append(
		profileOf("checkout", 0, cat(repeat(10, clean), repeat(15, bad), repeat(20, clean))),
		profileOf("search", 0, cat(repeat(30, clean), repeat(4, te{250, 70}), repeat(11, clean)))...))
	want := run(base)
	if len(want) != 4 {
		t.Fatalf("in order: %+v", want)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for round := 0; round < 50; round++ {
		var parts []Aggregate
		for _, a := range base { // split each bucket across 3 "workers"
			t1 := a.Total / 3
			e1 := a.Errors / 3
			parts = append(parts, Aggregate{Service: a.Service, Environment: a.Environment, Version: a.Version, Minute: a.Minute, Total: t1, Errors: e1},
				Aggregate{Service: a.Service, Environment: a.Environment, Version: "v2", Minute: a.Minute, Total: t1, Errors: e1},
				Aggregate{Service: a.Service, Environment: a.Environment, Version: a.Version, Minute: a.Minute, Total: a.Total - 2*t1, Errors: a.Errors - 2*e1})
		}
		// Shuffle within 90s of event time (inside the 2m lateness).
		keys := make([]float64, len(parts))
		for i, p := range parts {
			keys[i] = float64(p.Minute) + rng.Float64()*90
		}
		idx := rng.Perm(len(parts))
		for i := 1; i < len(idx); i++ {
			for j := i; j > 0 && keys[idx[j]] < keys[idx[j-1]]; j-- {
				idx[j], idx[j-1] = idx[j-1], idx[j]
			}
		}
		shuffled := make([]Aggregate, len(parts))
		for i, j := range idx {
			shuffled[i] = parts[j]
		}
		got := run(shuffled)
		for i := range got { // counts per version differ by split only in Version; compare verdicts
			got[i].Errors, got[i].Total = want[i].Errors, want[i].Total
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: %+v\nwant %+v", round, got, want)
		}
	}
}

func TestLateBeyondLatenessIgnored(t *testing.T) {
	d := NewDetector(DefaultRules())
	for m := 0; m < 10; m++ {
		d.Observe(agg("checkout", m, 100, 0))
		d.Advance()
	}
	d.Observe(agg("checkout", 2, 100, 90)) // 8 minutes late
	d.Observe(agg("checkout", 3, 100, 90))
	if tr := d.Advance(); len(tr) != 0 || d.Stats.Late != 2 {
		t.Fatalf("late data changed the verdict: %+v, late %d", tr, d.Stats.Late)
	}
}

func TestAggregator(t *testing.T) {
	a := NewAggregator(17)
	ns := t0.UnixNano()
	a.AddLog("s", "p", "v", ns, 17)
	a.AddLog("s", "p", "v", ns+59e9, 9)
	a.AddLog("s", "p", "v", ns+60e9, 21)
	got := a.Flush()
	if len(got) != 2 || got[0].Total != 2 || got[0].Errors != 1 || got[1].Errors != 1 || got[1].Minute != t0.Unix()+60 {
		t.Fatalf("%+v", got)
	}
	if len(a.Flush()) != 0 {
		t.Fatal("flush did not empty")
	}
}

func TestDeltasAndMetricRule(t *testing.T) {
	d := NewDeltas()
	ns := func(min int) int64 { return t0.Add(time.Duration(min)*time.Minute + 59*time.Second).UnixNano() }
	start := t0.Add(-time.Hour).UnixNano()
	p := func(min int, start int64, count uint64, failed bool) Point {
		return Point{Series: 1, Service: "ledger", Environment: "production", Start: start, Time: ns(min), Count: count, Failed: failed}
	}
	for _, tc := range []struct {
		name string
		p    Point
		want uint64
	}{
		{"first point is a baseline", p(0, start, 1000, true), 0},
		{"delta to the previous", p(1, start, 1100, true), 100},
		{"repeated point counts nothing", p(1, start, 1100, true), 0},
		{"count went down: reset, start before previous point", p(2, start, 40, true), 0},
		{"after the reset, deltas again", p(3, start, 90, true), 50},
		{"new start after the previous point: its own count", p(4, ns(3)+1, 30, true), 30},
	} {
		a := d.Add(tc.p)
		if a.Requests != tc.want || a.Failed != tc.want {
			t.Fatalf("%s: %+v, want %d", tc.name, a, tc.want)
		}
	}
	delta := Point{Series: 2, Service: "ledger", Environment: "production", Time: ns(5), Count: 7, Delta: true}
	if a := d.Add(delta); a.Requests != 7 || a.Failed != 0 {
		t.Fatalf("delta temporality: %+v", a)
	}

	// The metric rule alone opens an incident.
	det := NewDetector(DefaultRules())
	var tr []Transition
	for m := 0; m < 17; m++ {
		failed := uint64(0)
		if m >= 8 && m < 10 {
			failed = 30
		}
		det.Observe(Aggregate{Service: "ledger", Environment: "production", Minute: t0.Add(time.Duration(m) * time.Minute).Unix(), Requests: 300, Failed: failed})
		tr = append(tr, det.Advance()...)
	}
	if len(tr) != 2 || !tr[0].StartedAt.Equal(t0.Add(8*time.Minute)) || !tr[1].ResolvedAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("metric rule: %+v", tr)
	}
}

// TestEarly covers provisional openings on live data and what the final
// verdict does with them.
func TestEarly(t *testing.T) {
	clean, bad := te{200, 0}, te{200, 60}
	min := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	type step struct {
		aggs  []Aggregate
		early time.Time // when set, call Early(early, 10s) after observing
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  []Transition // without Errors/Total
	}{
		{
			name: "opens early, then confirmed under the same id",
			steps: []step{
				{aggs: profileOf("checkout", 0, cat(repeat(8, clean), repeat(2, bad))), early: min(10).Add(12 * time.Second)},
				{aggs: profileOf("checkout", 10, repeat(2, bad))},
			},
			want: []Transition{
				{IncidentID: IncidentID("checkout", "production", min(8)), StartedAt: min(8), Provisional: true},
				{IncidentID: IncidentID("checkout", "production", min(8)), StartedAt: min(8)},
			},
		},
		{
			name: "not before the grace has passed",
			steps: []step{
				{aggs: profileOf("checkout", 0, cat(repeat(8, clean), repeat(2, bad))), early: min(10).Add(5 * time.Second)},
			},
		},
		{
			name: "history is the watermark's alone",
			steps: []step{
				{aggs: profileOf("checkout", 0, cat(repeat(8, clean), repeat(2, bad))), early: min(30)},
			},
		},
		{
			name: "retracted when late records dilute the second bucket",
			steps: []step{
				{aggs: profileOf("checkout", 0, cat(repeat(8, clean), repeat(2, bad))), early: min(10).Add(12 * time.Second)},
				{aggs: append(profileOf("checkout", 9, []te{{5000, 0}}), profileOf("checkout", 10, repeat(3, clean))...)},
			},
			want: []Transition{
				{IncidentID: IncidentID("checkout", "production", min(8)), StartedAt: min(8), Provisional: true},
				{IncidentID: IncidentID("checkout", "production", min(8)), StartedAt: min(8), Retracted: true},
			},
		},
		{
			name: "late records move StartedAt, the id stays",
			steps: []step{
				{aggs: profileOf("checkout", 0, cat(repeat(8, clean), repeat(2, bad))), early: min(10).Add(12 * time.Second)},
				{aggs: append(profileOf("checkout", 8, []te{{5000, 0}}), profileOf("checkout", 10, repeat(3, bad))...)},
			},
			want: []Transition{
				{IncidentID: IncidentID("checkout", "production", min(8)), StartedAt: min(8), Provisional: true},
				{IncidentID: IncidentID("checkout", "production", min(8)), StartedAt: min(9)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDetector(DefaultRules())
			var got []Transition
			for _, st := range tc.steps {
				for _, a := range st.aggs {
					d.Observe(a)
				}
				got = append(got, d.Advance()...)
				if !st.early.IsZero() {
					got = append(got, d.Early(st.early, 10*time.Second)...)
				}
			}
			for i := range got {
				got[i].Errors, got[i].Total, got[i].Service, got[i].Environment = 0, 0, "", ""
				got[i].Signal, got[i].Reason, got[i].Version = "", "", ""
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("transitions:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
