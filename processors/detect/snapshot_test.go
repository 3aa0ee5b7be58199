package detect

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestDetectorSnapshotRoundTrip runs a detector over a scenario, takes its
// snapshot through gob midway, restores it into a fresh detector and
// checks that the two go on alike: the same transitions (final and early)
// and the same state at the end.
func TestDetectorSnapshotRoundTrip(t *testing.T) {
	slo, err := ParseRules([]byte(`{"slos": [{"name": "avail", "service": "svc", "objective": 99.9},
		{"name": "fast", "service": "svc", "objective": 99, "indicator": "latency", "threshold_seconds": 0.5}]}`))
	if err != nil {
		t.Fatal(err)
	}
	withLat := func(aggs []Aggregate, slowFrom int) []Aggregate {
		for i := range aggs {
			a := &aggs[i]
			if i%2 == 0 {
				continue
			}
			h := new(LatHist)
			fast := a.Total
			if int(a.Minute-t0.Unix())/60 >= slowFrom {
				h[latIndex(2)] = a.Total / 2
				fast -= a.Total / 2
			}
			h[latIndex(0.05)] += fast
			a.Lat = h
			a.Requests, a.Failed = a.Total, a.Errors/2
		}
		return aggs
	}
	scenario := func(seed uint64) []Aggregate {
		aggs := simulate(seed, "svc",
			traffic{-240, 0, "v1", 400, 0.002, 0.3},
			traffic{0, 30, "v1", 300, 0.002, 0.3}, traffic{0, 30, "v2", 100, 0.08, 0.3},
			traffic{30, 60, "v3", 400, 0.002, 0.3})
		aggs = append(aggs, simulate(seed+1, "quiet", traffic{-100, 60, "a", 5, 0.01, 0})...)
		return withLat(sortByMinute(aggs), 10)
	}
	for _, tc := range []struct {
		name  string
		rules Rules
		aggs  []Aggregate
		split []int // indexes at which to snapshot and restore
	}{
		{"empty", DefaultRules(), scenario(1), []int{0}},
		{"before the incident", DefaultRules(), scenario(2), []int{len(scenario(2)) / 2}},
		{"during the incident", DefaultRules(), scenario(3), []int{len(scenario(3)) * 5 / 6}},
		{"with objectives, twice", slo, scenario(4), []int{len(scenario(4)) / 3, len(scenario(4)) * 5 / 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := NewDetector(tc.rules)
			cur := NewDetector(tc.rules)
			var want, got []Transition
			for i, a := range tc.aggs {
				for _, s := range tc.split {
					if i == s {
						cur = roundTrip(t, cur, tc.rules)
					}
				}
				now := time.Unix(a.Minute+70, 0)
				for _, p := range []struct {
					d   *Detector
					out *[]Transition
				}{{ref, &want}, {cur, &got}} {
					p.d.Observe(a)
					*p.out = append(*p.out, p.d.Advance()...)
					*p.out = append(*p.out, p.d.Early(now, 10*time.Second)...)
					if i%97 == 0 {
						p.d.Prune(3 * time.Hour)
					}
				}
			}
			if len(want) == 0 {
				t.Fatal("the scenario opened nothing: it tests nothing")
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
				t.Fatalf("after restore:\n%+v\nwant\n%+v", got, want)
			}
			if !reflect.DeepEqual(cur.Snapshot(), ref.Snapshot()) {
				t.Fatal("the restored detector's state drifted from the original's")
			}
			from, to := t0.Add(-time.Hour), t0.Add(time.Hour)
			if a, b := ref.VersionCounts("svc", "production", from, to), cur.VersionCounts("svc", "production", from, to); !reflect.DeepEqual(a, b) {
				t.Fatalf("version counts %v, want %v", b, a)
			}
		})
	}
}

func roundTrip(t *testing.T, d *Detector, r Rules) *Detector {
	t.Helper()
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(d.Snapshot()); err != nil {
		t.Fatal(err)
	}
	var st DetectorState
	if err := gob.NewDecoder(&buf).Decode(&st); err != nil {
		t.Fatal(err)
	}
	out := NewDetector(r)
	if err := out.Restore(st); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out.Snapshot(), d.Snapshot()) {
		t.Fatal("restored state differs")
	}
	return out
}

func TestDetectorRestoreUnknownObjective(t *testing.T) {
	r, err := ParseRules([]byte(`{"slos": [{"name": "avail", "service": "svc", "objective": 99.9}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := NewDetector(r)
	for _, a := range simulate(1, "svc", traffic{0, 10, "v1", 100, 0.01, 0}) {
		d.Observe(a)
		d.Advance()
	}
	st := d.Snapshot()
	if err := NewDetector(DefaultRules()).Restore(st); err == nil {
		t.Fatal("restored an objective the rules do not declare")
	}
}

// TestDeltasSnapshotRoundTrip checks that a restored tracker turns the
// next cumulative points into the same deltas.
func TestDeltasSnapshotRoundTrip(t *testing.T) {
	pt := func(series uint64, start, at int, count uint64, lat ...[2]uint64) Point {
		return Point{Series: series, Service: "svc", Environment: "production", Start: int64(start) * 1e9, Time: int64(at) * 1e9, Count: count, Lat: lat}
	}
	for _, tc := range []struct {
		name         string
		before, next []Point
	}{
		{"empty", nil, []Point{pt(1, 0, 60, 10)}},
		{"counting", []Point{pt(1, 0, 60, 10), pt(2, 0, 60, 5, [2]uint64{3, 5})}, []Point{pt(1, 0, 120, 25), pt(2, 0, 120, 9, [2]uint64{3, 9})}},
		{"reset", []Point{pt(1, 0, 60, 10)}, []Point{pt(1, 100, 160, 4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewDeltas()
			for _, p := range tc.before {
				a.Add(p)
			}
			var buf bytes.Buffer
			if err := gob.NewEncoder(&buf).Encode(a.Snapshot()); err != nil {
				t.Fatal(err)
			}
			var st DeltasState
			if err := gob.NewDecoder(&buf).Decode(&st); err != nil {
				t.Fatal(err)
			}
			b := RestoreDeltas(st)
			for _, p := range tc.next {
				if x, y := a.Add(p), b.Add(p); !reflect.DeepEqual(x, y) {
					t.Fatalf("after restore %+v, want %+v", y, x)
				}
			}
		})
	}
}
