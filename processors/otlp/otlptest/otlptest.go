// Package otlptest builds OTLP export requests for tests and benchmarks:
// realistic log records (the shape faultline-bench and the Collector
// exporter baseline it compares with are measured on: 10 resource
// attributes, 5 log attributes, a 100-byte body, about 327 bytes each in
// protobuf) and a metrics request with every point type.
package otlptest

import (
	"fmt"
	"math"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// Base is the event time of generated records.
var Base = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

// Logs returns n realistic log records of one resource; record i has the
// body "<id>-<i>: ..." padded to 100 bytes, so (id, i) identifies it.
func Logs(id string, n int) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	PutResource(rl.Resource().Attributes())
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("github.com/shop/checkout")
	sl.Scope().SetVersion("1.4.0")
	recs := sl.LogRecords()
	recs.EnsureCapacity(n)
	for i := 0; i < n; i++ {
		lr := recs.AppendEmpty()
		ts := pcommon.NewTimestampFromTime(Base.Add(time.Duration(i) * time.Millisecond))
		lr.SetTimestamp(ts)
		lr.SetObservedTimestamp(ts)
		if i%50 == 0 {
			lr.SetSeverityNumber(plog.SeverityNumberError)
			lr.SetSeverityText("ERROR")
		} else {
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetSeverityText("INFO")
		}
		body := fmt.Sprintf("%s-%d: charged card for order, provider=stripe latency_ms=%d", id, i, 20+i%200)
		for len(body) < 100 {
			body += "."
		}
		lr.Body().SetStr(body)
		var tid [16]byte
		var sid [8]byte
		tid[0], tid[15], sid[0] = byte(i), byte(i>>8), byte(i)
		lr.SetTraceID(tid)
		lr.SetSpanID(sid)
		la := lr.Attributes()
		la.PutStr("http.route", "/api/checkout")
		la.PutStr("http.request.method", "POST")
		la.PutInt("http.response.status_code", 200)
		la.PutStr("user_agent.original", "Mozilla/5.0")
		la.PutDouble("duration_ms", float64(20+i%200)+0.5)
	}
	return ld
}

// LogsRequest is Logs encoded as an ExportLogsServiceRequest protobuf.
func LogsRequest(id string, n int) []byte {
	b, err := plogotlp.NewExportRequestFromLogs(Logs(id, n)).MarshalProto()
	if err != nil {
		panic(err) // building from valid pdata cannot fail
	}
	return b
}

// Metrics returns one request with a point of every type, including
// exemplars, a NaN gauge, attributes of every value type and an empty
// histogram.
func Metrics() pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
	ra := rm.Resource().Attributes()
	ra.PutStr("service.name", "ledger")
	ra.PutStr("deployment.environment", "staging") // the older key
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("ledger/metrics")
	ts := pcommon.NewTimestampFromTime(Base)
	start := pcommon.NewTimestampFromTime(Base.Add(-time.Minute))

	g := sm.Metrics().AppendEmpty()
	g.SetName("queue.depth")
	g.SetUnit("{item}")
	gp := g.SetEmptyGauge().DataPoints().AppendEmpty()
	gp.SetTimestamp(ts)
	gp.SetIntValue(42)
	gp.Attributes().PutBool("primary", true)
	gp.Attributes().PutEmptyBytes("id").FromRaw([]byte{1, 2, 3})
	sl := gp.Attributes().PutEmptySlice("zones")
	sl.AppendEmpty().SetStr("a")
	sl.AppendEmpty().SetInt(2)
	mp := gp.Attributes().PutEmptyMap("owner")
	mp.PutStr("team", "payments")
	ex := gp.Exemplars().AppendEmpty()
	ex.SetTimestamp(ts)
	ex.SetDoubleValue(41.5)
	ex.SetTraceID([16]byte{0xab, 15: 0xcd})
	ex.SetSpanID([8]byte{0xef})
	ex.FilteredAttributes().PutStr("user", "u1")
	g2 := sm.Metrics().AppendEmpty()
	g2.SetName("temperature")
	g2p := g2.SetEmptyGauge().DataPoints().AppendEmpty()
	g2p.SetTimestamp(ts)
	g2p.SetDoubleValue(math.NaN())

	s := sm.Metrics().AppendEmpty()
	s.SetName("http.server.requests")
	sum := s.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	sp := sum.DataPoints().AppendEmpty()
	sp.SetStartTimestamp(start)
	sp.SetTimestamp(ts)
	sp.SetDoubleValue(1234.5)

	h := sm.Metrics().AppendEmpty()
	h.SetName("http.server.request.duration")
	h.SetUnit("s")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	hp := hist.DataPoints().AppendEmpty()
	hp.SetStartTimestamp(start)
	hp.SetTimestamp(ts)
	hp.SetCount(10)
	hp.SetSum(1.5)
	hp.SetMin(0.01)
	hp.SetMax(0.9)
	hp.ExplicitBounds().FromRaw([]float64{0.1, 0.5})
	hp.BucketCounts().FromRaw([]uint64{6, 3, 1})
	hp.Attributes().PutInt("http.response.status_code", 503)
	hist.DataPoints().AppendEmpty().SetTimestamp(ts) // empty point

	e := sm.Metrics().AppendEmpty()
	e.SetName("rpc.duration")
	eh := e.SetEmptyExponentialHistogram()
	eh.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	ep := eh.DataPoints().AppendEmpty()
	ep.SetTimestamp(ts)
	ep.SetCount(7)
	ep.SetSum(3.5)
	ep.SetScale(2)
	ep.SetZeroCount(1)
	ep.Positive().SetOffset(-1)
	ep.Positive().BucketCounts().FromRaw([]uint64{1, 2, 3})
	ep.Negative().SetOffset(0)

	su := sm.Metrics().AppendEmpty()
	su.SetName("gc.pause")
	sp2 := su.SetEmptySummary().DataPoints().AppendEmpty()
	sp2.SetTimestamp(ts)
	sp2.SetCount(3)
	sp2.SetSum(0.3)
	q := sp2.QuantileValues().AppendEmpty()
	q.SetQuantile(0.5)
	q.SetValue(0.09)
	q = sp2.QuantileValues().AppendEmpty()
	q.SetQuantile(0.99)
	q.SetValue(0.2)
	return md
}

// MetricsRequest is Metrics as a protobuf request.
func MetricsRequest() []byte {
	b, err := pmetricotlp.NewExportRequestFromMetrics(Metrics()).MarshalProto()
	if err != nil {
		panic(err)
	}
	return b
}

// MetricsJSON is Metrics as an OTLP/JSON request.
func MetricsJSON() []byte {
	b, err := pmetricotlp.NewExportRequestFromMetrics(Metrics()).MarshalJSON()
	if err != nil {
		panic(err)
	}
	return b
}

// PutResource sets the ten resource attributes of a realistic Kubernetes
// service (checkout in production) on a.
func PutResource(a pcommon.Map) {
	a.PutStr("service.name", "checkout")
	a.PutStr("service.version", "v2.3.1")
	a.PutStr("service.namespace", "shop")
	a.PutStr("service.instance.id", "checkout-7d9f8b6c5-x2x7q")
	a.PutStr("deployment.environment.name", "production")
	a.PutStr("host.name", "ip-10-0-12-34.ec2.internal")
	a.PutStr("k8s.namespace.name", "shop")
	a.PutStr("k8s.pod.name", "checkout-7d9f8b6c5-x2x7q")
	a.PutStr("cloud.region", "eu-west-1")
	a.PutStr("telemetry.sdk.language", "go")
}
