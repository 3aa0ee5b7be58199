package clickhouse_test

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

func TestTelemetryWriteReadBackAndDedup(t *testing.T) {
	everySchema(t, testTelemetryWriteReadBackAndDedup)
}

func testTelemetryWriteReadBackAndDedup(t *testing.T, cfg clickhouse.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := clickhouse.NewTelemetryWriter(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	conn := chtest.Conn(t, cfg)

	b := otlp.NewBatch()
	if _, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, otlptest.LogsRequest("rt", 500)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(otlp.SignalMetrics, otlp.FormatProtobuf, otlptest.MetricsRequest()); err != nil {
		t.Fatal(err)
	}
	b.Logs.DeployId[7], b.Logs.DeployVersion[7] = b.Src.Copy("d-1"), b.Src.Copy("v2.3.1")

	// The same batch twice with one token is stored once; a third write
	// with another token is stored again.
	for i, token := range []string{"tok-a", "tok-a", "tok-b"} {
		if err := w.Write(ctx, b, token); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	count := func(q string) uint64 {
		t.Helper()
		var n uint64
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	for table, want := range map[string]uint64{
		"otel_logs": 1000, "otel_metrics_gauge": 4, "otel_metrics_sum": 2, "otel_metrics_histogram": 4,
		"otel_metrics_exponential_histogram": 2, "otel_metrics_summary": 2,
	} {
		if got := count("SELECT count() FROM " + table); got != want {
			t.Errorf("%s: %d rows, want %d (two distinct tokens)", table, got, want)
		}
		if cfg.Cluster == "" || len(cfg.Addr) > 1 {
			continue // on several shards, TestShardedReplicaKilled counts each node
		}
		// The rows went through the Distributed table into the shard's.
		if got := count("SELECT count() FROM " + table + "_local"); got != want {
			t.Errorf("%s_local: %d rows, want %d", table, got, want)
		}
	}

	// Values survive the trip.
	var body, svc, env, deployID, route string
	var sev uint8
	var ts time.Time
	if err := conn.QueryRow(ctx, `SELECT Body, ServiceName, ResourceAttributes['deployment.environment.name'], DeployId, LogAttributes['http.route'], SeverityNumber, Timestamp
		FROM otel_logs WHERE DeployId != '' LIMIT 1`).Scan(&body, &svc, &env, &deployID, &route, &sev, &ts); err != nil {
		t.Fatal(err)
	}
	if svc != "checkout" || env != "production" || deployID != "d-1" || route != "/api/checkout" || sev != 9 ||
		!ts.Equal(otlptest.Base.Add(7*time.Millisecond)) || body[:5] != "rt-7:" {
		t.Errorf("row 7 read back as %q %q %q %q %q %d %s", body, svc, env, deployID, route, sev, ts)
	}
	var bounds []float64
	var buckets []uint64
	var exVals []float64
	var status string
	if err := conn.QueryRow(ctx, `SELECT ExplicitBounds, BucketCounts, Exemplars.Value, Attributes['http.response.status_code']
		FROM otel_metrics_histogram WHERE Count = 10 LIMIT 1`).Scan(&bounds, &buckets, &exVals, &status); err != nil {
		t.Fatal(err)
	}
	if len(bounds) != 2 || len(buckets) != 3 || buckets[0] != 6 || status != "503" {
		t.Errorf("histogram read back as %v %v %q", bounds, buckets, status)
	}
	var gv float64
	var exTrace []string
	if err := conn.QueryRow(ctx, `SELECT Value, Exemplars.TraceId FROM otel_metrics_gauge WHERE MetricName = 'queue.depth' LIMIT 1`).Scan(&gv, &exTrace); err != nil {
		t.Fatal(err)
	}
	if gv != 42 || len(exTrace) != 1 || exTrace[0] != "ab0000000000000000000000000000cd" {
		t.Errorf("gauge %v exemplar trace %v", gv, exTrace)
	}
	if n := count("SELECT count() FROM otel_metrics_gauge WHERE isNaN(Value)"); n != 2 {
		t.Errorf("NaN gauge rows: %d, want 2", n)
	}
	var q []float64
	if err := conn.QueryRow(ctx, `SELECT ValueAtQuantiles.Quantile FROM otel_metrics_summary LIMIT 1`).Scan(&q); err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || q[1] != 0.99 || math.IsNaN(q[0]) {
		t.Errorf("summary quantiles %v", q)
	}
}

// BenchmarkWriteLogs inserts realistic log batches (otlptest.Logs: 10
// resource attributes, 5 log attributes, 100-byte bodies, 1000 records per
// OTLP request, as faultline-bench sends) through TelemetryWriter into the
// local ClickHouse: one request's rows, and a worker's default batch of
// 50,000. Every write has a token of its own, so deduplication skips none;
// the benchmark checks the table holds every row it wrote. CPU-us/record is
// this process's (the client's) CPU: the server is a child process.
func BenchmarkWriteLogs(b *testing.B) {
	cfg := chtest.Database(b)
	ctx := context.Background()
	w, err := clickhouse.NewTelemetryWriter(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	const perRequest = 1000
	writes, written := 0, 0 // over every round of every sub-benchmark
	for _, bc := range []struct {
		name     string
		requests int
	}{
		{"rows=1000", 1},
		{"rows=50000", 50},
	} {
		batch := otlp.NewBatch()
		for i := 0; i < bc.requests; i++ {
			if _, err := batch.Append(otlp.SignalLogs, otlp.FormatProtobuf, otlptest.LogsRequest(bc.name+"-"+strconv.Itoa(i), perRequest)); err != nil {
				b.Fatal(err)
			}
		}
		rows := batch.Records()
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := otlptest.CPUTime()
			for i := 0; i < b.N; i++ {
				writes++
				if err := w.Write(ctx, batch, "bench-"+strconv.Itoa(writes)); err != nil {
					b.Fatal(err)
				}
			}
			cpu := otlptest.CPUTime() - cpu0
			b.StopTimer()
			written += b.N * rows
			records := float64(b.N * rows)
			b.ReportMetric(records/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/records, "CPU-us/record")
		})
	}
	var stored uint64
	if err := chtest.Conn(b, cfg).QueryRow(ctx, "SELECT count() FROM otel_logs").Scan(&stored); err != nil {
		b.Fatal(err)
	}
	if stored != uint64(written) {
		b.Fatalf("otel_logs holds %d rows, the benchmark wrote %d", stored, written)
	}
}
