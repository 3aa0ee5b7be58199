package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// TestCollectorExporters runs a stock OpenTelemetry Collector (built by
// make from testdata/collector/builder.yaml) in front of the gateway, once
// for every compression its OTLP exporters offer, and checks that every
// log record and metric point sent into it lands in the stream exactly
// once. A Collector compresses with gzip unless told otherwise, which the
// tests with telemetrygen (uncompressed) never exercised: this is the test
// of what users actually run.
func TestCollectorExporters(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Collector process per setting")
	}
	bin := os.Getenv("FAULTLINE_OTELCOL_BIN")
	if bin == "" {
		t.Fatal("FAULTLINE_OTELCOL_BIN is not set: run the tests with make test, which builds the Collector into bin/otelcol")
	}
	tmpl, err := template.ParseFiles(filepath.Join("..", "..", "testdata", "collector", "gateway.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.Start(t)
	c := testConfig()
	c.Token = "collector-token"
	g := start(t, ns, c)

	grpcEnd, httpEnd := g.GRPCAddr(), "http://"+g.Addr()
	for _, tc := range []struct {
		exporter, endpoint, compression string
	}{
		// The names the README shows (otlp, otlphttp) are aliases of
		// otlp_grpc and otlp_http in current Collectors; they are used
		// where compression is left unset, the Collector's gzip default.
		{"otlp", grpcEnd, ""},
		{"otlp_grpc", grpcEnd, "zstd"},
		{"otlp_grpc", grpcEnd, "snappy"},
		{"otlp_grpc", grpcEnd, "none"},
		{"otlphttp", httpEnd, ""},
		{"otlp_http", httpEnd, "zstd"},
		{"otlp_http", httpEnd, "deflate"},
		{"otlp_http", httpEnd, "zlib"},
		{"otlp_http", httpEnd, "snappy"},
		{"otlp_http", httpEnd, "x-snappy-framed"},
		{"otlp_http", httpEnd, "lz4"},
		{"otlp_http", httpEnd, "none"},
	} {
		name := tc.exporter + "/" + tc.compression
		if tc.compression == "" {
			name = tc.exporter + "/default"
		}
		t.Run(name, func(t *testing.T) {
			runCollectorCase(t, bin, tmpl, ns, collectorCase{
				ID:          strings.ReplaceAll(name, "/", "-"),
				Exporter:    tc.exporter,
				Endpoint:    tc.endpoint,
				Compression: tc.compression,
				GRPC:        tc.endpoint == grpcEnd,
			})
		})
	}
}

// collectorCase is one Collector configuration (the template's data).
type collectorCase struct {
	ID                              string
	Receiver                        string
	Exporter, Endpoint, Compression string
	GRPC                            bool
}

// What each case sends: log records in requests of these sizes, and
// otlptest.Metrics (7 points) this many times.
var (
	collectorLogRequests    = []int{100, 250, 50}
	collectorMetricRequests = 3
)

// runCollectorCase starts one Collector, sends it logs and metrics over
// OTLP/gRPC, and checks the stream messages it caused (from the stream's
// last sequence before it started) hold each record once.
func runCollectorCase(t *testing.T, bin string, tmpl *template.Template, ns *natstest.Server, cc collectorCase) {
	cc.Receiver = freeAddr(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "otelcol.yaml")
	var cfg bytes.Buffer
	if err := tmpl.Execute(&cfg, cc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	stream, err := ns.JS.Stream(ctx, ns.Config.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	firstSeq := info.State.LastSeq + 1

	col := startCollector(t, bin, cfgPath)
	col.waitListening(t, cc.Receiver)

	conn, err := grpc.NewClient(cc.Receiver, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wantLogs := 0
	for i, n := range collectorLogRequests {
		ld := otlptest.Logs(fmt.Sprintf("%s.%d", cc.ID, i), n)
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := plogotlp.NewGRPCClient(conn).Export(sctx, plogotlp.NewExportRequestFromLogs(ld))
		cancel()
		if err != nil {
			col.fail(t, "sending logs to the Collector: %v", err)
		}
		wantLogs += n
	}
	for i := 0; i < collectorMetricRequests; i++ {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		// Each request is made distinct: the gateway deduplicates
		// byte-identical payloads, as it does a retried request.
		md := otlptest.Metrics()
		md.ResourceMetrics().At(0).Resource().Attributes().PutStr("service.instance.id", fmt.Sprintf("%s.%d", cc.ID, i))
		_, err := pmetricotlp.NewGRPCClient(conn).Export(sctx, pmetricotlp.NewExportRequestFromMetrics(md))
		cancel()
		if err != nil {
			col.fail(t, "sending metrics to the Collector: %v", err)
		}
	}
	wantPoints := collectorMetricRequests * otlptest.Metrics().DataPointCount()

	// Wait for the export, then stop the Collector (which flushes what it
	// still holds) and count again: a late or repeated export shows up.
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := decodeStream(t, ns, firstSeq)
		if got.logs >= wantLogs && got.points >= wantPoints {
			break
		}
		if bad := col.problems(); bad != "" {
			col.fail(t, "the Collector logged lost data:\n%s", bad)
		}
		if time.Now().After(deadline) {
			col.fail(t, "after 20s the stream holds %d of %d log records and %d of %d metric points", got.logs, wantLogs, got.points, wantPoints)
		}
		time.Sleep(50 * time.Millisecond)
	}
	col.stop(t)
	got := decodeStream(t, ns, firstSeq)
	if got.logs != wantLogs || got.points != wantPoints {
		col.fail(t, "the stream holds %d log records and %d metric points; the Collector was sent %d and %d", got.logs, got.points, wantLogs, wantPoints)
	}
	for body, n := range got.bodies {
		if n != 1 {
			col.fail(t, "log record %q is in the stream %d times", body, n)
		}
	}
	if bad := col.problems(); bad != "" {
		col.fail(t, "the Collector logged lost data:\n%s", bad)
	}
	if retries := col.retries(); retries > 0 {
		t.Logf("the Collector retried %d exports (nothing was lost)", retries)
	}
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// streamCounts is what a range of the telemetry stream decodes to.
type streamCounts struct {
	logs, points int
	bodies       map[string]int // log body prefix ("<id>.<request>-<i>") -> occurrences
}

// decodeStream decodes every message from seq on, as a worker would.
func decodeStream(t *testing.T, ns *natstest.Server, seq uint64) streamCounts {
	t.Helper()
	ctx := context.Background()
	s, err := ns.JS.Stream(ctx, ns.Config.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := otlp.NewBatch()
	for ; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		sig := otlp.SignalLogs
		if m.Subject == ns.Config.MetricsSubject {
			sig = otlp.SignalMetrics
		}
		if _, err := b.Append(sig, otlp.FormatAuto, payload(t, m)); err != nil {
			t.Fatalf("message %d does not decode: %v", seq, err)
		}
	}
	c := streamCounts{logs: b.Logs.Len(), points: b.Records() - b.Logs.Len(), bodies: map[string]int{}}
	for _, body := range b.Logs.Body {
		key, _, _ := strings.Cut(b.Src.String(body), ":")
		c.bodies[key]++
	}
	return c
}

// collector is a running Collector process and its log.
type collector struct {
	cmd  *exec.Cmd
	log  *natstest.Buffer
	done chan error
}

func startCollector(t *testing.T, bin, cfgPath string) *collector {
	t.Helper()
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Env = append(os.Environ(), "FAULTLINE_GATEWAY_TOKEN=collector-token")
	c := &collector{cmd: cmd, log: &natstest.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the Collector %s (make otelcol builds it): %v", bin, err)
	}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
		c.done <- nil // later stops see it exited
	})
	return c
}

// waitListening waits until the Collector's receiver takes connections.
func (c *collector) waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-c.done:
			c.done <- err
			c.fail(t, "the Collector exited at start: %v", err)
		default:
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			c.fail(t, "the Collector's receiver is not listening on %s after 15s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the Collector down as a service manager would (SIGTERM), so it
// drains its queue, and waits for it to exit.
func (c *collector) stop(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			c.fail(t, "the Collector exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		c.fail(t, "the Collector did not stop within 15s of SIGTERM")
	}
}

// lostData matches the lines the Collector's exporter helper logs when it
// gives up on data: a permanent error, or a failure it will not retry.
var lostData = regexp.MustCompile(`(?i)dropping data|rejecting data|permanent`)

// problems returns the Collector's log lines that report lost data.
func (c *collector) problems() string {
	var bad []string
	for _, line := range strings.Split(c.log.String(), "\n") {
		if lostData.MatchString(line) {
			bad = append(bad, line)
		}
	}
	return strings.Join(bad, "\n")
}

// retries counts the exports the Collector failed and retried.
func (c *collector) retries() int {
	return strings.Count(c.log.String(), "Will retry the request")
}

func (c *collector) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s\n--- Collector log ---\n%s", fmt.Sprintf(format, args...), c.log.String())
}
