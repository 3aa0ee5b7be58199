package correlator

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/replay"
	"github.com/faultline-dev/faultline/pipeline/worker"
	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/processors/events"
	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestRealisticDetection scores detection and correlation on the realistic
// scenario (pipeline/replay.Realistic) in seconds: the scenario's requests
// are decoded and reduced to aggregates by the workers' own code
// (AggregatesHook), its events are published as the gateway would, and a
// real correlator over embedded NATS writes to a real ClickHouse. Only the
// gateway and the workers' telemetry inserts are left out; the whole-stack
// replay of the same scenario (cmd/faultline) covers them.
func TestRealisticDetection(t *testing.T) {
	reqs, exp := replay.Realistic(1)
	rep := runRealistic(t, reqs, exp, detect.DefaultRules())
	t.Logf("\n%s", rep)
	if !rep.Perfect() {
		t.Fatalf("realistic scenario: %s", rep.Summary())
	}
}

func runRealistic(t *testing.T, reqs []replay.Request, exp []replay.Expected, rules detect.Rules) replay.Report {
	t.Helper()
	ns := natstest.Start(t)
	cfg := chtest.Database(t)
	conn := chtest.Conn(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	f := newFeeder(t, ns, rules)
	f.feed(ctx, reqs)
	f.flush(ctx)

	// How many aggregates and points the correlator has to observe.
	want := uint64(0)
	st, err := ns.JS.Stream(ctx, ns.Config.AggregatesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	for s := info.State.FirstSeq; s <= info.State.LastSeq && s > 0; s++ {
		m, err := st.GetMsg(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		var am aggMessage
		if err := json.Unmarshal(m.Data, &am); err != nil {
			t.Fatal(err)
		}
		for _, e := range am.Messages {
			want += uint64(len(e.Aggs) + len(e.Points))
		}
	}

	c := New(Config{Threshold: 0.5, FlushInterval: 100 * time.Millisecond, GapWait: time.Second},
		ns.JS, ns.Config, mustEventsWriter(t, conn, cfg), nil)
	c.rules = rules
	c.det = detect.NewDetector(rules)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	// Done when every aggregate was observed and the incidents table
	// stops changing.
	base := c.mAggregates.Get()
	read := func() []replay.Detected {
		rows, err := conn.Query(ctx, `SELECT Service, Environment, StartedAt, SuspectVersion, Signal, DetectionReason
			FROM incidents FINAL WHERE Source = 'detected' ORDER BY StartedAt, Service`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []replay.Detected
		for rows.Next() {
			var d replay.Detected
			if err := rows.Scan(&d.Service, &d.Environment, &d.StartedAt, &d.SuspectVersion, &d.Signal, &d.Note); err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		return out
	}
	var got []replay.Detected
	last, stable := "", 0
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline) && stable < 8; time.Sleep(250 * time.Millisecond) {
		got = read()
		if s := fmt.Sprint(got); s == last && c.mAggregates.Get()-base >= want {
			stable++
		} else {
			last, stable = s, 0
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return replay.Score(exp, got)
}

// feeder publishes scenario requests as the gateway and the workers
// would: telemetry as workers commit it (a batch of up to 64 messages, each
// message's rows reduced under its stream sequence by AggregatesHook), and
// events as the gateway publishes them.
type feeder struct {
	t       *testing.T
	js      jetstream.JetStream
	hook    func(ctx context.Context, b *otlp.Batch, token string, msgs []worker.MessageRows) error
	b       *otlp.Batch
	msgs    []worker.MessageRows
	seq     uint64
	batches int
}

func newFeeder(t *testing.T, ns *natstest.Server, rules detect.Rules) *feeder {
	return &feeder{t: t, js: ns.JS, hook: AggregatesHook(ns.JS, rules), b: otlp.NewBatch()}
}

func (f *feeder) flush(ctx context.Context) {
	if len(f.msgs) == 0 {
		return
	}
	f.batches++
	if err := f.hook(ctx, f.b, fmt.Sprintf("realistic-%d", f.batches), f.msgs); err != nil {
		f.t.Fatal(err)
	}
	f.b.Reset()
	f.msgs = f.msgs[:0]
}

func (f *feeder) publish(ctx context.Context, subject string, v any, id string) {
	data, _ := json.Marshal(v)
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, id)
	if _, err := f.js.PublishMsg(ctx, m); err != nil {
		f.t.Fatal(err)
	}
}

// feed publishes requests; telemetry still in the batch waits for flush.
func (f *feeder) feed(ctx context.Context, reqs []replay.Request) {
	t := f.t
	for _, r := range reqs {
		switch r.Path {
		case replay.PathLogs, replay.PathMetrics:
			sig := otlp.SignalLogs
			if r.Path == replay.PathMetrics {
				sig = otlp.SignalMetrics
			}
			f.seq++
			b := f.b
			mr := worker.MessageRows{Seq: f.seq, LogsFrom: b.Logs.Len(), HistFrom: b.Histogram.Len(), ExpFrom: b.ExpHistogram.Len()}
			if _, err := b.Append(sig, otlp.FormatAuto, r.Body); err != nil {
				t.Fatalf("request at %s: %v", r.At, err)
			}
			mr.LogsTo, mr.HistTo, mr.ExpTo = b.Logs.Len(), b.Histogram.Len(), b.ExpHistogram.Len()
			if f.msgs = append(f.msgs, mr); len(f.msgs) == 64 {
				f.flush(ctx)
			}
		case replay.PathDeploys:
			ds, err := events.ParseDeploys(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				f.publish(ctx, broker.DeploysSubject, d, d.MsgID())
			}
		case replay.PathIncidents:
			is, err := events.ParseIncidents(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			for _, inc := range is {
				f.publish(ctx, broker.IncidentsSubject, inc, inc.MsgID())
			}
		}
	}
}
