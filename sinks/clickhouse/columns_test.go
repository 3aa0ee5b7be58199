package clickhouse_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestColumnsRoundTrip writes rows that stress faultline's own column
// encoders (LowCardinality dictionaries past 256 and 65536 entries, empty
// strings and keys, maps whose keys change order and repeat across
// resources) and reads every value back.
func TestColumnsRoundTrip(t *testing.T) { schemas(t, testColumnsRoundTrip) }

func testColumnsRoundTrip(t *testing.T, cfg clickhouse.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := clickhouse.NewTelemetryWriter(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	conn := chtest.Conn(t, cfg)

	const n = 70_000
	type row struct {
		sev, svc, body string
		attrs, res     map[string]string
	}
	want := make([]row, n)
	ld := plog.NewLogs()
	base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	var lrs plog.LogRecordSlice
	var res map[string]string
	for i := range want {
		if i%1000 == 0 { // a new resource: three kinds, keys in changing order
			rl := ld.ResourceLogs().AppendEmpty()
			res = map[string]string{"service.name": fmt.Sprintf("svc-%d", i/1000%3), "host": fmt.Sprintf("h%d", i/1000)}
			if i/1000%2 == 1 {
				res[""] = "empty key"
				rl.Resource().Attributes().PutStr("", "empty key")
			}
			rl.Resource().Attributes().PutStr("host", res["host"])
			rl.Resource().Attributes().PutStr("service.name", res["service.name"])
			lrs = rl.ScopeLogs().AppendEmpty().LogRecords()
		}
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(i) * time.Millisecond)))
		r := row{sev: fmt.Sprintf("sev-%d", i), svc: res["service.name"], body: fmt.Sprintf("body %d", i), res: res, attrs: map[string]string{}}
		if i%7 == 0 {
			r.sev = "" // empty values in a LowCardinality column
		}
		lr.SetSeverityText(r.sev)
		lr.Body().SetStr(r.body)
		keys := []string{fmt.Sprintf("k%d", i%300), "common", ""}
		if i%2 == 0 {
			keys[0], keys[1] = keys[1], keys[0]
		}
		for j, k := range keys[:1+i%3] {
			v := fmt.Sprintf("v%d-%d", i, j)
			lr.Attributes().PutStr(k, v)
			r.attrs[k] = v
		}
		want[i] = r
	}
	payload, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	if err != nil {
		t.Fatal(err)
	}
	b := otlp.NewBatch()
	if _, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, payload); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, b, "columns"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT SeverityText, ServiceName, Body, LogAttributes, ResourceAttributes FROM otel_logs ORDER BY Timestamp")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var got row
		if err := rows.Scan(&got.sev, &got.svc, &got.body, &got.attrs, &got.res); err != nil {
			t.Fatal(err)
		}
		w := want[i]
		if got.sev != w.sev || got.svc != w.svc || got.body != w.body || fmt.Sprint(got.attrs) != fmt.Sprint(w.attrs) || fmt.Sprint(got.res) != fmt.Sprint(w.res) {
			t.Fatalf("row %d:\n got %+v\nwant %+v", i, got, w)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("%d rows, want %d", i, n)
	}
	// The insert went in several blocks; a single server squashed them
	// into one part, which the deduplication token names as a whole. (On a
	// cluster the Distributed table forwards them; what matters there is
	// the repeat below.)
	if cfg.Cluster == "" {
		var parts uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = ? AND table = 'otel_logs' AND active", cfg.Database).Scan(&parts); err != nil {
			t.Fatal(err)
		}
		if parts != 1 {
			t.Errorf("%d parts from one insert, want 1", parts)
		}
	}
	// Writing it again with the same token stores nothing.
	if err := w.Write(ctx, b, "columns"); err != nil {
		t.Fatal(err)
	}
	var total uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM otel_logs").Scan(&total); err != nil || total != n {
		t.Fatalf("after a repeated write: %d rows (%v), want %d", total, err, n)
	}
}
