// Package chtest gives tests a real ClickHouse: the local server from
// chlocal, started once per test binary, with a fresh database per test.
//
//	func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		cfg := chtest.Database(t) // migrated, dropped when the test ends
//		...
//	}
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
)

// Cluster names the cluster the shared server defines in remote_servers:
// one shard, one replica, the server itself. Distributed tables over it
// work; ON CLUSTER and Replicated engines do not (no Keeper).
const Cluster = "faultline_test"

// Sharded names the cluster of the shared sharded servers: two shards of
// two replicas each, every server a separate local ClickHouse.
const Sharded = "faultline_sharded"

var (
	mu     sync.Mutex
	srv    *chlocal.Server
	srvDir string

	sharded    *chlocal.Cluster
	shardedDir string
)

// Main runs the tests and stops the shared server, if one was started.
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if srv != nil {
		_ = srv.Stop()
		_ = os.RemoveAll(srvDir)
		srv = nil
	}
	if sharded != nil {
		_ = sharded.Stop()
		_ = os.RemoveAll(shardedDir)
		sharded = nil
	}
	return code
}

// Bin finds the faultline-clickhouse launcher: $FAULTLINE_CLICKHOUSE_BIN
// (set by make), else bin/ at the module root.
func Bin() (string, error) {
	if b := os.Getenv("FAULTLINE_CLICKHOUSE_BIN"); b != "" {
		return b, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin", "faultline-clickhouse"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Server returns the test binary's shared local ClickHouse, starting it on
// first use. The tests fail (not skip) when it cannot start: run them with
// make test, which builds the launcher.
func Server(t testing.TB) *chlocal.Server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if srv != nil {
		return srv
	}
	bin, err := Bin()
	if err != nil {
		t.Fatalf("chtest: %v", err)
	}
	dir, err := os.MkdirTemp("", "faultline-chtest-")
	if err != nil {
		t.Fatalf("chtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Restart: a crash of the engine under a test's load (seen under kill -9
	// of clients mid-insert) must not take every later test down with it.
	s, err := chlocal.Start(ctx, chlocal.Options{Bin: bin, Dir: dir, Restart: true, Output: os.Stderr, Cluster: Cluster})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("chtest: start local ClickHouse (run the tests with make test, which builds %s): %v", bin, err)
	}
	srv, srvDir = s, dir
	return srv
}

// Config returns settings for the shared server with the given database,
// without creating it.
func Config(t testing.TB, database string) clickhouse.Config {
	s := Server(t)
	return clickhouse.Config{
		Addr:        []string{s.Addr},
		Database:    database,
		User:        "default",
		DialTimeout: 5 * time.Second,
		MaxConns:    4,
	}
}

// Database creates a fresh database on the shared server, applies every
// migration, and drops it when the test ends.
func Database(t testing.TB) clickhouse.Config {
	t.Helper()
	return DatabaseWith(t, nil)
}

// DatabaseWith is Database with the settings changed by mod (when not nil)
// before migrating, for instance to migrate in cluster mode.
func DatabaseWith(t testing.TB, mod func(*clickhouse.Config)) clickhouse.Config {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	cfg := Config(t, "test_"+hex.EncodeToString(b[:]))
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := clickhouse.Migrate(ctx, cfg, nil); err != nil {
		t.Fatalf("chtest: migrate %s: %v", cfg.Database, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := clickhouse.Open(ctx, Config(t, "default"), nil)
		if err != nil {
			t.Logf("chtest: drop %s: %v", cfg.Database, err)
			return
		}
		defer conn.Close()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+cfg.Database+"` SYNC"); err != nil {
			t.Logf("chtest: drop %s: %v", cfg.Database, err)
		}
	})
	return cfg
}

// Conn opens a connection to cfg's database, closed when the test ends.
func Conn(t testing.TB, cfg clickhouse.Config) driver.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := clickhouse.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("chtest: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// ShardedCluster returns the test binary's shared cluster of 2 shards x 2
// replicas, starting it on first use. Its tables are plain MergeTree (the
// engine cannot run Replicated ones), so the Distributed tables write
// every replica of a shard themselves (internal_replication false). Each
// server comes back 2s after a crash, as under a service manager: long
// enough for a test to see the outage. Tests that use it are skipped
// under -short: four servers take a while to start.
func ShardedCluster(t testing.TB) *chlocal.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("a cluster of four local servers: skipped under -short")
	}
	mu.Lock()
	defer mu.Unlock()
	if sharded != nil {
		return sharded
	}
	bin, err := Bin()
	if err != nil {
		t.Fatalf("chtest: %v", err)
	}
	dir, err := os.MkdirTemp("", "faultline-chtest-cluster-")
	if err != nil {
		t.Fatalf("chtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := chlocal.StartCluster(ctx, chlocal.ClusterOptions{
		Bin: bin, Dir: dir, Name: Sharded, Shards: 2, Replicas: 2,
		Output: os.Stderr, Restart: true, RestartDelay: 2 * time.Second,
	})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("chtest: start a local cluster (run the tests with make test, which builds %s): %v", bin, err)
	}
	sharded, shardedDir = c, dir
	return sharded
}

// ShardedDatabase creates a fresh database on every node of the shared
// cluster, migrated in cluster mode with the settings changed by mod (when
// not nil), and drops it everywhere when the test ends. The settings it
// returns list every node's address. Each node is migrated on its own: the
// engine runs no ON CLUSTER DDL, so mod must make the DDL do without it.
func ShardedDatabase(t testing.TB, mod func(*clickhouse.Config)) clickhouse.Config {
	t.Helper()
	c := ShardedCluster(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	cfg := clickhouse.Config{
		Addr:        c.Addrs(),
		Database:    "test_" + hex.EncodeToString(b[:]),
		User:        "default",
		Cluster:     c.Name,
		DialTimeout: 5 * time.Second,
		MaxConns:    4,
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, a := range cfg.Addr {
			node := cfg
			node.Addr, node.Database = []string{a}, "default"
			conn, err := clickhouse.Open(ctx, node, nil)
			if err != nil {
				t.Logf("chtest: drop %s on %s: %v", cfg.Database, a, err)
				continue
			}
			if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+cfg.Database+"` SYNC"); err != nil {
				t.Logf("chtest: drop %s on %s: %v", cfg.Database, a, err)
			}
			conn.Close()
		}
	})
	// The nodes are independent until the tables are used, so they are
	// migrated at once.
	errs := make([]error, len(cfg.Addr))
	var wg sync.WaitGroup
	for i, a := range cfg.Addr {
		node := cfg
		node.Addr = []string{a}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := clickhouse.Migrate(ctx, node, nil); err != nil {
				errs[i] = fmt.Errorf("migrate %s on %s: %w", cfg.Database, a, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("chtest: %v", err)
	}
	return cfg
}
