package gateway

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPublishFailure: the errors nats-server returns (codes and
// descriptions as TestTelemetryStreamUpgradeToDiscardNew and TestRefusals
// see them from real servers) and the client's own errors, classified.
func TestPublishFailure(t *testing.T) {
	api := func(code jetstream.ErrorCode, desc string) error {
		return fmt.Errorf("publish: %w", &jetstream.APIError{Code: 503, ErrorCode: code, Description: desc})
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{api(10077, "maximum bytes exceeded"), reasonStreamFull},
		{api(10077, "maximum messages exceeded"), reasonStreamFull},
		{api(10077, "maximum messages per subject exceeded"), reasonStreamFull},
		{api(10077, "message too large"), reasonTooLarge},
		{api(10054, "message size exceeds maximum allowed"), reasonTooLarge},
		{api(10002, "resource limits exceeded for account"), reasonAccountFull},
		{api(10023, "insufficient resources"), reasonServerFull},
		{api(10047, "insufficient storage resources available"), reasonServerFull},
		{api(10077, "stream store closed"), reasonUnavailable},
		{api(10008, "JetStream cluster not available"), reasonUnavailable},
		{nats.ErrNoResponders, reasonUnavailable},
		{context.DeadlineExceeded, reasonUnavailable},
		{nats.ErrConnectionClosed, reasonUnavailable},
	} {
		if got := publishFailure(tc.err); got != tc.want {
			t.Errorf("publishFailure(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
