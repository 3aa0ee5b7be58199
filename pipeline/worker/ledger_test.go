package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestStalledWorkerLosesItsClaims freezes a worker for longer than the ack
// wait, once before its batch claims its messages and once after, before
// the batch owns them: JetStream redelivers the messages, a second worker
// batches and stores them, and when the first wakes up it finds them
// claimed (or its batch given up), so nothing is stored twice. Without the
// claims, both batches land.
func TestStalledWorkerLosesItsClaims(t *testing.T) {
	for _, at := range []string{"before claiming", "before owning"} {
		t.Run(at, func(t *testing.T) { testStall(t, at) })
	}
}

func testStall(t *testing.T, at string) {
	const msgs, per = 20, 100
	ns := natstest.Start(t)
	chcfg := chtest.Database(t)
	conn := chtest.Conn(t, chcfg)
	ctx := context.Background()
	for i := range msgs {
		publish(t, ns.JS, "otel_logs", nil, logsPayload(t, i*per, per))
	}

	cfg := testConfig()
	start := func(name string, hook func([]item)) (w *Worker, stop func()) {
		if hook == nil {
			hook = func([]item) {}
		}
		t.Helper()
		wctx, cancel := context.WithCancel(ctx)
		tw, err := clickhouse.NewTelemetryWriter(wctx, chcfg)
		if err != nil {
			t.Fatal(err)
		}
		w, err = New(ns.JS, Options{Config: cfg, NATS: ns.Config, Sink: tw, IsPermanent: clickhouse.IsPermanent,
			Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("worker", name)})
		if err != nil {
			t.Fatal(err)
		}
		if at == "before claiming" {
			w.beforeClaim = hook
		} else {
			w.beforeOwn = hook
		}
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		var once sync.Once
		stop = func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
				tw.Close()
			})
		}
		t.Cleanup(stop)
		return w, stop
	}

	frozen, thaw := make(chan int, 1), make(chan struct{})
	var first sync.Once
	a, stopA := start("a", func(items []item) {
		first.Do(func() {
			frozen <- len(items)
			<-thaw
		})
	})
	var held int
	select {
	case held = <-frozen:
	case <-time.After(30 * time.Second):
		t.Fatal("worker a never formed a batch")
	}
	t.Logf("worker a froze holding %d messages", held)
	before := claimsLostTotal()

	// While a sleeps, its messages come back after the ack wait and b
	// stores them: those a has not pulled again meanwhile (it still pulls,
	// only its writer is frozen).
	_, stopB := start("b", nil)
	rows := func() (n, uniq uint64) {
		if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(Body) FROM otel_logs").Scan(&n, &uniq); err != nil {
			t.Fatal(err)
		}
		return n, uniq
	}
	deadline := time.Now().Add(2*cfg.AckWait + 30*time.Second)
	for n, _ := rows(); n == 0; n, _ = rows() {
		if time.Now().After(deadline) {
			t.Fatal("worker b stored nothing of a's redelivered messages")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(cfg.AckWait) // a round of redeliveries more
	stored, _ := rows()
	t.Logf("worker b stored %d records of a's batch; waking a", stored)
	close(thaw)
	// a now records its stale batch and claims its messages: those b
	// stored are lost to it, so the batch is never inserted.
	waitDrained(t, ns.JS, ns.Config.TelemetryStream, cfg.Consumer, 2*cfg.AckWait+30*time.Second, nil)
	// Once the ack floor passes a claim group, the group goes, and the
	// entries with it: as if the stream had moved on by a group.
	a.ledger.collect(ctx, 1<<claimGroupBits)
	stopA()
	stopB()

	// (The counter is the process's: b's lost claims count too.)
	if lost := claimsLostTotal() - before; lost == 0 {
		t.Errorf("no claim lost: worker a's stale batch was never stopped")
	}
	if n, uniq := rows(); n != msgs*per || uniq != msgs*per {
		t.Fatalf("otel_logs holds %d rows (%d distinct), want %d once each", n, uniq, msgs*per)
	}
	// Nothing is left in the ledger.
	kv, err := ns.JS.KeyValue(ctx, cfg.LedgerBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for k := range keys.Keys() {
		left = append(left, k)
	}
	if len(left) != 0 {
		t.Errorf("ledger keys left after the ack floor passed every message: %v", left)
	}
}

func claimsLostTotal() uint64 { return newWorkerMetrics().claimsLost.Get() }

// testWriter sends a worker's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// rejecting is the ClickHouse writer with one fault injected: it refuses,
// as a permanent error, any batch whose record count is not a multiple of
// 100, that is any batch holding the one message of 7 records.
type rejecting struct{ *clickhouse.TelemetryWriter }

var errRejected = errors.New("rows rejected")

func (r rejecting) Write(ctx context.Context, b *otlp.Batch, token string) error {
	if b.Records()%100 != 0 {
		return errRejected
	}
	return r.TelemetryWriter.Write(ctx, b, token)
}

// TestSplitIsolatesRejectedMessage sends ten good messages and one that
// ClickHouse rejects in one batch: the batch is split in halves under
// tokens derived from its own until the bad message is alone; it is
// dead-lettered and the rest stored once.
func TestSplitIsolatesRejectedMessage(t *testing.T) {
	ns := natstest.Start(t)
	chcfg := chtest.Database(t)
	conn := chtest.Conn(t, chcfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 11 {
		n := 100
		if i == 6 {
			n = 7
		}
		publish(t, ns.JS, "otel_logs", nil, logsPayload(t, i*100, n))
	}
	tw, err := clickhouse.NewTelemetryWriter(ctx, chcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tw.Close()
	cfg := testConfig()
	cfg.BatchWait = time.Second // all eleven in one batch
	w, err := New(ns.JS, Options{Config: cfg, NATS: ns.Config, Sink: rejecting{tw},
		IsPermanent: func(err error) bool { return errors.Is(err, errRejected) }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitDrained(t, ns.JS, ns.Config.TelemetryStream, cfg.Consumer, time.Minute, nil)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var n, uniq uint64
	if err := conn.QueryRow(context.Background(), "SELECT count(), uniqExact(Body) FROM otel_logs").Scan(&n, &uniq); err != nil {
		t.Fatal(err)
	}
	if n != 1000 || uniq != 1000 {
		t.Fatalf("otel_logs holds %d rows (%d distinct), want the 1000 of the good messages once each", n, uniq)
	}
	dlq, err := ns.JS.Stream(context.Background(), ns.Config.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dlq.GetLastMsgForSubject(context.Background(), "faultline.dlq.insert")
	if err != nil {
		t.Fatalf("no insert dead letter: %v", err)
	}
	if got := m.Header.Get("Faultline-Stream-Seq"); got != "7" {
		t.Errorf("dead-lettered message %s, want 7", got)
	}
}
