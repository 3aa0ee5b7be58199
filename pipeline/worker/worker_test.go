package worker

import (
	"context"
	"fmt"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// The exactly-once test runs workers as child processes of this test
// binary; childEnv selects that role.
const childEnv = "FAULTLINE_WORKER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(chtest.Main(m))
}

// logsPayload builds an OTLP logs request of n records whose bodies are
// "rec-<first+i>", the identity the tests check in ClickHouse.
func logsPayload(t testing.TB, first, n int) []byte {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	rl.Resource().Attributes().PutStr("deployment.environment.name", "production")
	sl := rl.ScopeLogs().AppendEmpty()
	base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		lr := sl.LogRecords().AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(first+i) * time.Millisecond)))
		lr.SetSeverityNumber(plog.SeverityNumberInfo)
		lr.Body().SetStr("rec-" + strconv.Itoa(first+i))
		lr.Attributes().PutStr("http.route", "/pay")
	}
	b, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func publish(t testing.TB, js jetstream.JetStream, subject string, hdr nats.Header, data []byte) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	for k, v := range hdr {
		m.Header[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func testConfig() Config {
	return Config{
		Consumer: "faultline-telemetry", LedgerBucket: "faultline_batches",
		BatchRecords: 20000, BatchBytes: 64 << 20, BatchWait: 300 * time.Millisecond,
		AckWait: 10 * time.Second, MaxAckPending: 1000, PullMessages: 16, PullBytes: 8 << 20,
		InsertTimeout: 30 * time.Second, RetryMax: time.Second,
	}
}

// waitDrained waits until the consumer has nothing pending or unacked.
func waitDrained(t testing.TB, js jetstream.JetStream, stream, consumer string, timeout time.Duration, tick func()) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := js.Consumer(ctx, stream, consumer)
		cancel()
		if err == nil {
			info := c.CachedInfo()
			if info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Stream > 0 {
				return
			}
			if time.Since(lastLog) > 15*time.Second {
				t.Logf("consumer: %d pending, %d unacked, ack floor %d, delivered %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream, info.Delivered.Stream)
				lastLog = time.Now()
			}
		}
		if tick != nil {
			tick()
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("consumer %s not drained within %s", consumer, timeout)
}

// startTestWorker starts a worker over embedded NATS into a fresh
// database of the test ClickHouse; stop stops it and fails the test unless
// it returned cleanly.
func startTestWorker(t *testing.T) (ns *natstest.Server, conn driver.Conn, stop func()) {
	t.Helper()
	ns = natstest.Start(t)
	chcfg := chtest.Database(t)
	ctx, cancel := context.WithCancel(context.Background())
	conn = chtest.Conn(t, chcfg)
	tw, err := clickhouse.NewTelemetryWriter(ctx, chcfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	w, err := New(ns.JS, Options{
		Config: testConfig(), NATS: ns.Config,
		Sink:        tw,
		IsPermanent: clickhouse.IsPermanent,
		Log:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		cancel()
		tw.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		err := <-done
		tw.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(stop)
	return ns, conn, stop
}

func TestWorkerLogsAndDeadLetters(t *testing.T) {
	ns, conn, stop := startTestWorker(t)
	ctx := context.Background()

	publish(t, ns.JS, "otel_logs", nats.Header{"Content-Type": {"application/x-protobuf"}}, logsPayload(t, 0, 100))
	publish(t, ns.JS, "otel_logs.checkout", nil, logsPayload(t, 100, 50)) // no header: detected
	publish(t, ns.JS, "otel_logs", nil, []byte("\x0a\xff\xff\xff garbage"))
	// OTLP JSON, as the Collector's NATS exporter sends with otlp_json.
	ld := plog.NewLogs()
	lr := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Body().SetStr("rec-json")
	js, err := plogotlp.NewExportRequestFromLogs(ld).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	publish(t, ns.JS, "otel_logs.checkout", nil, js)
	// S2-compressed, as the gateway publishes; then a payload that claims
	// to be and is not.
	var buf []byte
	s2, enc := broker.Encode(&buf, logsPayload(t, 150, 50), broker.EncodingS2)
	if enc != broker.EncodingS2 {
		t.Fatal("test payload did not compress")
	}
	publish(t, ns.JS, "otel_logs", nats.Header{"Content-Type": {"application/x-protobuf"}, broker.HeaderEncoding: {enc}}, s2)
	publish(t, ns.JS, "otel_logs", nats.Header{broker.HeaderEncoding: {enc}}, []byte("\x0a\xff\xff\xff not s2"))
	waitDrained(t, ns.JS, ns.Config.TelemetryStream, "faultline-telemetry", time.Minute, nil)

	var n, uniq uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(Body) FROM otel_logs").Scan(&n, &uniq); err != nil {
		t.Fatal(err)
	}
	if n != 201 || uniq != 201 {
		t.Fatalf("otel_logs has %d rows (%d distinct), want 201", n, uniq)
	}

	dlq, err := ns.JS.Stream(ctx, ns.Config.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]struct{ stream, data, reason string }{
		1: {"3", "garbage", "undecodable OTLP payload"},
		2: {"6", "not s2", "s2 payload"},
	} {
		raw, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		if raw.Subject != "faultline.dlq.decode" || !strings.Contains(raw.Header.Get(broker.HeaderReason), want.reason) ||
			raw.Header.Get(broker.HeaderStreamSeq) != want.stream || !strings.Contains(string(raw.Data), want.data) {
			t.Fatalf("dead letter %d: subject %s headers %v data %q", seq, raw.Subject, raw.Header, raw.Data)
		}
	}
	stop()
}

// TestExactlyOnceUnderKills runs two worker processes while 500k records
// flow, kills them with SIGKILL at random moments (and makes them kill
// themselves between insert and ack), restarts them, and then checks that
// ClickHouse holds every record exactly once.
func TestExactlyOnceUnderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("long: kills worker processes while 500k records flow")
	}
	const msgs, per = 500, 1000
	c := natstest.Config(t)
	ns := natstest.StartDir(t, c, t.TempDir())
	chcfg := chtest.Database(t)
	ctx := context.Background()

	go func() {
		for i := 0; i < msgs; i++ {
			publish(t, ns.JS, "otel_logs", nil, logsPayload(t, i*per, per))
		}
	}()

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var logs natstest.Buffer
	type proc struct {
		cmd  *exec.Cmd
		done chan struct{}
	}
	spawn := func() *proc {
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(),
			childEnv+"=1",
			"CHILD_NATS_URL="+ns.ClientURL(),
			"CHILD_CH_ADDR="+chcfg.Addr[0],
			"CHILD_CH_DB="+chcfg.Database,
			"CHILD_CRASH_AFTER_INSERT=0.15",
		)
		cmd.Stderr = &logs
		// No Pdeathsig: it fires when the spawning OS thread exits, which
		// Go does not promise to keep. Children watch their parent instead
		// (runChild), and Cleanup kills them.
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &proc{cmd: cmd, done: make(chan struct{})}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		go func() { _ = cmd.Wait(); close(p.done) }()
		return p
	}
	procs := []*proc{spawn(), spawn()}
	kills, failed := 0, 0
	rng := rand.New(rand.NewPCG(1, 2))
	next := time.Now().Add(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
	defer func() {
		if t.Failed() {
			t.Logf("worker processes said:\n%s", logs.String())
		}
	}()
	waitDrained(t, ns.JS, c.TelemetryStream, "faultline-telemetry", 5*time.Minute, func() {
		for i, p := range procs {
			select {
			case <-p.done: // exited: it kills itself between insert and ack
				// A start while the local ClickHouse restarts fails, as it
				// would under a process manager; a process that cannot
				// start at all (a broken setup) fails the test at once.
				if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && !ws.Signaled() {
					if failed++; failed > 25 {
						t.Fatalf("worker processes keep exiting on their own (last: %v)", p.cmd.ProcessState)
					}
				}
				procs[i] = spawn()
			default:
			}
		}
		if time.Now().After(next) && kills < 12 {
			i := rng.IntN(len(procs))
			_ = procs[i].cmd.Process.Kill()
			kills++
			procs[i] = spawn()
			next = time.Now().Add(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		}
	})
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
	}

	conn := chtest.Conn(t, chcfg)
	var total, uniq, dups uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(Body) FROM otel_logs").Scan(&total, &uniq); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM (SELECT Body FROM otel_logs GROUP BY Body HAVING count() > 1)").Scan(&dups); err != nil {
		t.Fatal(err)
	}
	crashes := strings.Count(logs.String(), "crash after insert")
	replays := strings.Count(logs.String(), "re-forming a recorded batch")
	t.Logf("%d records, %d distinct, %d duplicated bodies; %d external kills, %d crashes between insert and ack, %d batches re-formed",
		total, uniq, dups, kills, crashes, replays)
	if crashes == 0 || replays == 0 {
		t.Errorf("the run never crashed between insert and ack (%d) or never re-formed a batch (%d): the test proved nothing", crashes, replays)
	}
	if total != msgs*per || uniq != msgs*per || dups != 0 {
		t.Fatalf("ClickHouse holds %d records (%d distinct, %d duplicated), want exactly %d once each", total, uniq, dups, msgs*per)
	}
}

// runChild is a worker process for TestExactlyOnceUnderKills.
func runChild() int {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	bc := broker.DefaultConfig()
	conn, err := broker.Connect(ctx, bc, os.Getenv("CHILD_NATS_URL"), "worker-child", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	js, _ := jetstream.New(conn)
	chcfg := clickhouse.Config{Addr: []string{os.Getenv("CHILD_CH_ADDR")}, Database: os.Getenv("CHILD_CH_DB"), User: "default", DialTimeout: 5 * time.Second, MaxConns: 2}
	tw, err := clickhouse.NewTelemetryWriter(ctx, chcfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	w, err := New(js, Options{Config: testConfig(), NATS: bc, Sink: tw, IsPermanent: clickhouse.IsPermanent,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	p, _ := strconv.ParseFloat(os.Getenv("CHILD_CRASH_AFTER_INSERT"), 64)
	w.afterWrite = func() {
		if rand.Float64() < p {
			fmt.Fprintln(os.Stderr, "crash after insert")
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	// Exit when the test process is gone.
	parent := os.Getppid()
	go func() {
		for range time.Tick(500 * time.Millisecond) {
			if os.Getppid() != parent {
				os.Exit(3)
			}
		}
	}()
	sig := make(chan os.Signal, 1)
	go func() { <-sig; stop() }()
	signal.Notify(sig, syscall.SIGTERM)
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}
