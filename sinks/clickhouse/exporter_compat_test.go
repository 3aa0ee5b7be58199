package clickhouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestLogsTimestampTime: otel_logs has the Collector exporter's
// TimestampTime, so queries written for the exporter run unchanged. It is
// computed from Timestamp for the rows the writer inserts, which do not name
// it, and for rows written before migration 16 added it.
func TestLogsTimestampTime(t *testing.T) { schemas(t, testLogsTimestampTime) }

func testLogsTimestampTime(t *testing.T, cfg clickhouse.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := chtest.Conn(t, cfg)
	exec := func(q string) {
		t.Helper()
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Back to the schema before migration 16, with a row written then.
	local, migrations := "otel_logs", "schema_migrations"
	if cfg.Cluster != "" {
		local, migrations = "otel_logs_local", "schema_migrations_local"
		exec("ALTER TABLE otel_logs DROP COLUMN TimestampTime")
	}
	exec("ALTER TABLE " + local + " DROP COLUMN TimestampTime")
	exec("INSERT INTO " + local + " (Timestamp, ServiceName, Body) VALUES ('2026-11-01 10:00:07.123456789', 'old', 'before 16')")
	exec("ALTER TABLE " + migrations + " DELETE WHERE Version = 16 SETTINGS mutations_sync = 1")
	if err := clickhouse.Migrate(ctx, cfg, nil); err != nil {
		t.Fatal(err)
	}

	w, err := clickhouse.NewTelemetryWriter(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b := otlp.NewBatch()
	if _, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, otlptest.LogsRequest("tt", 10)); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, b, "tok-tt"); err != nil {
		t.Fatal(err)
	}

	var rows, same uint64
	if err := conn.QueryRow(ctx, "SELECT count(), countIf(TimestampTime = toDateTime(Timestamp)) FROM otel_logs").Scan(&rows, &same); err != nil {
		t.Fatal(err)
	}
	if rows != 11 || same != rows {
		t.Fatalf("%d rows, %d with TimestampTime = toDateTime(Timestamp); want 11 and 11", rows, same)
	}
	// As the exporter's users and Grafana query it.
	var old uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM otel_logs
		WHERE TimestampTime >= toDateTime('2026-11-01 10:00:07') AND TimestampTime < toDateTime('2026-11-01 10:00:08') AND ServiceName = 'old'`).Scan(&old); err != nil {
		t.Fatal(err)
	}
	if old != 1 {
		t.Fatalf("the row written before migration 16: %d found by TimestampTime, want 1", old)
	}
}
