package replay

import (
	"bytes"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

func TestRealisticDeterministic(t *testing.T) {
	a, ea := Realistic(1)
	b, eb := Realistic(1)
	if len(a) != len(b) || len(ea) != len(eb) {
		t.Fatalf("lengths differ: %d/%d requests, %d/%d expected", len(a), len(b), len(ea), len(eb))
	}
	for i := range a {
		if a[i].Path != b[i].Path || !a[i].At.Equal(b[i].At) || !bytes.Equal(a[i].Body, b[i].Body) {
			t.Fatalf("request %d differs between two builds with the same seed", i)
		}
	}
	for i := range ea {
		if ea[i] != eb[i] {
			t.Fatalf("expected incident %d differs: %+v, %+v", i, ea[i], eb[i])
		}
	}
	c, _ := Realistic(2)
	same := len(a) == len(c)
	for i := 0; same && i < len(a); i++ {
		same = bytes.Equal(a[i].Body, c[i].Body)
	}
	if same {
		t.Fatal("seeds 1 and 2 built the same requests")
	}
}

// decoded is what the realistic scenario's telemetry decodes to: per
// service, environment, version and minute, the log records and their
// errors, and the requests the histograms counted.
type decoded struct {
	logs    map[versionMinute]logCounts
	hist    map[versionMinute]*histCounts
	records int
}

type versionMinute struct {
	service, env, version string
	minute                int // from T0
}

type logCounts struct{ total, errors int }

type histCounts struct {
	total, failed uint64
	buckets       []uint64 // 2xx and 5xx together
}

// realistic1 is Realistic(1) decoded, shared by the tests: decoding 580k
// records with pdata takes a while under -race.
var realistic1 struct {
	once sync.Once
	exp  []Expected
	d    *decoded
	err  error
}

func decodedRealistic1(t *testing.T) ([]Expected, *decoded) {
	t.Helper()
	realistic1.once.Do(func() {
		var reqs []Request
		reqs, realistic1.exp = Realistic(1)
		realistic1.d, realistic1.err = decodeRealistic(reqs)
	})
	if realistic1.err != nil {
		t.Fatal(realistic1.err)
	}
	return realistic1.exp, realistic1.d
}

func decodeRealistic(reqs []Request) (*decoded, error) {
	d := &decoded{logs: map[versionMinute]logCounts{}, hist: map[versionMinute]*histCounts{}}
	type prev struct {
		start, time int64
		count       uint64
		buckets     []uint64
	}
	seen := map[string]prev{}
	// A series first seen after its resource's other series appeared
	// earlier (a 5xx series at its first failure) counts from zero.
	resources := map[string]int{} // -> the minute first seen
	minuteOf := func(ns int64) int { return int(math.Floor(float64(ns-T0.UnixNano()) / float64(time.Minute))) }
	for _, r := range reqs {
		switch r.Path {
		case PathLogs:
			req := plogotlp.NewExportRequest()
			if err := req.UnmarshalProto(r.Body); err != nil {
				return nil, fmt.Errorf("%s at %s: %w", r.Path, r.At, err)
			}
			rls := req.Logs().ResourceLogs()
			for i := 0; i < rls.Len(); i++ {
				ra := rls.At(i).Resource().Attributes()
				svc, _ := ra.Get("service.name")
				env, _ := ra.Get("deployment.environment.name")
				ver, _ := ra.Get("service.version")
				recs := rls.At(i).ScopeLogs().At(0).LogRecords()
				for j := 0; j < recs.Len(); j++ {
					lr := recs.At(j)
					k := versionMinute{svc.Str(), env.Str(), ver.Str(), minuteOf(int64(lr.Timestamp()))}
					if k.minute != minuteOf(r.At.UnixNano()) {
						return nil, fmt.Errorf("%s/%s record at %s sent with the minute %s", k.service, k.env, lr.Timestamp(), r.At)
					}
					c := d.logs[k]
					c.total++
					if lr.SeverityNumber() >= plog.SeverityNumberError {
						c.errors++
					}
					d.logs[k] = c
					d.records++
				}
			}
		case PathMetrics:
			req := pmetricotlp.NewExportRequest()
			if err := req.UnmarshalProto(r.Body); err != nil {
				return nil, fmt.Errorf("%s at %s: %w", r.Path, r.At, err)
			}
			rms := req.Metrics().ResourceMetrics()
			for i := 0; i < rms.Len(); i++ {
				ra := rms.At(i).Resource().Attributes()
				svc, _ := ra.Get("service.name")
				env, _ := ra.Get("deployment.environment.name")
				ver, _ := ra.Get("service.version")
				dps := rms.At(i).ScopeMetrics().At(0).Metrics().At(0).Histogram().DataPoints()
				for j := 0; j < dps.Len(); j++ {
					dp := dps.At(j)
					code, _ := dp.Attributes().Get("http.response.status_code")
					id := fmt.Sprint(svc.Str(), env.Str(), ver.Str(), code.Int())
					k := versionMinute{svc.Str(), env.Str(), ver.Str(), minuteOf(int64(dp.Timestamp()))}
					cur := prev{int64(dp.StartTimestamp()), int64(dp.Timestamp()), dp.Count(), dp.BucketCounts().AsRaw()}
					p, ok := seen[id]
					seen[id] = cur
					res := fmt.Sprint(svc.Str(), env.Str(), ver.Str(), cur.start)
					first, known := resources[res]
					if !known {
						resources[res] = k.minute
					}
					known = known && first < k.minute
					var n uint64
					var b []uint64
					switch {
					case ok && p.start == cur.start:
						n, b = cur.count-p.count, make([]uint64, len(cur.buckets))
						for x := range b {
							b[x] = cur.buckets[x] - p.buckets[x]
						}
					case ok || known || cur.start >= T0.Add(time.Duration(k.minute)*time.Minute).UnixNano():
						// Pods (re)started, or the first failure.
						n, b = cur.count, cur.buckets
					default:
						continue // counts from before the scenario
					}
					h := d.hist[k]
					if h == nil {
						h = &histCounts{buckets: make([]uint64, len(LatencyBounds)+1)}
						d.hist[k] = h
					}
					h.total += n
					if code.Int() >= 500 {
						h.failed += n
					}
					for x := range b {
						h.buckets[x] += b[x]
					}
				}
			}
		}
	}
	return d, nil
}

// window sums a service's counts over minutes [from, to), of one version
// or (version "") of all.
func (d *decoded) window(service, env, version string, from, to int) (logCounts, histCounts) {
	var l logCounts
	h := histCounts{buckets: make([]uint64, len(LatencyBounds)+1)}
	for k, c := range d.logs {
		if k.service == service && k.env == env && (version == "" || k.version == version) && k.minute >= from && k.minute < to {
			l.total += c.total
			l.errors += c.errors
		}
	}
	for k, c := range d.hist {
		if k.service == service && k.env == env && (version == "" || k.version == version) && k.minute >= from && k.minute < to {
			h.total += c.total
			h.failed += c.failed
			for x := range c.buckets {
				h.buckets[x] += c.buckets[x]
			}
		}
	}
	return l, h
}

func ratio(l logCounts) float64 {
	if l.total == 0 {
		return 0
	}
	return float64(l.errors) / float64(l.total)
}

// p95 estimates the 95th percentile latency from bucket counts,
// interpolating within the bucket; 0 without requests.
func p95(h histCounts) float64 {
	var n uint64
	for _, c := range h.buckets {
		n += c
	}
	if n == 0 {
		return 0
	}
	want, acc := 0.95*float64(n), 0.0
	for i, c := range h.buckets {
		if acc+float64(c) >= want {
			lo := 0.0
			if i > 0 {
				lo = LatencyBounds[i-1]
			}
			hi := 2 * lo
			if i < len(LatencyBounds) {
				hi = LatencyBounds[i]
			}
			return lo + (hi-lo)*(want-acc)/float64(c)
		}
		acc += float64(c)
	}
	return LatencyBounds[len(LatencyBounds)-1]
}

// TestRealisticGroundTruth checks that each Expected incident is where the
// telemetry says it is: its signal is ordinary in the three minutes before
// Start and after End, and bad in the three minutes from Start and before
// End. The signal is read from the suspect version alone when there is one
// (a canary or a rolling deploy dilutes it at the service level), else from
// the whole service.
func TestRealisticGroundTruth(t *testing.T) {
	exp, d := decodedRealistic1(t)
	minute := func(at time.Time) int { return int(at.Sub(T0) / time.Minute) }
	for _, e := range exp {
		t.Run(e.Name, func(t *testing.T) {
			measure := func(from, to int) float64 {
				l, h := d.window(e.Service, e.Environment, e.SuspectVersion, from, to)
				if e.Signal == SignalLatency {
					return p95(h)
				}
				return ratio(l)
			}
			good, bad := 0.03, 0.06 // error ratios
			if e.Signal == SignalLatency {
				good, bad = 0.3, 1 // p95, seconds
			}
			s, end := minute(e.Start), minute(e.End)
			for _, w := range []struct {
				name     string
				from, to int
				bad      bool
			}{
				{"before Start", s - 3, s, false},
				{"from Start", s, s + 3, true},
				{"before End", end - 3, end, true},
				{"from End", end, end + 3, false},
			} {
				v := measure(w.from, w.to)
				if w.bad && v < bad || !w.bad && v > good {
					t.Errorf("%s (+%dm to +%dm): %.3f, want it %s", w.name, w.from, w.to, v, map[bool]string{true: fmt.Sprintf(">= %v", bad), false: fmt.Sprintf("<= %v", good)}[w.bad])
				}
			}
			if e.Signal == SignalLatency {
				l, _ := d.window(e.Service, e.Environment, "", s, end)
				if r := ratio(l); r > 0.01 {
					t.Errorf("a latency-only incident with an error ratio of %.3f", r)
				}
			}
		})
	}
}

// TestRealisticCounts checks that the telemetry decodes to what
// Realistic's doc says: rates, error ratios and latencies per service and
// phase, the traps, and logs that agree with the histograms.
func TestRealisticCounts(t *testing.T) {
	_, d := decodedRealistic1(t)
	if d.records < 400_000 || d.records > 600_000 {
		t.Errorf("%d log records, want 400k-600k", d.records)
	}
	meanDaily := func(from, to int) float64 {
		s := 0.0
		for m := from; m < to; m++ {
			s += daily(m)
		}
		return s / float64(to-from)
	}
	for _, c := range []struct {
		what                  string
		service, env, version string
		from, to              int
		rate                  float64 // per minute at the daily mean; 0: not checked
		errs                  float64 // error ratio
		p95Min, p95Max        float64 // seconds; 0: not checked
		daily                 bool
	}{
		{"frontend", "frontend", "production", "", -60, 70, 600, 0.002, 0.03, 0.12, true},
		{"frontend spike", "frontend", "production", "", 75, 76, 0, 0.02, 0, 0, true},
		{"frontend after a deploy that changes nothing", "frontend", "production", "v9.4.0", 100, 180, 600, 0.002, 0.03, 0.12, true},
		{"search", "search", "production", "", -60, 30, 300, 0.015, 0, 0, true},
		{"search surge", "search", "production", "", 30, 45, 1500, 0.015, 0, 0, true},
		{"search spike", "search", "production", "", 130, 131, 0, 0.15, 0, 0, true},
		{"checkout", "checkout", "production", "v2.7.0", -60, 20, 300, 0.01, 0.2, 0.4, true},
		{"checkout v2.8.0", "checkout", "production", "v2.8.0", 20, 40, 300, 0.25, 0, 0, true},
		{"checkout rolled back", "checkout", "production", "v2.7.0", 40, 180, 300, 0.01, 0, 0, true},
		{"cart canary v4.2.0", "cart", "production", "v4.2.0", 50, 70, 25, 0.4, 0, 0, true},
		{"cart during the canary", "cart", "production", "v4.1.0", 50, 70, 225, 0.005, 0, 0, true},
		{"cart as a whole", "cart", "production", "", 50, 70, 250, 0.0445, 0, 0, true},
		{"catalog", "catalog", "production", "v5.2.4", -60, 80, 150, 0.003, 0.07, 0.14, true},
		{"catalog v5.3.0", "catalog", "production", "v5.3.0", 80, 105, 150, 0.003, 1.6, 2.6, true},
		{"catalog v5.3.1", "catalog", "production", "v5.3.1", 105, 180, 150, 0.003, 0.07, 0.14, true},
		{"notifications", "notifications", "production", "", -60, 110, 150, 0.08, 0, 0, true},
		{"notifications blip", "notifications", "production", "", 110, 112, 0, 0.16, 0, 0, true},
		{"recommendations outage", "recommendations", "production", "", 100, 115, 120, 0.3, 2, 5, true},
		{"admin", "admin", "production", "v1.3.2", -60, 60, 5, 0, 0, 0, true},
		{"admin v1.4.0", "admin", "production", "v1.4.0", 60, 80, 5, 0.6, 0, 0, true},
		{"reports", "reports", "production", "", -60, 180, 2, 0.001, 2, 5, true},
		{"orders v3.1.0", "orders", "production", "v3.1.0", 129, 150, 180, 0.15, 0, 0, true},
		{"inventory v7.0.0 before the bug", "inventory", "production", "v7.0.0", 140, 144, 220, 0.004, 0, 0, true},
		{"inventory v7.0.0 failing", "inventory", "production", "v7.0.0", 146, 160, 198, 0.2, 0, 0, true},
		{"inventory v7.0.1 canary", "inventory", "production", "v7.0.1", 144, 160, 22, 0, 0, 0, true},
		{"inventory rolled back", "inventory", "production", "v6.9.2", 160, 180, 220, 0.004, 0, 0, true},
		{"staging", "checkout", "staging", "v2.8.0", -60, 90, 40, 0.005, 0, 0, false},
		{"staging rc1", "checkout", "staging", "v2.9.0-rc1", 90, 110, 40, 0.3, 0, 0, false},
	} {
		t.Run(c.what, func(t *testing.T) {
			l, h := d.window(c.service, c.env, c.version, c.from, c.to)
			n := float64(l.total)
			if c.service == "ledger" {
				n = float64(h.total)
			}
			if c.rate > 0 {
				want := c.rate * float64(c.to-c.from)
				if c.daily {
					want *= meanDaily(c.from, c.to)
				}
				if math.Abs(n-want) > 0.1*want+4*math.Sqrt(want) {
					t.Errorf("%.0f requests, want about %.0f", n, want)
				}
			}
			// The per-minute jitter (log-normal, 0.3) moves the true ratio:
			// allow three of its deviations, averaged over the minutes, and
			// four binomial ones on top.
			spread := math.Exp(3 * 0.3 / math.Sqrt(float64(c.to-c.from)))
			sd := math.Sqrt(c.errs * (1 - c.errs) / n)
			if r := ratio(l); r < c.errs/spread-4*sd || r > c.errs*spread+4*sd {
				t.Errorf("error ratio %.4f of %d records, want about %.4f", ratio(l), l.total, c.errs)
			}
			if p := p95(h); c.p95Max > 0 && (p < c.p95Min || p > c.p95Max) {
				t.Errorf("p95 %.3fs, want %.2f-%.2fs", p, c.p95Min, c.p95Max)
			}
		})
	}
	// The histograms count the requests the logs record, minute by minute.
	for k, l := range d.logs {
		if k.minute == realFrom {
			continue // the first points are the baseline of counts from before
		}
		h := d.hist[k]
		if h == nil || h.total != uint64(l.total) || h.failed != uint64(l.errors) {
			t.Errorf("%+v: logs %d records, %d errors; histograms %+v", k, l.total, l.errors, h)
		}
	}
}
