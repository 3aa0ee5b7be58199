package chlocal_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestServeInsertRestart proves the local server speaks clickhouse-go's
// native protocol (DDL, batch insert, query) and keeps its data across a
// clean stop and start on the same directory.
func TestServeInsertRestart(t *testing.T) {
	bin, err := chtest.Bin()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	start := func() *chlocal.Server {
		s, err := chlocal.Start(ctx, chlocal.Options{Bin: bin, Dir: dir})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		return s
	}
	query := func(s *chlocal.Server, f func(clickhouse.Conn)) {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		f(conn)
	}

	s := start()
	query(s, func(c clickhouse.Conn) {
		if err := c.Exec(ctx, "CREATE DATABASE IF NOT EXISTS t1"); err != nil {
			t.Fatal(err)
		}
		if err := c.Exec(ctx, "CREATE TABLE t1.kv (k UInt64, v String) ENGINE = MergeTree ORDER BY k"); err != nil {
			t.Fatal(err)
		}
		b, err := c.PrepareBatch(ctx, "INSERT INTO t1.kv")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 1000; i++ {
			if err := b.Append(uint64(i), "v"); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	})
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "faultline-control.fifo")); !os.IsNotExist(err) {
		t.Errorf("control pipe left behind after a clean stop: %v", err)
	}

	s = start()
	defer s.Stop()
	query(s, func(c clickhouse.Conn) {
		var n, sum uint64
		if err := c.QueryRow(ctx, "SELECT count(), sum(k) FROM t1.kv").Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		if n != 1000 || sum != 999*1000/2 {
			t.Fatalf("after restart: count %d sum %d, want 1000 and %d", n, sum, 999*1000/2)
		}
	})
}

func TestStartMissingBinary(t *testing.T) {
	_, err := chlocal.Start(context.Background(), chlocal.Options{Bin: filepath.Join(t.TempDir(), "nope"), Dir: t.TempDir()})
	if err == nil {
		t.Fatal("want an error for a missing launcher binary")
	}
}

// TestRestartAfterCrash: a server that dies by itself comes back on the
// same ports with its data.
func TestRestartAfterCrash(t *testing.T) {
	bin, err := chtest.Bin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := chlocal.Start(ctx, chlocal.Options{Bin: bin, Dir: t.TempDir(), Restart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE TABLE default.kv (k UInt64) ENGINE = MergeTree ORDER BY k"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "INSERT INTO default.kv VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	// The restart is counted once the new process answers.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && s.Restarts() == 0; time.Sleep(50 * time.Millisecond) {
	}
	var n uint64
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := conn.QueryRow(ctx, "SELECT count() FROM default.kv").Scan(&n); err == nil {
			break
		}
	}
	if n != 2 || s.Restarts() != 1 {
		t.Fatalf("after a crash: %d rows, %d restarts; want 2 and 1", n, s.Restarts())
	}
}

func TestStartBadClusterName(t *testing.T) {
	bin, err := chtest.Bin()
	if err != nil {
		t.Fatal(err)
	}
	_, err = chlocal.Start(context.Background(), chlocal.Options{Bin: bin, Dir: t.TempDir(), Cluster: "a</x>"})
	if err == nil {
		t.Fatal("want an error for a cluster name that is not an identifier")
	}
}
