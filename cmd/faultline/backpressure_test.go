package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestBackpressure runs faultline run with the telemetry stream bounded to
// 1 MiB. With ClickHouse up, more than the bound goes through (the workers
// trim what they wrote). Then ClickHouse stops: two stock Collectors
// (bin/otelcol, exporting over OTLP/HTTP and OTLP/gRPC with their sending
// queues) and direct OTLP/HTTP and OTLP/gRPC requests fill the stream,
// until the gateway refuses (429 with Retry-After, RESOURCE_EXHAUSTED with
// RetryInfo) and the stream holds backlog only. ClickHouse starts again on
// the same data; the Collectors retry on their own and the refused direct
// requests are resent, as a Collector's queue would: every record must end
// up in ClickHouse exactly once, and the stream must have stored each
// accepted request once, none dropped.
func TestBackpressure(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and restarts ClickHouse, runs Collector processes")
	}
	const perReq, colReqs = 200, 15 // a request is about 65 KB; per Collector about 1 MB
	ctx, s, stop := startRun(t, map[string]string{
		"FAULTLINE_NATS_TELEMETRY_MAX_BYTES": "1048576",
		// Plain payloads, so requests of these sizes fill the bound at a
		// known pace (compressed, the stream would take ten times more).
		"FAULTLINE_GATEWAY_COMPRESSION":       "none",
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
	for deadline := time.Now().Add(time.Minute); next < 20; next++ {
		for !send(next) {
			if time.Now().After(deadline) {
				t.Fatalf("request %d still refused with ClickHouse up", next)
			}
			time.Sleep(time.Second)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); metricValue(t, s, "faultline_worker_stream_trimmed_bytes_total") == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("20 requests of 65 KB went through a stream of 1 MiB and nothing was trimmed")
		}
	}
	refusedHTTP, refusedGRPC = 0, 0
	refusedBefore := metricValue(t, s, `faultline_gateway_refused_total{reason="stream_full"}`)

	chDir := filepath.Join(s.cfg.DataDir, "clickhouse")
	_, tcp, _ := net.SplitHostPort(s.chSrv.Addr)
	_, httpPort, _ := net.SplitHostPort(s.chSrv.HTTPAddr)
	if err := s.chSrv.Stop(); err != nil {
		t.Fatal(err)
	}

	// Collectors take their data at once and hold it in their queues.
	cols := startCollectors(ctx, t, s, colReqs, perReq)

	// Direct requests meanwhile, for a while after the first refusals:
	// the workers trim what they had written, and what fills the stream
	// then is backlog only.
	var refused []int
	for outage := time.Now(); refusedHTTP == 0 || refusedGRPC == 0 || time.Since(outage) < 8*time.Second; next++ {
		if time.Since(outage) > time.Minute {
			t.Fatalf("after a minute of ClickHouse down, %d refused over HTTP and %d over gRPC", refusedHTTP, refusedGRPC)
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
	// The Collectors were refused too, with the throttling answers they
	// retry (over gRPC only because RetryInfo comes with it).
	for deadline := time.Now().Add(30 * time.Second); cols[0].retries() == 0 || cols[1].retries() == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			cols[0].fail(t, "the Collectors did not retry within 30s (%d, %d retries)\n--- gRPC Collector ---\n%s", cols[0].retries(), cols[1].retries(), cols[1].log.String())
		}
	}
	if !strings.Contains(cols[0].log.String(), "429") {
		cols[0].fail(t, "the HTTP Collector retried without a 429")
	}
	if !strings.Contains(cols[1].log.String(), "ResourceExhausted") {
		cols[1].fail(t, "the gRPC Collector retried without a RESOURCE_EXHAUSTED")
	}
	refusedAll := metricValue(t, s, `faultline_gateway_refused_total{reason="stream_full"}`) - refusedBefore
	if refusedAll < float64(refusedHTTP+refusedGRPC+2) {
		t.Fatalf("faultline_gateway_refused_total{reason=\"stream_full\"} rose by %v, want at least %d", refusedAll, refusedHTTP+refusedGRPC+2)
	}
	t.Logf("ClickHouse down: gateway refused %v requests for a full stream, %d of them direct (%d HTTP, %d gRPC); the Collectors retried %d and %d times",
		refusedAll, len(refused), refusedHTTP, refusedGRPC, cols[0].retries(), cols[1].retries())

	tcpN, _ := strconv.Atoi(tcp)
	httpN, _ := strconv.Atoi(httpPort)
	chBin, _ := chtest.Bin()
	ch, err := chlocal.Start(ctx, chlocal.Options{Bin: chBin, Dir: chDir, TCPPort: tcpN, HTTPPort: httpN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Stop() })
	back := time.Now()
	for len(refused) > 0 {
		if time.Since(back) > 2*time.Minute {
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

	want := uint64((next + 2*colReqs) * perReq)
	total := waitStored(ctx, t, s, want, 2*time.Minute)
	t.Logf("all %d records stored %s after ClickHouse came back", total, time.Since(back).Round(time.Millisecond))
	stopCollectors(t, cols)
	checkStored(ctx, t, s, want)
	// Each Collector export was one request too (no batching).
	if st, err = s.js.Stream(ctx, s.cfg.NATS.TelemetryStream); err != nil {
		t.Fatal(err)
	}
	if last := st.CachedInfo().State.LastSeq; last != uint64(next+2*colReqs) {
		t.Fatalf("the stream stored %d messages for %d distinct requests", last, next+2*colReqs)
	}
	if n := metricValue(t, s, "faultline_worker_stream_max_bytes"); n != 1<<20 {
		t.Errorf("faultline_worker_stream_max_bytes = %v, want 1 MiB", n)
	}
	stop()
}

// stockCollectorConfig is a stock Collector in front of the gateway with
// the defaults users run (a sending queue, retry on failure, no batching
// that could merge requests beyond the stream's bound), retrying quickly
// so the test waits little. max_elapsed_time 0: never give up.
const stockCollectorConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  %s:
    endpoint: %s
    %s
    retry_on_failure: {enabled: true, initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 0s}
    sending_queue: {enabled: true, queue_size: 1000}
service:
  telemetry:
    metrics: {level: none}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [%s]
`

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

type stockCollector struct {
	receiver string
	cmd      *exec.Cmd
	log      *natstest.Buffer
	done     chan error
}

func startStockCollector(t *testing.T, bin, exporter, endpoint, extra string) *stockCollector {
	t.Helper()
	receiver := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "otelcol.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(stockCollectorConfig, receiver, exporter, endpoint, extra, exporter)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &stockCollector{receiver: receiver, log: &natstest.Buffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(bin, "--config", cfg)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting the Collector %s: %v", bin, err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		err := <-c.done
		c.done <- err
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if conn, err := net.DialTimeout("tcp", receiver, time.Second); err == nil {
			conn.Close()
			return c
		}
		if time.Now().After(deadline) {
			c.fail(t, "the Collector is not listening on %s after 15s", receiver)
		}
	}
}

// startCollectors starts two stock Collectors in front of s's gateway,
// one exporting over OTLP/HTTP and one over OTLP/gRPC, and feeds each reqs
// log requests of perReq records.
func startCollectors(ctx context.Context, t *testing.T, s *stack, reqs, perReq int) []*stockCollector {
	t.Helper()
	var cols []*stockCollector
	for _, exp := range []struct{ name, endpoint, extra string }{
		{"otlphttp", "http://" + s.gateway.Addr(), ""},
		{"otlp", s.gateway.GRPCAddr(), "tls: {insecure: true}"},
	} {
		col := startStockCollector(t, otelcolBin(t), exp.name, exp.endpoint, exp.extra)
		cols = append(cols, col)
		col.feed(ctx, t, exp.name, reqs, perReq)
	}
	return cols
}

// feed sends the Collector's OTLP/gRPC receiver reqs log requests of
// perReq records each, named after name.
func (c *stockCollector) feed(ctx context.Context, t *testing.T, name string, reqs, perReq int) {
	t.Helper()
	conn, err := grpc.NewClient(c.receiver, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := plogotlp.NewGRPCClient(conn)
	for i := range reqs {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := client.Export(sctx, plogotlp.NewExportRequestFromLogs(otlptest.Logs(name+"-"+strconv.Itoa(i), perReq)))
		cancel()
		if err != nil {
			c.fail(t, "sending to the Collector: %v", err)
		}
	}
}

// stopCollectors stops each Collector, failing the test if one logged
// that it gave data up.
func stopCollectors(t *testing.T, cols []*stockCollector) {
	t.Helper()
	for _, col := range cols {
		col.stop(t)
		if bad := col.problems(); bad != "" {
			col.fail(t, "the Collector logged lost data:\n%s", bad)
		}
	}
}

// waitStored waits up to timeout for otel_logs to hold want records and
// returns how many it holds.
func waitStored(ctx context.Context, t *testing.T, s *stack, want uint64, timeout time.Duration) uint64 {
	t.Helper()
	var total uint64
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if err := s.ch.QueryRow(ctx, "SELECT count() FROM otel_logs").Scan(&total); err != nil {
			continue // the pool reconnects
		}
		if total >= want {
			break
		}
	}
	return total
}

// checkStored fails the test unless otel_logs holds want records, each
// once (every test record has a body of its own).
func checkStored(ctx context.Context, t *testing.T, s *stack, want uint64) {
	t.Helper()
	var total, uniq uint64
	if err := s.ch.QueryRow(ctx, "SELECT count(), uniqExact(Body) FROM otel_logs").Scan(&total, &uniq); err != nil {
		t.Fatal(err)
	}
	if total != want || uniq != want {
		t.Fatalf("otel_logs holds %d records (%d distinct), want %d once each", total, uniq, want)
	}
}

// stop shuts the Collector down with SIGTERM, so it drains its queue.
func (c *stockCollector) stop(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
	case <-time.After(15 * time.Second):
		c.fail(t, "the Collector did not stop within 15s of SIGTERM")
	}
}

// lostData matches what the Collector's exporter helper logs when it gives
// data up.
var lostData = regexp.MustCompile(`(?i)dropping data|rejecting data|permanent`)

func (c *stockCollector) problems() string {
	var bad []string
	for _, line := range strings.Split(c.log.String(), "\n") {
		if lostData.MatchString(line) {
			bad = append(bad, line)
		}
	}
	return strings.Join(bad, "\n")
}

func (c *stockCollector) retries() int {
	return strings.Count(c.log.String(), "Will retry the request")
}

func (c *stockCollector) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s\n--- Collector log ---\n%s", fmt.Sprintf(format, args...), c.log.String())
}
