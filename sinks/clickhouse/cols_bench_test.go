package clickhouse

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// metricsRequest is an export request of one resource (10 attributes)
// holding 50 metrics of one kind with 20 points each (1000 points), every
// point with 3 attributes; histograms have 15 explicit bounds.
func metricsRequest(kind pmetric.MetricType, seq int) []byte {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	otlptest.PutResource(rm.Resource().Attributes())
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp")
	sm.Scope().SetVersion("0.60.0")
	ts := pcommon.NewTimestampFromTime(otlptest.Base.Add(time.Duration(seq) * time.Second))
	start := pcommon.NewTimestampFromTime(otlptest.Base.Add(-time.Hour))
	bounds := []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20}
	attrs := func(a pcommon.Map, j int) {
		a.PutStr("http.route", "/api/route/"+strconv.Itoa(j%5))
		a.PutStr("http.request.method", "GET")
		a.PutInt("http.response.status_code", int64(200+j%3))
	}
	for m := 0; m < 50; m++ {
		mt := sm.Metrics().AppendEmpty()
		mt.SetName(fmt.Sprintf("app.metric.%02d", m))
		mt.SetDescription("a metric of the benchmark")
		mt.SetUnit("s")
		for j := 0; j < 20; j++ {
			switch kind {
			case pmetric.MetricTypeGauge:
				if j == 0 {
					mt.SetEmptyGauge()
				}
				dp := mt.Gauge().DataPoints().AppendEmpty()
				dp.SetTimestamp(ts)
				dp.SetDoubleValue(float64(seq*j) + 0.5)
				attrs(dp.Attributes(), j)
			case pmetric.MetricTypeSum:
				if j == 0 {
					mt.SetEmptySum().SetIsMonotonic(true)
					mt.Sum().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
				}
				dp := mt.Sum().DataPoints().AppendEmpty()
				dp.SetStartTimestamp(start)
				dp.SetTimestamp(ts)
				dp.SetIntValue(int64(seq * j))
				attrs(dp.Attributes(), j)
			case pmetric.MetricTypeHistogram:
				if j == 0 {
					mt.SetEmptyHistogram().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
				}
				dp := mt.Histogram().DataPoints().AppendEmpty()
				dp.SetStartTimestamp(start)
				dp.SetTimestamp(ts)
				dp.ExplicitBounds().FromRaw(bounds)
				counts := dp.BucketCounts()
				counts.EnsureCapacity(len(bounds) + 1)
				var n uint64
				for k := 0; k <= len(bounds); k++ {
					c := uint64((seq + j + k) % 7)
					counts.Append(c)
					n += c
				}
				dp.SetCount(n)
				dp.SetSum(float64(n) * 0.1)
				dp.SetMin(0.001)
				dp.SetMax(12)
				attrs(dp.Attributes(), j)
			}
		}
	}
	b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		panic(err) // valid pdata
	}
	return b
}

// BenchmarkDecodeFill runs a worker's path from payloads to the bytes
// sent to ClickHouse, without the server: a worker's default batch of
// 50 requests of 1000 records or points is decoded into a reused Batch,
// filled into the writer's reused ch-go columns and encoded as a native
// block. allocs/point and B/point count every allocation over the run,
// divided by the rows; in steady state both should be near zero (the
// columns are kept across batches).
func BenchmarkDecodeFill(b *testing.B) {
	const requests = 50
	for _, bc := range []struct {
		name    string
		sig     otlp.Signal
		payload func(i int) []byte
		fill    func(w *TelemetryWriter, bt *otlp.Batch) proto.Input
	}{
		{"logs", otlp.SignalLogs, func(i int) []byte { return otlptest.LogsRequest("r"+strconv.Itoa(i), 1000) },
			func(w *TelemetryWriter, bt *otlp.Batch) proto.Input { return w.logs.fill(&bt.Src, &bt.Logs) }},
		{"gauge", otlp.SignalMetrics, func(i int) []byte { return metricsRequest(pmetric.MetricTypeGauge, i) },
			func(w *TelemetryWriter, bt *otlp.Batch) proto.Input { return w.gauge.fill(&bt.Src, &bt.Gauge) }},
		{"sum", otlp.SignalMetrics, func(i int) []byte { return metricsRequest(pmetric.MetricTypeSum, i) },
			func(w *TelemetryWriter, bt *otlp.Batch) proto.Input { return w.sum.fill(&bt.Src, &bt.Sum) }},
		{"histogram", otlp.SignalMetrics, func(i int) []byte { return metricsRequest(pmetric.MetricTypeHistogram, i) },
			func(w *TelemetryWriter, bt *otlp.Batch) proto.Input { return w.hist.fill(&bt.Src, &bt.Histogram) }},
	} {
		payloads := make([][]byte, requests)
		for i := range payloads {
			payloads[i] = bc.payload(i)
		}
		b.Run(bc.name, func(b *testing.B) {
			w := &TelemetryWriter{}
			w.logs.init()
			w.gauge.init()
			w.sum.init()
			w.hist.init()
			bt := otlp.NewBatch()
			var buf proto.Buffer
			batch := func() int {
				bt.Reset()
				for _, p := range payloads {
					if _, err := bt.Append(bc.sig, otlp.FormatProtobuf, p); err != nil {
						b.Fatal(err)
					}
				}
				in := bc.fill(w, bt)
				buf.Reset()
				rows := bt.Records()
				if err := (proto.Block{Columns: len(in), Rows: rows}).EncodeRawBlock(&buf, proto.Version, in); err != nil {
					b.Fatal(err)
				}
				in.Reset()
				return rows
			}
			batch() // warm up: the first batch sizes every column
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.ReportAllocs()
			b.ResetTimer()
			rows := 0
			for i := 0; i < b.N; i++ {
				rows += batch()
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(rows), "allocs/point")
			b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(rows), "B/point")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/point")
		})
	}
}
