package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Why JetStream did not store a message, as counted in
// faultline_gateway_refused_total{reason}.
const (
	// The stream holds its configured bound (max bytes or messages): the
	// backlog the workers have not written yet fills it. It passes once
	// they catch up.
	reasonStreamFull = "stream_full"
	// The NATS account's JetStream storage limit is reached.
	reasonAccountFull = "account_full"
	// The server's own JetStream storage (its disk) is exhausted.
	reasonServerFull = "server_full"
	// The message is larger than the stream takes; sending it again will
	// not help.
	reasonTooLarge = "too_large"
	// Anything else: no answer within the publish timeout, no stream
	// leader (an election under way), the connection down.
	reasonUnavailable = "unavailable"
)

// JetStream API error codes (nats-server's jetstream_errors_generated.go)
// that say a publish was refused for room.
const (
	errAccountResourcesExceeded = 10002 // "resource limits exceeded for account"
	errInsufficientResources    = 10023 // "insufficient resources": the server's limits
	errMemoryResourcesExceeded  = 10028
	errStorageResourcesExceeded = 10047
	errMessageExceedsMaximum    = 10054 // above the stream's max message size
	errStreamStoreFailed        = 10077 // "{err}": the store's own refusal, below
)

// publishFailure classifies a failed JetStream publish. A stream with
// Discard: new that holds its MaxBytes answers error code 10077 with the
// store's error as the description: "maximum bytes exceeded" (likewise
// "maximum messages exceeded", "maximum messages per subject exceeded"; a
// record too large for the file store is "message too large"). An
// account at its JetStream storage limit answers 10002, a server out of
// storage 10023 or 10047.
func publishFailure(err error) string {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errStreamStoreFailed:
			switch d := apiErr.Description; {
			case strings.HasPrefix(d, "maximum "):
				return reasonStreamFull
			case strings.Contains(d, "too large"):
				return reasonTooLarge
			}
		case errMessageExceedsMaximum:
			return reasonTooLarge
		case errAccountResourcesExceeded:
			return reasonAccountFull
		case errInsufficientResources, errStorageResourcesExceeded, errMemoryResourcesExceeded:
			return reasonServerFull
		}
	}
	return reasonUnavailable
}

// refusal is the answer to a publish that failed: the one place where
// JetStream's errors become HTTP statuses (and, through grpcCode, gRPC
// codes). A full stream or storage is 429 on the OTLP endpoints, as the
// OTLP spec asks of a server that throttles, and 503 for everything else
// that may pass; both carry Retry-After, and OTLP senders (the Collector's
// otlphttp exporter and its sending queue) retry them. Event and webhook
// endpoints answer 503 in both cases: CI/CD and incident tools that retry
// at all retry 5xx, not all of them 429.
func (g *Gateway) refusal(subject string, err error) *status {
	reason := publishFailure(err)
	g.m.refused(reason)
	g.log.Warn("publish refused", "subject", subject, "reason", reason, "err", err)
	telemetry := subject == g.nats.LogsSubject || subject == g.nats.MetricsSubject
	switch {
	case reason == reasonTooLarge:
		return fail(http.StatusRequestEntityTooLarge, "message larger than the stream allows: %v", err)
	case reason == reasonUnavailable:
		msg := "JetStream did not persist the request: " + err.Error()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			msg = "JetStream did not confirm the request within " + g.cfg.PublishTimeout.String() + ": " + err.Error()
		}
		return &status{code: http.StatusServiceUnavailable, msg: msg}
	case telemetry:
		return &status{code: http.StatusTooManyRequests, msg: "JetStream is full (" + reason + "), retry later: " + err.Error()}
	}
	return &status{code: http.StatusServiceUnavailable, msg: "JetStream is full (" + reason + "), retry later: " + err.Error()}
}

// retryable reports whether a status asks the sender to come back later.
func retryable(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable
}

// grpcError is a status's gRPC form. A retryable one carries RetryInfo
// with the Retry-After delay: the OTLP spec has clients retry
// RESOURCE_EXHAUSTED only with it, and honour its delay for UNAVAILABLE.
func grpcError(code int, msg string, retryAfter time.Duration) error {
	s := grpcstatus.New(grpcCode(code), msg)
	if retryable(code) {
		if d, err := s.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)}); err == nil {
			s = d
		}
	}
	return s.Err()
}
