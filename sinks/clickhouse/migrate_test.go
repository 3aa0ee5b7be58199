package clickhouse_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

func TestMigrateIdempotent(t *testing.T) { schemas(t, testMigrateIdempotent) }

func testMigrateIdempotent(t *testing.T, cfg clickhouse.Config) {
	// cfg was migrated once already.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := clickhouse.Migrate(ctx, cfg, nil); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	conn := chtest.Conn(t, cfg)
	var rows, versions uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(Version) FROM schema_migrations").Scan(&rows, &versions); err != nil {
		t.Fatal(err)
	}
	if want := uint64(len(clickhouse.Migrations())); rows != want || versions != want {
		t.Fatalf("schema_migrations has %d rows, %d versions; want %d of each", rows, versions, want)
	}
}

func TestConfigValidate(t *testing.T) {
	base := clickhouse.Config{Database: "faultline", MaxConns: 1}
	for _, tc := range []struct {
		name string
		mod  func(*clickhouse.Config)
		ok   bool
	}{
		{"defaults", func(*clickhouse.Config) {}, true},
		{"addr", func(c *clickhouse.Config) { c.Addr = []string{"db:9000"} }, true},
		{"addr without port", func(c *clickhouse.Config) { c.Addr = []string{"db"} }, false},
		{"database with quote", func(c *clickhouse.Config) { c.Database = "x`; DROP" }, false},
		{"cluster with space", func(c *clickhouse.Config) { c.Cluster = "a b" }, false},
		{"negative ttl", func(c *clickhouse.Config) { c.TTLDays = -1 }, false},
		{"missing CA", func(c *clickhouse.Config) { c.TLSCA = "/nonexistent.pem" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestDedupWindow: every telemetry table remembers 10000 insert tokens, the
// window a crashed worker's re-formed batch must fall in.
func TestDedupWindow(t *testing.T) {
	cfg := chtest.Database(t)
	conn := chtest.Conn(t, cfg)
	for _, table := range []string{"otel_logs", "otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram",
		"otel_metrics_exponential_histogram", "otel_metrics_summary"} {
		var ddl string
		if err := conn.QueryRow(context.Background(), "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", cfg.Database, table).Scan(&ddl); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ddl, "non_replicated_deduplication_window = 10000") {
			t.Errorf("%s: %s", table, ddl)
		}
	}
}
