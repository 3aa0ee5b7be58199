package detect

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Latency histograms arrive with whatever buckets each SDK chose: explicit
// bounds (in seconds or milliseconds) or exponential scales. To add them
// up across series, versions and minutes, every point is mapped onto one
// fixed grid: LatBuckets log-spaced buckets, four per doubling, from 0.1 ms
// to about 28 minutes (bucket i ends at 0.1 ms * 2^(i/4); the last one is
// open). A bucket's count goes to the grid bucket holding its geometric
// midpoint, so a quantile read off the grid is within a grid bucket (19%)
// of one read off the source buckets when those are finer, and within the
// source bucket when they are coarser: plenty to tell 100 ms from 2 s.
const (
	LatBuckets = 96
	latFirst   = 1e-4 // seconds: the end of grid bucket 0
)

// LatHist is a latency histogram on the grid.
type LatHist [LatBuckets]uint64

// latBound is the upper end of grid bucket i, in seconds.
func latBound(i int) float64 { return latFirst * math.Exp2(float64(i)/4) }

// latIndex is the grid bucket of a value in seconds.
func latIndex(v float64) int {
	if !(v > latFirst) {
		return 0
	}
	i := int(math.Ceil(4 * math.Log2(v/latFirst)))
	return min(max(i, 0), LatBuckets-1)
}

// UnitScale is the factor that turns a metric's unit into seconds; ok is
// false for units that are not durations.
func UnitScale(unit string) (float64, bool) {
	switch strings.TrimSpace(unit) {
	case "s", "", "{s}", "seconds":
		return 1, true
	case "ms", "milliseconds":
		return 1e-3, true
	case "us", "µs", "microseconds":
		return 1e-6, true
	case "ns", "nanoseconds":
		return 1e-9, true
	}
	return 0, false
}

// AddExplicit adds an explicit-bucket histogram point (bounds in the
// metric's unit, scaled to seconds by scale) to h.
func (h *LatHist) AddExplicit(bounds []float64, counts []uint64, scale float64) {
	if len(counts) != len(bounds)+1 {
		return // malformed: no bucket can be placed with certainty
	}
	for j, n := range counts {
		if n == 0 {
			continue
		}
		var mid float64
		switch {
		case len(bounds) == 0:
			continue // a single (-inf, +inf) bucket says nothing of latency
		case j == 0:
			mid = bounds[0] / 2
		case j == len(bounds):
			mid = bounds[j-1] * 1.5
		case bounds[j-1] <= 0:
			mid = bounds[j] / 2
		default:
			mid = math.Sqrt(bounds[j-1] * bounds[j])
		}
		h[latIndex(mid*scale)] += n
	}
}

// AddExponential adds the zero and positive buckets of an exponential
// histogram point: bucket offset+i covers (base^(offset+i), base^(offset+i+1)]
// with base = 2^(2^-scale).
func (h *LatHist) AddExponential(scale, offset int32, zero uint64, counts []uint64, unitScale float64) {
	h[0] += zero
	if scale < -10 || scale > 20 {
		return
	}
	for i, n := range counts {
		if n == 0 {
			continue
		}
		// The geometric midpoint of the bucket: base^(index+0.5).
		mid := math.Exp2((float64(offset) + float64(i) + 0.5) * math.Exp2(-float64(scale)))
		h[latIndex(mid*unitScale)] += n
	}
}

// Sparse lists the non-empty buckets as (index, count) pairs, the form
// workers publish.
func (h *LatHist) Sparse() [][2]uint64 {
	var out [][2]uint64
	for i, n := range h {
		if n > 0 {
			out = append(out, [2]uint64{uint64(i), n})
		}
	}
	return out
}

// FromSparse fills h from (index, count) pairs, ignoring bad indexes.
func (h *LatHist) FromSparse(pairs [][2]uint64) {
	*h = LatHist{}
	for _, p := range pairs {
		if p[0] < LatBuckets {
			h[p[0]] += p[1]
		}
	}
}

// slowerThan estimates how many requests took longer than threshold
// seconds: the buckets above it, and the share of the bucket holding it
// that lies above it, geometrically.
func (h *LatHist) slowerThan(threshold float64) uint64 {
	k := latIndex(threshold)
	var n float64
	for i := k + 1; i < LatBuckets; i++ {
		n += float64(h[i])
	}
	if hi := latBound(k); h[k] > 0 && threshold < hi {
		lo := hi / math.Exp2(0.25)
		if k == 0 {
			n += float64(h[k]) * (1 - threshold/hi)
		} else if threshold <= lo {
			n += float64(h[k])
		} else {
			n += float64(h[k]) * math.Log(hi/threshold) / math.Log(hi/lo)
		}
	}
	return uint64(math.Round(n))
}

func (h *LatHist) total() (n uint64) {
	for _, c := range h {
		n += c
	}
	return n
}

// quantile reads the q-quantile off the grid, interpolating geometrically
// inside the bucket it falls in.
func latQuantile(counts []float64, q float64) (float64, bool) {
	var total float64
	for _, c := range counts {
		total += c
	}
	if total <= 0 {
		return 0, false
	}
	rank, cum := q*total, 0.0
	for i, c := range counts {
		if c <= 0 {
			continue
		}
		if cum+c >= rank {
			hi := latBound(i)
			lo := hi / math.Exp2(0.25)
			if i == 0 {
				return hi * (rank - cum) / c, true
			}
			return lo * math.Pow(hi/lo, (rank-cum)/c), true
		}
		cum += c
	}
	return latBound(LatBuckets - 1), true
}

// latBaseline is the exponentially weighted latency distribution of a key.
type latBaseline struct {
	counts  [LatBuckets]float64
	minutes float64
	last    int64
}

func (b *latBaseline) decayed(m int64, halfLife float64) (out [LatBuckets]float64, minutes float64) {
	if b.minutes == 0 {
		return out, 0
	}
	f := math.Exp2(-float64(m-b.last) / 60 / halfLife)
	for i, c := range b.counts {
		out[i] = c * f
	}
	return out, b.minutes * f
}

func (b *latBaseline) add(m int64, h *LatHist, halfLife float64) {
	b.counts, b.minutes = b.decayed(m, halfLife)
	for i, n := range h {
		b.counts[i] += float64(n)
	}
	b.minutes++
	b.last = m
}

// latencyTest judges minute m's latency against the key's baseline: the
// quantile moved by both effect sizes, and significantly more requests
// than the baseline's 1-Quantile share are slower than the baseline
// quantile's bucket.
func latencyTest(r *Rules, b *latBaseline, m int64, h *LatHist) verdict {
	lr := r.Latency
	if !lr.Enabled || h == nil {
		return verdict{}
	}
	n := h.total()
	if n < lr.MinRequests {
		return verdict{}
	}
	base, minutes := b.decayed(m, lr.HalfLifeMinutes)
	if minutes < lr.MinMinutes {
		return verdict{}
	}
	qb, ok := latQuantile(base[:], lr.Quantile)
	if !ok {
		return verdict{}
	}
	var cur [LatBuckets]float64
	for i, c := range h {
		cur[i] = float64(c)
	}
	qm, _ := latQuantile(cur[:], lr.Quantile)
	if qm < lr.MinRelative*qb || qm-qb < lr.MinAbsolute {
		return verdict{}
	}
	// Requests slower than the baseline quantile's bucket, and the share
	// of the baseline that was.
	edge := latIndex(qb)
	var slow uint64
	var baseSlow, baseTotal float64
	for i := range h {
		baseTotal += base[i]
		if i > edge {
			slow += h[i]
			baseSlow += base[i]
		}
	}
	p0 := max((baseSlow+0.5)/(baseTotal+1), 1-lr.Quantile)
	p := BinomialUpperTail(int64(slow), int64(n), min(p0, 1))
	if p >= lr.Alpha {
		return verdict{}
	}
	return verdict{bad: true, signal: SignalLatency, reason: fmt.Sprintf(
		"p%s %s in %s vs a baseline of %s (%d of %d requests slower than %s, baseline %s), p %s",
		strings.TrimPrefix(fmt.Sprintf("%g", lr.Quantile*100), "0"), dur(qm), clock(m), dur(qb), slow, n, dur(latBound(edge)), pct(p0), pval(p))}
}

// dur prints seconds the way people read latencies.
func dur(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", s*1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0fms", s*1e3)
	}
	return fmt.Sprintf("%.2gs", s)
}
