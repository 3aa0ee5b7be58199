package worker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// TestNATSExporterPayloads publishes exactly what the OpenTelemetry
// Collector's NATS exporter (synadia-io/opentelemetry-collector-nats, with
// jetstream set) sends: one OTLP export request per message, protobuf
// (marshaler otlp_proto, its default) or JSON (otlp_json), by a plain
// JetStream publish with no headers at all: no Content-Type and no
// Nats-Msg-Id. Every record must land in ClickHouse once.
//
// A failed publish fails the export, and its sender retries it whole, so
// a publish whose ack was lost after the stream stored it is published
// again. Without a Nats-Msg-Id JetStream stores the copy as a new message, and the worker's insert
// tokens derive from stream sequences, so the copy's rows land a second
// time. The test pins that behaviour, which the README documents; the
// gateway's path (a Nats-Msg-Id hashed from the body) is the one that
// drops such a copy.
func TestNATSExporterPayloads(t *testing.T) {
	ns, conn, stop := startTestWorker(t)
	ctx := context.Background()

	// Logs: rec-0..99 as protobuf, rec-100..139 as JSON (on a subject below
	// otel_logs, as an OTTL subject expression per service would give).
	logsProto := logsPayload(t, 0, 100)
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(logsPayload(t, 100, 40)); err != nil {
		t.Fatal(err)
	}
	logsJSON, err := req.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	// Metrics: one request of every point type per encoding, told apart by
	// service.
	metrics := func(service string, json bool) []byte {
		md := otlptest.Metrics()
		md.ResourceMetrics().At(0).Resource().Attributes().PutStr("service.name", service)
		r := pmetricotlp.NewExportRequestFromMetrics(md)
		var b []byte
		var err error
		if json {
			b, err = r.MarshalJSON()
		} else {
			b, err = r.MarshalProto()
		}
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	points := otlptest.Metrics().DataPointCount()

	for _, m := range []struct {
		subject string
		data    []byte
	}{
		{"otel_logs", logsProto},
		{"otel_logs.checkout", logsJSON},
		{"otel_metrics", metrics("nats-proto", false)},
		{"otel_metrics", metrics("nats-json", true)},
		// The exporter's retry after a lost publish ack: the same bytes.
		{"otel_logs", logsProto},
	} {
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		// The exporter's own call: a JetStream publish of the bare payload.
		_, err := ns.JS.Publish(pctx, m.subject, m.data)
		pcancel()
		if err != nil {
			t.Fatalf("publish to %s: %v", m.subject, err)
		}
	}
	waitDrained(t, ns.JS, ns.Config.TelemetryStream, "faultline-telemetry", time.Minute, nil)

	// Every log record once, and the re-published request's records twice.
	rows, err := conn.Query(ctx, "SELECT Body, count() FROM otel_logs GROUP BY Body")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for rows.Next() {
		var body string
		var n uint64
		if err := rows.Scan(&body, &n); err != nil {
			t.Fatal(err)
		}
		got[body] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var bad []string
	for i := 0; i < 140; i++ {
		want := uint64(1)
		if i < 100 {
			want = 2 // re-published without a Nats-Msg-Id
		}
		if body := fmt.Sprintf("rec-%d", i); got[body] != want {
			bad = append(bad, fmt.Sprintf("%s: %d rows, want %d", body, got[body], want))
		}
		delete(got, fmt.Sprintf("rec-%d", i))
	}
	for body, n := range got {
		bad = append(bad, fmt.Sprintf("unexpected %q: %d rows", body, n))
	}
	if len(bad) > 0 {
		t.Fatalf("otel_logs:\n%s", strings.Join(bad, "\n"))
	}

	// Every metric point once, from either encoding.
	for _, service := range []string{"nats-proto", "nats-json"} {
		var n uint64
		for _, table := range []string{"otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram", "otel_metrics_exponential_histogram", "otel_metrics_summary"} {
			var c uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM "+table+" WHERE ServiceName = ?", service).Scan(&c); err != nil {
				t.Fatal(err)
			}
			n += c
		}
		if n != uint64(points) {
			t.Errorf("service %s: %d metric rows, want %d", service, n, points)
		}
	}
	stop()
}
