package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestBackpressureClickHouseOutage runs faultline run with the telemetry
// stream bounded to 1 MiB, stops ClickHouse, and sends logs over OTLP/HTTP
// and OTLP/gRPC until the gateway refuses both (429 with Retry-After,
// RESOURCE_EXHAUSTED with RetryInfo). It then starts ClickHouse again on
// the same data and keeps resending every refused request, as a
// Collector's sending queue does, until all are accepted: ClickHouse must
// end up with every record exactly once, and the stream with every
// accepted request once, none dropped.
func TestBackpressureClickHouseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and restarts ClickHouse")
	}
	const perReq = 200
	ctx, s, stop := startRun(t, map[string]string{
		"FAULTLINE_NATS_TELEMETRY_MAX_BYTES":  "1048576",
		"FAULTLINE_GATEWAY_RETRY_AFTER":       "1s",
		"FAULTLINE_WORKER_RETRY_MAX_INTERVAL": "1s",
	})
	if s.cfg.NATS.TelemetryMaxBytes != 1<<20 {
		t.Fatalf("telemetry bound %d, want the setting's 1 MiB", s.cfg.NATS.TelemetryMaxBytes)
	}
	cc, err := grpc.NewClient(s.gateway.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	logsClient := plogotlp.NewGRPCClient(cc)

	// send sends request i (over gRPC when odd) and reports whether it was
	// accepted; a refusal must say when to come back.
	refusedHTTP, refusedGRPC := 0, 0
	send := func(i int) bool {
		t.Helper()
		id := "bp-" + strconv.Itoa(i)
		if i%2 == 1 {
			_, err := logsClient.Export(ctx, plogotlp.NewExportRequestFromLogs(otlptest.Logs(id, perReq)))
			if err == nil {
				return true
			}
			st := grpcstatus.Convert(err)
			if st.Code() != codes.ResourceExhausted && st.Code() != codes.Unavailable {
				t.Fatalf("gRPC request %d: %v, want RESOURCE_EXHAUSTED or UNAVAILABLE", i, err)
			}
			var delay time.Duration
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					delay = ri.GetRetryDelay().AsDuration()
				}
			}
			if delay != time.Second {
				t.Fatalf("gRPC request %d refused (%v) with RetryInfo delay %s, want 1s", i, err, delay)
			}
			if st.Code() == codes.ResourceExhausted {
				refusedGRPC++
			}
			return false
		}
		resp, err := http.Post("http://"+s.gateway.Addr()+"/v1/logs", "application/x-protobuf", bytes.NewReader(otlptest.LogsRequest(id, perReq)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return true
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			if ra := resp.Header.Get("Retry-After"); ra != "1" {
				t.Fatalf("HTTP request %d: %d with Retry-After %q, want 1", i, resp.StatusCode, ra)
			}
			if resp.StatusCode == http.StatusTooManyRequests {
				refusedHTTP++
			}
			return false
		}
		t.Fatalf("HTTP request %d: %d %s", i, resp.StatusCode, body)
		return false
	}

	// With ClickHouse up, more than the bound goes through: what the
	// workers wrote is trimmed from the stream to make room. A request
	// refused before the next trim is sent again, as a Collector would.
	next := 0
	for deadline := time.Now().Add(time.Minute); next < 30; next++ {
		for !send(next) {
			if time.Now().After(deadline) {
				t.Fatalf("request %d still refused with ClickHouse up", next)
			}
			time.Sleep(time.Second)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); metricValue(t, s, "faultline_worker_stream_trimmed_bytes_total") == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("30 requests of 60 KiB went through a stream of 1 MiB and nothing was trimmed")
		}
	}
	refusedHTTP, refusedGRPC = 0, 0
	chDir := filepath.Join(s.cfg.DataDir, "clickhouse")
	_, tcp, _ := net.SplitHostPort(s.chSrv.Addr)
	_, httpPort, _ := net.SplitHostPort(s.chSrv.HTTPAddr)
	if err := s.chSrv.Stop(); err != nil {
		t.Fatal(err)
	}

	// Keep sending for a while after the first refusals, as Collectors
	// do: the workers trim what they had written, and what fills the
	// stream then is backlog only.
	var refused []int
	for outage := time.Now(); refusedHTTP == 0 || refusedGRPC == 0 || time.Since(outage) < 8*time.Second; next++ {
		if next > 400 {
			t.Fatalf("a stream bounded to 1 MiB took %d requests of %d records with ClickHouse down", next, perReq)
		}
		if !send(next) {
			refused = append(refused, next)
			time.Sleep(time.Second) // Retry-After
		}
	}
	st, err := s.js.Stream(ctx, s.cfg.NATS.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.js.Consumer(ctx, s.cfg.NATS.TelemetryStream, s.cfg.Worker.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	state, floor := st.CachedInfo().State, cons.CachedInfo().AckFloor.Stream
	if state.FirstSeq <= floor || state.Bytes < 900<<10 {
		t.Fatalf("with ClickHouse down the stream holds %d bytes from sequence %d, the workers acked up to %d: want it full of backlog only", state.Bytes, state.FirstSeq, floor)
	}
	t.Logf("ClickHouse down: %d requests sent in all, %d refused (%d over HTTP with 429, %d over gRPC with RESOURCE_EXHAUSTED)",
		next, len(refused), refusedHTTP, refusedGRPC)
	if n := metricValue(t, s, `faultline_gateway_refused_total{reason="stream_full"}`); n < float64(refusedHTTP+refusedGRPC) {
		t.Fatalf("faultline_gateway_refused_total{reason=\"stream_full\"} = %v, want at least %d", n, refusedHTTP+refusedGRPC)
	}

	tcpN, _ := strconv.Atoi(tcp)
	httpN, _ := strconv.Atoi(httpPort)
	bin, _ := chtest.Bin()
	ch, err := chlocal.Start(ctx, chlocal.Options{Bin: bin, Dir: chDir, TCPPort: tcpN, HTTPPort: httpN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Stop() })
	start := time.Now()
	for len(refused) > 0 {
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("%d requests still refused 2 minutes after ClickHouse came back", len(refused))
		}
		time.Sleep(time.Second) // Retry-After
		var still []int
		for _, i := range refused {
			if !send(i) {
				still = append(still, i)
			}
		}
		refused = still
	}
	t.Logf("every refused request accepted %s after ClickHouse came back", time.Since(start).Round(time.Millisecond))

	want := uint64(next * perReq)
	var total, uniq uint64
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if err := s.ch.QueryRow(ctx, "SELECT count(), uniqExact(Body) FROM otel_logs").Scan(&total, &uniq); err != nil {
			continue // the pool reconnects
		}
		if total >= want {
			break
		}
	}
	if total != want || uniq != want {
		t.Fatalf("otel_logs holds %d records (%d distinct), want %d once each", total, uniq, want)
	}
	if st, err = s.js.Stream(ctx, s.cfg.NATS.TelemetryStream); err != nil {
		t.Fatal(err)
	}
	if last := st.CachedInfo().State.LastSeq; last != uint64(next) {
		t.Fatalf("the stream stored %d messages for %d distinct requests", last, next)
	}
	if n := metricValue(t, s, "faultline_worker_stream_max_bytes"); n != 1<<20 {
		t.Errorf("faultline_worker_stream_max_bytes = %v, want 1 MiB", n)
	}
	stop()
}

// metricValue reads one sample from the admin endpoint's /metrics.
func metricValue(t *testing.T, s *stack, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.admin.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}
