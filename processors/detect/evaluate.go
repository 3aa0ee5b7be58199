package detect

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Signals: which rule opened an incident.
const (
	SignalErrors   = "errors"
	SignalVersion  = "version_errors"
	SignalLatency  = "latency"
	SignalSLO      = "slo_burn"
	SignalExplicit = "explicit"
)

// verdict is one minute's judgement of a key.
type verdict struct {
	bad     bool
	signal  string
	reason  string
	version string // the version on trial, for SignalVersion
}

// merge keeps what a breaching run is about: the first minute's verdict,
// unless a later minute pins it on a version (the stronger evidence).
func (v verdict) merge(w verdict) verdict {
	if v.signal != SignalVersion && w.signal == SignalVersion {
		return w
	}
	return v
}

func (d *Detector) newSeries(service, env string) *series {
	r := d.rules.For(service, env)
	s := &series{buckets: map[int64]counts{}, versions: map[string]minuteCounts{}, first: map[string]int64{}, rules: r,
		lat: map[int64]*LatHist{}}
	for _, o := range d.rules.SLOFor(service, env) {
		s.slos = append(s.slos, &sloState{SLO: o})
	}
	return s
}

// evaluate judges minute m of a series with counts c. It reads state and
// changes none, so Early may call it on minutes not yet final.
func (d *Detector) evaluate(s *series, m int64, c counts) verdict {
	r := s.rules
	var out verdict
	if r.Versions.Enabled {
		if v := versionTest(r, s, m); v.bad {
			return v
		}
	}
	logs := func(x int64) (uint64, uint64) { c := s.minute(x); return c.errors, c.total }
	if v := ratioTest(r, &s.logBase, m, logs, "errors", "log records"); v.bad {
		return v
	}
	reqs := func(x int64) (uint64, uint64) { c := s.minute(x); return c.failed, c.requests }
	if v := ratioTest(r, &s.reqBase, m, reqs, "5xx", "requests"); v.bad {
		return v
	}
	if v := latencyTest(r, &s.latBase, m, s.lat[m]); v.bad {
		return v
	}
	if v := sloTest(s, m, c); v.bad {
		return v
	}
	return out
}

// baseline is an exponentially weighted error ratio: sums of records,
// errors and minutes, each decayed by half every HalfLifeMinutes. It
// takes O(1) memory per key whatever the window.
type baseline struct {
	total, errors, minutes float64
	last                   int64 // minute of the last update
}

func (b *baseline) decayed(m int64, halfLife float64) (total, errors, minutes float64) {
	if b.minutes == 0 {
		return 0, 0, 0
	}
	f := math.Exp2(-float64(m-b.last) / 60 / halfLife)
	return b.total * f, b.errors * f, b.minutes * f
}

func (b *baseline) add(m int64, total, errors uint64, halfLife float64) {
	b.total, b.errors, b.minutes = b.decayed(m, halfLife)
	b.total += float64(total)
	b.errors += float64(errors)
	b.minutes++
	b.last = m
}

// warm says whether a baseline has enough history to judge by.
func (b *baseline) warm(m int64, br *BaselineRules) bool {
	total, _, minutes := b.decayed(m, br.HalfLifeMinutes)
	return minutes >= br.MinMinutes && total >= br.MinRecords
}

// learn adds a final minute outside incidents to the baselines. A warm
// baseline learns only ordinary minutes; a cold one learns every minute,
// breaching or not, since it does not know yet what normal is.
func (s *series) learn(m int64, c counts, bad bool) {
	br := &s.rules.Baseline
	if c.total > 0 && (!bad || !s.logBase.warm(m, br)) {
		s.logBase.add(m, c.total, c.errors, br.HalfLifeMinutes)
	}
	if c.requests > 0 && (!bad || !s.reqBase.warm(m, br)) {
		s.reqBase.add(m, c.requests, c.failed, br.HalfLifeMinutes)
	}
	lr := &s.rules.Latency
	if h := s.lat[m]; h != nil && (!bad || s.latBase.minutes*math.Exp2(-float64(m-s.latBase.last)/60/lr.HalfLifeMinutes) < lr.MinMinutes) {
		s.latBase.add(m, h, lr.HalfLifeMinutes)
	}
}

// minute returns a key's counts of minute x over all its versions.
func (s *series) minute(x int64) counts {
	var c counts
	for _, vm := range s.versions {
		v := vm.get(x)
		c.total += v.total
		c.errors += v.errors
		c.requests += v.requests
		c.failed += v.failed
	}
	return c
}

// ratioTest judges minute m, whose bad and total counts at(x) gives: against
// the key's baseline when it has one, else by the fixed rule (at least
// MinErrors and MinRatio).
//
// A quiet service's minute holds too few records to be significant alone,
// so an elevated minute (its ratio past both effect sizes) is pooled with
// the elevated minutes just before it, up to the versions window: five
// minutes of 2 errors in 5 requests say what one cannot.
func ratioTest(r *Rules, b *baseline, m int64, at func(int64) (uint64, uint64), what, of string) verdict {
	k, n := at(m)
	if n == 0 || k == 0 {
		return verdict{}
	}
	ratio := float64(k) / float64(n)
	br := r.Baseline
	total, errors, minutes := b.decayed(m, br.HalfLifeMinutes)
	if minutes < br.MinMinutes || total < br.MinRecords {
		// Cold start: the fixed rule, and no less than MinRelative times
		// what little history says, so a service that has erred like this
		// since it was first seen is not an incident for that alone. A
		// key's first LearnMinutes only teach: one minute says nothing of
		// the next.
		if k < r.MinErrors || ratio < r.MinRatio || minutes < br.LearnMinutes {
			return verdict{}
		}
		if ratio < br.MinRelative*errors/total {
			return verdict{}
		}
		return verdict{bad: true, signal: SignalErrors, reason: fmt.Sprintf("%s %s of %d %s in %s: at least %d and %s (fixed rule: %.0f minutes of history, too few for a baseline)",
			what, pct(ratio), n, of, clock(m), r.MinErrors, pct(r.MinRatio), minutes)}
	}
	// A half record of prior keeps a spotless history from making one
	// error infinitely surprising.
	p0 := (errors + 0.5) / (total + 1)
	elevated := func(k, n uint64) bool {
		x := float64(k) / float64(n)
		return x >= br.MinRelative*p0 && x-p0 >= br.MinAbsolute
	}
	if !elevated(k, n) {
		return verdict{}
	}
	p := BinomialUpperTail(int64(k), int64(n), p0)
	from := m
	for x, w := m-60, 1; p >= br.Alpha && w < pool; x, w = x-60, w+1 {
		xk, xn := at(x)
		if xn == 0 {
			continue // a quiet minute neither helps nor breaks the run
		}
		if !elevated(xk, xn) {
			break
		}
		k, n, from = k+xk, n+xn, x
		p = BinomialUpperTail(int64(k), int64(n), p0)
	}
	// The effect must hold for a conservative ratio too, the lower end of
	// its one-sided 90% (Wilson) interval: a noisy service's minute at
	// twice its baseline plus ordinary noise reads 2.8 times it now and
	// then, the bound rarely does.
	if lb := wilsonLower(k, n, 1.2816); k < br.MinErrors || p >= br.Alpha || lb < br.MinRelative*p0 || lb-p0 < br.MinAbsolute {
		return verdict{}
	}
	return verdict{bad: true, signal: SignalErrors, reason: fmt.Sprintf("%s %s (%d of %d %s) in %s vs a baseline of %s, p %s",
		what, pct(float64(k)/float64(n)), k, n, of, clockSpan(from, m), pct(p0), pval(p))}
}

// wilsonLower is the lower end of the Wilson score interval of k
// successes in n at z standard errors.
func wilsonLower(k, n uint64, z float64) float64 {
	if n == 0 {
		return 0
	}
	nf, p := float64(n), float64(k)/float64(n)
	z2 := z * z
	return max(0, (p+z2/(2*nf)-z*math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)))/(1+z2/nf))
}

// pool is how many elevated minutes ratioTest pools at most.
const pool = 5

// versionTest compares, while two versions serve in minute m, the newer
// one with the one serving most of the rest, over the last WindowMinutes:
// a new version significantly and substantially worse than its
// predecessor breaches even when the service-level ratio looks normal.
func versionTest(r *Rules, s *series, m int64) verdict {
	vr := r.Versions
	var live []string
	for v, vm := range s.versions {
		if c := vm.get(m); c.total+c.requests > 0 {
			live = append(live, v)
		}
	}
	if len(live) < 2 {
		return verdict{}
	}
	slices.SortFunc(live, func(a, b string) int { // newest first
		if s.first[a] != s.first[b] {
			if s.first[a] > s.first[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(b, a)
	})
	cand := live[0]
	if cand == "" {
		return verdict{}
	}
	// Both versions over the same minutes: those of the window in which
	// the candidate served.
	var span []int64
	for x := m - int64(vr.WindowMinutes-1)*60; x <= m; x += 60 {
		if c := s.versions[cand].get(x); c.total+c.requests > 0 {
			span = append(span, x)
		}
	}
	pool := func(v string) (bad, total uint64) {
		for _, x := range span {
			c := s.versions[v].get(x)
			bad += c.errors + c.failed
			total += c.total + c.requests
		}
		return
	}
	a, n1 := pool(cand)
	ref, b, n2 := "", uint64(0), uint64(0)
	for _, v := range live[1:] {
		if vb, vt := pool(v); vt > n2 || (vt == n2 && v < ref) {
			ref, b, n2 = v, vb, vt
		}
	}
	if n1 == 0 || n2 == 0 || a < vr.MinErrors {
		return verdict{}
	}
	ra, rb := float64(a)/float64(n1), float64(b)/float64(n2)
	if ra < vr.MinRelative*rb || ra-rb < vr.MinAbsolute {
		return verdict{}
	}
	p := ProportionGreater(int64(a), int64(n1), int64(b), int64(n2))
	if p >= vr.Alpha {
		return verdict{}
	}
	var all uint64
	for v := range s.versions {
		_, t := pool(v)
		all += t
	}
	return verdict{bad: true, signal: SignalVersion, version: cand,
		reason: fmt.Sprintf("%s: %s errors on %s of traffic vs %s: %s, p %s (%s)",
			cand, pct(ra), pct(float64(n1)/float64(all)), label(ref), pct(rb), pval(p), clockSpan(span[0], m))}
}

func label(v string) string {
	if v == "" {
		return "records without service.version"
	}
	return v
}

// pct formats a ratio as a percentage with the digits that matter.
func pct(x float64) string {
	switch {
	case x == 0:
		return "0%"
	case x < 0.001:
		return fmt.Sprintf("%.3f%%", x*100)
	case x < 0.1:
		return fmt.Sprintf("%.1f%%", x*100)
	}
	return fmt.Sprintf("%.0f%%", x*100)
}

// pval bounds a p-value by the next power of ten: "< 1e-06".
func pval(p float64) string {
	if p <= 0 {
		return "< 1e-300"
	}
	e := math.Ceil(math.Log10(p))
	if e >= 0 {
		return "= 1"
	}
	return fmt.Sprintf("< 1e%03d", int(e))
}

func clock(m int64) string { return time.Unix(m, 0).UTC().Format("15:04") }

// clockSpan names the minutes from to to: "10:00", or "10:00-10:04".
func clockSpan(from, to int64) string {
	if from == to {
		return clock(to)
	}
	return clock(from) + "-" + clock(to)
}

// sloState keeps, for one objective, the last six hours of bad and total
// counts per minute: the burn-rate windows need exact sums, and only keys
// with a declared objective pay for them.
type sloState struct {
	SLO
	ring [sloMinutes]struct {
		minute     int64
		bad, total uint64
	}
}

const sloMinutes = 360

// Multi-window, multi-burn-rate alerts (the Google SRE workbook's
// "alerting on SLOs", with its defaults): a page when the error budget
// burns 14.4 times too fast over both an hour and five minutes, or 6
// times over both six hours and thirty minutes.
var burnWindows = []struct {
	long, short int // minutes
	rate        float64
}{{60, 5, 14.4}, {360, 30, 6}}

func (o *sloState) push(m int64, bad, total uint64) {
	e := &o.ring[(m/60)%sloMinutes]
	e.minute, e.bad, e.total = m, bad, total
}

// burn is the error-budget burn rate over the window minutes ending with
// m (counting minute m's counts c, which are not in the ring yet).
func (o *sloState) burn(m int64, window int, bad, total uint64) float64 {
	for x := m - int64(window-1)*60; x < m; x += 60 {
		if e := &o.ring[(x/60)%sloMinutes]; e.minute == x {
			bad += e.bad
			total += e.total
		}
	}
	if total == 0 {
		return 0
	}
	return float64(bad) / float64(total) / (1 - o.Objective)
}

// counts are the bad and total events of a minute for an objective: its
// counts c, or its latency histogram h for a latency objective.
func (o *sloState) counts(c counts, h *LatHist) (bad, total uint64) {
	if o.Indicator == "latency" {
		if h == nil {
			return 0, 0
		}
		return h.slowerThan(o.ThresholdSeconds), h.total()
	}
	return c.errors + c.failed, c.total + c.requests
}

func sloTest(s *series, m int64, c counts) verdict {
	for _, o := range s.slos {
		bad, total := o.counts(c, s.lat[m])
		for _, w := range burnWindows {
			long, short := o.burn(m, w.long, bad, total), o.burn(m, w.short, bad, total)
			if long >= w.rate && short >= w.rate {
				return verdict{bad: true, signal: SignalSLO, reason: fmt.Sprintf(
					"SLO %s: budget burning %.1fx over %s and %.1fx over %s (threshold %.1fx) at %s",
					o.Name, long, minutes(w.long), short, minutes(w.short), w.rate, clock(m))}
			}
		}
	}
	return verdict{}
}

// pushSLO records a final minute in every objective's windows.
func (s *series) pushSLO(m int64, c counts) {
	for _, o := range s.slos {
		bad, total := o.counts(c, s.lat[m])
		o.push(m, bad, total)
	}
}

func minutes(n int) string {
	if n%60 == 0 {
		return fmt.Sprintf("%dh", n/60)
	}
	return fmt.Sprintf("%dm", n)
}
