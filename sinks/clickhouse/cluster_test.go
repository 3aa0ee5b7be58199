package clickhouse_test

import (
	"context"
	"strings"
	"testing"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// clusterDatabase migrates a fresh database in cluster mode on the local
// server's one-shard cluster: every table is <name>_local under a
// Distributed <name>, as on a real cluster, but without ON CLUSTER and
// with plain MergeTree engines, which need Keeper.
func clusterDatabase(t *testing.T) clickhouse.Config {
	t.Helper()
	return chtest.DatabaseWith(t, func(c *clickhouse.Config) {
		c.Cluster = chtest.Cluster
		clickhouse.WithoutCoordination(c)
	})
}

// shardedDatabase migrates a fresh database in cluster mode on every node
// of the local cluster of 2 shards x 2 replicas, without ON CLUSTER and
// with plain MergeTree engines (see chtest.ShardedCluster).
func shardedDatabase(t *testing.T) clickhouse.Config {
	t.Helper()
	return chtest.ShardedDatabase(t, clickhouse.WithoutCoordination)
}

// schemas runs f on a single-node database, on a cluster-mode one of one
// shard and on one sharded over two shards of two replicas: the writers,
// views and migrations must behave the same on all three.
func schemas(t *testing.T, f func(*testing.T, clickhouse.Config)) {
	t.Run("single", func(t *testing.T) { f(t, chtest.Database(t)) })
	t.Run("cluster", func(t *testing.T) { f(t, clusterDatabase(t)) })
	t.Run("sharded", func(t *testing.T) { f(t, shardedDatabase(t)) })
}

// TestClusterTables checks what cluster mode creates: each table as
// <name>_local holding the rows and <name> distributed over it with its
// sharding key, and views over the Distributed names.
func TestClusterTables(t *testing.T) {
	cfg := clusterDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := chtest.Conn(t, cfg)
	got := map[string]string{}
	rows, err := conn.Query(ctx, "SELECT name, if(engine_full = '', engine, engine_full) FROM system.tables WHERE database = ?", cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, engine string
		if err := rows.Scan(&name, &engine); err != nil {
			t.Fatal(err)
		}
		got[name] = engine
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for table, key := range map[string]string{
		"schema_migrations":                  "Version",
		"otel_logs":                          "cityHash64(ServiceName)",
		"otel_metrics_gauge":                 "cityHash64(ServiceName)",
		"otel_metrics_sum":                   "cityHash64(ServiceName)",
		"otel_metrics_histogram":             "cityHash64(ServiceName)",
		"otel_metrics_exponential_histogram": "cityHash64(ServiceName)",
		"otel_metrics_summary":               "cityHash64(ServiceName)",
		"deploys":                            "cityHash64(DeployId)",
		"incidents":                          "cityHash64(IncidentId)",
		"incident_suspects":                  "cityHash64(IncidentId)",
	} {
		want := "Distributed('" + chtest.Cluster + "', '" + cfg.Database + "', '" + table + "_local', " + key + ")"
		if got[table] != want {
			t.Errorf("%s: engine %q, want %q", table, got[table], want)
		}
		if !strings.Contains(got[table+"_local"], "MergeTree") {
			t.Errorf("%s_local: engine %q, want a MergeTree", table, got[table+"_local"])
		}
		delete(got, table)
		delete(got, table+"_local")
	}
	for _, v := range []string{"dora_daily", "dora_summary"} {
		if got[v] != "View" {
			t.Errorf("%s: engine %q, want View", v, got[v])
		}
		delete(got, v)
	}
	if got["incident_spans"] != "Dictionary" {
		t.Errorf("incident_spans: engine %q, want Dictionary", got["incident_spans"])
	}
	delete(got, "incident_spans")
	if len(got) != 0 {
		t.Errorf("unexpected tables: %v", got)
	}
}

// TestClusterTokenReachesShard pins the ClickHouse behaviour the writer's
// exactly-once rests on: a foreground insert into a Distributed table
// passes insert_deduplication_token on to the shard, which drops a repeat.
// prefer_localhost_replica=0 makes the Distributed table send the block
// over a connection, as to a remote shard, rather than insert it locally.
func TestClusterTokenReachesShard(t *testing.T) {
	cfg := clusterDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := chtest.Conn(t, cfg)
	insert := func(token string) {
		t.Helper()
		ctx := chgo.Context(ctx, chgo.WithSettings(chgo.Settings{
			"insert_deduplication_token":    token,
			"distributed_foreground_insert": 1,
			"prefer_localhost_replica":      0,
			"async_insert":                  0,
		}))
		if err := conn.Exec(ctx, `INSERT INTO otel_logs (Timestamp, ServiceName, Body) VALUES
			('2026-11-01 10:00:00', 'a', 'one'), ('2026-11-01 10:00:01', 'b', 'two')`); err != nil {
			t.Fatalf("insert with token %s: %v", token, err)
		}
	}
	for _, token := range []string{"t1", "t1", "t2"} {
		insert(token)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM otel_logs_local").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("otel_logs_local has %d rows after tokens t1, t1, t2; want 4", n)
	}
}
