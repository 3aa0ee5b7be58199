package correlator

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/correlate"
	"github.com/faultline-dev/faultline/processors/deploys"
	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/processors/events"
)

// The checkpoint is the correlator's whole state together with how far it
// has read its streams: the last EVENTS and AGGREGATES messages it
// handled, and the telemetry sequence its reorder buffer waits for next.
// It is written after a flush that left nothing behind (every changed row
// written, every alert and detected incident published), so the rows and
// alerts of everything it covers are out; a restart loads it and follows
// the streams from the next messages instead of replaying them. A crash
// between two checkpoints replays what followed the last one, which
// rewrites the same rows (the tables keep the latest version of each) and
// finds its alerts in the sent bucket.
//
// The format is a fixed magic line, a big-endian uint32 format version and
// a gob of checkpointState. A checkpoint of another format, or saved under
// other detection rules or correlation settings, is not loaded: the
// correlator replays its streams from the start, as it does without one.

// checkpointFormat is the version of checkpointState; change it with any
// change of the state's meaning.
const checkpointFormat = 1

var checkpointMagic = []byte("faultline correlator checkpoint\n")

// checkpointObject is the object's name in the bucket.
const checkpointObject = "state"

type checkpointState struct {
	// Fingerprint of the rules and settings the state was computed under.
	Fingerprint string
	Saved       time.Time
	// The last stream sequences handled, and the reorder buffer.
	EventsSeq, AggregatesSeq, NextSeq uint64
	Pending                           []aggEntry

	Deploys      deploys.State
	LatestDeploy time.Time
	Horizon      time.Time
	Detector     detect.DetectorState
	Deltas       detect.DeltasState
	Incidents    []incidentState
	Pins         []pinState
	RolledBack   []string
	Rollbacks    []rollbackState
}

type incidentState struct {
	Incident                              events.Incident
	Started, Resolved                     time.Time
	Signal, Reason, Version               string
	Suspects                              []suspectState
	Confidence                            float64
	Pinned                                bool // Suspects[0] is pinned
	RestoredBy                            *deploys.Deploy
	PinnedID                              string
	ResolvedAlerted, Provisional, Alerted bool
}

type suspectState struct {
	Deploy deploys.Deploy
	Rank   int
	Score  float64
	Reason string
}

type pinState struct {
	DeployID string
	Pin      correlate.PinnedBy
}

type rollbackState struct {
	Of, By deploys.Deploy
	Queued time.Time
}

// validBucket reports whether s is a valid JetStream bucket name.
func validBucket(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// fingerprint identifies what the state depends on besides the streams:
// the detection rules and the correlation settings.
func (c *Correlator) fingerprint() string {
	r, _ := json.Marshal(c.rules)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%v\x00%+v\x00%v", r, c.rules.Lateness, c.ccfg, c.cfg.EventLateness)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// snapshot captures the state; call it only when nothing is left to
// write or publish.
func (c *Correlator) snapshot() checkpointState {
	st := checkpointState{
		Fingerprint: c.fingerprint(), Saved: time.Now().UTC(),
		EventsSeq: c.evSeq, AggregatesSeq: c.aggSeq, NextSeq: c.nextSeq,
		Deploys: c.idx.Snapshot(), LatestDeploy: c.latestDeploy, Horizon: c.horizon,
		Detector: c.det.Snapshot(), Deltas: c.deltas.Snapshot(),
	}
	for _, s := range sortedKeys(c.pending) {
		st.Pending = append(st.Pending, c.pending[s])
	}
	for _, id := range sortedKeys(c.incidents) {
		inc := c.incidents[id]
		is := incidentState{Incident: inc.Incident, Started: inc.started, Resolved: inc.resolved, Signal: inc.signal, Reason: inc.reason,
			Version: inc.version, Confidence: inc.verdict.Confidence, Pinned: inc.verdict.Pinned != nil, PinnedID: inc.pinned,
			ResolvedAlerted: inc.resolvedAlerted, Provisional: inc.provisional, Alerted: inc.alerted}
		for _, s := range inc.verdict.Suspects {
			is.Suspects = append(is.Suspects, suspectState{Deploy: *s.Deploy, Rank: s.Rank, Score: s.Score, Reason: s.Reason})
		}
		if d := inc.verdict.RestoredBy; d != nil {
			x := *d
			is.RestoredBy = &x
		}
		st.Incidents = append(st.Incidents, is)
	}
	for _, d := range sortedKeys(c.pins) {
		for _, i := range sortedKeys(c.pins[d]) {
			st.Pins = append(st.Pins, pinState{DeployID: d, Pin: c.pins[d][i]})
		}
	}
	st.RolledBack = sortedKeys(c.rolledBack)
	for _, p := range c.rbPending {
		st.Rollbacks = append(st.Rollbacks, rollbackState{Of: *p.Of, By: *p.By, Queued: p.queued})
	}
	return st
}

// restore replaces the state with a checkpoint's.
func (c *Correlator) restore(st checkpointState) error {
	det := detect.NewDetector(c.rules)
	if err := det.Restore(st.Detector); err != nil {
		return err
	}
	c.det = det
	c.deltas = detect.RestoreDeltas(st.Deltas)
	c.idx = deploys.Restore(st.Deploys)
	c.latestDeploy, c.horizon = st.LatestDeploy, st.Horizon
	c.evSeq, c.aggSeq, c.nextSeq = st.EventsSeq, st.AggregatesSeq, st.NextSeq
	c.pending = map[uint64]aggEntry{}
	for _, e := range st.Pending {
		c.pending[e.Seq] = e
	}
	c.incidents = map[string]*incident{}
	for _, is := range st.Incidents {
		inc := &incident{Incident: is.Incident, started: is.Started, resolved: is.Resolved, signal: is.Signal, reason: is.Reason, version: is.Version,
			pinned: is.PinnedID, resolvedAlerted: is.ResolvedAlerted, provisional: is.Provisional, alerted: is.Alerted}
		inc.verdict.Confidence = is.Confidence
		for _, s := range is.Suspects {
			d := s.Deploy
			inc.verdict.Suspects = append(inc.verdict.Suspects, correlate.Suspect{Deploy: &d, Rank: s.Rank, Score: s.Score, Reason: s.Reason})
		}
		if is.Pinned && len(inc.verdict.Suspects) > 0 {
			inc.verdict.Pinned = &inc.verdict.Suspects[0]
		}
		inc.verdict.RestoredBy = is.RestoredBy
		c.incidents[inc.ID] = inc
	}
	c.pins = map[string]map[string]correlate.PinnedBy{}
	for _, p := range st.Pins {
		if c.pins[p.DeployID] == nil {
			c.pins[p.DeployID] = map[string]correlate.PinnedBy{}
		}
		c.pins[p.DeployID][p.Pin.IncidentID] = p.Pin
	}
	c.rolledBack = map[string]bool{}
	for _, id := range st.RolledBack {
		c.rolledBack[id] = true
	}
	c.rbPending = nil
	for _, r := range st.Rollbacks {
		of, by := r.Of, r.By
		c.rbPending = append(c.rbPending, pendingRollback{deploys.Rollback{Of: &of, By: &by}, r.Queued})
	}
	return nil
}

func encodeCheckpoint(st checkpointState) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(checkpointMagic)
	_ = binary.Write(&buf, binary.BigEndian, uint32(checkpointFormat))
	if err := gob.NewEncoder(&buf).Encode(st); err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	return buf.Bytes(), nil
}

// errCheckpointFormat marks a checkpoint this version cannot read.
var errCheckpointFormat = errors.New("not a checkpoint of this format")

func decodeCheckpoint(b []byte) (checkpointState, error) {
	var st checkpointState
	if !bytes.HasPrefix(b, checkpointMagic) || len(b) < len(checkpointMagic)+4 {
		return st, errCheckpointFormat
	}
	b = b[len(checkpointMagic):]
	if v := binary.BigEndian.Uint32(b); v != checkpointFormat {
		return st, fmt.Errorf("%w: format %d, this version reads %d", errCheckpointFormat, v, checkpointFormat)
	}
	if err := gob.NewDecoder(bytes.NewReader(b[4:])).Decode(&st); err != nil {
		return st, fmt.Errorf("decode checkpoint: %w", err)
	}
	return st, nil
}

var (
	mCheckpoints      = metrics.NewCounter("faultline_correlator_checkpoints_total")
	mCheckpointErrors = metrics.NewCounter("faultline_correlator_checkpoint_errors_total")
	mCheckpointBytes  = metrics.NewGauge("faultline_correlator_checkpoint_bytes", nil)
	mCheckpointSecs   = metrics.NewHistogram("faultline_correlator_checkpoint_duration_seconds")
	mDeploysHeld      = metrics.NewGauge("faultline_correlator_deploys_held", nil)
	mIncidentsHeld    = metrics.NewGauge("faultline_correlator_incidents_held", nil)
)

// openCheckpoints opens (creating it if need be) the checkpoint bucket;
// nil when checkpoints are off.
func (c *Correlator) openCheckpoints(ctx context.Context) error {
	if c.cfg.CheckpointInterval <= 0 {
		return nil
	}
	var store jetstream.ObjectStore
	err := broker.Retry(ctx, c.log, "bucket "+c.cfg.CheckpointBucket, func(ctx context.Context) (err error) {
		store, err = c.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: c.cfg.CheckpointBucket, Description: "the correlator's state and how far it has read its streams",
			Storage: jetstream.FileStorage, Replicas: c.nats.Replicas,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("checkpoint bucket %s: %w", c.cfg.CheckpointBucket, err)
	}
	c.ckpt = store
	return nil
}

// resume loads the checkpoint, if there is one this version can use, and
// returns the stream sequences to follow from (0: from the start). Any
// problem with it means a full replay, never a failure to start.
func (c *Correlator) resume(ctx context.Context) (evStart, aggStart uint64) {
	if c.ckpt == nil {
		return 0, 0
	}
	b, err := c.ckpt.GetBytes(ctx, checkpointObject)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		c.log.Info("no checkpoint: replaying the streams from their start")
		return 0, 0
	}
	if err != nil {
		c.log.Warn("reading the checkpoint failed: replaying the streams from their start", "err", err)
		return 0, 0
	}
	st, err := decodeCheckpoint(b)
	if err != nil {
		c.log.Warn("unusable checkpoint: replaying the streams from their start", "err", err)
		return 0, 0
	}
	if st.Fingerprint != c.fingerprint() {
		c.log.Warn("the checkpoint was saved under other detection rules or settings: replaying the streams from their start")
		return 0, 0
	}
	for _, s := range []struct {
		stream string
		seq    uint64
	}{{c.nats.EventsStream, st.EventsSeq}, {c.nats.AggregatesStream, st.AggregatesSeq}} {
		str, err := c.js.Stream(ctx, s.stream)
		if err != nil {
			c.log.Warn("checking a stream against the checkpoint failed: replaying the streams from their start", "stream", s.stream, "err", err)
			return 0, 0
		}
		info := str.CachedInfo().State
		if info.LastSeq < s.seq {
			c.log.Warn("the stream is behind the checkpoint (recreated?): replaying the streams from their start",
				"stream", s.stream, "last", info.LastSeq, "checkpoint", s.seq)
			return 0, 0
		}
		if info.FirstSeq > s.seq+1 {
			c.log.Warn("messages after the checkpoint have aged out of the stream; going on from the oldest left",
				"stream", s.stream, "checkpoint", s.seq, "first", info.FirstSeq)
		}
	}
	if err := c.restore(st); err != nil {
		c.log.Warn("restoring the checkpoint failed: replaying the streams from their start", "err", err)
		c.reset()
		return 0, 0
	}
	c.ckptSeqs = [3]uint64{st.EventsSeq, st.AggregatesSeq, st.NextSeq}
	c.log.Info("resuming from the checkpoint", "saved", st.Saved, "events_seq", st.EventsSeq, "aggregates_seq", st.AggregatesSeq,
		"deploys", c.idx.Len(), "incidents", len(c.incidents))
	return st.EventsSeq + 1, st.AggregatesSeq + 1
}

// reset empties the state, for a full replay after a failed restore.
func (c *Correlator) reset() {
	c.idx, c.det, c.deltas = deploys.NewIndex(), detect.NewDetector(c.rules), detect.NewDeltas()
	c.incidents, c.pins = map[string]*incident{}, map[string]map[string]correlate.PinnedBy{}
	c.pending, c.rolledBack, c.rbPending = map[uint64]aggEntry{}, map[string]bool{}, nil
	c.evSeq, c.aggSeq = 0, 0
	c.latestDeploy, c.horizon = time.Time{}, time.Time{}
}

// settled reports whether everything the state implies has been written
// and published, so a checkpoint of it is safe.
func (c *Correlator) settled() bool {
	return len(c.dirtyDep) == 0 && len(c.dirtyInc) == 0 && len(c.alerts) == 0 && len(c.detected) == 0 &&
		len(c.retracted) == 0 && len(c.provKV) == 0
}

// checkpoint writes the state when checkpoints are on, the last flush left
// nothing behind, and the interval has passed (or force, at shutdown)
// since the last one, unless nothing was read since.
func (c *Correlator) checkpoint(ctx context.Context, force bool) {
	if c.ckpt == nil || !c.settled() {
		return
	}
	if !force && time.Since(c.ckptAt) < c.cfg.CheckpointInterval {
		return
	}
	if seqs := [3]uint64{c.evSeq, c.aggSeq, c.nextSeq}; seqs == c.ckptSeqs && !c.changed {
		return
	}
	start := time.Now()
	st := c.snapshot()
	b, err := encodeCheckpoint(st)
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = c.ckpt.PutBytes(wctx, checkpointObject, b)
		cancel()
	}
	c.ckptAt = time.Now()
	if err != nil {
		mCheckpointErrors.Inc()
		c.log.Warn("writing the checkpoint failed; the next one will try again", "err", err)
		return
	}
	c.ckptSeqs, c.changed = [3]uint64{st.EventsSeq, st.AggregatesSeq, st.NextSeq}, false
	mCheckpoints.Inc()
	mCheckpointBytes.Set(float64(len(b)))
	mCheckpointSecs.UpdateDuration(start)
	c.log.Debug("checkpoint written", "bytes", len(b), "took", time.Since(start).Round(time.Millisecond).String(),
		"events_seq", st.EventsSeq, "aggregates_seq", st.AggregatesSeq)
}

// prune forgets what correlation no longer needs: deploys that went out
// before the horizon (the correlation window plus EventLateness behind
// event time) except the live one of each key and those pinned by an
// incident still held, and incidents resolved before it. Event time is the
// earlier of the detection watermark and the latest deploy, so that
// neither stream, read ahead of the other while catching up, makes the
// other's history look late; without telemetry (none observed and none
// left to read) it is the latest deploy. The horizon only moves forward.
// A later event that needs older deploys reads them back from the store
// (history).
func (c *Correlator) prune() {
	ref := c.det.Watermark()
	switch {
	case ref.IsZero() && c.lag.aggregates.Load() == 0 && len(c.pending) == 0:
		ref = c.latestDeploy
	case c.latestDeploy.Before(ref):
		ref = c.latestDeploy
	}
	if !ref.IsZero() {
		if h := ref.Add(-(c.ccfg.SameService + c.cfg.EventLateness)); h.After(c.horizon) {
			c.horizon = h
			for id, inc := range c.incidents {
				if !inc.resolved.IsZero() && inc.resolved.Before(h) && !inc.provisional && !c.dirtyInc[id] {
					delete(c.incidents, id)
				}
			}
			c.idx.Prune(h, func(d *deploys.Deploy) bool {
				if c.dirtyDep[d.ID] {
					return true
				}
				for id := range c.pins[d.ID] {
					if _, ok := c.incidents[id]; ok {
						return true
					}
				}
				return false
			})
			for id := range c.pins {
				if _, ok := c.idx.Get(id); !ok {
					delete(c.pins, id)
				}
			}
			for id := range c.rolledBack {
				if _, ok := c.idx.Get(id); !ok {
					delete(c.rolledBack, id)
				}
			}
			clear(c.loaded)
		}
	}
	mDeploysHeld.Set(float64(c.idx.Len()))
	mIncidentsHeld.Set(float64(len(c.incidents)))
}

// history makes sure the index holds the deploys of env (of service, or
// of all with service "") in [from, to] that pruning dropped, reading
// them back from the store. Failures are logged: correlation then goes on
// with what memory holds.
func (c *Correlator) history(env, service string, from, to time.Time) {
	if c.horizon.IsZero() || !from.Before(c.horizon) {
		return
	}
	to = minTime(to, c.horizon)
	key := env + "\x00" + service
	if got, ok := c.loaded[key]; ok && !got.After(from) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := c.store.Deploys(ctx, env, service, from, to)
	if err != nil {
		c.log.Warn("reading older deploys back failed; correlating with the recent ones", "environment", env, "service", service, "err", err)
		return
	}
	for _, r := range rows {
		if _, ok := c.idx.Get(r.DeployID); ok {
			continue
		}
		d := deploys.Deploy{ID: r.DeployID, Service: r.Service, Environment: r.Environment, Version: r.Version, Type: r.Type, Status: r.Status,
			At: r.DeployedAt, Commit: r.CommitSha, Author: r.Author, URL: r.URL, Attributes: r.Attributes}
		if r.FirstCommitAt != nil {
			d.FirstCommitAt = *r.FirstCommitAt
		}
		if r.LeadTimeSeconds != nil {
			lt := time.Duration(*r.LeadTimeSeconds * float64(time.Second))
			d.StoredLead = &lt
		}
		c.idx.Add(d)
	}
	c.loaded[key] = from
	c.log.Info("read older deploys back for a late event", "environment", env, "service", service, "from", from, "to", to, "deploys", len(rows))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
