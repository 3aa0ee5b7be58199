package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// exporterLogsTable is the OpenTelemetry Collector ClickHouse exporter's
// logs table (clickhouseexporter, v0.16x), restated here so the benchmark
// can set it beside faultline's: the same columns, sorted by service then
// second, with its skip indexes (a bloom filter on TraceId, on the keys and
// values of the three attribute maps, a token and an n-gram filter on Body).
const exporterLogsTable = `
CREATE TABLE %s.exporter_logs (
	Timestamp          DateTime64(9) CODEC(Delta(8), ZSTD(1)),
	TimestampTime      DateTime DEFAULT toDateTime(Timestamp),
	TraceId            String CODEC(ZSTD(1)),
	SpanId             String CODEC(ZSTD(1)),
	TraceFlags         UInt8,
	SeverityText       LowCardinality(String) CODEC(ZSTD(1)),
	SeverityNumber     UInt8,
	ServiceName        LowCardinality(String) CODEC(ZSTD(1)),
	Body               String CODEC(ZSTD(1)),
	ResourceSchemaUrl  LowCardinality(String) CODEC(ZSTD(1)),
	ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	ScopeSchemaUrl     LowCardinality(String) CODEC(ZSTD(1)),
	ScopeName          String CODEC(ZSTD(1)),
	ScopeVersion       LowCardinality(String) CODEC(ZSTD(1)),
	ScopeAttributes    Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	LogAttributes      Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
	INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
	INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
	INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
	INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
	INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
	INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
	INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8,
	INDEX idx_body_ngrambf Body TYPE ngrambf_v1(4, 32768, 3, 0) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1`

// logsRowsSQL generates a day of log rows from numbers(): 200 services with
// skewed traffic (svc-0 about 7% of rows, svc-199 under 0.2%), two
// environments, mostly INFO with about 4% ERROR, bodies from eight
// templates carrying ids, three log attributes, and a trace id on 30% of
// rows. Every column is a hash of the row number, so each table gets the
// same rows. They are written once into a staging table (no sorting key, no
// indexes) and copied from it into each table, so the ingest figures are
// what each schema costs, not what generating the rows costs (on the 2-core
// machine that is most of it).
const logsRowsSQL = `
INSERT INTO %[1]s.%[2]s (Timestamp, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName, Body,
	ResourceAttributes, ScopeName, ScopeVersion, LogAttributes)
SELECT ts, tid, if(tid = '', '', lower(hex(h7))), if(tid = '', 0, 1),
	sev, multiIf(sev = 'ERROR', 17, sev = 'WARN', 13, sev = 'DEBUG', 5, 9), svc,
	multiIf(
		tpl = 0, concat('GET /api/orders/o', toString(id), ' 200 in ', toString(ms), 'ms'),
		tpl = 1, concat('order o', toString(id), ' created for user ', uid),
		tpl = 2, concat('cache miss for key product:p', toString(id)),
		tpl = 3, concat('payment p', toString(id), ' authorized amount ', toString(ms * 3)),
		tpl = 4, concat('connection pool exhausted, waited ', toString(ms), 'ms'),
		tpl = 5, concat('failed to charge card for order o', toString(id), ': upstream timeout after ', toString(ms), 'ms'),
		tpl = 6, concat('user ', uid, ' logged in from 10.', toString(h5 %% 256), '.', toString(h6 %% 256), '.7'),
		concat('retrying request r', toString(id), ' attempt ', toString(1 + ms %% 3))),
	map('service.name', svc, 'service.version', concat('1.', toString(si %% 10), '.', toString(intDiv(toHour(ts) + si %% 6, 6))),
		'deployment.environment.name', env, 'host.name', concat(svc, '-', toString(h1 %% 4))),
	'github.com/faultline-dev/bench', '1.0.0',
	map('http.route', arrayElement(['/api/orders/{id}', '/api/users/{id}', '/api/cart', '/api/payments', '/healthz'], 1 + h4 %% 5),
		'http.response.status_code', multiIf(sev = 'ERROR', '500', h5 %% 20 = 0, '404', '200'),
		'user.id', uid)
FROM (
	SELECT toDateTime64('2026-11-01 00:00:00', 9) + toIntervalNanosecond(number * %[3]d) AS ts,
		cityHash64(number, 1) AS h1, cityHash64(number, 2) AS h2, cityHash64(number, 3) AS h3,
		cityHash64(number, 4) AS h4, cityHash64(number, 5) AS h5, cityHash64(number, 6) AS h6, cityHash64(number, 7) AS h7,
		toUInt32(200 * pow((h1 %% 1000000) / 1000000., 2)) AS si,
		concat('svc-', toString(si)) AS svc,
		if(h2 %% 10 < 8, 'production', 'staging') AS env,
		h3 %% 8 AS tpl,
		multiIf(tpl IN (4, 5) AND h2 %% 100 < 15, 'ERROR', tpl = 7, 'WARN', tpl = 2 AND h2 %% 3 = 0, 'DEBUG', 'INFO') AS sev,
		intDiv(h4, 7) %% 10000000 AS id,
		concat('u', toString(intDiv(h5, 11) %% 200000)) AS uid,
		h6 %% 900 + 3 AS ms,
		if(h7 %% 10 < 3, lower(concat(hex(h6), hex(h7))), '') AS tid
	FROM numbers(%[4]d)
)`

// benchQueries are the log searches timed on each table; %[1]s is the
// table, the others are filled from the data. Each names Timestamp and
// TimestampTime both, so each table's key can use the one it holds.
var benchQueries = []struct{ name, sql string }{
	{"(a) one service, 1 hour", `SELECT Timestamp, SeverityText, Body FROM %[1]s
		WHERE ServiceName = 'svc-7' AND Timestamp >= '2026-11-01 14:00:00' AND Timestamp < '2026-11-01 15:00:00'
			AND TimestampTime >= '2026-11-01 14:00:00' AND TimestampTime < '2026-11-01 15:00:00'
		ORDER BY Timestamp DESC LIMIT 100`},
	{"(b) one TraceId", `SELECT Timestamp, ServiceName, Body FROM %[1]s WHERE TraceId = '%[2]s' ORDER BY Timestamp`},
	{"(c) LogAttributes['user.id']", `SELECT Timestamp, ServiceName, Body FROM %[1]s WHERE LogAttributes['user.id'] = 'u4242' ORDER BY Timestamp DESC LIMIT 100`},
	{"(d) hasToken(Body)", `SELECT Timestamp, ServiceName, Body FROM %[1]s WHERE hasToken(Body, '%[3]s') ORDER BY Timestamp DESC LIMIT 100`},
	{"(e) errors/min by version, 1 service, 6 h", `SELECT toStartOfMinute(Timestamp) AS m, ResourceAttributes['service.version'] AS v, count() FROM %[1]s
		WHERE ServiceName = 'svc-7' AND SeverityNumber >= 17 AND Timestamp >= '2026-11-01 12:00:00' AND Timestamp < '2026-11-01 18:00:00'
			AND TimestampTime >= '2026-11-01 12:00:00' AND TimestampTime < '2026-11-01 18:00:00'
		GROUP BY m, v ORDER BY m, v`},
}

// benchRows is FAULTLINE_BENCH_ROWS, the rows a schema benchmark fills
// each table with, or def.
func benchRows(b *testing.B, def int) int {
	s := os.Getenv("FAULTLINE_BENCH_ROWS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("FAULTLINE_BENCH_ROWS=%q", s)
	}
	return n
}

// BenchmarkLogsSchemas sets faultline's otel_logs (as migrated, and the same
// without its skip indexes) beside the exporter's logs table, fills each
// with the same rows, and times ingest and five log searches on each (wall
// time; the rows and bytes read are the server's). It runs only when asked
// for, never under make test; docs/tables.md holds its figures:
//
//	go test -run '^$' -bench BenchmarkLogsSchemas -benchtime 1x -timeout 60m ./sinks/clickhouse
//
// FAULTLINE_BENCH_ROWS sets the row count (default 50,000,000, a day of
// them). It prints a table: ingest seconds, bytes on disk, and per query
// the median of 5 runs with the rows and bytes it read.
func BenchmarkLogsSchemas(b *testing.B) {
	if testing.Short() {
		b.Skip("fills three tables with tens of millions of rows")
	}
	rows := benchRows(b, 50_000_000)
	cfg := chtest.Database(b)
	conn := chtest.Conn(b, cfg)
	ctx := context.Background()
	db := cfg.Database
	if err := conn.Exec(ctx, fmt.Sprintf(exporterLogsTable, db)); err != nil {
		b.Fatal(err)
	}
	// faultline's table as migrated, and the same without any skip index
	// (as it was before migration 28), to price the ones it has.
	if err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE %[1]s.bare_logs AS %[1]s.otel_logs", db)); err != nil {
		b.Fatal(err)
	}
	var idxs []string
	if err := conn.QueryRow(ctx, "SELECT groupArray(name) FROM system.data_skipping_indices WHERE database = ? AND table = 'bare_logs'", db).Scan(&idxs); err != nil {
		b.Fatal(err)
	}
	for _, ix := range idxs {
		if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.bare_logs DROP INDEX %s", db, ix)); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	if err := conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s.staging_logs (
		Timestamp DateTime64(9), TraceId String, SpanId String, TraceFlags UInt8, SeverityText String, SeverityNumber UInt8,
		ServiceName String, Body String, ResourceAttributes Map(String, String), ScopeName String, ScopeVersion String,
		LogAttributes Map(String, String)
	) ENGINE = MergeTree ORDER BY tuple()`, db)); err != nil {
		b.Fatal(err)
	}
	if err := conn.Exec(ctx, fmt.Sprintf(logsRowsSQL, db, "staging_logs", int64(86400e9)/int64(rows), rows)); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d rows in %s", rows, time.Since(start).Round(time.Second))
	const cols = "Timestamp, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName, Body, ResourceAttributes, ScopeName, ScopeVersion, LogAttributes"
	tables := []struct{ label, name string }{
		{"faultline, no skip index", "bare_logs"},
		{"faultline (" + strings.Join(idxs, ", ") + ")", "otel_logs"},
		{"exporter", "exporter_logs"},
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n%d rows\n\n| |", rows)
	for _, t := range tables {
		fmt.Fprintf(&out, " %s |", t.label)
	}
	fmt.Fprintf(&out, "\n| --- |%s\n", strings.Repeat(" --- |", len(tables)))
	cells := map[string][3]string{}
	var order []string
	cell := func(row string, i int, v string) {
		c, ok := cells[row]
		if !ok {
			order = append(order, row)
		}
		c[i] = v
		cells[row] = c
	}
	for i, t := range tables {
		start := time.Now()
		if err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %[1]s.%[2]s (%[3]s) SELECT %[3]s FROM %[1]s.staging_logs", db, t.name, cols)); err != nil {
			b.Fatal(err)
		}
		wall := time.Since(start)
		// Let the background merges the insert started finish before the
		// next table is filled, and count their time as ingest cost too.
		settle := time.Now()
		for time.Since(settle) < 10*time.Minute {
			var n uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = ? AND table = ?", db, t.name).Scan(&n); err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
			time.Sleep(time.Second)
		}
		cell("ingest, s (INSERT ... SELECT from staging)", i, fmt.Sprintf("%.1f", wall.Seconds()))
		cell("then merges, s", i, fmt.Sprintf("%.1f", time.Since(settle).Seconds()))
		var parts, bytes, idx uint64
		if err := conn.QueryRow(ctx, `SELECT count(), sum(bytes_on_disk), sum(secondary_indices_compressed_bytes) FROM system.parts
			WHERE database = ? AND table = ? AND active`, db, t.name).Scan(&parts, &bytes, &idx); err != nil {
			b.Fatal(err)
		}
		cell("on disk, MiB (of it skip indexes)", i, fmt.Sprintf("%.0f (%.0f)", float64(bytes)/(1<<20), float64(idx)/(1<<20)))
		cell("active parts", i, fmt.Sprint(parts))
	}
	// A trace id and a Body token that occur, picked from the rows.
	var traceID, token string
	if err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT TraceId FROM %s.otel_logs WHERE ServiceName = 'svc-60' AND Timestamp >= '2026-11-01 09:00:00' AND TraceId != '' ORDER BY Timestamp LIMIT 1`, db)).Scan(&traceID); err != nil {
		b.Fatal(err)
	}
	if err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT extract(Body, 'order (o[0-9]+)') FROM %s.otel_logs WHERE ServiceName = 'svc-30' AND Timestamp >= '2026-11-01 13:00:00' AND Body LIKE 'order o%%' ORDER BY Timestamp LIMIT 1`, db)).Scan(&token); err != nil {
		b.Fatal(err)
	}
	for _, q := range benchQueries {
		for i, t := range tables {
			sql := fmt.Sprintf(q.sql, db+"."+t.name, traceID, token) +
				// No query cache or condition cache: each run reads as the
				// first search for that value would.
				"\nSETTINGS use_query_cache = 0, use_query_condition_cache = 0"
			var durs []float64
			var readRows, readBytes, res uint64
			for run := 0; run < 5; run++ {
				d, r, by, n, err := timeQuery(ctx, conn, sql)
				if err != nil {
					b.Fatalf("%s on %s: %v", q.name, t.name, err)
				}
				durs = append(durs, d)
				readRows, readBytes, res = r, by, n
			}
			sort.Float64s(durs)
			cell(q.name+": ms / rows read / MiB read / rows out", i,
				fmt.Sprintf("%.0f / %s / %.0f / %d", durs[2], fmtRows(readRows), float64(readBytes)/(1<<20), res))
		}
	}
	for _, r := range order {
		c := cells[r]
		fmt.Fprintf(&out, "| %s | %s |\n", r, strings.Join(c[:len(tables)], " | "))
	}
	fmt.Fprint(os.Stdout, out.String())
	for i := 0; i < b.N; i++ {
		// The work above is done once; b.N only satisfies the harness.
	}
}

// timeQuery runs a query and reads its rows: the wall time in ms, the rows
// and bytes the server reports having read (its progress packets) and the
// rows returned. The engine runs without system.query_log, so the wall time
// is the figure; both tables pay the same client overhead.
func timeQuery(ctx context.Context, conn driver.Conn, sql string) (ms float64, readRows, readBytes, resultRows uint64, err error) {
	var mu sync.Mutex
	ctx = ch.Context(ctx, ch.WithProgress(func(p *ch.Progress) {
		mu.Lock()
		readRows += p.Rows
		readBytes += p.Bytes
		mu.Unlock()
	}))
	start := time.Now()
	rs, err := conn.Query(ctx, sql)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for rs.Next() {
		resultRows++
	}
	err = rs.Err()
	rs.Close()
	ms = float64(time.Since(start).Microseconds()) / 1000
	mu.Lock()
	defer mu.Unlock()
	return ms, readRows, readBytes, resultRows, err
}

func fmtRows(n uint64) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
