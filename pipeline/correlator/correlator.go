// Package correlator is the stateful heart of faultline: one process reads
// the deploy and incident events and the workers' per-minute aggregates,
// detects incidents on event time, pins each on the deploy that most likely
// caused it, and writes the deploys, incidents and incident_suspects tables.
//
// Design: the correlator's state is bounded and checkpointed. It keeps the
// deploys of the correlation window plus the allowed lateness of events
// (with the live deploy of each key and a bounded list of past versions
// for rollbacks), open and recent incidents, and the detector's windows
// and baselines; older deploys a late event needs are read back from
// ClickHouse. After a flush that wrote every changed row and published
// every alert, at most every CheckpointInterval and at shutdown, it saves
// that state with the stream sequences it covers into a JetStream object
// store (checkpoint.go). At start it loads the checkpoint and follows both
// streams from the next messages; without a usable one it reads them from
// their beginning and rebuilds everything, as it would after a crash
// between checkpoints for what followed the last one. The tables hold the
// latest state per id (ReplacingMergeTree), so writing a state again
// after a restart is harmless, and alerts already sent are remembered in
// a KV bucket. Detection and correlation are pure (processors/detect,
// processors/correlate), so the same streams give the same tables however
// many workers produced the aggregates and in whatever order they arrived
// within the allowed lateness, and whether or not the correlator restarted
// in between. Several correlator processes share the work by a lease
// (lease.go): the one holding it runs a Correlator, the others stand by
// and take over from the checkpoint when it stops renewing.
package correlator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/notify"
	"github.com/faultline-dev/faultline/pipeline/worker"
	"github.com/faultline-dev/faultline/processors/alert"
	"github.com/faultline-dev/faultline/processors/correlate"
	"github.com/faultline-dev/faultline/processors/deploys"
	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/processors/events"
	"github.com/faultline-dev/faultline/processors/otlp"
)

// Config is the correlator part of faultline's settings (FAULTLINE_CORRELATOR_*).
type Config struct {
	Threshold     float64       `envconfig:"THRESHOLD" default:"0.5" desc:"confidence at which an incident is pinned on its top suspect"`
	RulesFile     string        `envconfig:"RULES_FILE" desc:"JSON or YAML file of detection rules over the defaults: thresholds, baselines, version comparison, latency, SLOs and per-service overrides (docs/detection.md)"`
	FlushInterval time.Duration `envconfig:"FLUSH_INTERVAL" default:"1s" desc:"how often changed rows are written to ClickHouse"`
	GapWait       time.Duration `envconfig:"GAP_WAIT" default:"15s" desc:"how long detection waits for a telemetry message still in a worker's batch before going on without it"`
	EarlyAfter    time.Duration `envconfig:"EARLY_AFTER" default:"10s" desc:"on live data, judge a minute this long after it ends rather than after the lateness: the incident opens provisionally and the final verdict confirms or retracts it (0: off)"`
	// The checkpoint and what the state keeps (checkpoint.go).
	CheckpointBucket   string        `envconfig:"CHECKPOINT_BUCKET" default:"faultline_correlator" desc:"JetStream object store bucket of the correlator's checkpoint: its state and how far it has read its streams, so a restart resumes there instead of replaying them (deleting it costs one full replay)"`
	CheckpointInterval time.Duration `envconfig:"CHECKPOINT_INTERVAL" default:"30s" desc:"how often at most the correlator writes its checkpoint, after a flush that wrote everything; also at shutdown (0: never, every start replays the streams)"`
	EventLateness      time.Duration `envconfig:"EVENT_LATENESS" default:"1h" desc:"how late deploy and incident events may be and still find their history in memory: deploys are kept for the correlation window (2h) plus this, older ones are read back from ClickHouse when a later event needs them"`
}

// Validate checks the settings.
func (c *Config) Validate() error {
	if c.Threshold <= 0 || c.Threshold > 1 {
		return fmt.Errorf("FAULTLINE_CORRELATOR_THRESHOLD: %v, want a value in (0, 1]", c.Threshold)
	}
	if c.GapWait <= 0 {
		return fmt.Errorf("FAULTLINE_CORRELATOR_GAP_WAIT: must be positive")
	}
	if c.EarlyAfter < 0 {
		return fmt.Errorf("FAULTLINE_CORRELATOR_EARLY_AFTER: must not be negative")
	}
	if c.CheckpointInterval < 0 {
		return fmt.Errorf("FAULTLINE_CORRELATOR_CHECKPOINT_INTERVAL: must not be negative")
	}
	if c.CheckpointInterval > 0 && !validBucket(c.CheckpointBucket) {
		return fmt.Errorf("FAULTLINE_CORRELATOR_CHECKPOINT_BUCKET: %q, want letters, digits, '-' and '_'", c.CheckpointBucket)
	}
	if c.EventLateness < 0 {
		return fmt.Errorf("FAULTLINE_CORRELATOR_EVENT_LATENESS: must not be negative")
	}
	if c.FlushInterval <= 0 {
		return fmt.Errorf("FAULTLINE_CORRELATOR_FLUSH_INTERVAL: must be positive")
	}
	if c.RulesFile != "" {
		if _, err := detect.LoadRules(c.RulesFile); err != nil {
			return fmt.Errorf("FAULTLINE_CORRELATOR_RULES_FILE: %w", err)
		}
	}
	return nil
}

// Rules returns the detection rules the settings select.
func (c *Config) Rules() detect.Rules {
	if c.RulesFile == "" {
		return detect.DefaultRules()
	}
	r, _ := detect.LoadRules(c.RulesFile) // validated at start
	return r
}

// Store writes rows.
type Store interface {
	Write(ctx context.Context, ds []correlate.DeployRow, is []correlate.IncidentRow, ss []correlate.SuspectRow) error
	// Retract deletes incidents, with their suspects, that a provisional
	// verdict opened and the final one did not confirm.
	Retract(ctx context.Context, ids []string) error
	// Deploys reads back the deploys of an environment in [from, to], of
	// one service or (service "") of all: the correlator keeps only recent
	// ones, and a late event may need older.
	Deploys(ctx context.Context, env, service string, from, to time.Time) ([]correlate.DeployRow, error)
}

type incident struct {
	events.Incident
	started, resolved time.Time
	// What detection said: the rule, in words, and the version that
	// carried the errors when versions were compared.
	signal, reason, version string
	verdict                 correlate.Verdict
	pinned                  string // deploy id
	resolvedAlerted         bool
	provisional             bool // opened by an early verdict, not yet confirmed
	alerted                 bool // an incident.correlated alert was raised
}

// Correlator is the single owner of detection and correlation state.
type Correlator struct {
	cfg   Config
	rules detect.Rules
	ccfg  correlate.Config
	js    jetstream.JetStream
	nats  broker.Config
	store Store
	log   *slog.Logger

	idx       *deploys.Index
	det       *detect.Detector
	incidents map[string]*incident
	pins      map[string]map[string]correlate.PinnedBy // deploy -> incident -> pin
	dirtyDep  map[string]bool
	dirtyInc  map[string]bool

	// Reorder buffer of aggregates by telemetry stream sequence.
	pending  map[uint64]aggEntry
	behind   uint64 // aggregates messages not yet delivered to us
	deltas   *detect.Deltas
	nextSeq  uint64
	gapSince time.Time
	gapWait  time.Duration

	// Alerts raised since the last flush; published after the rows are
	// written, and remembered in a KV bucket so a restart's replay does
	// not send them again.
	alerts     []alert.Event
	sent       jetstream.KeyValue
	rolledBack map[string]bool
	detected   []events.Incident // detected incidents to publish on faultline.incidents
	retracted  []string          // incident ids whose rows are to be deleted
	// Provisional incidents are remembered in the sent bucket until the
	// final verdict, so one a restart's replay no longer produces is still
	// retracted: provKV are the pending writes, orphans those found at
	// start.
	provKV    []provOp
	orphans   map[string]provisionalRecord
	rbPending []pendingRollback // decided at flush: an alert only without an incident

	mIncidents, mAggregates, mEvents, mWrites, mRetracted *metrics.Counter

	// How far the streams were handled, and the checkpoint (checkpoint.go).
	evSeq, aggSeq uint64 // last EVENTS and AGGREGATES stream sequences handled
	ckpt          jetstream.ObjectStore
	ckptAt        time.Time
	ckptSeqs      [3]uint64 // evSeq, aggSeq and nextSeq of the last checkpoint
	changed       bool      // transitions applied since the last checkpoint
	// Bounded state: deploys before the horizon are pruned (prune), and
	// read back when a late event needs them (history); loaded remembers
	// what was read back since the last prune.
	latestDeploy time.Time
	horizon      time.Time
	loaded       map[string]time.Time

	lag catchUp // how far it has read its streams (ready.go)
}

// New prepares a correlator.
func New(c Config, js jetstream.JetStream, n broker.Config, store Store, log *slog.Logger) *Correlator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cc := correlate.DefaultConfig()
	cc.Threshold = c.Threshold
	rules := c.Rules()
	return &Correlator{
		cfg: c, rules: rules, ccfg: cc, js: js, nats: n, store: store, log: log,
		idx: deploys.NewIndex(), det: detect.NewDetector(rules),
		incidents: map[string]*incident{}, pins: map[string]map[string]correlate.PinnedBy{},
		dirtyDep: map[string]bool{}, dirtyInc: map[string]bool{},
		pending: map[uint64]aggEntry{}, gapWait: c.GapWait, deltas: detect.NewDeltas(), rolledBack: map[string]bool{},
		loaded:      map[string]time.Time{},
		mIncidents:  metrics.GetOrCreateCounter("faultline_correlator_incidents_detected_total"),
		mAggregates: metrics.GetOrCreateCounter("faultline_correlator_aggregates_total"),
		mEvents:     metrics.GetOrCreateCounter("faultline_correlator_events_total"),
		mWrites:     metrics.GetOrCreateCounter("faultline_correlator_rows_written_total"),
		mRetracted:  metrics.GetOrCreateCounter("faultline_correlator_incidents_retracted_total"),
	}
}

// Run resumes from the checkpoint, or without one rebuilds the state from
// the streams, and follows them until ctx ends.
func (c *Correlator) Run(ctx context.Context) (err error) {
	if st, err := c.js.Stream(ctx, c.nats.TelemetryStream); err == nil {
		c.nextSeq = st.CachedInfo().State.FirstSeq
	}
	if c.nextSeq == 0 {
		c.nextSeq = 1
	}
	err = broker.Retry(ctx, c.log, "bucket faultline_alerts_sent", func(ctx context.Context) (err error) {
		c.sent, err = c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: "faultline_alerts_sent", Description: "ids of alerts already published", History: 1,
			TTL: 30 * 24 * time.Hour, Storage: jetstream.FileStorage, Replicas: c.nats.Replicas,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("alerts bucket: %w", err)
	}
	if err := c.loadOrphans(ctx); err != nil {
		return err
	}
	if err := c.openCheckpoints(ctx); err != nil {
		return err
	}
	evStart, aggStart := c.resume(ctx)
	evs, err := c.follow(ctx, c.nats.EventsStream, []string{broker.DeploysSubject, broker.IncidentsSubject}, evStart)
	if err != nil {
		return err
	}
	defer evs.Stop()
	aggs, err := c.follow(ctx, c.nats.AggregatesStream, []string{broker.AggregatesSubject}, aggStart)
	if err != nil {
		return err
	}
	defer aggs.Stop()
	c.startCatchUp(evs, aggs)
	tick := time.NewTicker(c.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c.flush(fctx)
			c.checkpoint(fctx, true)
			cancel()
			return nil
		case m := <-evs.ch:
			c.handleEvent(m)
			c.handledEvent(m)
		case m := <-aggs.ch:
			c.handleAggregates(m)
			c.handledAggregates(m)
		case <-tick.C:
			c.release(false)
			// Early verdicts only once every aggregate published so far
			// has been observed: judged on less, they would be wrong.
			if c.cfg.EarlyAfter > 0 && c.behind == 0 && len(c.pending) == 0 && len(aggs.ch) == 0 {
				c.apply(c.det.Early(time.Now(), c.cfg.EarlyAfter))
			}
			c.checkOrphans()
			c.flush(ctx)
			c.checkpoint(ctx, false)
			c.noteProgress(evs, aggs)
		}
	}
}

type follower struct {
	ch      chan jetstream.Msg
	stop    func()
	backlog uint64 // messages in the stream when following began
}

func (f follower) Stop() { f.stop() }

// follow reads a stream with an ordered consumer, from sequence start, or
// from its beginning when start is 0.
func (c *Correlator) follow(ctx context.Context, stream string, subjects []string, start uint64) (follower, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if start > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	cons, err := c.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return follower{}, fmt.Errorf("follow %s: %w", stream, err)
	}
	ch := make(chan jetstream.Msg, 256)
	cc, err := cons.Consume(func(m jetstream.Msg) { ch <- m })
	if err != nil {
		return follower{}, fmt.Errorf("follow %s: %w", stream, err)
	}
	f := follower{ch: ch, stop: cc.Stop}
	if ci := cons.CachedInfo(); ci != nil {
		f.backlog = ci.NumPending
	}
	return f, nil
}

func (c *Correlator) handleEvent(m jetstream.Msg) {
	c.mEvents.Inc()
	switch m.Subject() {
	case broker.DeploysSubject:
		var d events.Deploy
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			c.log.Warn("skipping undecodable deploy event", "err", err)
			return
		}
		c.addDeploy(d)
	case broker.IncidentsSubject:
		var inc events.Incident
		if err := json.Unmarshal(m.Data(), &inc); err != nil {
			c.log.Warn("skipping undecodable incident event", "err", err)
			return
		}
		c.addIncident(inc)
	}
}

func (c *Correlator) addDeploy(e events.Deploy) {
	d := deploys.Deploy{ID: e.ID, Service: e.Service, Environment: e.Environment, Version: e.Version, Type: e.Type, Status: e.Status,
		At: e.Timestamp, Commit: e.Commit, Author: e.Author, URL: e.URL, Attributes: e.Attributes}
	for _, cm := range e.Commits {
		if d.FirstCommitAt.IsZero() || cm.Timestamp.Before(d.FirstCommitAt) {
			d.FirstCommitAt = cm.Timestamp
		}
		d.CommitTimes = append(d.CommitTimes, cm.Timestamp)
	}
	if d.At.After(c.latestDeploy) {
		c.latestDeploy = d.At
	}
	// A deploy older than what memory holds needs its neighbours to tell
	// what it rolled back and what rolled it back.
	c.history(d.Environment, d.Service, d.At.Add(-c.ccfg.SameService), c.horizon)
	before := map[string]*deploys.Deploy{}
	for _, rb := range c.idx.Rollbacks(d.Service, d.Environment) {
		before[rb.Of.ID] = rb.By
	}
	if !c.idx.Add(d) {
		return
	}
	// Its own row, and those whose rollback status it changed.
	c.dirtyDep[d.ID] = true
	for _, rb := range c.idx.Rollbacks(d.Service, d.Environment) {
		if by, ok := before[rb.Of.ID]; !ok || by.ID != rb.By.ID || !by.At.Equal(rb.By.At) {
			c.dirtyDep[rb.Of.ID] = true
		}
		delete(before, rb.Of.ID)
		if !c.rolledBack[rb.Of.ID] {
			c.rolledBack[rb.Of.ID] = true
			c.rbPending = append(c.rbPending, pendingRollback{rb, time.Now()})
		}
	}
	for id := range before {
		c.dirtyDep[id] = true // no longer rolled back
	}
	// A late deploy may be a better suspect for incidents already open, or
	// the rollback or fix that restored one: replaying the streams reads
	// deploys and aggregates side by side, so an incident can resolve
	// before the deploy that ended it is read.
	for _, inc := range c.incidents {
		if inc.Environment == d.Environment && inc.started.Sub(d.At) <= c.ccfg.SameService {
			c.correlate(inc)
		}
	}
}

func (c *Correlator) addIncident(e events.Incident) {
	if e.Source == events.SourceDetected {
		return // our own
	}
	inc, ok := c.incidents[e.ID]
	if !ok {
		inc = &incident{Incident: e}
		c.incidents[e.ID] = inc
	}
	switch e.Status {
	case events.StatusOpen:
		if inc.started.IsZero() || e.Timestamp.Before(inc.started) {
			inc.started = e.Timestamp
		}
		if e.Title != "" {
			inc.Title = e.Title
		}
		if e.Severity != "" {
			inc.Severity = e.Severity
		}
	case events.StatusResolved:
		inc.resolved = e.Timestamp
		if inc.started.IsZero() {
			inc.started = e.Timestamp
		}
	}
	c.correlate(inc)
}

// handleAggregates buffers a batch's aggregates and releases them in the
// stream order of the telemetry messages they came from: workers commit
// batches in any order, and replaying hours of event time in seconds turns
// that into event-time disorder far beyond the lateness. Released in stream
// order, the detector sees what one worker would have produced. A gap
// (a message still in a worker's batch, or dead-lettered) is waited for
// at most GapWait.
func (c *Correlator) handleAggregates(m jetstream.Msg) {
	if meta, err := m.Metadata(); err == nil {
		c.behind = meta.NumPending
	}
	var am aggMessage
	if err := json.Unmarshal(m.Data(), &am); err != nil {
		c.log.Warn("skipping undecodable aggregates", "err", err)
		return
	}
	for _, e := range am.Messages {
		if e.Seq < c.nextSeq {
			c.observe(e) // older than the cursor: history, take it now
			continue
		}
		if _, ok := c.pending[e.Seq]; !ok {
			c.pending[e.Seq] = e
		}
	}
	c.release(false)
}

// release observes buffered aggregates in sequence order, skipping a gap
// that has lasted longer than GapWait (or any gap when force is set).
func (c *Correlator) release(force bool) {
	for len(c.pending) > 0 {
		e, ok := c.pending[c.nextSeq]
		if !ok {
			first := c.firstPending()
			if !force && (c.gapSince.IsZero() || time.Since(c.gapSince) < c.gapWait) {
				if c.gapSince.IsZero() {
					c.gapSince = time.Now()
				}
				break
			}
			c.nextSeq = first
			continue
		}
		delete(c.pending, c.nextSeq)
		c.nextSeq++
		c.gapSince = time.Time{}
		c.observe(e)
	}
	c.advance()
}

func (c *Correlator) firstPending() uint64 {
	first := uint64(0)
	for s := range c.pending {
		if first == 0 || s < first {
			first = s
		}
	}
	return first
}

func (c *Correlator) observe(e aggEntry) {
	c.mAggregates.Add(len(e.Aggs) + len(e.Points))
	for _, a := range e.Aggs {
		if a.Service != "" {
			c.det.Observe(a)
		}
	}
	for _, p := range e.Points {
		if a := c.deltas.Add(p); p.Service != "" && a.Requests > 0 {
			c.det.Observe(a)
		}
	}
}

func (c *Correlator) advance() { c.apply(c.det.Advance()) }

// apply acts on the detector's transitions.
func (c *Correlator) apply(ts []detect.Transition) {
	if len(ts) > 0 {
		c.changed = true
	}
	for _, t := range ts {
		if t.Retracted {
			if inc, ok := c.incidents[t.IncidentID]; ok {
				c.retract(inc)
			}
			continue
		}
		inc, ok := c.incidents[t.IncidentID]
		if !ok {
			inc = &incident{Incident: events.Incident{ID: t.IncidentID, Service: t.Service, Environment: t.Environment, Source: events.SourceDetected,
				Title: title(t), Severity: "major"}}
			c.incidents[t.IncidentID] = inc
			c.mIncidents.Inc()
		}
		if !t.Resolved {
			// The final verdict may say it better than the early one.
			inc.signal, inc.reason, inc.version = t.Signal, t.Reason, t.Version
			inc.Title = title(t)
		}
		_, orphan := c.orphans[inc.ID]
		confirmed := (inc.provisional || orphan) && !t.Provisional && !t.Resolved
		inc.started, inc.provisional = t.StartedAt, t.Provisional
		e := events.Incident{ID: inc.ID, Service: inc.Service, Environment: inc.Environment, Status: events.StatusOpen,
			Timestamp: t.StartedAt, Title: inc.Title, Severity: inc.Severity, Source: events.SourceDetected}
		if t.Resolved {
			inc.resolved = t.ResolvedAt
			e.Status, e.Timestamp = events.StatusResolved, t.ResolvedAt
		}
		c.detected = append(c.detected, e)
		c.correlate(inc)
		switch {
		case t.Provisional:
			c.provKV = append(c.provKV, provOp{id: inc.ID, rec: &provisionalRecord{Incident: c.alertIncident(inc), Alerted: inc.alerted,
				Through: t.StartedAt.Add(time.Duration(c.rules.For(t.Service, t.Environment).OpenAfter) * time.Minute)}})
		case confirmed:
			c.provKV = append(c.provKV, provOp{id: inc.ID})
			delete(c.orphans, inc.ID)
		}
	}
}

// title names a detected incident for people: what went wrong where.
func title(t detect.Transition) string {
	switch t.Signal {
	case detect.SignalVersion:
		return fmt.Sprintf("errors of %s %s in %s, worse than the version it replaces", t.Service, t.Version, t.Environment)
	case detect.SignalLatency:
		return fmt.Sprintf("latency of %s in %s", t.Service, t.Environment)
	case detect.SignalSLO:
		return fmt.Sprintf("error budget of %s in %s burning fast", t.Service, t.Environment)
	}
	return fmt.Sprintf("error rate of %s in %s: %d errors in %d log records", t.Service, t.Environment, t.Errors, t.Total)
}

// provisionalRecord is what the sent bucket keeps of a provisional
// incident until its final verdict.
type provisionalRecord struct {
	Incident alert.Incident `json:"incident"`
	Alerted  bool           `json:"alerted"`
	// Through is the end of the minutes that opened it: once the final
	// verdict has passed it without opening the same incident, it is
	// retracted.
	Through time.Time `json:"through"`
}

// provOp records (rec set) or forgets a provisional incident.
type provOp struct {
	id  string
	rec *provisionalRecord
}

const provPrefix = "provisional."

// loadOrphans reads the provisional incidents an earlier run left
// unconfirmed.
func (c *Correlator) loadOrphans(ctx context.Context) error {
	c.orphans = map[string]provisionalRecord{}
	keys, err := c.sent.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("alerts bucket: list: %w", err)
	}
	defer keys.Stop()
	for k := range keys.Keys() {
		if !strings.HasPrefix(k, provPrefix) {
			continue
		}
		e, err := c.sent.Get(ctx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		var r provisionalRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			c.log.Warn("skipping an unreadable provisional incident record", "key", k, "err", err)
			continue
		}
		c.orphans[strings.TrimPrefix(k, provPrefix)] = r
	}
	return nil
}

// checkOrphans retracts provisional incidents of an earlier run that the
// final verdict has passed without confirming.
func (c *Correlator) checkOrphans() {
	for id, r := range c.orphans {
		if inc, ok := c.incidents[id]; ok {
			// This run has it: provisional again, the usual path decides;
			// final, the record has served.
			if !inc.provisional {
				c.provKV = append(c.provKV, provOp{id: id})
			}
			delete(c.orphans, id)
			continue
		}
		if c.det.Watermark().Before(r.Through) {
			continue
		}
		c.log.Info("provisional incident of an earlier run retracted by the final verdict", "incident", id)
		c.withdraw(r.Incident, r.Alerted, nil)
		delete(c.orphans, id)
	}
}

// saveProvisional applies the pending provisional records to the bucket.
func (c *Correlator) saveProvisional(ctx context.Context) error {
	for len(c.provKV) > 0 {
		op := c.provKV[0]
		var err error
		if op.rec != nil {
			b, _ := json.Marshal(op.rec)
			_, err = c.sent.Put(ctx, provPrefix+op.id, b)
		} else {
			err = c.sent.Purge(ctx, provPrefix+op.id)
		}
		if err != nil {
			return fmt.Errorf("provisional incident %s: %w", op.id, err)
		}
		c.provKV = c.provKV[1:]
	}
	return nil
}

// retract withdraws a provisional incident the final verdict did not
// confirm: its pin goes (the deploy is no longer a change failure for it),
// its rows are deleted (so no telemetry row reads it as its IncidentId any more), and receivers
// that were told about it hear that it is withdrawn.
func (c *Correlator) retract(inc *incident) {
	c.log.Info("provisional incident retracted by the final verdict", "incident", inc.ID, "service", inc.Service, "environment", inc.Environment)
	if inc.pinned != "" {
		delete(c.pins[inc.pinned], inc.ID)
		c.dirtyDep[inc.pinned] = true
	}
	delete(c.incidents, inc.ID)
	delete(c.dirtyInc, inc.ID)
	c.withdraw(c.alertIncident(inc), inc.alerted, c.alertSuspects(inc.verdict))
}

// withdraw queues what every retraction does, whether this run opened the
// incident or an earlier one did: the retraction alert when receivers
// were told, a zero-length span on faultline.incidents for its consumers (the incident never was), the
// deletion of its rows, and forgetting its provisional record.
func (c *Correlator) withdraw(i alert.Incident, alerted bool, suspects []alert.Suspect) {
	if alerted {
		c.alerts = append(c.alerts, alert.Retracted(i, suspects))
	}
	c.detected = append(c.detected, events.Incident{ID: i.ID, Service: i.Service, Environment: i.Environment, Status: events.StatusResolved,
		Timestamp: i.StartedAt, Title: i.Title, Severity: i.Severity, Source: events.SourceDetected})
	c.retracted = append(c.retracted, i.ID)
	c.provKV = append(c.provKV, provOp{id: i.ID})
	c.mRetracted.Inc()
}

// correlate re-ranks an incident's suspects and moves its pin.
func (c *Correlator) correlate(inc *incident) {
	// An incident older than what memory holds reads its candidates back.
	if !inc.started.IsZero() {
		c.history(inc.Environment, inc.Service, inc.started.Add(-c.ccfg.SameService), inc.started)
		c.history(inc.Environment, "", inc.started.Add(-c.ccfg.OtherService), inc.started)
	}
	v := correlate.Correlate(correlate.Incident{ID: inc.ID, Service: inc.Service, Environment: inc.Environment, StartedAt: inc.started, ResolvedAt: inc.resolved,
		FailingVersion: inc.version},
		c.idx, c.det.VersionCounts, c.ccfg)
	inc.verdict = v
	newPin := ""
	if v.Pinned != nil {
		newPin = v.Pinned.Deploy.ID
	}
	if newPin != "" && newPin != inc.pinned {
		inc.alerted = true
		c.alerts = append(c.alerts, alert.Correlated(c.alertIncident(inc), c.alertSuspects(v), alert.Verdict{
			DeployID: newPin, Version: v.Pinned.Deploy.Version,
			Reason: fmt.Sprintf("top suspect of incident %s, confidence %.2f: %s", inc.ID, v.Confidence, v.Pinned.Reason)}))
	}
	if !inc.resolved.IsZero() && !inc.resolvedAlerted {
		inc.resolvedAlerted = true
		var vd *alert.Verdict
		if v.Pinned != nil {
			vd = &alert.Verdict{DeployID: newPin, Version: v.Pinned.Deploy.Version, Reason: v.Pinned.Reason}
		}
		c.alerts = append(c.alerts, alert.Resolved(c.alertIncident(inc), c.alertSuspects(v), vd))
	}
	if inc.pinned != "" {
		delete(c.pins[inc.pinned], inc.ID)
		c.dirtyDep[inc.pinned] = true
	}
	inc.pinned = ""
	if v.Pinned != nil {
		id := v.Pinned.Deploy.ID
		if c.pins[id] == nil {
			c.pins[id] = map[string]correlate.PinnedBy{}
		}
		c.pins[id][inc.ID] = correlate.PinnedBy{IncidentID: inc.ID, Confidence: v.Confidence, Reason: v.Pinned.Reason}
		inc.pinned = id
		c.dirtyDep[id] = true
	}
	c.dirtyInc[inc.ID] = true
}

// flush writes every changed row; on failure they stay dirty for the next
// tick.
func (c *Correlator) flush(ctx context.Context) {
	if len(c.retracted) > 0 {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.store.Retract(wctx, c.retracted)
		cancel()
		if err != nil {
			// Everything waits: a provisional record must outlive its rows.
			c.log.Warn("deleting retracted incidents failed; will retry", "err", err)
			return
		}
		c.retracted = c.retracted[:0]
	}
	// Before the rows: a provisional incident is recorded before its rows
	// exist, so a crash leaves no unrecorded provisional rows behind.
	if err := c.saveProvisional(ctx); err != nil {
		c.log.Warn("recording provisional incidents failed; rows wait for it", "err", err)
		return
	}
	if len(c.dirtyDep) == 0 && len(c.dirtyInc) == 0 {
		c.raiseRollbacks()
		c.publishDetected(ctx)
		c.publishAlerts(ctx)
		c.forget()
		return
	}
	var ds []correlate.DeployRow
	for id := range c.dirtyDep {
		d, ok := c.idx.Get(id)
		if !ok {
			continue
		}
		ds = append(ds, c.deployRow(d))
	}
	var is []correlate.IncidentRow
	var ss []correlate.SuspectRow
	for id := range c.dirtyInc {
		inc := c.incidents[id]
		is = append(is, incidentRow(inc))
		for _, s := range inc.verdict.Suspects {
			ss = append(ss, correlate.SuspectRow{IncidentID: inc.ID, DeployID: s.Deploy.ID, Rank: uint16(s.Rank), Score: float32(s.Score),
				Confidence: float32(s.Score), Reason: s.Reason, Service: s.Deploy.Service, Environment: s.Deploy.Environment, Version: s.Deploy.Version})
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.store.Write(wctx, ds, is, ss); err != nil {
		c.log.Warn("writing correlation rows failed; will retry", "err", err)
		return
	}
	c.mWrites.Add(len(ds) + len(is) + len(ss))
	clear(c.dirtyDep)
	clear(c.dirtyInc)
	c.raiseRollbacks()
	c.publishDetected(ctx)
	c.publishAlerts(ctx)
	c.forget()
}

// forget bounds the state once its rows are written: the detector's
// per-version history to 3h, cumulative series to a day, and deploys and
// incidents to the horizon (prune).
func (c *Correlator) forget() {
	c.det.Prune(3 * time.Hour)
	c.deltas.Prune(c.det.Watermark().Add(-24 * time.Hour))
	c.prune()
}

// raiseRollbacks decides the pending rollbacks.
func (c *Correlator) raiseRollbacks() {
	// A rollback alone raises deploy.rolled_back, but only once detection
	// has seen past the rollback: an incident that started while the
	// deploy was live opens within OpenAfter minutes of its start, and its
	// alerts tell the story better.
	wait := time.Duration(c.rules.OpenAfter+1) * time.Minute
	keep := c.rbPending[:0]
	for _, p := range c.rbPending {
		rb := p.Rollback
		switch {
		case c.pinnedFinal(rb.Of.ID):
		case len(c.pins[rb.Of.ID]) > 0:
			keep = append(keep, p) // pinned only provisionally: wait for the verdict
		case c.det.Watermark().Before(rb.By.At.Add(wait)) && time.Since(p.queued) < 10*time.Minute:
			keep = append(keep, p)
		default:
			c.alerts = append(c.alerts, alert.RolledBack(alert.Deploy{ID: rb.Of.ID, Service: rb.Of.Service, Environment: rb.Of.Environment,
				Version: rb.Of.Version, DeployedAt: rb.Of.At, RolledBackBy: rb.By.ID, RolledBackAt: rb.By.At, URL: rb.Of.URL}, correlate.FailureReason(nil, &rb)))
		}
	}
	c.rbPending = keep
}

// pinnedFinal reports whether a deploy is the pin of an incident that is
// not provisional.
func (c *Correlator) pinnedFinal(deploy string) bool {
	for id := range c.pins[deploy] {
		if inc, ok := c.incidents[id]; ok && !inc.provisional {
			return true
		}
	}
	return false
}

type pendingRollback struct {
	deploys.Rollback
	queued time.Time
}

// publishDetected announces detected incidents on faultline.incidents, so
// other consumers see them as they see reported ones. Like
// alerts, each is published once (the replay after a restart finds them in
// the bucket).
func (c *Correlator) publishDetected(ctx context.Context) {
	for len(c.detected) > 0 {
		e := c.detected[0]
		// The event time is part of the fact: a confirmation that moved
		// StartedAt is news to the workers.
		key := "incident." + e.ID + "." + e.Status + "." + strconv.FormatInt(e.Timestamp.UnixNano(), 10)
		if _, err := c.sent.Get(ctx, key); err == nil {
			c.detected = c.detected[1:]
			continue
		}
		b, _ := json.Marshal(e)
		m := nats.NewMsg(broker.IncidentsSubject)
		m.Data = b
		m.Header.Set(nats.MsgIdHdr, e.MsgID())
		m.Header.Set("Content-Type", "application/json")
		if _, err := c.js.PublishMsg(ctx, m); err != nil {
			c.log.Warn("publishing a detected incident failed; will retry", "incident", e.ID, "err", err)
			return
		}
		_, _ = c.sent.Put(ctx, key, []byte(e.Status))
		c.detected = c.detected[1:]
	}
}

// publishAlerts sends the queued alerts not sent before; what fails stays
// queued for the next flush.
func (c *Correlator) publishAlerts(ctx context.Context) {
	for len(c.alerts) > 0 {
		ev := c.alerts[0]
		if _, err := c.sent.Get(ctx, ev.ID); err == nil {
			c.alerts = c.alerts[1:]
			continue
		}
		if err := notify.Publish(ctx, c.js, ev); err != nil {
			c.log.Warn("publishing alert failed; will retry", "alert", ev.ID, "err", err)
			return
		}
		if _, err := c.sent.Put(ctx, ev.ID, []byte(ev.Type)); err != nil {
			c.log.Warn("recording alert failed", "alert", ev.ID, "err", err)
		}
		c.alerts = c.alerts[1:]
	}
}

func (c *Correlator) alertIncident(inc *incident) alert.Incident {
	a := alert.Incident{ID: inc.ID, Service: inc.Service, Environment: inc.Environment, Source: inc.Source, Title: inc.Title,
		Severity: inc.Severity, Signal: inc.signalName(), DetectionReason: inc.reason, StartedAt: inc.started, Confidence: inc.verdict.Confidence, Provisional: inc.provisional}
	if !inc.resolved.IsZero() {
		t := inc.resolved
		a.ResolvedAt = &t
		s := inc.resolved.Sub(inc.started).Seconds()
		a.TimeToRestoreSeconds = &s
	}
	if inc.verdict.RestoredBy != nil {
		a.RestoredByDeployID = inc.verdict.RestoredBy.ID
	}
	return a
}

func (c *Correlator) alertSuspects(v correlate.Verdict) []alert.Suspect {
	out := make([]alert.Suspect, 0, len(v.Suspects))
	for _, s := range v.Suspects {
		out = append(out, alert.Suspect{DeployID: s.Deploy.ID, Service: s.Deploy.Service, Version: s.Deploy.Version, DeployedAt: s.Deploy.At,
			Rank: s.Rank, Score: s.Score, Reason: s.Reason, URL: s.Deploy.URL, Author: s.Deploy.Author})
	}
	return out
}

func (c *Correlator) deployRow(d *deploys.Deploy) correlate.DeployRow {
	r := correlate.DeployRow{DeployID: d.ID, Service: d.Service, Environment: d.Environment, Version: d.Version, Type: d.Type, Status: d.Status,
		DeployedAt: d.At, CommitSha: d.Commit, Author: d.Author, URL: d.URL, Attributes: d.Attributes}
	if !d.FirstCommitAt.IsZero() {
		t := d.FirstCommitAt
		r.FirstCommitAt = &t
	}
	if lt, ok := d.LeadTime(); ok {
		s := lt.Seconds()
		r.LeadTimeSeconds = &s
	}
	if !d.Live() {
		return r // never live: never a change failure
	}
	var pins []correlate.PinnedBy
	for _, p := range c.pins[d.ID] {
		pins = append(pins, p)
	}
	sortPins(pins)
	var rb *deploys.Rollback
	if x, ok := c.idx.RolledBack(d); ok {
		rb = &x
		r.RolledBackBy = x.By.ID
	}
	r.ChangeFailure = len(pins) > 0 || rb != nil
	r.FailureReason = correlate.FailureReason(pins, rb)
	return r
}

func sortPins(p []correlate.PinnedBy) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j].IncidentID < p[j-1].IncidentID; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

// signalName is the rule that opened a detected incident; a reported one
// is explicit.
func (inc *incident) signalName() string {
	if inc.Source != events.SourceDetected {
		return detect.SignalExplicit
	}
	if inc.signal == "" {
		return detect.SignalErrors
	}
	return inc.signal
}

func incidentRow(inc *incident) correlate.IncidentRow {
	r := correlate.IncidentRow{IncidentID: inc.ID, Service: inc.Service, Environment: inc.Environment, Title: inc.Title, Severity: inc.Severity,
		Source: inc.Source, Signal: inc.signalName(), DetectionReason: inc.reason, StartedAt: inc.started, Confidence: float32(inc.verdict.Confidence)}
	if !inc.resolved.IsZero() {
		t := inc.resolved
		r.ResolvedAt = &t
		s := inc.resolved.Sub(inc.started).Seconds()
		r.TimeToRestoreSeconds = &s
	}
	if p := inc.verdict.Pinned; p != nil {
		r.SuspectDeployID, r.SuspectVersion = p.Deploy.ID, p.Deploy.Version
	}
	if inc.verdict.RestoredBy != nil {
		r.RestoredByDeployID = inc.verdict.RestoredBy.ID
	}
	return r
}

// aggMessage is what workers publish per committed batch: each telemetry
// message's aggregates under its stream sequence (empty for messages
// without logs), so the correlator can replay them in stream order.
type aggMessage struct {
	Messages []aggEntry `json:"messages"`
}

type aggEntry struct {
	Seq    uint64             `json:"seq"`
	Aggs   []detect.Aggregate `json:"aggs,omitempty"`
	Points []detect.Point     `json:"points,omitempty"`
}

// AggregatesHook returns a worker Committed hook that reduces each
// committed message's log rows to per-minute aggregates and publishes them
// under the batch token, so a re-formed batch republishes the same message
// id and JetStream drops it. Points of http.server.request.duration (the
// 5xx rule) and of the rules' latency metrics go along as they are, with
// their buckets mapped onto the detector's latency grid.
func AggregatesHook(js jetstream.JetStream, rules detect.Rules) func(ctx context.Context, b *otlp.Batch, token string, msgs []worker.MessageRows) error {
	agg := detect.NewAggregator(rules.MinSeverity)
	pk := newPointPicker(rules)
	return func(ctx context.Context, b *otlp.Batch, token string, msgs []worker.MessageRows) error {
		l := &b.Logs
		out := aggMessage{Messages: make([]aggEntry, 0, len(msgs))}
		for _, mr := range msgs {
			for i := mr.LogsFrom; i < mr.LogsTo; i++ {
				agg.AddLog(b.Src.String(l.ServiceName[i]), b.Src.String(l.Environment[i]), b.Src.String(l.ServiceVersion[i]), l.Timestamp[i], l.SeverityNumber[i])
			}
			// Flush hands back strings aliasing the batch; they are
			// marshalled below, before the batch is reused.
			e := aggEntry{Seq: mr.Seq, Aggs: agg.Flush()}
			e.Points = pk.histograms(e.Points, &b.Src, &b.Histogram, mr.HistFrom, mr.HistTo)
			e.Points = pk.expHistograms(e.Points, &b.Src, &b.ExpHistogram, mr.ExpFrom, mr.ExpTo)
			out.Messages = append(out.Messages, e)
		}
		data, err := json.Marshal(out)
		if err != nil {
			return err
		}
		m := nats.NewMsg(broker.AggregatesSubject)
		m.Data = data
		m.Header.Set(nats.MsgIdHdr, "agg/"+token)
		_, err = js.PublishMsg(ctx, m)
		return err
	}
}

// pointPicker picks the histogram points detection reads.
type pointPicker struct {
	latency map[string]bool
}

func newPointPicker(r detect.Rules) *pointPicker {
	p := &pointPicker{latency: map[string]bool{}}
	if r.Latency.Enabled {
		for _, m := range r.Latency.Metrics {
			p.latency[m] = true
		}
	}
	return p
}

// point starts the detect.Point of row i of a metric table: its series
// identity (resource, scope, name and point attributes hashed) and the
// fields every point has; ok is false for metrics detection does not read.
func (pk *pointPicker) point(src *otlp.Sources, c *otlp.MetricCommon, i int, last *pickedName) (p detect.Point, latency, ok bool) {
	name := src.String(c.MetricName[i])
	if !last.set || name != last.name {
		// Rows of one metric come in runs: one map lookup per run, not
		// per point (it was a tenth of a worker's CPU on histograms).
		*last = pickedName{name: name, latency: pk.latency[name], set: true}
	}
	latency = last.latency
	if name != detect.RequestMetric && !latency {
		return p, false, false
	}
	x := xxhash.New()
	write := func(keys, values []otlp.Str) {
		for j := range keys {
			_, _ = x.Write(src.Bytes(keys[j]))
			_, _ = x.WriteString("\x00")
			_, _ = x.Write(src.Bytes(values[j]))
			_, _ = x.WriteString("\x00")
		}
	}
	write(c.ResourceAttributes.Span(i))
	_, _ = x.WriteString(src.String(c.ScopeName[i]) + "\x00" + name + "\x00")
	write(c.Attributes.Span(i))
	failed := false
	if name == detect.RequestMetric {
		for _, kv := range c.Attributes.Row(src, i) {
			if kv[0] == "http.response.status_code" || kv[0] == "http.status_code" {
				if code, err := strconv.Atoi(kv[1]); err == nil && code >= 500 {
					failed = true
				}
			}
		}
	}
	return detect.Point{
		Series: x.Sum64(), Service: src.String(c.ServiceName[i]), Environment: src.String(c.Environment[i]), Version: src.String(c.ServiceVersion[i]),
		Start: c.StartTimeUnix[i], Time: c.TimeUnix[i], Failed: failed, LatencyOnly: name != detect.RequestMetric,
	}, latency, true
}

// pickedName is the metric name of the previous row and whether the
// latency rule reads it; it lives for one call, as the batch's strings do.
type pickedName struct {
	name         string
	latency, set bool
}

// histograms appends the points of explicit-bucket histogram rows [from, to).
func (pk *pointPicker) histograms(out []detect.Point, src *otlp.Sources, h *otlp.HistogramRows, from, to int) []detect.Point {
	var last pickedName
	for i := from; i < to; i++ {
		p, latency, ok := pk.point(src, &h.MetricCommon, i, &last)
		if !ok {
			continue
		}
		p.Count = h.Count[i]
		p.Delta = h.AggregationTemporality[i] == 1 // AGGREGATION_TEMPORALITY_DELTA
		if scale, isDuration := detect.UnitScale(src.String(h.MetricUnit[i])); latency && isDuration {
			var lh detect.LatHist
			lh.AddExplicit(h.ExplicitBounds.Row(i), h.BucketCounts.Row(i), scale)
			p.Lat = lh.Sparse()
		}
		out = append(out, p)
	}
	return out
}

// expHistograms appends the latency points of exponential histogram rows
// [from, to); the 5xx rule reads explicit histograms only.
func (pk *pointPicker) expHistograms(out []detect.Point, src *otlp.Sources, h *otlp.ExpHistogramRows, from, to int) []detect.Point {
	var last pickedName
	for i := from; i < to; i++ {
		p, latency, ok := pk.point(src, &h.MetricCommon, i, &last)
		if !ok || !latency {
			continue
		}
		scale, isDuration := detect.UnitScale(src.String(h.MetricUnit[i]))
		if !isDuration {
			continue
		}
		p.Count = h.Count[i]
		p.Delta = h.AggregationTemporality[i] == 1
		var lh detect.LatHist
		lh.AddExponential(h.Scale[i], h.PositiveOffset[i], h.ZeroCount[i], h.PositiveBucketCounts.Row(i), scale)
		p.Lat = lh.Sparse()
		out = append(out, p)
	}
	return out
}
