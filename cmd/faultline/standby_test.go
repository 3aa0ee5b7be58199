package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/correlator"
	"github.com/faultline-dev/faultline/pipeline/replay"
	"github.com/faultline-dev/faultline/processors/alert"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestStandbyTakeover runs a deployment of real processes, as in
// production: NATS (in this test process, on a loopback port), a local
// ClickHouse, bin/faultline migrate, a gateway, a worker and two
// correlators that share a lease. It sends the first 100 minutes of the
// reference scenario, waits for alerts, kills the leading correlator
// (SIGKILL), and sends the rest. The standby must take over within the
// lease's TTL, and the outcome must be the reference outcome: the same
// incidents, suspects and change failures as one correlator gives, every
// alert delivered, none twice (counted per webhook-id at the receiver),
// and none published twice on the ALERTS stream.
func TestStandbyTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five processes through the reference scenario")
	}
	bin := faultlineBin(t)
	dir := t.TempDir()
	ctx := context.Background()
	const ttl = 3 * time.Second

	chBin, err := chtest.Bin()
	if err != nil {
		t.Fatal(err)
	}
	chLog, err := os.Create(filepath.Join(dir, "clickhouse.log"))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := chlocal.Start(ctx, chlocal.Options{Bin: chBin, Dir: filepath.Join(dir, "clickhouse"), Output: chLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Stop() })
	ns := natstest.Start(t)
	// Every publish of an alert or an incident event, as NATS carries it:
	// including those JetStream would drop as duplicates.
	published := map[string]int{}
	var pubMu sync.Mutex
	for _, subj := range []string{"faultline.alerts.>", broker.IncidentsSubject} {
		sub, err := ns.NC.Subscribe(subj, func(m *nats.Msg) {
			pubMu.Lock()
			published[m.Subject+" "+m.Header.Get(nats.MsgIdHdr)]++
			pubMu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	hooks := &hookReceiver{}
	hookSrv := httptest.NewServer(hooks)
	defer hookSrv.Close()

	env := []string{
		"FAULTLINE_NATS_URL=" + ns.ClientURL(),
		"FAULTLINE_CLICKHOUSE_ADDR=" + ch.Addr,
		"FAULTLINE_LOG_LEVEL=info",
		"FAULTLINE_CORRELATOR_LEASE_TTL=" + ttl.String(),
		"FAULTLINE_WEBHOOK_URL=" + hookSrv.URL,
		"FAULTLINE_WEBHOOK_SECRET=hook-secret",
		"FAULTLINE_UI_LISTEN=",
		"FAULTLINE_GATEWAY_GRPC_LISTEN=",
	}
	migrate := exec.Command(bin, "migrate")
	migrate.Env = append(os.Environ(), env...)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	gwPort := freePort(t)
	gw := startProc(t, bin, "gateway", dir, append(env, "FAULTLINE_GATEWAY_LISTEN=127.0.0.1:"+strconv.Itoa(gwPort)))
	wk := startProc(t, bin, "worker", dir, env)
	a := startProc(t, bin, "correlator", dir, env)
	for _, p := range []*proc{gw, wk, a} {
		p.waitReady(t, time.Minute)
	}
	waitFor(t, 30*time.Second, "the first correlator leads", func() bool { return a.metric(t, "faultline_correlator_leader") == 1 })
	b := startProc(t, bin, "correlator", dir, env)
	b.waitReady(t, time.Minute) // a standby is ready
	if v := b.metric(t, "faultline_correlator_leader"); v != 0 {
		t.Fatalf("the second correlator: faultline_correlator_leader %v, want 0", v)
	}

	reqs := replay.Scenario(1)
	split := slices.IndexFunc(reqs, func(r replay.Request) bool { return !r.At.Before(replay.T0.Add(100 * time.Minute)) })
	sender := &replay.Sender{BaseURL: "http://127.0.0.1:" + strconv.Itoa(gwPort)}
	if err := sender.Send(ctx, reqs[:split]); err != nil {
		t.Fatal(err)
	}
	// Kill the leader between deliveries, after some alerts and before
	// the rest: the second half of the scenario raises the others.
	first := hooks.quiet(t, 2*time.Second, 2*time.Minute)
	if first == 0 || first >= len(referenceAlerts) {
		t.Fatalf("%d alerts before the takeover, want some of the %d", first, len(referenceAlerts))
	}
	leader, standby := a, b
	host, _ := os.Hostname()
	if h := leaseHolder(t, ns); h != host+":"+strconv.Itoa(a.cmd.Process.Pid) {
		t.Fatalf("the lease names %q, want the first correlator (pid %d)", h, a.cmd.Process.Pid)
	}
	killed := time.Now()
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = leader.cmd.Wait()
	took := waitFor(t, 2*ttl+5*time.Second, "the standby takes over", func() bool { return standby.metric(t, "faultline_correlator_leader") == 1 })
	t.Logf("%d alerts delivered before the leader was killed; the standby led %s after the kill (lease TTL %s)", first, took.Sub(killed).Round(time.Millisecond), ttl)
	// The key expires at most a TTL after the kill, and the standby tries
	// every tenth of it; a second for a loaded machine.
	if d := took.Sub(killed); d > ttl+ttl/10+time.Second {
		t.Errorf("the standby took over %s after the kill, want within the TTL %s and an attempt", d, ttl)
	}
	if !standby.logged(t, "took the lease: leading") {
		t.Error("the standby did not log its takeover")
	}
	if h := leaseHolder(t, ns); !strings.HasSuffix(h, ":"+strconv.Itoa(standby.cmd.Process.Pid)) {
		t.Errorf("the lease names %q, want the standby (pid %d)", h, standby.cmd.Process.Pid)
	}

	if err := sender.Send(ctx, reqs[split:]); err != nil {
		t.Fatal(err)
	}
	conn := chtest.Conn(t, clickhouse.Config{Addr: []string{ch.Addr}, Database: "faultline", User: "default", DialTimeout: 5 * time.Second, MaxConns: 2})
	s := &stack{ch: conn}
	var got []string
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		got = outcome(t, ctx, s)
		if slices.Equal(got, referenceOutcome) && len(hooks.list()) >= len(referenceAlerts) {
			break
		}
	}
	time.Sleep(3 * time.Second) // a repeat would come now
	if !slices.Equal(got, referenceOutcome) {
		t.Errorf("outcome after the takeover:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(referenceOutcome, "\n"))
	}
	if alerts := hooks.list(); !slices.Equal(alerts, referenceAlerts) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(alerts, "\n"), strings.Join(referenceAlerts, "\n"))
	}
	checkOnce(t, ctx, hooks, ns, s)
	// The new leader replayed what the old one had published, and
	// published none of it again: the faultline_alerts_sent bucket said
	// so, without the stream's duplicate window having to drop it.
	pubMu.Lock()
	alertsPublished := 0
	for k, n := range published {
		if strings.HasPrefix(k, "faultline.alerts.") {
			alertsPublished++
		}
		if n != 1 {
			t.Errorf("%s published %d times", k, n)
		}
	}
	pubMu.Unlock()
	if alertsPublished != len(referenceAlerts) {
		t.Errorf("%d alerts published, want %d", alertsPublished, len(referenceAlerts))
	}

	// A graceful stop hands the lease back at once.
	for _, p := range []*proc{standby, wk, gw} {
		p.stop(t)
	}
	if h := leaseHolder(t, ns); h != "" {
		t.Errorf("after a graceful stop the lease still names %q", h)
	}
}

// checkOnce checks that every alert was delivered once, published once,
// and that the incidents and suspects it names are those in ClickHouse.
func checkOnce(t *testing.T, ctx context.Context, hooks *hookReceiver, ns *natstest.Server, s *stack) {
	t.Helper()
	hooks.mu.Lock()
	defer hooks.mu.Unlock()
	for id, n := range hooks.count {
		if n != 1 {
			t.Errorf("alert %s (%s) delivered %d times", id, hooks.seen[id], n)
		}
	}
	if hooks.bad != 0 {
		t.Errorf("%d deliveries with a bad signature", hooks.bad)
	}
	st, err := ns.JS.Stream(ctx, ns.Config.AlertsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != uint64(len(hooks.count)) {
		t.Errorf("the ALERTS stream holds %d messages for %d distinct alerts", n, len(hooks.count))
	}
	alerted := map[string]bool{}
	for id, ev := range hooks.evs {
		if ev.Incident == nil {
			continue
		}
		alerted[ev.Incident.ID] = true
		if ev.Type != alert.TypeCorrelated {
			continue
		}
		var deploy string
		if err := s.ch.QueryRow(ctx, "SELECT DeployId FROM incident_suspects FINAL WHERE IncidentId = ? AND Rank = 1", ev.Incident.ID).Scan(&deploy); err != nil {
			t.Errorf("alert %s: the rank-1 suspect of incident %s: %v", id, ev.Incident.ID, err)
		} else if deploy != ev.Verdict.DeployID {
			t.Errorf("alert %s pins incident %s on %s, incident_suspects on %s", id, ev.Incident.ID, ev.Verdict.DeployID, deploy)
		}
	}
	rows, err := s.ch.Query(ctx, "SELECT IncidentId FROM incidents FINAL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := 0
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		stored++
		if !alerted[id] {
			t.Errorf("incident %s is stored but no alert named it", id)
		}
	}
	if stored != len(alerted) {
		t.Errorf("%d incidents stored, %d alerted", stored, len(alerted))
	}
}

// quiet waits until at least one alert was received and none for d, and
// returns how many distinct alerts were received.
func (h *hookReceiver) quiet(t *testing.T, d, within time.Duration) int {
	t.Helper()
	last, n := time.Now(), 0
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		h.mu.Lock()
		m := len(h.count)
		h.mu.Unlock()
		if m != n {
			last, n = time.Now(), m
		}
		if n > 0 && time.Since(last) >= d {
			return n
		}
	}
	t.Fatalf("alerts did not settle within %s (%d received)", within, n)
	return 0
}

func leaseHolder(t *testing.T, ns *natstest.Server) string {
	t.Helper()
	kv, err := ns.JS.KeyValue(context.Background(), correlator.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), "correlator")
	if err != nil {
		return ""
	}
	return string(e.Value())
}

// proc is a faultline process the test started, with its admin port and
// its log.
type proc struct {
	name  string
	cmd   *exec.Cmd
	admin string
	log   string
}

// startProc starts bin role with env on top of the test's environment and
// its own admin port; the process is killed when the test ends, and its
// log shown if the test failed.
func startProc(t *testing.T, bin, role, dir string, env []string) *proc {
	t.Helper()
	port := freePort(t)
	p := &proc{name: role, admin: "127.0.0.1:" + strconv.Itoa(port)}
	lf, err := os.CreateTemp(dir, role+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p.log = lf.Name()
	p.cmd = exec.Command(bin, role)
	p.cmd.Env = append(append(os.Environ(), env...), "FAULTLINE_ADMIN_LISTEN="+p.admin)
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("%s (pid %d) log, last lines:\n%s", p.name, p.cmd.Process.Pid, b)
		}
	})
	return p
}

func (p *proc) get(path string) (int, string, error) {
	resp, err := http.Get("http://" + p.admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (p *proc) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	var body string
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, b, err := p.get("/readyz")
		if err == nil && code == http.StatusOK {
			return
		}
		body = b
	}
	t.Fatalf("%s not ready within %s: %s", p.name, within, body)
}

// metric reads one unlabelled metric from /metrics; -1 when it is absent.
func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	_, body, err := p.get("/metrics")
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, sc.Text(), err)
			}
			return f
		}
	}
	return -1
}

func (p *proc) logged(t *testing.T, s string) bool {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), s)
}

// stop sends SIGTERM and expects a clean exit within the shutdown timeout.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", p.name, err)
		}
	case <-time.After(45 * time.Second):
		t.Errorf("%s did not stop within 45s", p.name)
	}
}

// waitFor polls cond until it holds and says when, or fails the test after
// within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
	}
}
