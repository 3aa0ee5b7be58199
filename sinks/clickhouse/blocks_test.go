package clickhouse_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestAbortedBlockInsertStoresNothing pins what streaming an insert in
// blocks relies on for exactly-once: an insert that ends early, after some
// of its blocks were sent, stores none of them (the server squashes the
// blocks of one insert and writes them only at its end), whether the
// client gives up or its connection is cut; the retry, with the same
// token, then stores every row once, and a repeat stores nothing.
func TestAbortedBlockInsertStoresNothing(t *testing.T) {
	cfg := chtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := chtest.Conn(t, cfg)
	if err := conn.Exec(ctx, "CREATE TABLE blocks (x UInt64) ENGINE = MergeTree ORDER BY x SETTINGS non_replicated_deduplication_window = 100"); err != nil {
		t.Fatal(err)
	}
	dial := func() *ch.Client {
		c, err := ch.Dial(ctx, ch.Options{Address: cfg.Addr[0], Database: cfg.Database})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	const blocks, rows = 5, 1000
	// insert sends the blocks on a fresh connection; after the third,
	// abort (when set) ends it early.
	insert := func(ctx context.Context, abort func() error) error {
		c := dial()
		defer c.Close()
		var x proto.ColUInt64
		sent := 0
		fill := func() {
			x.Reset()
			for i := 0; i < rows; i++ {
				x.Append(uint64(sent*rows + i))
			}
			sent++
		}
		fill()
		return c.Do(ctx, ch.Query{
			Body:  "INSERT INTO blocks VALUES",
			Input: proto.Input{{Name: "x", Data: &x}},
			OnInput: func(context.Context) error {
				if sent == 3 && abort != nil {
					return abort()
				}
				if sent == blocks {
					x.Reset()
					return io.EOF
				}
				fill()
				return nil
			},
			Settings: []ch.Setting{
				{Key: "insert_deduplication_token", Value: "tok", Important: true},
				{Key: "insert_deduplicate", Value: "1", Important: true},
				{Key: "async_insert", Value: "0", Important: true},
			},
		})
	}
	count := func() uint64 {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM blocks").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The client gives up.
	if err := insert(ctx, func() error { return errors.New("worker died") }); err == nil {
		t.Fatal("the abandoned insert reported success")
	}
	if n := count(); n != 0 {
		t.Fatalf("an insert abandoned after 3 of %d blocks stored %d rows", blocks, n)
	}
	// The connection is cut: ch-go closes it when the context ends.
	cctx, cut := context.WithCancel(ctx)
	if err := insert(cctx, func() error { cut(); return nil }); err == nil {
		t.Fatal("the cut insert reported success")
	}
	cut()
	if n := count(); n != 0 {
		t.Fatalf("an insert cut after 3 of %d blocks stored %d rows", blocks, n)
	}
	for i := 0; i < 2; i++ {
		if err := insert(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != blocks*rows {
		t.Fatalf("after the retry and a repeat: %d rows, want %d", n, blocks*rows)
	}
}
