package correlator

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/replay"
	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/processors/events"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// tables is what a run leaves behind: the rows of the correlator's tables
// (FINAL, without UpdatedAt) and the alerts it published.
type tables struct {
	deploys, incidents, suspects, alerts []string
}

// rig is one NATS and one ClickHouse database a scenario runs against.
type rig struct {
	t    *testing.T
	ns   *natstest.Server
	conn driver.Conn
	w    Store
	feed *feeder
}

func newRig(t *testing.T, rules detect.Rules) *rig {
	ns := natstest.Start(t)
	cfg := chtest.Database(t)
	conn := chtest.Conn(t, cfg)
	return &rig{t: t, ns: ns, conn: conn, w: mustEventsWriter(t, conn, cfg), feed: newFeeder(t, ns, rules)}
}

func testConfig() Config {
	return Config{Threshold: 0.5, FlushInterval: 100 * time.Millisecond, GapWait: time.Second,
		CheckpointBucket: "faultline_correlator", CheckpointInterval: 200 * time.Millisecond, EventLateness: time.Hour}
}

// run starts a correlator, waits until it has caught up with the streams
// and its tables have settled, and stops it.
func (r *rig) run(rules detect.Rules) {
	t := r.t
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(testConfig(), r.ns.JS, r.ns.Config, r.w, nil)
	c.rules = rules
	c.det = detect.NewDetector(rules)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	last, stable := "", 0
	for deadline := time.Now().Add(2 * time.Minute); stable < 6; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the correlator did not settle")
		}
		s := fmt.Sprint(r.read())
		if c.Ready(ctx) == nil && s == last {
			stable++
		} else {
			last, stable = s, 0
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func (r *rig) rows(q string) []string {
	rows, err := r.conn.Query(context.Background(), q)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			r.t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func (r *rig) read() tables {
	var tb tables
	tb.deploys = r.rows(`SELECT toString(tuple(DeployId, Service, Environment, Version, Type, Status, DeployedAt, CommitSha, FirstCommitAt,
		LeadTimeSeconds, Author, Url, mapSort(Attributes), ChangeFailure, FailureReason, RolledBackBy)) FROM deploys FINAL ORDER BY DeployId`)
	tb.incidents = r.rows(`SELECT toString(tuple(IncidentId, Service, Environment, Title, Severity, Source, Signal, DetectionReason, StartedAt,
		ResolvedAt, TimeToRestoreSeconds, SuspectDeployId, SuspectVersion, Confidence, RestoredByDeployId)) FROM incidents FINAL ORDER BY IncidentId`)
	tb.suspects = r.rows(`SELECT toString(tuple(IncidentId, DeployId, Rank, Score, Confidence, Reason, Service, Environment, Version))
		FROM incident_suspects FINAL ORDER BY IncidentId, DeployId`)
	ctx := context.Background()
	st, err := r.ns.JS.Stream(ctx, r.ns.Config.AlertsStream)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	for s := info.State.FirstSeq; s > 0 && s <= info.State.LastSeq; s++ {
		m, err := st.GetMsg(ctx, s)
		if err != nil {
			continue
		}
		tb.alerts = append(tb.alerts, string(m.Data))
	}
	slices.Sort(tb.alerts)
	return tb
}

func diff(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := 0; i < max(len(got), len(want)); i++ {
		g, w := "(none)", "(none)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("%s: %d rows, want %d; first difference:\n got %s\nwant %s", what, len(got), len(want), g, w)
			return
		}
	}
}

// TestCheckpointResume runs the realistic scenario twice: once with one
// correlator from scratch, once with a correlator stopped halfway (it
// checkpoints at shutdown) and a new one that resumes from its checkpoint
// while the rest of the scenario arrives. Both must leave the same rows
// and send the same alerts, and the second correlator must not have read
// the first half again.
func TestCheckpointResume(t *testing.T) {
	if testing.Short() {
		t.Skip("three runs of the realistic scenario")
	}
	reqs, exp := replay.Realistic(1)
	rules := detect.DefaultRules()
	half := len(reqs) / 2

	ref := newRig(t, rules)
	ref.feed.feed(context.Background(), reqs)
	ref.feed.flush(context.Background())
	ref.run(rules)
	want := ref.read()

	res := newRig(t, rules)
	res.feed.feed(context.Background(), reqs[:half])
	res.feed.flush(context.Background())
	res.run(rules)
	saved := mCheckpoints.Get()
	if saved == 0 {
		t.Fatal("no checkpoint was written")
	}
	count := func(stream string) uint64 {
		st, _ := res.ns.JS.Stream(context.Background(), stream)
		info, _ := st.Info(context.Background())
		return info.State.Msgs
	}
	events := func() uint64 { return count(res.ns.Config.EventsStream) }
	firstHalf, firstAggs := events(), count(res.ns.Config.AggregatesStream)
	res.feed.feed(context.Background(), reqs[half:])
	res.feed.flush(context.Background())

	// Readiness after a resume counts the backlog from the checkpoint on.
	ctx := context.Background()
	probe := New(testConfig(), res.ns.JS, res.ns.Config, res.w, nil)
	if err := probe.openCheckpoints(ctx); err != nil {
		t.Fatal(err)
	}
	evStart, aggStart := probe.resume(ctx)
	if evStart != firstHalf+1 || aggStart != firstAggs+1 {
		t.Fatalf("resuming at events %d, aggregates %d; want %d and %d", evStart, aggStart, firstHalf+1, firstAggs+1)
	}
	evs, err := probe.follow(ctx, res.ns.Config.EventsStream, []string{broker.DeploysSubject, broker.IncidentsSubject}, evStart)
	if err != nil {
		t.Fatal(err)
	}
	aggs, err := probe.follow(ctx, res.ns.Config.AggregatesStream, []string{broker.AggregatesSubject}, aggStart)
	if err != nil {
		t.Fatal(err)
	}
	probe.startCatchUp(evs, aggs)
	evs.Stop()
	aggs.Stop()
	backlog := events() - firstHalf + count(res.ns.Config.AggregatesStream) - firstAggs
	if err := probe.Ready(ctx); err == nil || err.Error() != fmt.Sprintf("catching up, %d messages behind", backlog) {
		t.Fatalf("readiness after resuming: %v, want %d messages behind", err, backlog)
	}
	before := metricsEvents()
	res.run(rules)
	if read, all := metricsEvents()-before, events(); read != all-firstHalf {
		t.Errorf("the resumed correlator read %d events, want the %d of the second half (of %d)", read, all-firstHalf, all)
	}
	got := res.read()

	if len(want.incidents) == 0 || len(want.alerts) == 0 {
		t.Fatal("the reference run found nothing: the comparison tests nothing")
	}
	diff(t, "deploys", got.deploys, want.deploys)
	diff(t, "incidents", got.incidents, want.incidents)
	diff(t, "incident_suspects", got.suspects, want.suspects)
	diff(t, "alerts", got.alerts, want.alerts)
	t.Logf("%d deploys, %d incidents, %d suspects, %d alerts alike; %d scenario incidents", len(want.deploys), len(want.incidents),
		len(want.suspects), len(want.alerts), len(exp))
}

// metricsEvents reads the process-wide count of events correlators read.
func metricsEvents() uint64 {
	return metrics.GetOrCreateCounter("faultline_correlator_events_total").Get()
}

// TestCheckpointUnusable puts checkpoints this version must not use into
// the bucket and checks that the correlator replays its streams instead:
// every event is read and every deploy row written.
func TestCheckpointUnusable(t *testing.T) {
	reqs, _ := replay.Realistic(1)
	rules := detect.DefaultRules()
	var deploysOnly []replay.Request
	for _, r := range reqs {
		if r.Path == replay.PathDeploys {
			deploysOnly = append(deploysOnly, r)
		}
	}
	// A checkpoint of this format but saved under other rules.
	other := New(testConfig(), nil, broker.Config{}, nil, nil)
	other.rules.MinErrors++
	otherRules, err := encodeCheckpoint(checkpointState{Fingerprint: other.fingerprint(), EventsSeq: 1 << 40, AggregatesSeq: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	future := append([]byte{}, checkpointMagic...)
	future = binary.BigEndian.AppendUint32(future, checkpointFormat+1)
	truncated := append([]byte{}, otherRules[:len(otherRules)/2]...)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("not a checkpoint at all")},
		{"a later format", append(future, "whatever"...)},
		{"truncated", truncated},
		{"other rules", otherRules},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rules)
			ctx := context.Background()
			os, err := r.ns.JS.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "faultline_correlator"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.PutBytes(ctx, checkpointObject, tc.data); err != nil {
				t.Fatal(err)
			}
			r.feed.feed(ctx, deploysOnly)
			before := metricsEvents()
			r.run(rules)
			st, _ := r.ns.JS.Stream(ctx, r.ns.Config.EventsStream)
			info, _ := st.Info(ctx)
			if read := metricsEvents() - before; read != info.State.Msgs {
				t.Fatalf("read %d events of %d: not a full replay", read, info.State.Msgs)
			}
			got := r.read()
			if len(got.deploys) == 0 || !strings.Contains(fmt.Sprint(got.deploys), "checkout") {
				t.Fatalf("deploy rows after the replay: %v", got.deploys)
			}
			// The replay then wrote a good checkpoint over the bad one.
			b, err := os.GetBytes(ctx, checkpointObject)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeCheckpoint(b); err != nil {
				t.Fatalf("checkpoint after the replay: %v", err)
			}
		})
	}
}

// TestLateEventsReadHistory: with ten hours of hourly deploys in memory
// only for the last three, a reported incident of hour two gets its
// suspect from the deploys table, and a late deploy of hour two, back to
// a version pruned long ago, is still a rollback of the deploy before it.
func TestLateEventsReadHistory(t *testing.T) {
	r := newRig(t, detect.DefaultRules())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dep := func(id, svc, version string, at time.Duration) events.Deploy {
		return events.Deploy{ID: id, Service: svc, Environment: "production", Version: version, Timestamp: t0.Add(at),
			Type: events.TypeDeploy, Status: events.StatusSucceeded}
	}
	for h := range 10 {
		d := dep(fmt.Sprintf("d%d", h), "checkout", fmt.Sprintf("v%d", h), time.Duration(h)*time.Hour)
		r.feed.publish(ctx, broker.DeploysSubject, d, d.MsgID())
	}
	held := metrics.GetOrCreateGauge("faultline_correlator_deploys_held", nil)
	c := New(testConfig(), r.ns.JS, r.ns.Config, r.w, nil)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, 30*time.Second, "the deploys to be pruned", func() bool { return c.Ready(ctx) == nil && held.Get() > 0 && held.Get() < 10 })

	inc := events.Incident{ID: "inc-old", Service: "checkout", Environment: "production", Status: events.StatusOpen,
		Timestamp: t0.Add(2*time.Hour + 5*time.Minute), Title: "checkout down", Source: "api"}
	r.feed.publish(ctx, broker.IncidentsSubject, inc, inc.MsgID())
	late := dep("d-late", "checkout", "v0", 2*time.Hour+30*time.Minute)
	r.feed.publish(ctx, broker.DeploysSubject, late, late.MsgID())
	var suspect, rolledBackBy string
	waitFor(t, 30*time.Second, "the late events' rows", func() bool {
		_ = r.conn.QueryRow(ctx, "SELECT SuspectDeployId FROM incidents FINAL WHERE IncidentId = 'inc-old'").Scan(&suspect)
		_ = r.conn.QueryRow(ctx, "SELECT RolledBackBy FROM deploys FINAL WHERE DeployId = 'd2'").Scan(&rolledBackBy)
		return suspect == "d2" && rolledBackBy == "d-late"
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
