package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// outageCollectorConfig is a stock Collector in front of the gateway with
// the defaults users run (a sending queue, retry on failure, no batching
// that could merge requests beyond the stream's bound), retrying quickly
// so the test waits little. max_elapsed_time 0: never give up.
const outageCollectorConfig = `receivers:
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

// TestBackpressureCollector: a stock Collector (bin/otelcol) exports over
// OTLP/HTTP, and another over OTLP/gRPC, to a faultline whose ClickHouse is
// down and whose telemetry stream is bounded to 1 MiB. The gateway refuses
// once the stream is full (429, RESOURCE_EXHAUSTED with RetryInfo); the
// Collectors keep the data in their sending queues and retry, and once
// ClickHouse is back everything they were sent is stored exactly once.
func TestBackpressureCollector(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Collector processes and restarts ClickHouse")
	}
	bin := os.Getenv("FAULTLINE_OTELCOL_BIN")
	if bin == "" {
		t.Fatal("FAULTLINE_OTELCOL_BIN is not set: run the tests with make test, which builds the Collector into bin/otelcol")
	}
	const reqs, perReq = 20, 200 // per Collector: 20 requests of 65 KB, 1.3 MB
	ctx, s, stop := startRun(t, map[string]string{
		"FAULTLINE_NATS_TELEMETRY_MAX_BYTES":  "1048576",
		"FAULTLINE_GATEWAY_RETRY_AFTER":       "1s",
		"FAULTLINE_WORKER_RETRY_MAX_INTERVAL": "1s",
	})
	chDir := filepath.Join(s.cfg.DataDir, "clickhouse")
	_, tcp, _ := net.SplitHostPort(s.chSrv.Addr)
	_, httpPort, _ := net.SplitHostPort(s.chSrv.HTTPAddr)
	if err := s.chSrv.Stop(); err != nil {
		t.Fatal(err)
	}
	refusedBefore := metricValue(t, s, `faultline_gateway_refused_total{reason="stream_full"}`)

	var cols []*outageCollector
	for _, exp := range []struct{ name, endpoint, extra string }{
		{"otlphttp", "http://" + s.gateway.Addr(), ""},
		{"otlp", s.gateway.GRPCAddr(), "tls: {insecure: true}"},
	} {
		col := startOutageCollector(t, bin, exp.name, exp.endpoint, exp.extra)
		cols = append(cols, col)
		conn, err := grpc.NewClient(col.receiver, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		client := plogotlp.NewGRPCClient(conn)
		for i := range reqs {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := client.Export(sctx, plogotlp.NewExportRequestFromLogs(otlptest.Logs(exp.name+"-"+strconv.Itoa(i), perReq)))
			cancel()
			if err != nil {
				col.fail(t, "sending to the Collector: %v", err)
			}
		}
	}

	// Both Collectors are refused and retry.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if cols[0].retries() > 0 && cols[1].retries() > 0 {
			break
		}
		if time.Now().After(deadline) {
			cols[0].fail(t, "the Collectors did not retry within 30s (%d, %d retries)\n--- gRPC Collector ---\n%s", cols[0].retries(), cols[1].retries(), cols[1].log.String())
		}
	}
	// The retried errors are the throttling answers, which the Collector
	// retries only with RetryInfo over gRPC.
	if l := cols[0].log.String(); !strings.Contains(l, "429") {
		cols[0].fail(t, "the HTTP Collector retried without a 429")
	}
	if l := cols[1].log.String(); !strings.Contains(l, "ResourceExhausted") {
		cols[1].fail(t, "the gRPC Collector retried without a RESOURCE_EXHAUSTED")
	}
	refused := metricValue(t, s, `faultline_gateway_refused_total{reason="stream_full"}`) - refusedBefore
	if refused == 0 {
		t.Fatal("the Collectors retried, but the gateway refused nothing for a full stream")
	}

	tcpN, _ := strconv.Atoi(tcp)
	httpN, _ := strconv.Atoi(httpPort)
	chBin, _ := chtest.Bin()
	ch, err := chlocal.Start(ctx, chlocal.Options{Bin: chBin, Dir: chDir, TCPPort: tcpN, HTTPPort: httpN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Stop() })
	back := time.Now()

	want := uint64(2 * reqs * perReq)
	var total, uniq uint64
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if err := s.ch.QueryRow(ctx, "SELECT count(), uniqExact(Body) FROM otel_logs").Scan(&total, &uniq); err != nil {
			continue // the pool reconnects
		}
		if total >= want {
			break
		}
	}
	t.Logf("gateway refused %v exports for a full stream; the Collectors retried %d and %d times; all stored %s after ClickHouse came back",
		refused, cols[0].retries(), cols[1].retries(), time.Since(back).Round(time.Millisecond))
	for _, col := range cols {
		col.stop(t)
		if bad := col.problems(); bad != "" {
			col.fail(t, "the Collector logged lost data:\n%s", bad)
		}
	}
	if total != want || uniq != want {
		t.Fatalf("otel_logs holds %d records (%d distinct), the Collectors were sent %d", total, uniq, want)
	}
	stop()
}

type outageCollector struct {
	receiver string
	cmd      *exec.Cmd
	log      *lockedLog
	done     chan error
}

func startOutageCollector(t *testing.T, bin, exporter, endpoint, extra string) *outageCollector {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	receiver := l.Addr().String()
	l.Close()
	cfg := filepath.Join(t.TempDir(), "otelcol.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(outageCollectorConfig, receiver, exporter, endpoint, extra, exporter)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &outageCollector{receiver: receiver, log: &lockedLog{}, done: make(chan error, 1)}
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

// stop shuts the Collector down with SIGTERM, so it drains its queue.
func (c *outageCollector) stop(t *testing.T) {
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

func (c *outageCollector) problems() string {
	var bad []string
	for _, line := range strings.Split(c.log.String(), "\n") {
		if lostData.MatchString(line) {
			bad = append(bad, line)
		}
	}
	return strings.Join(bad, "\n")
}

func (c *outageCollector) retries() int {
	return strings.Count(c.log.String(), "Will retry the request")
}

func (c *outageCollector) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s\n--- Collector log ---\n%s", fmt.Sprintf(format, args...), c.log.String())
}

// lockedLog collects a process's output.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
