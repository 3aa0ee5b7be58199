package clickhouse_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// BenchmarkIncidentIDRead measures what reading otel_logs.IncidentId costs
// now that it is looked up in the incident_spans dictionary when read,
// against reading a stored LowCardinality column holding the same ids
// (DeployId, filled alike), over rows of 100 services with 1000 incidents:
//
//	go test -run '^$' -bench BenchmarkIncidentIDRead -benchtime 5x ./sinks/clickhouse
//
// It reports ns/row for each; their ratio is what the lookup adds to a
// query that reads the column.
func BenchmarkIncidentIDRead(b *testing.B) {
	const rows = 10_000_000
	cfg := chtest.Database(b)
	conn := chtest.Conn(b, cfg)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	// 100 services, one row every 0.864 ms over a day; 10 incidents of 30
	// minutes per service, spread over the day.
	if err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO incidents (IncidentId, Service, Environment, Source, StartedAt, ResolvedAt, UpdatedAt)
		SELECT concat('inc-', toString(number)), concat('svc-', toString(number %% 100)), 'production', 'detected',
			toDateTime64('%[1]s', 9) + toIntervalMinute(intDiv(number, 100) * 144), toDateTime64('%[1]s', 9) + toIntervalMinute(intDiv(number, 100) * 144 + 30), now64(9)
		FROM numbers(1000)`, t0.Format(time.DateTime))); err != nil {
		b.Fatal(err)
	}
	if err := conn.Exec(ctx, "SYSTEM RELOAD DICTIONARY incident_spans"); err != nil {
		b.Fatal(err)
	}
	// DeployId gets the ids the dictionary gives, so both columns read the
	// same values.
	if err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO otel_logs (Timestamp, ServiceName, ResourceAttributes, Body, DeployId)
		SELECT ts, svc, map('deployment.environment.name', 'production'), 'request served',
			dictGetOrDefault('%s.incident_spans', 'IncidentId', cityHash64(svc, 'production'), toUnixTimestamp64Nano(ts), '')
		FROM (SELECT toDateTime64('%s', 9) + toIntervalMicrosecond(number * 8640) AS ts, concat('svc-', toString(number %% 100)) AS svc FROM numbers(%d))`,
		cfg.Database, t0.Format(time.DateTime), rows)); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, col string }{{"lookup", "IncidentId"}, {"stored", "DeployId"}} {
		b.Run(c.name, func(b *testing.B) {
			q := fmt.Sprintf("SELECT %[1]s, count() FROM otel_logs WHERE %[1]s != '' GROUP BY %[1]s ORDER BY %[1]s LIMIT 1", c.col)
			for i := 0; i < b.N; i++ {
				var id string
				var n uint64
				if err := conn.QueryRow(ctx, q).Scan(&id, &n); err != nil {
					b.Fatal(err)
				}
				if n == 0 {
					b.Fatal("no row inside an incident")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rows, "ns/row")
		})
	}
}
