package detect

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var otelBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// latencyPoints simulates one cumulative http.server.request.duration
// series of a service: rate requests a minute whose durations are
// lognormal with median med(minute) seconds and spread sigma.
func latencyPoints(seed uint64, from, to int, rate float64, med func(int) float64, resetAt int) []Point {
	rng := rand.New(rand.NewPCG(seed, 11))
	cum := make([]uint64, len(otelBounds)+1)
	var count uint64
	start := t0.Add(time.Duration(from) * time.Minute)
	var out []Point
	for m := from; m < to; m++ {
		if m == resetAt { // a process restart: counters from zero
			clear(cum)
			count, start = 0, t0.Add(time.Duration(m)*time.Minute)
		}
		n := poisson(rng, rate)
		for i := uint64(0); i < n; i++ {
			v := med(m) * math.Exp(rng.NormFloat64()*0.5)
			j := 0
			for j < len(otelBounds) && v > otelBounds[j] {
				j++
			}
			cum[j]++
		}
		count += n
		var h LatHist
		h.AddExplicit(otelBounds, cum, 1)
		out = append(out, Point{Series: 1, Service: "api", Environment: "production", Version: "v1",
			Start: start.UnixNano(), Time: t0.Add(time.Duration(m)*time.Minute + 59*time.Second).UnixNano(), Count: count, Lat: h.Sparse()})
	}
	return out
}

func detectPoints(r Rules, pts []Point) []Transition {
	d, deltas := NewDetector(r), NewDeltas()
	var out []Transition
	last := int64(0)
	for _, p := range pts {
		if a := deltas.Add(p); a.Requests > 0 || a.Lat != nil {
			d.Observe(a)
			last = max(last, a.Minute)
		}
		out = append(out, d.Advance()...)
	}
	for m := int64(1); m <= 15; m++ {
		d.Observe(Aggregate{Service: "clock", Environment: "production", Minute: last + m*60, Total: 1})
		out = append(out, d.Advance()...)
	}
	return out
}

func TestLatencyRule(t *testing.T) {
	normal := func(int) float64 { return 0.05 } // p95 about 110 ms
	slow := func(m int) float64 {
		if m >= 0 && m < 30 {
			return 1 // p95 about 2.3 s
		}
		return 0.05
	}
	got := openings(detectPoints(DefaultRules(), latencyPoints(1, -120, 60, 300, slow, -1000)), "api")
	if len(got) != 1 || got[0].Signal != SignalLatency || !got[0].StartedAt.Equal(t0) {
		t.Fatalf("latency regression: %+v", got)
	}
	if !strings.HasPrefix(got[0].Reason, "p95 ") || !strings.Contains(got[0].Reason, "vs a baseline of 1") {
		t.Fatalf("reason: %s", got[0].Reason)
	}
	t.Log(got[0].Reason)
	// Ordinary latency, a counter reset in the middle: nothing.
	if got := openings(detectPoints(DefaultRules(), latencyPoints(2, -120, 120, 300, normal, 30)), "api"); len(got) != 0 {
		t.Fatalf("steady latency opened %+v", got)
	}
	// Every request in the first bucket (below every bound): nothing, and
	// no division by zero on the way.
	fast := func(int) float64 { return 0.0001 }
	if got := openings(detectPoints(DefaultRules(), latencyPoints(3, -120, 60, 300, fast, -1000)), "api"); len(got) != 0 {
		t.Fatalf("all-fast histograms opened %+v", got)
	}
	// A one-minute slow spike does not open.
	spike := func(m int) float64 {
		if m == 0 {
			return 2
		}
		return 0.05
	}
	if got := openings(detectPoints(DefaultRules(), latencyPoints(4, -120, 60, 300, spike, -1000)), "api"); len(got) != 0 {
		t.Fatalf("one slow minute opened %+v", got)
	}
}

func TestLatHist(t *testing.T) {
	var h LatHist
	h.AddExplicit(otelBounds, []uint64{0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 1) // all in (75ms, 100ms]
	q, _ := latQuantile(floatCounts(&h), 0.95)
	if q < 0.075 || q > 0.11 { // the grid keeps it within one of its buckets (19%)
		t.Fatalf("p95 of (75ms, 100ms] = %v", q)
	}
	// Milliseconds scale to seconds.
	var ms LatHist
	ms.AddExplicit([]float64{75, 100}, []uint64{0, 100, 0}, 1e-3)
	if ms != h {
		t.Fatal("a histogram in ms lands elsewhere than the same in seconds")
	}
	// Exponential, scale 3: buckets of 2^(1/8); index 24 is (8, 8.7] units.
	var e LatHist
	e.AddExponential(3, 24, 0, []uint64{10}, 1e-3) // 8-8.7 ms
	q, _ = latQuantile(floatCounts(&e), 0.5)
	if q < 0.0075 || q > 0.0095 {
		t.Fatalf("median of an exponential bucket at 8-8.7ms = %v", q)
	}
	// Malformed: counts that do not match the bounds add nothing.
	var bad LatHist
	bad.AddExplicit(otelBounds, []uint64{1, 2}, 1)
	bad.AddExponential(99, 0, 0, []uint64{5}, 1)
	if bad.total() != 0 {
		t.Fatal("malformed histograms counted")
	}
	var round LatHist
	round.FromSparse(append(h.Sparse(), [2]uint64{LatBuckets + 5, 9}))
	if round != h {
		t.Fatal("sparse round trip")
	}
}

func floatCounts(h *LatHist) []float64 {
	out := make([]float64, LatBuckets)
	for i, c := range h {
		out[i] = float64(c)
	}
	return out
}

func TestLatencySLO(t *testing.T) {
	// 99.5% of requests under 500 ms. The latency rule is off for the
	// service, so only the burn rate can see its median going from 50 ms
	// to 300 ms (about 15% of requests slower than 500 ms: 30 times the
	// budget); the hour's share passes 14.4 x 0.5% after half an hour.
	r, err := ParseRules([]byte(`{"slos": [{"service": "api", "objective": 99.5, "indicator": "latency", "threshold_seconds": 0.5}],
		"services": [{"service": "api", "latency": {"enabled": false}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	slower := func(m int) float64 {
		if m >= 0 {
			return 0.3
		}
		return 0.05
	}
	got := openings(detectPoints(r, latencyPoints(5, -420, 90, 300, slower, -1000)), "api")
	if len(got) != 1 || got[0].Signal != SignalSLO {
		t.Fatalf("latency SLO: %+v", got)
	}
	if start := got[0].StartedAt.Sub(t0); start < 20*time.Minute || start > 45*time.Minute {
		t.Fatalf("latency SLO opened at %v: %s", start, got[0].Reason)
	}
	t.Log(got[0].Reason)
	r.SLOs = nil
	if got := openings(detectPoints(r, latencyPoints(5, -420, 90, 300, slower, -1000)), "api"); len(got) != 0 {
		t.Fatalf("without the objective: %+v", got)
	}
	// The estimate of requests slower than a threshold.
	var h LatHist
	h.AddExplicit(otelBounds, []uint64{0, 0, 0, 0, 0, 0, 50, 50, 0, 0, 0, 0, 0, 0, 0}, 1) // (100ms, 250ms] and (250ms, 500ms]
	if n := h.slowerThan(0.25); n < 45 || n > 55 {
		t.Fatalf("slower than 250 ms: %d of 100, want about 50", n)
	}
	if n := h.slowerThan(2); n != 0 {
		t.Fatalf("slower than 2 s: %d, want 0", n)
	}
	if n := h.slowerThan(0.01); n != 100 {
		t.Fatalf("slower than 10 ms: %d, want 100", n)
	}
}
