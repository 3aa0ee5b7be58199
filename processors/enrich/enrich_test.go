package enrich

import (
	"testing"
	"time"

	"github.com/faultline-dev/faultline/processors/deploys"
	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

func index() *deploys.Index {
	x := deploys.NewIndex()
	base := otlptest.Base
	for _, d := range []deploys.Deploy{
		{ID: "d1", Service: "checkout", Environment: "production", Version: "v2.3.0", Status: "succeeded", At: base.Add(-time.Hour)},
		{ID: "d2", Service: "checkout", Environment: "production", Version: "v2.3.1", Status: "succeeded", At: base.Add(500 * time.Millisecond)},
		{ID: "d3", Service: "checkout", Environment: "production", Version: "v2.4.0", Status: "failed", At: base.Add(700 * time.Millisecond)},
		{ID: "s1", Service: "checkout", Environment: "staging", Version: "v9", Status: "succeeded", At: base.Add(-time.Hour)},
	} {
		x.Add(d)
	}
	return x
}

func TestFill(t *testing.T) {
	b := otlp.NewBatch()
	if _, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, otlptest.LogsRequest("e", 1000)); err != nil { // 1 ms apart
		t.Fatal(err)
	}
	if _, err := b.Append(otlp.SignalMetrics, otlp.FormatProtobuf, otlptest.MetricsRequest()); err != nil {
		t.Fatal(err)
	}
	Fill(b, index())
	l := &b.Logs
	for i, want := range map[int]string{0: "d1", 499: "d1", 500: "d2", 999: "d2"} {
		if got := b.Src.String(l.DeployId[i]); got != want {
			t.Errorf("row %d (+%dms): DeployId %q, want %q (the failed deploy never goes live)", i, i, got, want)
		}
	}
	if v := b.Src.String(l.DeployVersion[600]); v != "v2.3.1" {
		t.Errorf("DeployVersion %q", v)
	}
	// ledger in staging (the older environment attribute) has no deploys.
	if id := b.Src.String(b.Gauge.DeployId[0]); id != "" {
		t.Errorf("metric row enriched with %q, want none", id)
	}
}

func BenchmarkFill(b *testing.B) {
	batch := otlp.NewBatch()
	for i := 0; i < 10; i++ {
		if _, err := batch.Append(otlp.SignalLogs, otlp.FormatProtobuf, otlptest.LogsRequest("b", 1000)); err != nil {
			b.Fatal(err)
		}
	}
	idx := index()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Fill(batch, idx)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.Records()), "ns/record")
}
