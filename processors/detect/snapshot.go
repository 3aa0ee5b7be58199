package detect

import (
	"fmt"
	"slices"
)

// DetectorState is a detector's state in a form that survives a restart
// (the correlator's checkpoint): every series with its open buckets,
// per-version counts, run of breaching or clean minutes, baselines and SLO
// windows. Rules are not part of it; a detector restores it under the
// rules it was built with, which must be the ones it was saved under.
type DetectorState struct {
	MaxMinute int64
	Seen      bool
	Stats     Stats
	Series    []SeriesState
}

// SeriesState is one (service, environment) of a DetectorState.
type SeriesState struct {
	Service, Environment string
	Buckets              []MinuteState
	Versions             []VersionState
	Next                 int64
	Started, Judged      bool
	Breach, Clean        int
	FirstBad, FirstOK    int64
	Open, Early          *Transition
	EarlyEnd             int64
	Lat                  []LatState
	LatBase              LatBaseState
	LogBase, ReqBase     BaselineState
	SLOs                 []SLOState
	Run                  VerdictState
}

// MinuteState is one minute's counts.
type MinuteState struct {
	Minute                          int64
	Total, Errors, Requests, Failed uint64
}

// VersionState is one version's per-minute counts and first minute.
type VersionState struct {
	Version  string
	First    int64
	HasFirst bool
	Minutes  []MinuteState
}

// LatState is one minute's latency histogram.
type LatState struct {
	Minute int64
	Hist   LatHist
}

// LatBaseState is a latency baseline.
type LatBaseState struct {
	Counts  [LatBuckets]float64
	Minutes float64
	Last    int64
}

// BaselineState is an error-ratio baseline.
type BaselineState struct {
	Total, Errors, Minutes float64
	Last                   int64
}

func (b baseline) state() BaselineState {
	return BaselineState{Total: b.total, Errors: b.errors, Minutes: b.minutes, Last: b.last}
}

func (b BaselineState) baseline() baseline {
	return baseline{total: b.Total, errors: b.Errors, minutes: b.Minutes, last: b.Last}
}

// SLOState is the window of one objective: its ring's used slots.
type SLOState struct {
	Name string
	Ring []RingState
}

// RingState is one slot of an SLO window.
type RingState struct {
	Slot       int
	Minute     int64
	Bad, Total uint64
}

// VerdictState is what a breaching run is about.
type VerdictState struct {
	Bad                     bool
	Signal, Reason, Version string
}

// Snapshot returns the detector's state, in a fixed order.
func (d *Detector) Snapshot() DetectorState {
	st := DetectorState{MaxMinute: d.maxMinute, Seen: d.seen, Stats: d.Stats}
	for _, k := range d.keys() {
		s := d.series[k]
		ss := SeriesState{Service: k[0], Environment: k[1], Next: s.next, Started: s.started, Judged: s.judged,
			Breach: s.breach, Clean: s.clean, FirstBad: s.firstBad, FirstOK: s.firstOK, Open: s.open, Early: s.early, EarlyEnd: s.earlyEnd,
			LatBase: LatBaseState{Counts: s.latBase.counts, Minutes: s.latBase.minutes, Last: s.latBase.last},
			LogBase: s.logBase.state(), ReqBase: s.reqBase.state(),
			Run: VerdictState{Bad: s.run.bad, Signal: s.run.signal, Reason: s.run.reason, Version: s.run.version}}
		for _, m := range sortedKeys(s.buckets) {
			c := s.buckets[m]
			ss.Buckets = append(ss.Buckets, MinuteState{Minute: m, Total: c.total, Errors: c.errors, Requests: c.requests, Failed: c.failed})
		}
		vs := make([]string, 0, len(s.versions)+len(s.first))
		for v := range s.versions {
			vs = append(vs, v)
		}
		for v := range s.first {
			if _, ok := s.versions[v]; !ok {
				vs = append(vs, v)
			}
		}
		slices.Sort(vs)
		for _, v := range vs {
			f, hasFirst := s.first[v]
			vst := VersionState{Version: v, First: f, HasFirst: hasFirst}
			if vm, ok := s.versions[v]; ok {
				vst.Minutes = []MinuteState{} // present, even when empty
				for _, m := range sortedKeys(vm) {
					c := vm[m]
					vst.Minutes = append(vst.Minutes, MinuteState{Minute: int64(m), Total: uint64(c.total), Errors: uint64(c.errors),
						Requests: uint64(c.requests), Failed: uint64(c.failed)})
				}
			}
			ss.Versions = append(ss.Versions, vst)
		}
		for _, m := range sortedKeys(s.lat) {
			ss.Lat = append(ss.Lat, LatState{Minute: m, Hist: *s.lat[m]})
		}
		for _, o := range s.slos {
			os := SLOState{Name: o.Name}
			for i, e := range o.ring {
				if e.minute != 0 || e.bad != 0 || e.total != 0 {
					os.Ring = append(os.Ring, RingState{Slot: i, Minute: e.minute, Bad: e.bad, Total: e.total})
				}
			}
			ss.SLOs = append(ss.SLOs, os)
		}
		st.Series = append(st.Series, ss)
	}
	return st
}

// Restore replaces the detector's state with a snapshot's. It fails when
// the snapshot names an objective the detector's rules do not declare.
func (d *Detector) Restore(st DetectorState) error {
	d.series = map[[2]string]*series{}
	d.maxMinute, d.seen, d.Stats = st.MaxMinute, st.Seen, st.Stats
	for _, ss := range st.Series {
		s := d.newSeries(ss.Service, ss.Environment)
		s.next, s.started, s.judged = ss.Next, ss.Started, ss.Judged
		s.breach, s.clean, s.firstBad, s.firstOK = ss.Breach, ss.Clean, ss.FirstBad, ss.FirstOK
		s.open, s.early, s.earlyEnd = ss.Open, ss.Early, ss.EarlyEnd
		s.latBase = latBaseline{counts: ss.LatBase.Counts, minutes: ss.LatBase.Minutes, last: ss.LatBase.Last}
		s.logBase, s.reqBase = ss.LogBase.baseline(), ss.ReqBase.baseline()
		s.run = verdict{bad: ss.Run.Bad, signal: ss.Run.Signal, reason: ss.Run.Reason, version: ss.Run.Version}
		for _, b := range ss.Buckets {
			s.buckets[b.Minute] = counts{total: b.Total, errors: b.Errors, requests: b.Requests, failed: b.Failed}
		}
		for _, v := range ss.Versions {
			if v.HasFirst {
				s.first[v.Version] = v.First
			}
			if v.Minutes == nil {
				continue
			}
			vm := minuteCounts{}
			for _, m := range v.Minutes {
				vm[int32(m.Minute)] = vcounts{total: uint32(m.Total), errors: uint32(m.Errors), requests: uint32(m.Requests), failed: uint32(m.Failed)}
			}
			s.versions[v.Version] = vm
		}
		for _, l := range ss.Lat {
			h := l.Hist
			s.lat[l.Minute] = &h
		}
		for _, os := range ss.SLOs {
			i := slices.IndexFunc(s.slos, func(o *sloState) bool { return o.Name == os.Name })
			if i < 0 {
				return fmt.Errorf("detector state: objective %q of %s in %s is not in the rules", os.Name, ss.Service, ss.Environment)
			}
			for _, r := range os.Ring {
				if r.Slot < 0 || r.Slot >= sloMinutes {
					return fmt.Errorf("detector state: objective %q: slot %d out of range", os.Name, r.Slot)
				}
				e := &s.slos[i].ring[r.Slot]
				e.minute, e.bad, e.total = r.Minute, r.Bad, r.Total
			}
		}
		d.series[[2]string{ss.Service, ss.Environment}] = s
	}
	return nil
}

// DeltasState is a Deltas tracker's state: the last point of every series.
type DeltasState struct {
	Series []PointState
}

// PointState is the last cumulative point of one series.
type PointState struct {
	Series      uint64
	Start, Time int64
	Count       uint64
	Lat         *LatHist
}

// Snapshot returns the tracker's state, ordered by series.
func (d *Deltas) Snapshot() DeltasState {
	var st DeltasState
	for _, k := range sortedKeys(d.series) {
		s := d.series[k]
		st.Series = append(st.Series, PointState{Series: k, Start: s.start, Time: s.time, Count: s.count, Lat: s.lat})
	}
	return st
}

// RestoreDeltas returns a tracker holding a snapshot's state.
func RestoreDeltas(st DeltasState) *Deltas {
	d := NewDeltas()
	for _, p := range st.Series {
		d.series[p.Series] = seriesState{start: p.Start, time: p.Time, count: p.Count, lat: p.Lat}
	}
	return d
}

func sortedKeys[K int64 | int32 | uint64, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
