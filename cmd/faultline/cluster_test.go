package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/replay"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestNATSClusterFailover runs faultline as a production deployment does: a
// three-server JetStream cluster (separate nats-server processes, R3 streams
// and buckets), a ClickHouse migrated by `faultline migrate`, and two
// gateways, three workers and two correlators as separate processes. It
// sends the reference scenario through both gateways, in order, alongside
// a stream of uniquely numbered log records over OTLP/HTTP and OTLP/gRPC,
// and while data flows kills with SIGKILL the NATS server leading the
// TELEMETRY stream and one worker, starts a new worker while the server is
// down, then starts that server again.
//
// Clients retry refused requests as a Collector does. In the end every
// record a gateway accepted is in otel_logs exactly once, the scenario
// gives its known incidents, suspects, change failures and DORA rows, and
// each alert reached the webhook once.
func TestNATSClusterFailover(t *testing.T) {
	if os.Getenv("FAULTLINE_TEST_CLUSTER") == "" || testing.Short() {
		t.Skip("the multi-node run (a NATS cluster and seven faultline processes, one to two minutes): make test-cluster")
	}
	bin := faultlineBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	cl := natstest.StartCluster(t, 3)
	chBin, err := chtest.Bin()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := chlocal.Start(ctx, chlocal.Options{Bin: chBin, Dir: t.TempDir(), Output: os.Stderr, Restart: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Stop() })
	hooks := &hookReceiver{}
	hookSrv := httptest.NewServer(hooks)
	defer hookSrv.Close()

	env := []string{
		"FAULTLINE_NATS_URL=" + cl.URL(),
		"FAULTLINE_NATS_REPLICAS=3",
		"FAULTLINE_CLICKHOUSE_ADDR=" + ch.Addr,
		"FAULTLINE_LOG_LEVEL=warn",
		"FAULTLINE_GATEWAY_RETRY_AFTER=1s",
		// A killed worker's messages come back after the ack wait;
		// detection waits longer than that for them, so the kill
		// changes no verdict (docs/operations.md).
		"FAULTLINE_WORKER_ACK_WAIT=10s",
		"FAULTLINE_CORRELATOR_GAP_WAIT=60s",
		"FAULTLINE_UI_LISTEN=",
		"FAULTLINE_WEBHOOK_URL=" + hookSrv.URL,
		"FAULTLINE_WEBHOOK_SECRET=hook-secret",
	}
	var procs procSet
	defer procs.stopAll(t)
	migrate := exec.CommandContext(ctx, bin, "migrate")
	migrate.Env = append(os.Environ(), env...)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("faultline migrate: %v\n%s", err, out)
	}
	var gateways []*clusterProc
	var workers []*clusterProc
	for i := range 2 {
		gateways = append(gateways, procs.start(t, bin, "gateway", fmt.Sprintf("gateway-%d", i), env,
			"FAULTLINE_GATEWAY_LISTEN="+freeAddr(t), "FAULTLINE_GATEWAY_GRPC_LISTEN="+freeAddr(t)))
	}
	for i := range 3 {
		workers = append(workers, procs.start(t, bin, "worker", fmt.Sprintf("worker-%d", i), env))
	}
	for i := range 2 {
		procs.start(t, bin, "correlator", fmt.Sprintf("correlator-%d", i), env)
	}
	for _, p := range procs.all() {
		p.waitReady(t, ctx)
	}

	// The test's own client, to find the stream leader.
	nc, err := broker.Connect(ctx, broker.Config{}, cl.URL(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	reqs := replay.Scenario(1)
	scenarioLogs := 0
	for _, r := range reqs {
		if r.Path == replay.PathLogs {
			scenarioLogs += r.Records
		}
	}
	// The scenario goes in order, one request at a time, alternating
	// between the gateways: detection must see it as one collector sends
	// it. A sender retries 429 and 503 (after Retry-After) and lost
	// connections.
	var sent atomic.Int64
	var slowest atomic.Int64 // the longest a scenario request took to be accepted, ns
	senders := []*replay.Sender{
		{BaseURL: "http://" + gateways[0].gateway, Parallel: 1},
		{BaseURL: "http://" + gateways[1].gateway, Parallel: 1},
	}
	scenarioDone := make(chan error, 1)
	go func() {
		for i := range reqs {
			t0 := time.Now()
			if err := senders[i%2].Send(ctx, reqs[i:i+1]); err != nil {
				scenarioDone <- fmt.Errorf("request %d (%s): %w", i, reqs[i].Path, err)
				return
			}
			if d := int64(time.Since(t0)); d > slowest.Load() {
				slowest.Store(d)
			}
			sent.Add(1)
		}
		scenarioDone <- nil
	}()

	// Uniquely numbered records beside it, over HTTP and over gRPC, each
	// alternating between the gateways, until the scenario is sent.
	load := &loadGen{stop: make(chan struct{})}
	var wg sync.WaitGroup
	var stopLoad sync.Once
	endLoad := func() { stopLoad.Do(func() { close(load.stop) }); wg.Wait() }
	// On a failure, the senders give up (they report to t, so before the
	// test ends).
	defer func() { cancel(); endLoad() }()
	wg.Add(2)
	go func() { defer wg.Done(); load.http(t, ctx, "h", gateways[0].gateway, gateways[1].gateway) }()
	go func() { defer wg.Done(); load.grpc(t, ctx, "g", gateways[0].grpc, gateways[1].grpc) }()

	waitSent := func(frac float64) {
		for float64(sent.Load()) < frac*float64(len(reqs)) {
			select {
			case err := <-scenarioDone:
				t.Fatalf("scenario stopped early: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitSent(0.3)
	leader, err := cl.StreamLeader(ctx, js, broker.DefaultConfig().TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := cl.MetaLeader()
	killedAt := time.Now()
	cl.Kill(leader)
	workers[0].kill()
	t.Logf("at %d of %d requests: killed nats-server %s (TELEMETRY leader; meta leader was %s) and %s",
		sent.Load(), len(reqs), cl.Nodes[leader].Name, cl.Nodes[max(meta, 0)].Name, workers[0].name)
	// A worker started with a server down (and in the URL list) joins in.
	procs.start(t, bin, "worker", "worker-3", env).waitReady(t, ctx)
	waitSent(0.6)
	if err := cl.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	t.Logf("nats-server %s back and current after %s", cl.Nodes[leader].Name, time.Since(killedAt).Round(100*time.Millisecond))
	if err := <-scenarioDone; err != nil {
		t.Fatal(err)
	}
	endLoad()
	if t.Failed() {
		return
	}
	t.Logf("scenario sent (%d requests, the slowest accepted after %s); load: %d records in %d requests accepted, %d refusals retried",
		len(reqs), time.Duration(slowest.Load()).Round(time.Millisecond), load.records.Load(), load.requests.Load(), load.retries.Load())

	cfg := clickhouse.Config{Addr: []string{ch.Addr}, Database: "faultline", User: "default", DialTimeout: 5 * time.Second, MaxConns: 2}
	conn, err := clickhouse.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	want := uint64(scenarioLogs) + uint64(load.records.Load())
	var n uint64
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if err := conn.QueryRow(ctx, "SELECT count() FROM otel_logs").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= want {
			break
		}
	}
	var scen, loadRows, loadBodies uint64
	if err := conn.QueryRow(ctx, `SELECT countIf(ServiceName != 'loadgen'), countIf(ServiceName = 'loadgen'), uniqExactIf(Body, ServiceName = 'loadgen') FROM otel_logs`).
		Scan(&scen, &loadRows, &loadBodies); err != nil {
		t.Fatal(err)
	}
	if scen != uint64(scenarioLogs) || loadRows != uint64(load.records.Load()) || loadBodies != loadRows {
		t.Fatalf("otel_logs holds %d scenario records (sent %d) and %d load records with %d distinct bodies (accepted %d)",
			scen, scenarioLogs, loadRows, loadBodies, load.records.Load())
	}

	var got []string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		if got = readOutcome(t, ctx, conn); strings.Join(got, "\n") == strings.Join(referenceOutcome, "\n") {
			break
		}
	}
	if strings.Join(got, "\n") != strings.Join(referenceOutcome, "\n") {
		t.Fatalf("scenario outcome:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(referenceOutcome, "\n"))
	}
	checkIncidentIDsIn(t, ctx, conn)
	if alerts := hooks.list(); strings.Join(alerts, "\n") != strings.Join(referenceAlerts, "\n") {
		t.Fatalf("alerts:\n%s\nwant:\n%s", strings.Join(alerts, "\n"), strings.Join(referenceAlerts, "\n"))
	}
	hooks.mu.Lock()
	bad := hooks.bad
	hooks.mu.Unlock()
	if bad > 0 {
		t.Errorf("%d webhook deliveries with a bad signature", bad)
	}
	t.Logf("%d records in otel_logs, each once; outcome and alerts as on one node", n)

	// Every server holds the same TELEMETRY, the restarted one included.
	tele := broker.DefaultConfig().TelemetryStream
	var states []string
	for i := range cl.Nodes {
		msgs, last, err := cl.StreamState(i, tele)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, fmt.Sprintf("%s: %d messages, last %d", cl.Nodes[i].Name, msgs, last))
	}
	for _, s := range states[1:] {
		if s[strings.Index(s, ":"):] != states[0][strings.Index(states[0], ":"):] {
			t.Errorf("replicas of %s differ: %s", tele, strings.Join(states, "; "))
			break
		}
	}
	throttled, replayed := 0.0, 0.0
	for _, p := range procs.all() {
		switch p.role {
		case "gateway":
			throttled += p.metric(t, `faultline_gateway_requests_total{`, `outcome="throttled"`)
		case "worker":
			replayed += p.metric(t, "faultline_worker_messages_replayed_total", "")
		}
	}
	t.Logf("replicas: %s; gateways answered %.0f requests 429/503; workers re-formed batches of %.0f messages redelivered after the kill",
		strings.Join(states, "; "), throttled, replayed)
}

// metric sums the samples of the process's /metrics whose line starts with
// name and contains label; 0 for a process that is gone.
func (p *clusterProc) metric(t *testing.T, name, label string) float64 {
	select {
	case <-p.done:
		return 0
	default:
	}
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Errorf("%s /metrics: %v", p.name, err)
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) || !strings.Contains(line, label) {
			continue
		}
		if f := strings.Fields(line); len(f) >= 2 {
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// loadGen sends log records of the service loadgen, each with a body no
// other has, and counts those a gateway accepted. Its records carry the
// scenario's first minute as their time, so detection counts them late and
// they change no verdict.
type loadGen struct {
	stop                       chan struct{}
	records, requests, retries atomic.Int64
}

const loadPerRequest = 50

func (l *loadGen) request(id string) plog.Logs {
	ld := otlptest.Logs(id, loadPerRequest)
	ra := ld.ResourceLogs().At(0).Resource().Attributes()
	ra.PutStr("service.name", "loadgen")
	ra.PutStr("deployment.environment.name", "loadtest")
	recs := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	for i := range recs.Len() {
		recs.At(i).SetSeverityNumber(plog.SeverityNumberInfo)
		recs.At(i).SetSeverityText("INFO")
	}
	return ld
}

func (l *loadGen) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// retry waits before the next attempt, as a Collector's retry does.
func (l *loadGen) retry(ctx context.Context) bool {
	l.retries.Add(1)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(200 * time.Millisecond):
		return true
	}
}

func (l *loadGen) http(t *testing.T, ctx context.Context, name string, addrs ...string) {
	client := &http.Client{Timeout: 30 * time.Second}
	for i := 0; !l.stopped(); i++ {
		addr := addrs[i%len(addrs)]
		body, err := plogotlp.NewExportRequestFromLogs(l.request(fmt.Sprintf("%s-%d", name, i))).MarshalProto()
		if err != nil {
			t.Error(err)
			return
		}
		for {
			resp, err := client.Post("http://"+addr+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
					t.Errorf("%s: gateway answered %d", name, resp.StatusCode)
					return
				}
			}
			if !l.retry(ctx) {
				t.Errorf("%s: request %d never accepted", name, i)
				return
			}
		}
		l.records.Add(loadPerRequest)
		l.requests.Add(1)
	}
}

func (l *loadGen) grpc(t *testing.T, ctx context.Context, name string, addrs ...string) {
	var clients []plogotlp.GRPCClient
	for _, addr := range addrs {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Error(err)
			return
		}
		defer cc.Close()
		clients = append(clients, plogotlp.NewGRPCClient(cc))
	}
	for i := 0; !l.stopped(); i++ {
		client := clients[i%len(clients)]
		req := plogotlp.NewExportRequestFromLogs(l.request(fmt.Sprintf("%s-%d", name, i)))
		for {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := client.Export(rctx, req)
			cancel()
			if err == nil {
				break
			}
			// The codes a Collector retries.
			switch grpcstatus.Code(err) {
			case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted:
			default:
				t.Errorf("%s: %v", name, err)
				return
			}
			if !l.retry(ctx) {
				t.Errorf("%s: request %d never accepted", name, i)
				return
			}
		}
		l.records.Add(loadPerRequest)
		l.requests.Add(1)
	}
}

// clusterProc is one faultline process of the cluster run.
type clusterProc struct {
	name, role    string
	admin         string
	gateway, grpc string // a gateway's listeners
	cmd           *exec.Cmd
	done          chan struct{}
	out           *natstest.Buffer
}

type procSet struct {
	mu    sync.Mutex
	procs []*clusterProc
}

func (s *procSet) all() []*clusterProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*clusterProc(nil), s.procs...)
}

// start runs `faultline role` with env and extra settings on its own admin
// port.
func (s *procSet) start(t *testing.T, bin, role, name string, env []string, extra ...string) *clusterProc {
	t.Helper()
	p := &clusterProc{name: name, role: role, admin: freeAddr(t), done: make(chan struct{}), out: &natstest.Buffer{}}
	vars := append(append(append(os.Environ(), env...), extra...), "FAULTLINE_ADMIN_LISTEN="+p.admin)
	for _, v := range extra {
		if a, ok := strings.CutPrefix(v, "FAULTLINE_GATEWAY_LISTEN="); ok {
			p.gateway = a
		}
		if a, ok := strings.CutPrefix(v, "FAULTLINE_GATEWAY_GRPC_LISTEN="); ok {
			p.grpc = a
		}
	}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the starting thread exits: this goroutine
		// keeps its thread until the child is gone, so a test binary
		// killed on timeout takes its children with it.
		runtime.LockOSThread()
		cmd := exec.Command(bin, role)
		cmd.Env = vars
		cmd.Stdout, cmd.Stderr = p.out, p.out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			close(p.done)
			return
		}
		p.cmd = cmd
		started <- nil
		_ = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p
}

// waitReady waits until the process answers /readyz with 200.
func (p *clusterProc) waitReady(t *testing.T, ctx context.Context) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v\n%s", p.name, p.cmd.ProcessState, p.out.String())
		default:
		}
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	t.Fatalf("%s not ready: %s\n%s", p.name, last, p.out.String())
}

// kill ends the process with SIGKILL and waits until it is gone.
func (p *clusterProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stopAll stops every process with SIGTERM (SIGKILL after 30s); a process
// that exits with an error, or the test failing, prints what they said.
func (s *procSet) stopAll(t *testing.T) {
	for _, p := range s.all() {
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range s.all() {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop within 30s of SIGTERM", p.name)
			p.kill()
		}
		ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() && !p.cmd.ProcessState.Success() {
			t.Errorf("%s exited with %v", p.name, p.cmd.ProcessState)
		}
		if t.Failed() {
			t.Logf("%s said:\n%s", p.name, p.out.String())
		}
	}
}
