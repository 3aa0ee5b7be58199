// Package detect finds incidents in telemetry on event time.
//
// Workers reduce every batch to Aggregates: per service, environment,
// service version and one-minute bucket of event time, how many log records
// there were and how many were errors (SeverityNumber >= 17). A single
// Detector consumes them, in whatever order and from however many workers,
// and applies the fixed rule of docs/detection.md per (service, environment):
//
//   - a bucket breaches when errors >= MinErrors (10) and
//     errors/total >= MinRatio (5%);
//   - OpenAfter (2) consecutive breaching buckets open an incident, started
//     at the start of the first;
//   - ResolveAfter (5) consecutive clean buckets resolve it, resolved at the
//     start of the first clean one. A minute without any record is clean,
//     so a service that stops sending resolves too.
//
// Buckets are judged only once the watermark has passed them: the
// watermark is the latest event time seen over all aggregates minus the
// allowed lateness (2 minutes). A record up to that late still counts in
// its own bucket; a later one is counted in Stats.Late and changes nothing.
// Since a bucket's verdict depends only on the records in it, and buckets
// are judged in order once closed, the result is the same whatever order
// the aggregates arrive in within the lateness and however they were split
// across workers.
//
// Waiting for the watermark costs the lateness: on live data an incident
// would open about OpenAfter minutes plus 2 minutes after it started. Early
// gives a provisional verdict sooner, the way a stream processor fires a
// window early on processing time and refines it when late data lands: on
// live data (buckets that ended within the lateness of the wall clock), once
// a bucket has been over for a short grace, it is judged on what has
// arrived. An incident opened that way is provisional. When the watermark
// passes its buckets, the final verdict either confirms it (same id; its
// StartedAt corrected if late data moved it) or retracts it. Replayed
// history never reaches Early's window, so replays stay deterministic.
package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"strings"
	"time"
)

// Aggregate is the count of log records (and errors among them) of one
// service, environment and version in one minute of event time.
type Aggregate struct {
	Service     string `json:"s"`
	Environment string `json:"e"`
	Version     string `json:"v,omitempty"`
	Minute      int64  `json:"m"` // unix seconds of the bucket start
	Total       uint64 `json:"t"`
	Errors      uint64 `json:"x"`
	// Requests and failed (5xx) requests counted from
	// http.server.request.duration histograms (the metric rule).
	Requests uint64 `json:"r,omitempty"`
	Failed   uint64 `json:"f,omitempty"`
	// Lat is the minute's latency histogram, from latency metric points
	// (Deltas.Add); nil for log aggregates.
	Lat *LatHist `json:"-"`
}

// Aggregator reduces rows to Aggregates; workers run one per batch.
type Aggregator struct {
	minSeverity int32
	m           map[Aggregate]*Aggregate // key with zero counts -> counts
	// The previous record's key and counts: records come in runs of one
	// resource and minute, so most skip the map (whose key hashes three
	// strings).
	lastKey Aggregate
	last    *Aggregate
}

// NewAggregator counts records with severity >= minSeverity as errors.
func NewAggregator(minSeverity int32) *Aggregator {
	return &Aggregator{minSeverity: minSeverity, m: map[Aggregate]*Aggregate{}}
}

// AddLog counts one log record (ts in unix nanoseconds).
func (a *Aggregator) AddLog(service, env, version string, ts int64, severity uint8) {
	k := Aggregate{Service: service, Environment: env, Version: version, Minute: floorMinute(ts)}
	c := a.last
	if c == nil || k != a.lastKey {
		var ok bool
		if c, ok = a.m[k]; !ok {
			c = &Aggregate{}
			a.m[k] = c
		}
		a.lastKey, a.last = k, c
	}
	c.Total++
	if int32(severity) >= a.minSeverity {
		c.Errors++
	}
}

func floorMinute(ns int64) int64 {
	s := ns / 1e9
	if ns < 0 && ns%1e9 != 0 {
		s--
	}
	m := s - s%60
	if s < 0 && s%60 != 0 {
		m -= 60
	}
	return m
}

// Flush returns the counted aggregates in a fixed order and empties the
// aggregator.
func (a *Aggregator) Flush() []Aggregate {
	out := make([]Aggregate, 0, len(a.m))
	for k, c := range a.m {
		k.Total, k.Errors = c.Total, c.Errors
		out = append(out, k)
	}
	clear(a.m)
	a.last, a.lastKey = nil, Aggregate{}
	slices.SortFunc(out, func(x, y Aggregate) int {
		if c := strings.Compare(x.Service, y.Service); c != 0 {
			return c
		}
		if c := strings.Compare(x.Environment, y.Environment); c != 0 {
			return c
		}
		if c := strings.Compare(x.Version, y.Version); c != 0 {
			return c
		}
		return int(x.Minute - y.Minute)
	})
	return out
}

// Transition is an incident opening or resolving.
type Transition struct {
	IncidentID  string
	Service     string
	Environment string
	Resolved    bool
	StartedAt   time.Time
	ResolvedAt  time.Time // set when Resolved
	// Errors and Total of the buckets that opened it.
	Errors, Total uint64
	// Provisional marks an opening from Early: the final verdict confirms
	// it by opening the same IncidentID or sends Retracted.
	Provisional bool
	// Retracted withdraws a provisional opening the final verdict did not
	// confirm.
	Retracted bool
	// Signal says which rule opened it (SignalErrors, SignalVersion,
	// SignalLatency, SignalSLO), Reason says it in words, and Version is
	// the version that carried the errors when the rule compared versions.
	Signal, Reason, Version string
}

// IncidentID derives a detected incident's id from what identifies it.
func IncidentID(service, env string, started time.Time) string {
	h := sha256.Sum256([]byte(service + "\x00" + env + "\x00" + started.UTC().Format(time.RFC3339)))
	return "det-" + hex.EncodeToString(h[:8])
}

type counts struct{ total, errors, requests, failed uint64 }

type series struct {
	buckets map[int64]counts // open buckets by minute
	// versions counts errors and totals by version per minute, kept for
	// evidence queries.
	versions map[string]minuteCounts
	next     int64 // first minute not judged yet
	started  bool
	judged   bool  // some bucket was judged
	breach   int   // consecutive breaching buckets
	firstBad int64 // start of the run of breaching buckets
	clean    int   // consecutive clean buckets while open
	firstOK  int64
	open     *Transition
	early    *Transition // provisional opening not yet confirmed
	earlyEnd int64       // last bucket the provisional opening judged

	rules *Rules
	// lat holds the latency histograms of minutes not judged finally yet;
	// latBase learns the final ordinary ones.
	lat     map[int64]*LatHist
	latBase latBaseline
	// first is the minute each version was first seen: the newest of two
	// versions serving together is the one on trial.
	first map[string]int64
	// Baselines of the log error ratio and the 5xx request ratio, over
	// final minutes outside incidents and breaching runs.
	logBase, reqBase baseline
	slos             []*sloState
	run              verdict // what the current breaching run is about
}

// Stats count what the detector saw.
type Stats struct {
	Aggregates, Late uint64
}

// Detector applies the log rule per (service, environment).
type Detector struct {
	rules     Rules
	series    map[[2]string]*series
	maxMinute int64 // latest bucket start seen
	seen      bool
	Stats     Stats
}

// NewDetector returns a detector with rules.
func NewDetector(r Rules) *Detector {
	return &Detector{rules: r, series: map[[2]string]*series{}}
}

// Observe adds an aggregate; a bucket already judged does not change.
func (d *Detector) Observe(a Aggregate) {
	d.Stats.Aggregates++
	k := [2]string{a.Service, a.Environment}
	s, ok := d.series[k]
	if !ok {
		s = d.newSeries(a.Service, a.Environment)
		d.series[k] = s
	}
	if s.judged && a.Minute < s.next {
		d.Stats.Late++ // its bucket was judged already
		return
	}
	if !s.started || a.Minute < s.next {
		s.next, s.started = a.Minute, true
	}
	c := s.buckets[a.Minute]
	c.total += a.Total
	c.errors += a.Errors
	c.requests += a.Requests
	c.failed += a.Failed
	s.buckets[a.Minute] = c
	vm := s.versions[a.Version]
	if vm == nil {
		vm = minuteCounts{}
		s.versions[a.Version] = vm
	}
	if a.Lat != nil {
		h := s.lat[a.Minute]
		if h == nil {
			h = new(LatHist)
			s.lat[a.Minute] = h
		}
		for i, n := range a.Lat {
			h[i] += n
		}
	}
	if f, ok := s.first[a.Version]; !ok || a.Minute < f {
		s.first[a.Version] = a.Minute
	}
	vm.add(a.Minute, counts{total: a.Total, errors: a.Errors, requests: a.Requests, failed: a.Failed})
	if !d.seen || a.Minute > d.maxMinute {
		d.maxMinute, d.seen = a.Minute, true
	}
}

// Watermark is the event time up to which buckets are final.
func (d *Detector) Watermark() time.Time {
	if !d.seen {
		return time.Time{}
	}
	// The latest bucket seen ends a minute after its start.
	return time.Unix(d.maxMinute+60, 0).UTC().Add(-d.rules.Lateness)
}

// Advance judges every bucket the watermark has passed and returns the
// incidents that opened or resolved, in order.
func (d *Detector) Advance() []Transition {
	if !d.seen {
		return nil
	}
	wm := d.Watermark().Unix()
	var out []Transition
	for _, k := range d.keys() {
		s := d.series[k]
		for s.started && s.next+60 <= wm {
			m := s.next
			s.judged = true
			c, has := s.buckets[m]
			delete(s.buckets, m)
			s.next += 60
			if !has && s.open == nil && s.breach == 0 {
				// Nothing pending: jump to the next bucket with data.
				if n, ok := nextBucket(s.buckets); ok && n > s.next {
					s.next = n
				} else if !ok {
					s.next = max(s.next, wm-60)
				}
			} else if t, ok := d.judge(k, s, m, c); ok {
				out = append(out, t)
			}
			delete(s.lat, m)
			// The final verdict has passed a provisional opening's buckets
			// without opening, and no breaching run is under way: withdraw it.
			if e := s.early; e != nil && s.open == nil && s.breach == 0 && s.next > s.earlyEnd {
				out = append(out, Transition{IncidentID: e.IncidentID, Service: e.Service, Environment: e.Environment,
					StartedAt: e.StartedAt, Retracted: true})
				s.early = nil
			}
		}
	}
	return out
}

// Early judges live buckets before the watermark does: every bucket that
// ended at least after ago (now - after) but within the lateness of now is
// judged on the aggregates observed so far, and a series whose breaching run
// reaches OpenAfter there opens provisionally. It changes no final state:
// Advance later confirms or retracts each opening. Call it only when the
// aggregates published so far have all been observed, or it judges on less
// than what has arrived.
func (d *Detector) Early(now time.Time, after time.Duration) []Transition {
	if !d.seen {
		return nil
	}
	until := now.Add(-after).Unix()
	live := now.Add(-d.rules.Lateness).Unix()
	var out []Transition
	for _, k := range d.keys() {
		s := d.series[k]
		if !s.started || s.open != nil || s.early != nil {
			continue
		}
		last, ok := lastBucket(s.buckets)
		if !ok {
			continue
		}
		breach, first, run := s.breach, s.firstBad, s.run
		for m := s.next; m+60 <= until && m <= last; m += 60 {
			c, has := s.buckets[m]
			if !has {
				breach = 0
				continue
			}
			v := d.evaluate(s, m, c)
			if !v.bad {
				breach = 0
				continue
			}
			if breach == 0 {
				first, run = m, v
			} else {
				run = run.merge(v)
			}
			if breach++; breach < s.rules.OpenAfter {
				continue
			}
			if m+60 > live {
				t := d.opening(k, s, first, m, run)
				t.Provisional = true
				s.early, s.earlyEnd = &t, m
				out = append(out, t)
			}
			break // older runs are the watermark's to judge
		}
	}
	return out
}

// keys returns the series keys in a fixed order (environment, service).
func (d *Detector) keys() [][2]string {
	keys := make([][2]string, 0, len(d.series))
	for k := range d.series {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if c := strings.Compare(a[1], b[1]); c != 0 {
			return c
		}
		return strings.Compare(a[0], b[0])
	})
	return keys
}

func lastBucket(b map[int64]counts) (int64, bool) {
	last, ok := int64(0), false
	for m := range b {
		if !ok || m > last {
			last, ok = m, true
		}
	}
	return last, ok
}

func nextBucket(b map[int64]counts) (int64, bool) {
	first, ok := int64(0), false
	for m := range b {
		if !ok || m < first {
			first, ok = m, true
		}
	}
	return first, ok
}

func (d *Detector) judge(k [2]string, s *series, m int64, c counts) (Transition, bool) {
	v := d.evaluate(s, m, c)
	defer func() {
		// Minutes of an open incident never teach the baselines.
		if s.open == nil {
			s.learn(m, c, v.bad)
		}
		s.pushSLO(m, c)
	}()
	if s.open == nil {
		if !v.bad {
			s.breach = 0
			return Transition{}, false
		}
		if s.breach == 0 {
			s.firstBad, s.run = m, v
		} else {
			s.run = s.run.merge(v)
		}
		s.breach++
		if s.breach < s.rules.OpenAfter {
			return Transition{}, false
		}
		t := d.opening(k, s, s.firstBad, m, s.run)
		if s.early != nil {
			// Confirms the provisional opening, under its id.
			t.IncidentID, s.early = s.early.IncidentID, nil
		}
		s.open, s.breach, s.clean = &t, 0, 0
		return t, true
	}
	if v.bad {
		s.clean = 0
		return Transition{}, false
	}
	if s.clean == 0 {
		s.firstOK = m
	}
	s.clean++
	if s.clean < s.rules.ResolveAfter {
		return Transition{}, false
	}
	t := *s.open
	t.Resolved, t.ResolvedAt = true, time.Unix(s.firstOK, 0).UTC()
	s.open, s.clean = nil, 0
	return t, true
}

// minuteCounts are one version's counts by minute, keyed by Unix minute
// with 32-bit counts: the correlator keeps three hours of them for every
// version of every key, and half the bytes of an int64-keyed map of
// 64-bit counts halve its largest structure.
type minuteCounts map[int32]vcounts

type vcounts struct{ total, errors, requests, failed uint32 }

func minuteKey(unix int64) int32 { return int32(unix / 60) }

func (mc minuteCounts) get(m int64) counts {
	v := mc[minuteKey(m)]
	return counts{total: uint64(v.total), errors: uint64(v.errors), requests: uint64(v.requests), failed: uint64(v.failed)}
}

// add adds c to minute m, saturating at the 32-bit ceiling (four billion
// records of one version in one minute).
func (mc minuteCounts) add(m int64, c counts) {
	sat := func(a uint32, b uint64) uint32 { return uint32(min(uint64(a)+b, math.MaxUint32)) }
	k := minuteKey(m)
	v := mc[k]
	v.total, v.errors = sat(v.total, c.total), sat(v.errors, c.errors)
	v.requests, v.failed = sat(v.requests, c.requests), sat(v.failed, c.failed)
	mc[k] = v
}

// opening is the incident a breaching run from first to last opens.
func (d *Detector) opening(k [2]string, s *series, first, last int64, v verdict) Transition {
	start := time.Unix(first, 0).UTC()
	t := Transition{IncidentID: IncidentID(k[0], k[1], start), Service: k[0], Environment: k[1], StartedAt: start,
		Signal: v.signal, Reason: v.reason, Version: v.version}
	for m := first; m <= last; m += 60 {
		for _, vm := range s.versions {
			c := vm.get(m)
			t.Errors += c.errors + c.failed
			t.Total += c.total + c.requests
		}
	}
	return t
}

// VersionCounts returns, per version, the records and errors of a service
// and environment in [from, to), for evidence about suspects. Only recent
// history is kept (see Prune).
func (d *Detector) VersionCounts(service, env string, from, to time.Time) map[string][2]uint64 {
	s, ok := d.series[[2]string{service, env}]
	if !ok {
		return nil
	}
	out := map[string][2]uint64{}
	lo, hi := minuteKey(from.Unix()), minuteKey(to.Unix())
	for v, vm := range s.versions {
		for m, c := range vm {
			if m >= lo && m < hi {
				x := out[v]
				x[0] += uint64(c.total) + uint64(c.requests)
				x[1] += uint64(c.errors) + uint64(c.failed)
				out[v] = x
			}
		}
	}
	return out
}

// Prune forgets per-version history older than keep before the watermark.
func (d *Detector) Prune(keep time.Duration) {
	limit := minuteKey(d.Watermark().Add(-keep).Unix())
	for _, s := range d.series {
		for v, vm := range s.versions {
			for m := range vm {
				if m < limit {
					delete(vm, m)
				}
			}
			if len(vm) == 0 {
				// A version that comes back later (a rollback) is the
				// newest again.
				delete(s.versions, v)
				delete(s.first, v)
			}
		}
	}
}
