package gateway_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/processors/otlp"
)

// TestTelemetrygen sends logs and metrics from the OpenTelemetry
// project's own load generator, over OTLP/HTTP and OTLP/gRPC, through the
// gateway, and checks every record arrived in the stream exactly once.
// make test installs telemetrygen into bin/.
func TestTelemetrygen(t *testing.T) {
	bin := os.Getenv("FAULTLINE_TELEMETRYGEN_BIN")
	if bin == "" {
		t.Fatal("FAULTLINE_TELEMETRYGEN_BIN is not set: run the tests with make test, which installs telemetrygen")
	}
	ns := natstest.Start(t)
	c := testConfig()
	c.Token = "tg-token"
	g := start(t, ns, c)
	const n = 500
	runs := []struct {
		args    []string
		logs    int
		metrics bool
	}{
		{[]string{"logs", "--otlp-http", "--otlp-endpoint", g.Addr()}, n, false},
		{[]string{"logs", "--otlp-endpoint", g.GRPCAddr()}, n, false},
		{[]string{"metrics", "--otlp-http", "--otlp-endpoint", g.Addr(), "--otlp-http-url-path", "/v1/metrics", "--metrics", "50"}, 0, true},
		{[]string{"metrics", "--otlp-endpoint", g.GRPCAddr(), "--metrics", "50"}, 0, true},
	}
	for _, r := range runs {
		args := append(r.args, "--otlp-insecure", "--workers", "1", "--rate", "0", "--otlp-header", `Authorization="Bearer tg-token"`)
		if r.logs > 0 {
			args = append(args, "--logs", "500")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("telemetrygen %v: %v\n%s", args, err, out)
		}
	}
	// Decode every stored message: 2 x 500 log records, 2 x 50 metric points.
	ctx := context.Background()
	s, err := ns.JS.Stream(ctx, ns.Config.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	b := otlp.NewBatch()
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		sig := otlp.SignalLogs
		if m.Subject == ns.Config.MetricsSubject {
			sig = otlp.SignalMetrics
		}
		if _, err := b.Append(sig, otlp.FormatAuto, payload(t, m)); err != nil {
			t.Fatalf("message %d does not decode: %v", seq, err)
		}
	}
	metricPoints := b.Gauge.Len() + b.Sum.Len() + b.Histogram.Len() + b.ExpHistogram.Len() + b.Summary.Len()
	if b.Logs.Len() != 2*n || metricPoints != 2*50 {
		t.Fatalf("stream holds %d log records and %d metric points; telemetrygen sent %d and %d", b.Logs.Len(), metricPoints, 2*n, 100)
	}
}
