package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Subjects of faultline's own events.
const (
	DeploysSubject    = "faultline.deploys"
	IncidentsSubject  = "faultline.incidents"
	AggregatesSubject = "faultline.aggregates"
	AlertsPrefix      = "faultline.alerts"
	DeadLetterPrefix  = "faultline.dlq"
	deadLetterSubject = DeadLetterPrefix + ".>"
)

// Streams returns the definitions of every stream faultline uses. They are
// the single place where stream settings are decided. c.TelemetryMaxBytes
// is the bound TelemetryMaxBytes decided (0, not yet decided, stands for
// FallbackTelemetryMaxBytes).
//
// The telemetry stream refuses new messages when full (DiscardNew) instead
// of dropping the oldest: its oldest messages may be a backlog not yet
// written to ClickHouse, and a refused publish is retried by its sender
// (the gateway answers 429, a Collector's NATS exporter gets the error),
// while a dropped message is lost. TrimAcked keeps history already written
// from filling it. The other streams carry little and have no byte bound:
// bounding them would either drop events the correlator rebuilds its state
// from (DiscardOld) or stop workers' commits (DiscardNew); they live in the
// half of the storage the telemetry bound leaves.
func Streams(c Config) []jetstream.StreamConfig {
	maxBytes := c.TelemetryMaxBytes
	if maxBytes == 0 {
		maxBytes = FallbackTelemetryMaxBytes
	}
	// A message larger than the stream could ever hold would be refused
	// as "full" forever and retried forever; at most half the bound, it
	// is refused as too large (413) instead, which no sender retries.
	maxMsg := int32(8 << 20)
	if maxBytes > 0 && maxBytes/2 < int64(maxMsg) {
		maxMsg = int32(max(maxBytes/2, 1))
	}
	return []jetstream.StreamConfig{
		{
			Name:        c.TelemetryStream,
			Description: "OTLP logs and metrics payloads, one export request per message",
			Subjects:    []string{c.LogsSubject, c.LogsSubject + ".>", c.MetricsSubject, c.MetricsSubject + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      c.TelemetryMaxAge,
			MaxBytes:    maxBytes,
			MaxMsgSize:  maxMsg,
			Duplicates:  c.DuplicateWindow,
			Replicas:    c.Replicas,
			Discard:     jetstream.DiscardNew,
		},
		{
			Name:        c.EventsStream,
			Description: "deploy and incident events (native JSON)",
			Subjects:    []string{DeploysSubject, IncidentsSubject},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      c.EventsMaxAge,
			MaxBytes:    -1,
			Duplicates:  c.DuplicateWindow,
			Replicas:    c.Replicas,
		},
		{
			Name:        c.AggregatesStream,
			Description: "per-minute log counts by service, environment and version, one message per committed batch",
			Subjects:    []string{AggregatesSubject},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      c.AggregatesMaxAge,
			MaxBytes:    -1,
			// Longer than a worker's ack wait: a batch re-formed after a
			// crash republishes its aggregates under the same id.
			Duplicates: max(c.DuplicateWindow, time.Hour),
			Replicas:   c.Replicas,
		},
		{
			Name:        c.AlertsStream,
			Description: "alert events (incident.correlated, incident.resolved, deploy.rolled_back) for webhook delivery",
			Subjects:    []string{AlertsPrefix + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      c.AlertsMaxAge,
			MaxBytes:    -1,
			Duplicates:  max(c.DuplicateWindow, time.Hour),
			Replicas:    c.Replicas,
		},
		{
			Name:        c.DeadLetterStream,
			Description: "messages faultline could not process, with the reason in headers",
			Subjects:    []string{deadLetterSubject},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      c.DeadLetterMaxAge,
			MaxBytes:    -1,
			Duplicates:  c.DuplicateWindow,
			Replicas:    c.Replicas,
		},
	}
}

// Provision creates each stream or brings an existing one to its definition.
// Running it again with the same definitions changes nothing. A change that
// JetStream cannot apply in place (storage type, a smaller replica set on
// some versions, retention policy) fails with an error naming the stream.
// On a cluster it waits out leader elections and a server down (Retry).
func Provision(ctx context.Context, js jetstream.JetStream, defs []jetstream.StreamConfig, log *slog.Logger) error {
	for _, want := range defs {
		if err := Retry(ctx, log, "stream "+want.Name, func(ctx context.Context) error { return provision(ctx, js, want, log) }); err != nil {
			return err
		}
	}
	return nil
}

func provision(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, log *slog.Logger) error {
	s, err := js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateStream(ctx, want); err != nil {
			return fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		if log != nil {
			log.Info("created stream", "stream", want.Name, "subjects", want.Subjects)
		}
		return nil
	case err != nil:
		return fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if sameStream(have, want) {
		return nil
	}
	if _, err := js.UpdateStream(ctx, want); err != nil {
		return fmt.Errorf("update stream %s to the configured settings (NATS cannot change some settings in place, such as storage or retention; migrate the stream by hand): %w", want.Name, err)
	}
	if log != nil {
		log.Info("updated stream", "stream", want.Name)
	}
	return nil
}

// sameStream compares the fields faultline sets, ignoring what the server
// fills in by itself.
func sameStream(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description &&
		reflect.DeepEqual(have.Subjects, want.Subjects) &&
		have.Retention == want.Retention &&
		have.Storage == want.Storage &&
		have.MaxAge == want.MaxAge &&
		have.MaxBytes == want.MaxBytes &&
		(want.MaxMsgSize == 0 || have.MaxMsgSize == want.MaxMsgSize) &&
		have.Duplicates == want.Duplicates &&
		have.Replicas == want.Replicas &&
		have.Discard == want.Discard
}
