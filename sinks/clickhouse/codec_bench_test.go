package clickhouse_test

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// BenchmarkLogsCodecs prices otel_logs's column codecs in ClickHouse's own
// CPU: faultline's table as migrated (ZSTD(1)) against the same table with
// other codecs, each filled by the worker's way of writing (inserts of
// 50,000 rows) with the same rows, then left to merge. The server's CPU
// per row comes from system.query_log (inserts) and system.part_log
// (merges), so it holds on a shared machine; bytes on disk from
// system.parts. Asked for only, never under make test:
//
//	go test -run '^$' -bench BenchmarkLogsCodecs -benchtime 1x -timeout 30m ./sinks/clickhouse
//
// FAULTLINE_BENCH_ROWS sets the rows per table (default 2,000,000).
func BenchmarkLogsCodecs(b *testing.B) {
	rows := benchRows(b, 2_000_000)
	bin, err := chtest.Bin()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	srv, err := chlocal.Start(ctx, chlocal.Options{Bin: bin, Dir: b.TempDir(), QueryLog: true})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	cfg := clickhouse.Config{Addr: []string{srv.Addr}, Database: "codecs", User: "default", DialTimeout: 5 * time.Second, MaxConns: 2}
	if err := clickhouse.Migrate(ctx, cfg, slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	conn, err := ch.Open(&ch.Options{Addr: cfg.Addr, Auth: ch.Auth{Database: "codecs", Username: "default"}})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, `CREATE TABLE codecs.staging_logs (
		Timestamp DateTime64(9), TraceId String, SpanId String, TraceFlags UInt8, SeverityText String, SeverityNumber UInt8,
		ServiceName String, Body String, ResourceAttributes Map(String, String), ScopeName String, ScopeVersion String,
		LogAttributes Map(String, String)
	) ENGINE = MergeTree ORDER BY Timestamp`); err != nil {
		b.Fatal(err)
	}
	step := int64(86400e9) / int64(rows)
	if err := conn.Exec(ctx, fmt.Sprintf(logsRowsSQL, "codecs", "staging_logs", step, rows)); err != nil {
		b.Fatal(err)
	}
	var ddl string
	if err := conn.QueryRow(ctx, "SHOW CREATE TABLE codecs.otel_logs").Scan(&ddl); err != nil {
		b.Fatal(err)
	}
	zstd := regexp.MustCompile(`ZSTD\(1\)`)
	variants := []struct{ name, codec string }{
		{"ZSTD(1) (as migrated)", "ZSTD(1)"},
		{"LZ4", "LZ4"},
		{"LZ4HC(1)", "LZ4HC(1)"},
	}
	const cols = "Timestamp, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName, Body, ResourceAttributes, ScopeName, ScopeVersion, LogAttributes"
	const batch = 50_000
	fmt.Printf("\n%d rows, inserts of %d\n\n| codec | insert CPU-us/row | merge CPU-us/row | merges | total | MiB on disk |\n| --- | --- | --- | --- | --- | --- |\n", rows, batch)
	for i, v := range variants {
		table := "logs_" + strconv.Itoa(i)
		d := strings.Replace(zstd.ReplaceAllString(ddl, v.codec), "codecs.otel_logs", "codecs."+table, 1)
		if err := conn.Exec(ctx, d); err != nil {
			b.Fatalf("%s: %v", v.name, err)
		}
		for off := 0; off < rows; off += batch {
			// Row n has Timestamp start + n*step: a range of the staging
			// table's key, so each insert reads only its own rows.
			if err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO codecs.%s (%s) SELECT %s FROM codecs.staging_logs
				WHERE Timestamp >= toDateTime64('2026-11-01 00:00:00', 9) + toIntervalNanosecond(%d)
				AND Timestamp < toDateTime64('2026-11-01 00:00:00', 9) + toIntervalNanosecond(%d)`,
				table, cols, cols, int64(off)*step, int64(off+batch)*step)); err != nil {
				b.Fatal(err)
			}
		}
		for start := time.Now(); time.Since(start) < 10*time.Minute; time.Sleep(time.Second) {
			var n uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = 'codecs' AND table = ?", table).Scan(&n); err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		if err := conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
			b.Fatal(err)
		}
		var insUS, mergeUS, merges, disk uint64
		if err := conn.QueryRow(ctx, `SELECT sum(ProfileEvents['UserTimeMicroseconds'] + ProfileEvents['SystemTimeMicroseconds'])
			FROM system.query_log WHERE type = 'QueryFinish' AND query_kind = 'Insert' AND has(tables, ?)`, "codecs."+table).Scan(&insUS); err != nil {
			b.Fatal(err)
		}
		if err := conn.QueryRow(ctx, `SELECT sum(ProfileEvents['UserTimeMicroseconds'] + ProfileEvents['SystemTimeMicroseconds']), count()
			FROM system.part_log WHERE database = 'codecs' AND table = ? AND event_type = 'MergeParts'`, table).Scan(&mergeUS, &merges); err != nil {
			b.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'codecs' AND table = ? AND active", table).Scan(&disk); err != nil {
			b.Fatal(err)
		}
		ins, mer := float64(insUS)/float64(rows), float64(mergeUS)/float64(rows)
		fmt.Printf("| %s | %.2f | %.2f | %d | %.2f | %.1f |\n", v.name, ins, mer, merges, ins+mer, float64(disk)/(1<<20))
	}
}
