package correlator

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

// minute returns the aggregates one worker message would carry for a
// minute of checkout in production.
func minute(m int, errors uint64) []detect.Aggregate {
	return []detect.Aggregate{{Service: "checkout", Environment: "production", Version: "v2",
		Minute: t0.Add(time.Duration(m) * time.Minute).Unix(), Total: 200, Errors: errors}}
}

func publishAggs(t *testing.T, ns *natstest.Server, id string, entries ...aggEntry) {
	t.Helper()
	b, _ := json.Marshal(aggMessage{Messages: entries})
	m := nats.NewMsg(broker.AggregatesSubject)
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, id)
	if _, err := ns.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// TestStreamOrderAndGaps: aggregates committed by workers out of order are
// released in telemetry stream order, a gap is waited for only GapWait, and a
// deploy that arrives after the incident re-correlates it.
func TestStreamOrderAndGaps(t *testing.T) {
	ns := natstest.Start(t)
	cfg := chtest.Database(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn := chtest.Conn(t, cfg)

	// Sequences 1..12 carry minutes 0..11; errors in minutes 3 and 4.
	// Batches arrive from "workers" out of order; sequence 7 never comes
	// (a dead-lettered message).
	entry := func(seq int) aggEntry {
		errs := uint64(0)
		if seq == 4 || seq == 5 {
			errs = 60
		}
		return aggEntry{Seq: uint64(seq), Aggs: minute(seq-1, errs)}
	}
	publishAggs(t, ns, "b3", entry(8), entry(9), entry(10), entry(11), entry(12))
	publishAggs(t, ns, "b2", entry(4), entry(5), entry(6))
	publishAggs(t, ns, "b1", entry(1), entry(2), entry(3))

	c := New(Config{Threshold: 0.5, FlushInterval: 100 * time.Millisecond, GapWait: 500 * time.Millisecond},
		ns.JS, ns.Config, clickhouse.NewEventsWriter(conn), nil)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	query := func() (started, resolved, suspect string, n uint64) {
		rows, err := conn.Query(ctx, "SELECT formatDateTime(StartedAt, '%H:%i'), ifNull(formatDateTime(ResolvedAt, '%H:%i'), ''), SuspectVersion FROM incidents FINAL")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			n++
			if err := rows.Scan(&started, &resolved, &suspect); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	var s, r, v string
	var n uint64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if s, r, v, n = query(); n == 1 && r != "" {
			break
		}
	}
	if n != 1 || s != "10:03" || r != "10:05" || v != "" {
		t.Fatalf("incident %d rows: started %q resolved %q suspect %q; want one, 10:03-10:05, no suspect yet", n, s, r, v)
	}

	// The deploy event arrives late: the incident is pinned on it.
	d := map[string]string{"id": "d-v2", "service": "checkout", "environment": "production", "version": "v2",
		"timestamp": t0.Add(time.Minute).Format(time.RFC3339), "type": "deploy", "status": "succeeded"}
	b, _ := json.Marshal(d)
	if _, err := ns.JS.Publish(ctx, broker.DeploysSubject, b); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && v == ""; time.Sleep(100 * time.Millisecond) {
		_, _, v, _ = query()
	}
	if v != "v2" {
		t.Fatalf("after the late deploy the suspect is %q, want v2", v)
	}
	var failure bool
	if err := conn.QueryRow(ctx, "SELECT ChangeFailure FROM deploys FINAL WHERE DeployId = 'd-v2'").Scan(&failure); err != nil || !failure {
		t.Fatalf("deploy d-v2 change failure = %v, %v", failure, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
