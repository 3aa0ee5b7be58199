package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// FallbackTelemetryMaxBytes bounds the telemetry stream when neither the
// account nor the server reports how much JetStream may store: 10 GiB holds
// about an hour of 10,000 log records a second, enough to ride out a
// ClickHouse restart, and fits any disk worth running JetStream on.
const FallbackTelemetryMaxBytes = 10 << 30

// TelemetryMaxBytes decides the size bound of the telemetry stream from the
// setting FAULTLINE_NATS_TELEMETRY_MAX_BYTES: a positive setting as it is,
// -1 for no bound, and 0 (the default) for half of what JetStream may store
// for this account, per replica. That storage is the account's JetStream
// storage limit when it has one (of the tier of c.Replicas replicas, when the
// account has tiers), else serverMaxStore (the embedded server's JetStream
// limit, which nats-server derives from the disk under its store: 75% of the
// free space at start, plus what it already holds), else the stream gets
// FallbackTelemetryMaxBytes. Half leaves the rest to the other streams,
// the key-value buckets and the filesystem's own margin, so a long backlog
// of telemetry refuses new messages before anything else runs out of room.
func TelemetryMaxBytes(ctx context.Context, js jetstream.JetStream, c Config, serverMaxStore int64) (int64, error) {
	switch {
	case c.TelemetryMaxBytes > 0 || c.TelemetryMaxBytes == -1:
		return c.TelemetryMaxBytes, nil
	case c.TelemetryMaxBytes < -1:
		return 0, fmt.Errorf("FAULTLINE_NATS_TELEMETRY_MAX_BYTES: %d, want a size in bytes, 0 or -1", c.TelemetryMaxBytes)
	}
	// Through Retry: a role started while the cluster elects its meta
	// leader gets no answer for a while, like its other start-up calls.
	var ai *jetstream.AccountInfo
	err := Retry(ctx, nil, "account info", func(ctx context.Context) (err error) {
		ai, err = js.AccountInfo(ctx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("jetstream account info, to size the telemetry stream (or set FAULTLINE_NATS_TELEMETRY_MAX_BYTES): %w", err)
	}
	return autoTelemetryMaxBytes(accountMaxStore(ai, c.Replicas), serverMaxStore, c.Replicas), nil
}

// accountMaxStore is the account's JetStream storage limit in bytes over all
// replicas, or 0 when it has none.
func accountMaxStore(ai *jetstream.AccountInfo, replicas int) int64 {
	if t, ok := ai.Tiers["R"+strconv.Itoa(replicas)]; ok && t.Limits.MaxStore > 0 {
		return t.Limits.MaxStore
	}
	if ai.Limits.MaxStore > 0 {
		return ai.Limits.MaxStore
	}
	return 0
}

// autoTelemetryMaxBytes is the rule of TelemetryMaxBytes for the default
// setting, apart from asking NATS.
func autoTelemetryMaxBytes(accountMax, serverMax int64, replicas int) int64 {
	replicas = max(replicas, 1)
	switch {
	case accountMax > 0:
		return max(accountMax/int64(replicas)/2, 1)
	case serverMax > 0:
		// A server's limit is its own disk: every replica has one.
		return max(serverMax/2, 1)
	}
	return FallbackTelemetryMaxBytes
}

// TrimAcked makes room in a size-bounded stream that keeps messages after
// they are processed (limits retention): once it holds at least fill (0-1)
// of its MaxBytes, it purges every message that all durable consumers of
// the stream have acked, and returns how many messages and bytes it
// removed. A stream that refuses new messages when full (DiscardNew) would
// otherwise refuse them while most of it is history already written; this
// way the bound limits only the backlog not yet processed, and history is
// kept while there is room. A durable consumer that acks nothing (stopped,
// or left over from an old setting) holds the purge back: its ack floor is
// the lowest. It also returns the stream's info as it last read it, for
// callers that report its size.
func TrimAcked(ctx context.Context, js jetstream.JetStream, name string, fill float64) (info *jetstream.StreamInfo, msgs, bytes uint64, err error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("stream %s: %w", name, err)
	}
	before := s.CachedInfo()
	if before.Config.MaxBytes <= 0 || float64(before.State.Bytes) < fill*float64(before.Config.MaxBytes) {
		return before, 0, 0, nil
	}
	floor, durables := uint64(math.MaxUint64), 0
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		if ci.Config.Durable == "" {
			continue
		}
		durables++
		floor = min(floor, ci.AckFloor.Stream)
	}
	if err := l.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return before, 0, 0, fmt.Errorf("consumers of stream %s: %w", name, err)
	}
	if durables == 0 || floor < before.State.FirstSeq {
		return before, 0, 0, nil
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return before, 0, 0, fmt.Errorf("purge stream %s below sequence %d: %w", name, floor+1, err)
	}
	after, err := s.Info(ctx)
	if err != nil {
		return before, 0, 0, fmt.Errorf("stream %s: %w", name, err)
	}
	if after.State.Msgs < before.State.Msgs {
		msgs = before.State.Msgs - after.State.Msgs
	}
	if after.State.Bytes < before.State.Bytes {
		bytes = before.State.Bytes - after.State.Bytes
	}
	return after, msgs, bytes, nil
}
