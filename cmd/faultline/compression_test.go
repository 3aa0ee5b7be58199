package main

import (
	"testing"
	"time"

	"github.com/faultline-dev/faultline/pipeline/broker"
)

// TestStockCollectorsCompressed: two stock Collectors (bin/otelcol), one
// exporting over OTLP/HTTP and one over OTLP/gRPC with their default
// compression (gzip), feed faultline run with its defaults. The gateway
// publishes every request S2-compressed, smaller than it came, and the
// workers decompress what they store: ClickHouse holds each record once.
func TestStockCollectorsCompressed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Collector processes")
	}
	const reqs, perReq = 10, 200
	ctx, s, stop := startRun(t, nil)
	// The counters are the process's: other tests' runs added to them.
	counters := func() (float64, float64) {
		return metricValue(t, s, "faultline_gateway_otlp_bytes_total"), metricValue(t, s, "faultline_gateway_otlp_published_bytes_total")
	}
	in0, out0 := counters()
	cols := startCollectors(ctx, t, s, reqs, perReq)
	want := uint64(2 * reqs * perReq)
	total := waitStored(ctx, t, s, want, time.Minute)
	stopCollectors(t, cols)
	checkStored(ctx, t, s, want)
	// What JetStream stored is the requests compressed.
	st, err := s.js.Stream(ctx, s.cfg.NATS.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	info := st.CachedInfo().State
	if info.Msgs != 2*reqs {
		t.Fatalf("the stream holds %d messages, want %d", info.Msgs, 2*reqs)
	}
	for seq := info.FirstSeq; seq <= info.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if enc := m.Header.Get(broker.HeaderEncoding); enc != broker.EncodingS2 {
			t.Fatalf("message %d: %s %q, want %s", seq, broker.HeaderEncoding, enc, broker.EncodingS2)
		}
	}
	in, out := counters()
	in, out = in-in0, out-out0
	if out <= 0 || out*2 > in {
		t.Fatalf("the gateway received %v bytes and published %v: want them compressed at least twofold", in, out)
	}
	t.Logf("%d records from stock Collectors stored once each; %v bytes received, %v published (%.1fx)", total, in, out, in/out)
	stop()
}
