package correlator

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/processors/alert"
	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/processors/events"
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

	// Sequences 1..17 carry minutes 0..16; errors in minutes 8 and 9 (the
	// first minutes of a service only teach its baseline). Batches arrive
	// from "workers" out of order; sequence 12 never comes (a
	// dead-lettered message).
	entry := func(seq int) aggEntry {
		errs := uint64(0)
		if seq == 9 || seq == 10 {
			errs = 60
		}
		return aggEntry{Seq: uint64(seq), Aggs: minute(seq-1, errs)}
	}
	publishAggs(t, ns, "b3", entry(13), entry(14), entry(15), entry(16), entry(17))
	publishAggs(t, ns, "b2", entry(9), entry(10), entry(11))
	publishAggs(t, ns, "b1", entry(1), entry(2), entry(3), entry(4), entry(5), entry(6), entry(7), entry(8))

	c := New(Config{Threshold: 0.5, FlushInterval: 100 * time.Millisecond, GapWait: 500 * time.Millisecond},
		ns.JS, ns.Config, mustEventsWriter(t, conn, cfg), nil)
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
	if n != 1 || s != "10:08" || r != "10:10" || v != "" {
		t.Fatalf("incident %d rows: started %q resolved %q suspect %q; want one, 10:08-10:10, no suspect yet", n, s, r, v)
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

// TestEarlyVerdictRetracted: on live data an incident opens provisionally
// seconds after its second breaching minute ends, pinned and announced;
// late records then dilute that minute, and the final verdict withdraws it
// everywhere: rows, change failure, and a retraction alert.
func TestEarlyVerdictRetracted(t *testing.T) {
	t.Run("live", func(t *testing.T) { testEarlyVerdictRetracted(t, false) })
	// A restart between the provisional opening and the final verdict:
	// the replay never opens it, the sent bucket still retracts it.
	t.Run("across a restart", func(t *testing.T) { testEarlyVerdictRetracted(t, true) })
	// Confirmed by the final verdict after a restart: the record of the
	// provisional incident goes, or a later restart whose replay no longer
	// holds those minutes would retract a real incident.
	t.Run("confirmed across a restart", func(t *testing.T) { testEarlyVerdictConfirmedAfterRestart(t) })
}

func testEarlyVerdictConfirmedAfterRestart(t *testing.T) {
	ns := natstest.Start(t)
	cfg := chtest.Database(t)
	conn := chtest.Conn(t, cfg)
	L, seq := liveBreach(t, ns)
	run := func(early time.Duration) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		c := New(Config{Threshold: 0.5, FlushInterval: 100 * time.Millisecond, GapWait: 500 * time.Millisecond, EarlyAfter: early},
			ns.JS, ns.Config, mustEventsWriter(t, conn, cfg), nil)
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	id := detect.IncidentID("checkout", "production", L.Add(-2*time.Minute))
	recorded := func() bool {
		kv, err := ns.JS.KeyValue(context.Background(), "faultline_alerts_sent") // made by Run
		if err != nil {
			return false
		}
		_, err = kv.Get(context.Background(), provPrefix+id)
		return err == nil
	}
	incidents := func() (n uint64) {
		if err := conn.QueryRow(context.Background(), "SELECT count() FROM incidents FINAL WHERE IncidentId = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	stop := run(time.Second)
	waitUntil(t, "the provisional incident and its record", func() bool { return incidents() == 1 && recorded() })
	stop()
	// Back after the live window; the minutes that follow confirm it.
	stop = run(0)
	defer stop()
	sendAggs(t, ns, "confirm", seq, liveAgg(L, 0, 200, 60), liveAgg(L, 1, 200, 60))
	waitUntil(t, "the record to go once confirmed", func() bool { return !recorded() })
	if n := incidents(); n != 1 {
		t.Fatalf("the confirmed incident has %d rows, want 1", n)
	}
}

// TestEarlyVerdictStartMoved: late records dilute the first minute of a
// provisional incident, the final verdict confirms it a minute later under
// the same id, and the workers hear of the new start (an "open" event with
// the confirmed StartedAt after the provisional one).
func TestEarlyVerdictStartMoved(t *testing.T) {
	ns := natstest.Start(t)
	cfg := chtest.Database(t)
	conn := chtest.Conn(t, cfg)
	L, seq := liveBreach(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(Config{Threshold: 0.5, FlushInterval: 100 * time.Millisecond, GapWait: 500 * time.Millisecond, EarlyAfter: time.Second},
		ns.JS, ns.Config, mustEventsWriter(t, conn, cfg), nil)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	id := detect.IncidentID("checkout", "production", L.Add(-2*time.Minute))
	started := func() (s time.Time) {
		_ = conn.QueryRow(ctx, "SELECT StartedAt FROM incidents FINAL WHERE IncidentId = ?", id).Scan(&s)
		return s.UTC()
	}
	waitUntil(t, "the provisional incident", func() bool { return started().Equal(L.Add(-2 * time.Minute)) })
	sendAggs(t, ns, "late", seq, liveAgg(L, -2, 100000, 0), liveAgg(L, 0, 200, 60), liveAgg(L, 1, 200, 60), liveAgg(L, 2, 200, 60))
	waitUntil(t, "the confirmed start", func() bool { return started().Equal(L.Add(-time.Minute)) })

	var opens []time.Time
	waitUntil(t, "both open events", func() bool {
		opens = opens[:0]
		cons, err := ns.JS.OrderedConsumer(ctx, ns.Config.EventsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{broker.IncidentsSubject}})
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			var e events.Incident
			if json.Unmarshal(m.Data(), &e) == nil && e.ID == id && e.Status == events.StatusOpen {
				opens = append(opens, e.Timestamp.UTC())
			}
		}
		return len(opens) == 2
	})
	if !opens[0].Equal(L.Add(-2*time.Minute)) || !opens[1].Equal(L.Add(-time.Minute)) {
		t.Fatalf("open events at %v, want the provisional then the confirmed start", opens)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// liveBreach publishes ten minutes of checkout ending with the current
// one, L, the last two (L-2, L-1) breaching, and returns L and the last
// telemetry sequence used. It waits, if needed, until minute L-1 ended more
// than two seconds ago and minute L has at least ten seconds to go.
func liveBreach(t *testing.T, ns *natstest.Server) (time.Time, uint64) {
	t.Helper()
	if time.Now().Second() >= 50 {
		time.Sleep(time.Duration(61-time.Now().Second()) * time.Second)
	}
	if time.Now().Second() < 2 {
		time.Sleep(2 * time.Second)
	}
	L := time.Now().UTC().Truncate(time.Minute)
	var live []aggEntry
	for m := -10; m < 0; m++ {
		errs := uint64(0)
		if m >= -2 {
			errs = 60
		}
		live = append(live, liveAgg(L, m, 200, errs))
	}
	return L, sendAggs(t, ns, "live", 0, live...)
}

// liveAgg is checkout's aggregate for minute L+m.
func liveAgg(L time.Time, m int, total, errors uint64) aggEntry {
	return aggEntry{Aggs: []detect.Aggregate{{Service: "checkout", Environment: "production", Version: "v2",
		Minute: L.Add(time.Duration(m) * time.Minute).Unix(), Total: total, Errors: errors}}}
}

// sendAggs publishes entries under the telemetry sequences after seq and
// returns the last one.
func sendAggs(t *testing.T, ns *natstest.Server, id string, seq uint64, es ...aggEntry) uint64 {
	t.Helper()
	for i := range es {
		seq++
		es[i].Seq = seq
	}
	publishAggs(t, ns, id, es...)
	return seq
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func testEarlyVerdictRetracted(t *testing.T, restart bool) {
	ns := natstest.Start(t)
	cfg := chtest.Database(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn := chtest.Conn(t, cfg)

	L, seq := liveBreach(t, ns)
	at := func(m int, total, errors uint64) aggEntry { return liveAgg(L, m, total, errors) }
	send := func(id string, es ...aggEntry) { seq = sendAggs(t, ns, id, seq, es...) }
	d, _ := json.Marshal(map[string]string{"id": "d-v2", "service": "checkout", "environment": "production", "version": "v2",
		"timestamp": L.Add(-20 * time.Minute).Format(time.RFC3339), "type": "deploy", "status": "succeeded"})
	if _, err := ns.JS.Publish(ctx, broker.DeploysSubject, d); err != nil {
		t.Fatal(err)
	}
	c := New(Config{Threshold: 0.5, FlushInterval: 100 * time.Millisecond, GapWait: 500 * time.Millisecond, EarlyAfter: time.Second},
		ns.JS, ns.Config, mustEventsWriter(t, conn, cfg), nil)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	id := detect.IncidentID("checkout", "production", L.Add(-2*time.Minute))
	state := func() (incidents uint64, failure bool) {
		if err := conn.QueryRow(ctx, "SELECT count() FROM incidents FINAL WHERE IncidentId = ? AND SuspectVersion = 'v2'", id).Scan(&incidents); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT max(ChangeFailure) FROM deploys FINAL WHERE DeployId = 'd-v2'").Scan(&failure); err != nil {
			t.Fatal(err)
		}
		return
	}
	waitFor := func(what string, ok func() bool) { t.Helper(); waitUntil(t, what, ok) }
	waitFor("the provisional incident, pinned on v2", func() bool { n, f := state(); return n == 1 && f })

	if restart {
		// The correlator goes away before the final verdict and comes
		// back after the live window: only the bucket remembers the
		// provisional incident.
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithCancel(context.Background())
		defer cancel()
		c = New(Config{Threshold: 0.5, FlushInterval: 100 * time.Millisecond, GapWait: 500 * time.Millisecond},
			ns.JS, ns.Config, mustEventsWriter(t, conn, cfg), nil)
		go func() { done <- c.Run(ctx) }()
	}

	// Late records dilute minute L-1 below 5%; later minutes move the
	// watermark past it.
	send("late", at(-1, 100000, 0), at(0, 200, 0), at(1, 200, 0))
	waitFor("the retraction", func() bool { n, f := state(); return n == 0 && !f })
	var suspects uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM incident_suspects FINAL WHERE IncidentId = ?", id).Scan(&suspects); err != nil || suspects != 0 {
		t.Fatalf("suspects of the retracted incident: %d, %v", suspects, err)
	}

	// The alerts stream holds the provisional alert and its retraction.
	var types []string
	waitFor("both alerts", func() bool {
		types = types[:0]
		for _, typ := range []string{alert.TypeCorrelated, alert.TypeRetracted} {
			m, err := ns.JS.Stream(ctx, ns.Config.AlertsStream)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := m.GetLastMsgForSubject(ctx, broker.AlertsPrefix+"."+typ)
			if err != nil {
				continue
			}
			var ev alert.Event
			if err := json.Unmarshal(raw.Data, &ev); err != nil || ev.Incident == nil || ev.Incident.ID != id {
				t.Fatalf("alert %s: %s (%v)", typ, raw.Data, err)
			}
			if typ == alert.TypeCorrelated && !ev.Incident.Provisional {
				t.Fatalf("the early alert is not marked provisional: %s", raw.Data)
			}
			types = append(types, typ)
		}
		return len(types) == 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func mustEventsWriter(t *testing.T, conn driver.Conn, cfg clickhouse.Config) *clickhouse.EventsWriter {
	t.Helper()
	w, err := clickhouse.NewEventsWriter(conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}
