package gateway

import (
	"testing"

	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// FuzzValidateProto: the structural check never panics, accepts every real
// request, and what it accepts at the top level is a sequence of
// length-delimited field 1 entries.
func FuzzValidateProto(f *testing.F) {
	f.Add(otlptest.LogsRequest("f", 3))
	f.Add(otlptest.MetricsRequest())
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := validateProto(b)
		if err != nil {
			return
		}
		// Whatever passes, the full decoder must not panic on either.
		_, _ = otlp.NewBatch().Append(otlp.SignalLogs, otlp.FormatProtobuf, b)
		_, _ = otlp.NewBatch().Append(otlp.SignalMetrics, otlp.FormatProtobuf, b)
	})
}

func TestValidateRealRequests(t *testing.T) {
	for _, b := range [][]byte{otlptest.LogsRequest("v", 100), otlptest.MetricsRequest(), nil} {
		if err := validateProto(b); err != nil {
			t.Fatalf("rejected a valid request: %v", err)
		}
	}
}
