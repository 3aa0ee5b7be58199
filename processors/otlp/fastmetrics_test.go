package otlp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// metricTables are a batch's metric tables as view makes them, for
// comparisons.
func metricTables(b *Batch) []any {
	return []any{view(&b.Src, &b.Gauge), view(&b.Src, &b.Sum), view(&b.Src, &b.Histogram), view(&b.Src, &b.ExpHistogram), view(&b.Src, &b.Summary)}
}

// sameMetrics compares the tables as JSON: NaN is not equal to itself
// under reflect.DeepEqual, while view renders it as a string.
func sameMetrics(a, b *Batch) bool {
	ja, err := json.Marshal(metricTables(a))
	if err != nil {
		panic(err)
	}
	jb, err := json.Marshal(metricTables(b))
	if err != nil {
		panic(err)
	}
	return bytes.Equal(ja, jb)
}

// decodeMetricsBoth decodes p with the wire walker alone (no fallback) and
// with pdata alone.
func decodeMetricsBoth(p []byte) (lean, ref *Batch, leanErr, refErr error) {
	lean, ref = NewBatch(), NewBatch()
	_, leanErr = lean.appendMetricsProto(p)
	_, refErr = ref.appendMetricsPdata(FormatProtobuf, p)
	return
}

// checkMetrics holds the walker to pdata on p: when the walker decodes p,
// pdata does too and to the same rows; when it declines, it says so with
// errFallback and leaves nothing behind, and Append (walker, then pdata)
// gives pdata's rows or error.
func checkMetrics(t testing.TB, name string, p []byte) (walked bool) {
	t.Helper()
	lean, ref, le, re := decodeMetricsBoth(p)
	if le == nil {
		if re != nil {
			t.Fatalf("%s: the wire walker accepted what pdata rejects: %v", name, re)
		}
		if !sameMetrics(lean, ref) {
			t.Fatalf("%s: rows differ\nwire:  %+v\npdata: %+v", name, metricTables(lean), metricTables(ref))
		}
		return true
	}
	if !errors.Is(le, errFallback) {
		t.Fatalf("%s: the wire walker failed with %v, not errFallback", name, le)
	}
	if lean.Records() != 0 {
		t.Fatalf("%s: the wire walker declined but left %d rows", name, lean.Records())
	}
	full := NewBatch()
	_, fe := full.Append(SignalMetrics, FormatProtobuf, p)
	if (fe == nil) != (re == nil) || (fe != nil && !errors.Is(fe, ErrDecode)) {
		t.Fatalf("%s: Append returned %v, pdata %v", name, fe, re)
	}
	if fe == nil && !sameMetrics(full, ref) {
		t.Fatalf("%s: Append after the walker declined differs from pdata", name)
	}
	return false
}

func metricsProtoOf(md pmetric.Metrics) []byte {
	p, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		panic(err)
	}
	return p
}

// goldenMetrics is testdata/golden/name.otlp.json as protobuf; scalar
// drops its array and map values (which make the walker decline) so the
// walker decodes it on its own.
func goldenMetrics(t testing.TB, name string, scalar bool) []byte {
	j, err := os.ReadFile(filepath.Join("testdata", "golden", name+".otlp.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := pmetricotlp.NewExportRequest()
	if err := r.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	if scalar {
		dropNested(r.Metrics())
	}
	p, err := r.MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dropNested(md pmetric.Metrics) {
	nested := func(_ string, v pcommon.Value) bool {
		return v.Type() == pcommon.ValueTypeSlice || v.Type() == pcommon.ValueTypeMap
	}
	points := func(attrs pcommon.Map, ex pmetric.ExemplarSlice) {
		attrs.RemoveIf(nested)
		for _, e := range ex.All() {
			e.FilteredAttributes().RemoveIf(nested)
		}
	}
	for _, rm := range md.ResourceMetrics().All() {
		rm.Resource().Attributes().RemoveIf(nested)
		for _, sm := range rm.ScopeMetrics().All() {
			sm.Scope().Attributes().RemoveIf(nested)
			for _, m := range sm.Metrics().All() {
				m.Metadata().RemoveIf(nested)
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					for _, p := range m.Gauge().DataPoints().All() {
						points(p.Attributes(), p.Exemplars())
					}
				case pmetric.MetricTypeSum:
					for _, p := range m.Sum().DataPoints().All() {
						points(p.Attributes(), p.Exemplars())
					}
				case pmetric.MetricTypeHistogram:
					for _, p := range m.Histogram().DataPoints().All() {
						points(p.Attributes(), p.Exemplars())
					}
				case pmetric.MetricTypeExponentialHistogram:
					for _, p := range m.ExponentialHistogram().DataPoints().All() {
						points(p.Attributes(), p.Exemplars())
					}
				case pmetric.MetricTypeSummary:
					for _, p := range m.Summary().DataPoints().All() {
						p.Attributes().RemoveIf(nested)
					}
				}
			}
		}
	}
}

// randomMetrics builds a request of every metric type from seed:
// attributes of every value type (nested ones only if nested), exemplars
// with and without ids, int and double values, NaN and infinities, empty
// and missing fields, zero and huge timestamps, invalid UTF-8.
func randomMetrics(seed uint64, nested bool) pmetric.Metrics {
	r := rand.New(rand.NewPCG(seed, 1))
	strs := []string{"", "a", "service.name", "deployment.environment.name", "deployment.environment", "service.version", "bad\xff", "ünï", "x"}
	doubles := []float64{0, -0.0, 1.5, -2, 1e-7, 1e21, math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64, math.SmallestNonzeroFloat64}
	str := func() string { return strs[r.IntN(len(strs))] }
	dbl := func() float64 { return doubles[r.IntN(len(doubles))] }
	ts := func() pcommon.Timestamp {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return pcommon.Timestamp(math.MaxUint64)
		}
		return pcommon.Timestamp(r.Uint64() >> 2)
	}
	attrs := func(m pcommon.Map) {
		for range r.IntN(5) {
			k := str()
			switch r.IntN(8) {
			case 0:
				m.PutStr(k, str())
			case 1:
				m.PutInt(k, r.Int64()-r.Int64())
			case 2:
				m.PutDouble(k, dbl())
			case 3:
				m.PutBool(k, r.IntN(2) == 0)
			case 4:
				m.PutEmptyBytes(k).FromRaw([]byte(str()))
			case 5:
				m.PutEmpty(k)
			case 6:
				if nested {
					s := m.PutEmptySlice(k)
					s.AppendEmpty().SetStr(str())
					s.AppendEmpty().SetDouble(dbl())
				} else {
					m.PutStr(k, "long "+str()+string(make([]byte, r.IntN(300))))
				}
			case 7:
				if nested {
					m.PutEmptyMap(k).PutInt(str(), 1)
				} else {
					m.PutInt(k, int64(r.IntN(100)))
				}
			}
		}
	}
	exemplars := func(s pmetric.ExemplarSlice) {
		for range r.IntN(3) {
			e := s.AppendEmpty()
			e.SetTimestamp(ts())
			switch r.IntN(3) {
			case 0:
				e.SetDoubleValue(dbl())
			case 1:
				e.SetIntValue(r.Int64() - r.Int64())
			}
			if r.IntN(2) == 0 {
				var id [16]byte
				for i := range id {
					id[i] = byte(r.IntN(3))
				}
				e.SetTraceID(id)
			}
			if r.IntN(2) == 0 {
				e.SetSpanID([8]byte{byte(r.IntN(2)), 7: 1})
			}
			attrs(e.FilteredAttributes())
		}
	}
	temporality := func() pmetric.AggregationTemporality { return pmetric.AggregationTemporality(r.IntN(4)) }
	flags := func() pmetric.DataPointFlags { return pmetric.DataPointFlags(r.Uint32() % 3) }
	counts := func(s pcommon.UInt64Slice) {
		for range r.IntN(6) {
			s.Append(r.Uint64() >> uint(r.IntN(64)))
		}
	}
	number := func(p pmetric.NumberDataPoint) {
		attrs(p.Attributes())
		p.SetStartTimestamp(ts())
		p.SetTimestamp(ts())
		switch r.IntN(3) {
		case 0:
			p.SetDoubleValue(dbl())
		case 1:
			p.SetIntValue(r.Int64() - r.Int64())
		}
		p.SetFlags(flags())
		exemplars(p.Exemplars())
	}
	md := pmetric.NewMetrics()
	for range 1 + r.IntN(3) {
		rm := md.ResourceMetrics().AppendEmpty()
		if r.IntN(2) == 0 {
			rm.SetSchemaUrl(str())
		}
		attrs(rm.Resource().Attributes())
		if r.IntN(2) == 0 {
			rm.Resource().Attributes().PutStr("service.name", str())
		}
		for range r.IntN(3) {
			sm := rm.ScopeMetrics().AppendEmpty()
			sm.SetSchemaUrl(str())
			sm.Scope().SetName(str())
			sm.Scope().SetVersion(str())
			sm.Scope().SetDroppedAttributesCount(uint32(r.IntN(3)))
			attrs(sm.Scope().Attributes())
			for range r.IntN(6) {
				m := sm.Metrics().AppendEmpty()
				m.SetName(str())
				m.SetDescription(str())
				m.SetUnit(str())
				if r.IntN(4) == 0 {
					m.Metadata().PutStr(str(), str())
				}
				n := r.IntN(4)
				switch r.IntN(6) {
				case 0:
					g := m.SetEmptyGauge()
					for range n {
						number(g.DataPoints().AppendEmpty())
					}
				case 1:
					s := m.SetEmptySum()
					s.SetAggregationTemporality(temporality())
					s.SetIsMonotonic(r.IntN(2) == 0)
					for range n {
						number(s.DataPoints().AppendEmpty())
					}
				case 2:
					h := m.SetEmptyHistogram()
					h.SetAggregationTemporality(temporality())
					for range n {
						p := h.DataPoints().AppendEmpty()
						attrs(p.Attributes())
						p.SetStartTimestamp(ts())
						p.SetTimestamp(ts())
						p.SetCount(r.Uint64())
						if r.IntN(2) == 0 {
							p.SetSum(dbl())
						}
						if r.IntN(2) == 0 {
							p.SetMin(dbl())
							p.SetMax(dbl())
						}
						counts(p.BucketCounts())
						for range r.IntN(5) {
							p.ExplicitBounds().Append(dbl())
						}
						p.SetFlags(flags())
						exemplars(p.Exemplars())
					}
				case 3:
					h := m.SetEmptyExponentialHistogram()
					h.SetAggregationTemporality(temporality())
					for range n {
						p := h.DataPoints().AppendEmpty()
						attrs(p.Attributes())
						p.SetStartTimestamp(ts())
						p.SetTimestamp(ts())
						p.SetCount(r.Uint64())
						if r.IntN(2) == 0 {
							p.SetSum(dbl())
						}
						if r.IntN(2) == 0 {
							p.SetMin(dbl())
							p.SetMax(dbl())
						}
						p.SetScale(int32(r.IntN(41)) - 20)
						p.SetZeroCount(r.Uint64() >> 3)
						p.SetZeroThreshold(dbl())
						if r.IntN(3) > 0 {
							p.Positive().SetOffset(r.Int32() - r.Int32())
							counts(p.Positive().BucketCounts())
						}
						if r.IntN(3) > 0 {
							p.Negative().SetOffset(int32(r.IntN(10)) - 5)
							counts(p.Negative().BucketCounts())
						}
						p.SetFlags(flags())
						exemplars(p.Exemplars())
					}
				case 4:
					s := m.SetEmptySummary()
					for range n {
						p := s.DataPoints().AppendEmpty()
						attrs(p.Attributes())
						p.SetStartTimestamp(ts())
						p.SetTimestamp(ts())
						p.SetCount(r.Uint64())
						p.SetSum(dbl())
						for range r.IntN(4) {
							q := p.QuantileValues().AppendEmpty()
							q.SetQuantile(dbl())
							q.SetValue(dbl())
						}
						p.SetFlags(flags())
					}
				case 5: // no data: no rows
				}
			}
		}
	}
	return md
}

func TestMetricsWireWalkerMatchesPdata(t *testing.T) {
	scalar := otlptest.Metrics()
	dropNested(scalar)
	cases := []struct {
		name  string
		p     []byte
		walks bool // the wire walker decodes it without declining
	}{
		{"empty", nil, true},
		{"otlptest", otlptest.MetricsRequest(), false}, // array and map attributes
		{"otlptest, scalar values", metricsProtoOf(scalar), true},
		{"benchmark input", benchMetrics(20), true},
		{"logs as metrics", otlptest.LogsRequest("l", 3), false},
		{"unknown fields only", []byte{0xf8, 0x07, 0x01}, true},
	}
	for _, name := range []string{"gauge", "sum", "histogram", "exponential_histogram", "summary"} {
		cases = append(cases,
			struct {
				name  string
				p     []byte
				walks bool
			}{"golden " + name, goldenMetrics(t, name, false), false},
			struct {
				name  string
				p     []byte
				walks bool
			}{"golden " + name + ", scalar values", goldenMetrics(t, name, true), true})
	}
	for _, tc := range cases {
		// The golden inputs may or may not hold nested values: only the
		// scalar variants must walk.
		if walked := checkMetrics(t, tc.name, tc.p); tc.walks && !walked {
			_, err := NewBatch().appendMetricsProto(tc.p)
			t.Errorf("%s: the wire walker declined: %v", tc.name, err)
		}
	}
	walked := 0
	const n = 400
	for seed := range uint64(n) {
		name := fmt.Sprintf("random seed %d", seed)
		if checkMetrics(t, name+", scalar", metricsProtoOf(randomMetrics(seed, false))) {
			walked++
		} else {
			_, err := NewBatch().appendMetricsProto(metricsProtoOf(randomMetrics(seed, false)))
			t.Errorf("%s, scalar: the wire walker declined: %v", name, err)
		}
		checkMetrics(t, name+", nested", metricsProtoOf(randomMetrics(seed, true)))
	}
	// Into a batch already holding rows, several requests in a row.
	lean, ref := NewBatch(), NewBatch()
	for seed := range uint64(20) {
		p := metricsProtoOf(randomMetrics(seed, seed%3 == 0))
		if _, err := lean.Append(SignalMetrics, FormatProtobuf, p); err != nil {
			t.Fatal(err)
		}
		if _, err := ref.appendMetricsPdata(FormatProtobuf, p); err != nil {
			t.Fatal(err)
		}
	}
	if !sameMetrics(lean, ref) {
		t.Fatal("rows differ after a sequence of requests")
	}
}

// TestMetricsWireWalkerDeclines pins inputs the walker leaves to pdata,
// which decodes them (or rejects them) the same either way.
func TestMetricsWireWalkerDeclines(t *testing.T) {
	good := metricsProtoOf(randomMetrics(7, false))
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"truncated", good[:len(good)-3]},
		{"bad varint", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"resource_metrics of the wrong wire type", []byte{0x08, 0x01}},
		{"deprecated field 1000", []byte{0x0a, 0x03, 0xc2, 0x3e, 0x00}},
		{"gauge and sum in one metric", []byte{0x0a, 0x0a, 0x12, 0x08, 0x12, 0x06, 0x2a, 0x00, 0x3a, 0x00, 0x08, 0x00}},
		{"unpacked bucket counts", []byte{0x0a, 0x11, 0x12, 0x0f, 0x12, 0x0d, 0x4a, 0x0b, 0x0a, 0x09, 0x31, 1, 0, 0, 0, 0, 0, 0, 0}},
		{"trace id of 3 bytes", []byte{0x0a, 0x0d, 0x12, 0x0b, 0x12, 0x09, 0x2a, 0x07, 0x0a, 0x05, 0x2a, 0x03, 0x2a, 0x01, 2, 3}},
	} {
		if _, err := NewBatch().appendMetricsProto(tc.p); err == nil {
			t.Errorf("%s: the wire walker accepted it", tc.name)
		}
		checkMetrics(t, tc.name, tc.p)
	}
	// A request pdata rejects too: the error says where the walker stopped.
	_, err := NewBatch().Append(SignalMetrics, FormatProtobuf, []byte{0x0a, 0x04, 0x12, 0x02, 0x12, 0x05})
	if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "declined at scope_metrics") {
		t.Errorf("Append of a damaged request = %v; want ErrDecode naming scope_metrics", err)
	}
}

// FuzzMetricsWireWalker: on any input the wire walker does not panic, and
// whenever it decodes the input pdata accepts it too and gives the same
// rows. When pdata rejects an input, the walker declines it (errFallback)
// and Append returns pdata's error, wrapped in ErrDecode, with where the
// walker stopped. The walker also declines some inputs pdata accepts (see
// fastmetrics.go), which Append then decodes through pdata. The seeds are
// testdata/fuzz/FuzzMetricsWireWalker (see TestFuzzCorpus).
func FuzzMetricsWireWalker(f *testing.F) {
	f.Fuzz(func(t *testing.T, p []byte) {
		checkMetrics(t, "fuzz input", p)
	})
}

// benchMetrics is a request like an SDK's periodic export: one resource,
// n points each of a cumulative counter, a gauge and a 14-bucket latency
// histogram, with a few string attributes per point.
func benchMetrics(n int) []byte {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
	ra := rm.Resource().Attributes()
	ra.PutStr("service.name", "checkout")
	ra.PutStr("service.version", "2.4.1")
	ra.PutStr("deployment.environment.name", "production")
	ra.PutStr("host.name", "checkout-7d9f8b6c5-x2k4q")
	ra.PutStr("telemetry.sdk.language", "go")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp")
	sm.Scope().SetVersion("0.60.0")
	ts := pcommon.NewTimestampFromTime(otlptest.Base)
	start := ts - 60e9
	routes := []string{"/cart", "/checkout", "/api/v1/orders", "/healthz"}
	point := func(a pcommon.Map, i int) {
		a.PutStr("http.request.method", "GET")
		a.PutStr("http.route", routes[i%len(routes)])
		a.PutStr("http.response.status_code", fmt.Sprint(200+i%3))
		a.PutStr("server.address", "checkout.internal")
	}
	s := sm.Metrics().AppendEmpty()
	s.SetName("http.server.request.count")
	s.SetUnit("{request}")
	sum := s.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	g := sm.Metrics().AppendEmpty()
	g.SetName("http.server.active_requests")
	gauge := g.SetEmptyGauge()
	h := sm.Metrics().AppendEmpty()
	h.SetName("http.server.request.duration")
	h.SetUnit("s")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	bounds := []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	for i := range n {
		sp := sum.DataPoints().AppendEmpty()
		point(sp.Attributes(), i)
		sp.SetStartTimestamp(start)
		sp.SetTimestamp(ts)
		sp.SetIntValue(int64(1000 + i))
		gp := gauge.DataPoints().AppendEmpty()
		point(gp.Attributes(), i)
		gp.SetTimestamp(ts)
		gp.SetDoubleValue(float64(i % 7))
		hp := hist.DataPoints().AppendEmpty()
		point(hp.Attributes(), i)
		hp.SetStartTimestamp(start)
		hp.SetTimestamp(ts)
		hp.ExplicitBounds().FromRaw(bounds)
		counts := make([]uint64, len(bounds)+1)
		var total uint64
		for j := range counts {
			counts[j] = uint64((i + j) % 9)
			total += counts[j]
		}
		hp.BucketCounts().FromRaw(counts)
		hp.SetCount(total)
		hp.SetSum(float64(total) * 0.042)
		hp.SetMin(0.001)
		hp.SetMax(4.2)
		if i%10 == 0 {
			ex := hp.Exemplars().AppendEmpty()
			ex.SetTimestamp(ts)
			ex.SetDoubleValue(0.3)
			ex.SetTraceID([16]byte{1, 2, 3, 15: byte(i)})
			ex.SetSpanID([8]byte{4, 5, 7: byte(i)})
		}
	}
	return metricsProtoOf(md)
}

// runMetrics decodes p into batch, emptied first, on the walker or pdata.
func (c *appendCost) runMetrics(b *testing.B, batch *Batch, p []byte, pdata bool) {
	slowPath = pdata
	defer func() { slowPath = false }()
	batch.Reset()
	c0, t0 := otlptest.CPUTime(), time.Now()
	n, err := batch.Append(SignalMetrics, FormatProtobuf, p)
	c.wall += time.Since(t0)
	c.cpu += otlptest.CPUTime() - c0
	c.records += n
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppendMetrics decodes a 3000-point request (benchMetrics) on
// each path alone, then on both in turns ("ratio"), as BenchmarkAppendLogs
// does: ns/point and CPU per point, and the walker's figures as a fraction
// of pdata's measured in the same run.
func BenchmarkAppendMetrics(b *testing.B) {
	p := benchMetrics(1000)
	if _, err := NewBatch().appendMetricsProto(p); err != nil {
		b.Fatalf("the wire walker declines the benchmark input: %v", err)
	}
	for _, mode := range []struct {
		name  string
		pdata bool
	}{{"wire", false}, {"pdata", true}} {
		b.Run(mode.name, func(b *testing.B) {
			batch := NewBatch()
			var c appendCost
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.runMetrics(b, batch, p, mode.pdata)
			}
			b.ReportMetric(c.nsPerRecord(), "ns/point")
			b.ReportMetric(c.cpuPerRecord(), "CPU-us/point")
		})
	}
	b.Run("ratio", func(b *testing.B) {
		wb, pb := NewBatch(), NewBatch()
		var wire, ref appendCost
		const block = 16
		for done := 0; done < b.N; done += block {
			k := min(block, b.N-done)
			for range k {
				wire.runMetrics(b, wb, p, false)
			}
			for range k {
				ref.runMetrics(b, pb, p, true)
			}
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(wire.nsPerRecord()/ref.nsPerRecord(), "wire/pdata")
		b.ReportMetric(wire.cpuPerRecord()/ref.cpuPerRecord(), "wire/pdata-CPU")
	})
}
