package detect

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// traffic is one version's traffic of a service for a span of minutes:
// rate records a minute (Poisson) at an error ratio that itself jitters
// from minute to minute by a lognormal factor (real error ratios are
// overdispersed: they vary more than a binomial would).
type traffic struct {
	from, to int // minutes relative to t0, [from, to)
	version  string
	rate     float64
	ratio    float64
	jitter   float64 // sigma of the lognormal factor on ratio; 0.3 is ordinary noise
}

// simulate turns traffic into per-minute aggregates of one service, in
// minute order, deterministic from the seed.
func simulate(seed uint64, svc string, tr ...traffic) []Aggregate {
	rng := rand.New(rand.NewPCG(seed, 7))
	byMinute := map[int][]Aggregate{}
	lo, hi := math.MaxInt, math.MinInt
	for _, x := range tr {
		for m := x.from; m < x.to; m++ {
			n := poisson(rng, x.rate)
			r := x.ratio
			if x.jitter > 0 {
				r *= math.Exp(rng.NormFloat64()*x.jitter - x.jitter*x.jitter/2)
			}
			r = min(r, 1)
			var e uint64
			for i := uint64(0); i < n; i++ {
				if rng.Float64() < r {
					e++
				}
			}
			a := agg(svc, m, n, e)
			a.Version = x.version
			byMinute[m] = append(byMinute[m], a)
			lo, hi = min(lo, m), max(hi, m)
		}
	}
	var out []Aggregate
	for m := lo; m <= hi; m++ {
		out = append(out, byMinute[m]...)
	}
	return out
}

func poisson(rng *rand.Rand, lambda float64) uint64 {
	if lambda > 50 { // normal approximation, plenty for traffic
		return uint64(max(0, math.Round(lambda+rng.NormFloat64()*math.Sqrt(lambda))))
	}
	l, k, p := math.Exp(-lambda), uint64(0), 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// detectAll runs aggregates through a detector minute by minute, with a
// clock service keeping event time moving past the end.
func detectAll(r Rules, aggs []Aggregate) []Transition {
	d := NewDetector(r)
	var out []Transition
	last := int64(0)
	for _, a := range aggs {
		d.Observe(a)
		last = max(last, a.Minute)
		out = append(out, d.Advance()...)
	}
	for m := int64(1); m <= 15; m++ {
		d.Observe(Aggregate{Service: "clock", Environment: "production", Minute: last + m*60, Total: 1})
		out = append(out, d.Advance()...)
	}
	return out
}

func openings(tr []Transition, svc string) []Transition {
	var out []Transition
	for _, t := range tr {
		if t.Service == svc && !t.Resolved && !t.Retracted {
			out = append(out, t)
		}
	}
	return out
}

func TestBaselineRule(t *testing.T) {
	const warm = -120 // two hours of history before t0
	for _, tc := range []struct {
		name    string
		traffic []traffic
		opens   int    // minute relative to t0 the incident starts; -1000 for none
		signal  string // when it opens
		within  int    // minutes from the start; it may begin this much later
	}{
		{"steady 8% never opens", []traffic{{warm, 240, "v1", 400, 0.08, 0.3}}, -1000, "", 0},
		{"steady 8% with a traffic surge never opens", []traffic{{warm, 0, "v1", 400, 0.08, 0.3}, {0, 15, "v1", 2000, 0.08, 0.3}, {15, 240, "v1", 400, 0.08, 0.3}}, -1000, "", 0},
		{"two minutes at twice a noisy baseline do not open", []traffic{{warm, 0, "v1", 300, 0.06, 0.3}, {0, 2, "v1", 300, 0.12, 0}, {2, 60, "v1", 300, 0.06, 0.3}}, -1000, "", 0},
		{"a one-minute spike at ten times the baseline does not open", []traffic{{warm, 0, "v1", 300, 0.01, 0.3}, {0, 1, "v1", 300, 0.1, 0}, {1, 60, "v1", 300, 0.01, 0.3}}, -1000, "", 0},
		{"1% to 25% on a busy service opens at once", []traffic{{warm, 0, "v1", 1500, 0.01, 0.3}, {0, 30, "v1", 1500, 0.25, 0}, {30, 60, "v1", 1500, 0.01, 0.3}}, 0, SignalErrors, 0},
		{"8% to 30% on a noisy service opens", []traffic{{warm, 0, "v1", 400, 0.08, 0.3}, {0, 20, "v1", 400, 0.3, 0.1}, {20, 60, "v1", 400, 0.08, 0.3}}, 0, SignalErrors, 0},
		{"five requests a minute from 0 to 60% opens within minutes", []traffic{{warm, 0, "v1", 5, 0, 0}, {0, 20, "v1", 5, 0.6, 0}, {20, 60, "v1", 5, 0, 0}}, 0, SignalErrors, 3},
		{"a quiet service's single errors never open", []traffic{{warm, 240, "v1", 5, 0.01, 0.3}}, -1000, "", 0},
		{"one record a minute at 10% errors never opens", []traffic{{warm, 240, "v1", 1, 0.1, 0}}, -1000, "", 0},
		{"no traffic for an hour, then the same as before", []traffic{{warm, -60, "v1", 300, 0.01, 0.3}, {0, 60, "v1", 300, 0.01, 0.3}}, -1000, "", 0},
		{"two records a minute, every one an error from t0", []traffic{{warm, 0, "v1", 2, 0, 0}, {0, 30, "v1", 2, 1, 0}}, 0, SignalErrors, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 5; seed++ {
				got := openings(detectAll(DefaultRules(), simulate(seed, "svc", tc.traffic...)), "svc")
				if tc.opens == -1000 {
					if len(got) > 0 {
						t.Fatalf("seed %d: opened %+v", seed, got)
					}
					continue
				}
				if len(got) != 1 {
					t.Fatalf("seed %d: %d incidents %+v, want one", seed, len(got), got)
				}
				start := int(got[0].StartedAt.Sub(t0) / time.Minute)
				if start < tc.opens || start > tc.opens+tc.within || got[0].Signal != tc.signal {
					t.Fatalf("seed %d: started at %+d (%s: %s), want %+d..%+d (%s)", seed, start, got[0].Signal, got[0].Reason, tc.opens, tc.opens+tc.within, tc.signal)
				}
				if seed == 1 {
					t.Logf("%s", got[0].Reason)
				}
			}
		})
	}
}

func TestVersionRule(t *testing.T) {
	// v1 serves for two hours; v2 arrives at t0 as a canary with 10% of
	// the traffic and 40% errors (the service-level ratio stays near 4.5%).
	canary := []traffic{{-120, 40, "v1.9.0", 450, 0.005, 0.3}, {0, 20, "v1.10.0", 50, 0.4, 0}, {20, 40, "v1.10.0", 0, 0, 0}}
	got := openings(detectAll(DefaultRules(), simulate(3, "svc", canary...)), "svc")
	if len(got) != 1 || got[0].Signal != SignalVersion || got[0].Version != "v1.10.0" || got[0].StartedAt.After(t0.Add(3*time.Minute)) {
		t.Fatalf("canary: %+v", got)
	}
	if !strings.HasPrefix(got[0].Reason, "v1.10.0: 4") || !strings.Contains(got[0].Reason, "of traffic vs v1.9.0: 0.") {
		t.Fatalf("canary reason: %s", got[0].Reason)
	}
	t.Log(got[0].Reason)

	// Both versions as good as each other: nothing.
	same := []traffic{{-120, 40, "v1", 450, 0.02, 0.3}, {0, 40, "v2", 50, 0.02, 0.3}}
	if got := openings(detectAll(DefaultRules(), simulate(4, "svc", same...)), "svc"); len(got) != 0 {
		t.Fatalf("equal versions: %+v", got)
	}
	// A version with a single record, an error: not evidence.
	one := simulate(5, "svc", traffic{-120, 40, "v1", 450, 0.005, 0.3})
	for i, a := range one {
		if a.Minute == t0.Unix() {
			one = append(one[:i+1], append([]Aggregate{{Service: "svc", Environment: "production", Version: "v2", Minute: a.Minute, Total: 1, Errors: 1}}, one[i+1:]...)...)
			break
		}
	}
	if got := openings(detectAll(DefaultRules(), one), "svc"); len(got) != 0 {
		t.Fatalf("a single bad record of a new version opened %+v", got)
	}
}

func TestSLOBurn(t *testing.T) {
	r, err := ParseRules([]byte(`{"slos": [{"service": "svc", "objective": 99.9}],
		"services": [{"service": "svc", "baseline": {"min_absolute": 0.5}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	// 0.05% errors, then 2% from t0: 20x the budget. The baseline rule is
	// made blind (min_absolute 50%), so only the burn rate can see it: the
	// hour's ratio reaches 14.4 x 0.1% after about 43 minutes.
	tr := []traffic{{-420, 0, "v1", 1000, 0.0005, 0}, {0, 90, "v1", 1000, 0.02, 0}}
	got := openings(detectAll(r, simulate(1, "svc", tr...)), "svc")
	if len(got) != 1 || got[0].Signal != SignalSLO {
		t.Fatalf("slo: %+v", got)
	}
	if start := got[0].StartedAt.Sub(t0); start < 35*time.Minute || start > 50*time.Minute {
		t.Fatalf("slo burn opened at %v: %s", start, got[0].Reason)
	}
	t.Log(got[0].Reason)
	// Without the objective, the same traffic opens nothing.
	r.SLOs = nil
	if got := openings(detectAll(r, simulate(1, "svc", tr...)), "svc"); len(got) != 0 {
		t.Fatalf("without an SLO: %+v", got)
	}
}

func TestRulesFile(t *testing.T) {
	dir := t.TempDir()
	yml := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(yml, []byte(`
min_errors: 20
lateness: 3m
baseline:
  alpha: 1.0e-6
slos:
  - service: checkout
    environment: production
    objective: 99.5
services:
  - service: batch
    min_ratio: 0.2
    baseline: {min_relative: 4}
  - service: batch
    environment: staging
    open_after: 5
`), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRules(yml)
	if err != nil {
		t.Fatal(err)
	}
	if r.MinErrors != 20 || r.Lateness != 3*time.Minute || r.Baseline.Alpha != 1e-6 || r.Baseline.MinRelative != 2.5 {
		t.Fatalf("top level: %+v", r)
	}
	if b := r.For("batch", "production"); b.MinRatio != 0.2 || b.Baseline.MinRelative != 4 || b.Baseline.Alpha != 1e-6 || b.MinErrors != 20 || b.OpenAfter != 2 {
		t.Fatalf("batch override: %+v", b)
	}
	if b := r.For("batch", "staging"); b.OpenAfter != 5 || b.MinRatio != 0.05 {
		t.Fatalf("batch staging override: %+v", b)
	}
	if s := r.SLOFor("checkout", "production"); len(s) != 1 || s[0].Objective != 0.995 || s[0].Indicator != "errors" {
		t.Fatalf("slo: %+v", s)
	}
	if s := r.SLOFor("checkout", "staging"); len(s) != 0 {
		t.Fatalf("slo in staging: %+v", s)
	}
	for _, bad := range []struct{ body, want string }{
		{`{"min_ratio": 2}`, "min_ratio"},
		{`{"baseline": {"alpha": 0}}`, "baseline.alpha"},
		{`{"services": [{"min_ratio": 0.1}]}`, "service is required"},
		{`{"services": [{"service": "a", "lateness": "5m"}]}`, "lateness cannot be set per service"},
		{`{"services": [{"service": "a", "min_ratio": 7}]}`, "min_ratio"},
		{`{"slos": [{"service": "a", "objective": 100}]}`, "objective"},
		{`{"min_eror": 3}`, "unknown field"},
	} {
		if _, err := ParseRules([]byte(bad.body)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want an error naming %q", bad.body, err, bad.want)
		}
	}
}
