package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/replay"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// violations counts the permission violations a NATS server logs (it logs
// one error per publish or subscription a user's permissions refuse).
type violations struct {
	n    atomic.Int64
	mu   sync.Mutex
	last []string
}

func (v *violations) Noticef(string, ...any) {}
func (v *violations) Warnf(string, ...any)   {}
func (v *violations) Fatalf(string, ...any)  {}
func (v *violations) Debugf(string, ...any)  {}
func (v *violations) Tracef(string, ...any)  {}
func (v *violations) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.Contains(msg, "Violation") {
		v.n.Add(1)
		v.mu.Lock()
		v.last = append(v.last, msg)
		v.mu.Unlock()
	}
}

func (v *violations) report() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.last, "\n")
}

// startAuthNATS starts a NATS server with JetStream whose configuration
// holds what faultline config --nats-permissions prints: one user per role
// with exactly the permissions natsPermissions lists. Each role's password
// is ROLE-secret.
func startAuthNATS(t *testing.T) (*server.Server, *violations) {
	t.Helper()
	dir := t.TempDir()
	var conf bytes.Buffer
	fmt.Fprintf(&conf, "listen: \"127.0.0.1:-1\"\njetstream {store_dir: %q}\n", filepath.Join(dir, "js"))
	if err := run([]string{"config", "--nats-permissions"}, &conf); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"gateway", "worker", "correlator"} {
		t.Setenv(strings.TrimPrefix(natsPasswordVar(r), "$"), r+"-secret")
	}
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, conf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server configuration:\n%s\n%v", conf.String(), err)
	}
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	v := &violations{}
	s.SetLoggerV2(v, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s, v
}

// process is a faultline role running as its own process.
type process struct {
	name  string
	cmd   *exec.Cmd
	out   *natstest.Buffer
	done  chan error
	admin string
}

// startRole starts faultline ROLE as a process and waits until its
// /readyz says ready; it is stopped with SIGTERM when the test ends, and
// must then exit 0.
func startRole(t *testing.T, role string, env map[string]string) *process {
	t.Helper()
	p := &process{name: role, out: &natstest.Buffer{}, done: make(chan error, 1), admin: freeAddr(t)}
	env["FAULTLINE_ADMIN_LISTEN"] = p.admin
	p.cmd = faultlineCmd(t, env, role)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("faultline %s exited: %v\n%s", role, err, p.output())
		default:
		}
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("faultline %s not ready:\n%s", role, p.output())
		}
	}
}

func (p *process) output() string {
	return p.out.String()
}

func (p *process) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("faultline %s: %v\n%s", p.name, err, p.output())
		}
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		t.Errorf("faultline %s did not stop within a minute of SIGTERM", p.name)
	}
}

// TestNATSPermissions runs the gateway, a worker and the correlator as
// three processes, each connecting to NATS as a user holding exactly the
// permissions natsPermissions lists for its role, against a real
// ClickHouse; sends the start of the reference scenario and GitHub
// deliveries through the gateway; and checks that every log record lands,
// the GitHub deploy gets its lead time, checkout's incident is alerted,
// signed, and the server logged no permission violation. A publish outside
// a role's permissions is logged (the check can fail).
func TestNATSPermissions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three faultline processes through the reference scenario")
	}
	ch := chtest.Database(t)
	hooks := &hookReceiver{}
	hookSrv := httptest.NewServer(hooks)
	defer hookSrv.Close()

	clearEnv(t)
	ns, viol := startAuthNATS(t)

	gatewayAddr := freeAddr(t)
	env := func(role string, extra map[string]string) map[string]string {
		e := map[string]string{
			"FAULTLINE_NATS_URL":            ns.ClientURL(),
			"FAULTLINE_NATS_USER":           role,
			"FAULTLINE_NATS_PASSWORD":       role + "-secret",
			"FAULTLINE_CLICKHOUSE_ADDR":     strings.Join(ch.Addr, ","),
			"FAULTLINE_CLICKHOUSE_DATABASE": ch.Database,
			"FAULTLINE_LOG_LEVEL":           "warn",
			"FAULTLINE_UI_LISTEN":           "",
		}
		for k, v := range extra {
			e[k] = v
		}
		return e
	}
	procs := []*process{
		startRole(t, "gateway", env("gateway", map[string]string{
			"FAULTLINE_GATEWAY_LISTEN":        gatewayAddr,
			"FAULTLINE_GATEWAY_GRPC_LISTEN":   "",
			"FAULTLINE_GATEWAY_GITHUB_SECRET": "gh-secret",
		})),
		startRole(t, "worker", env("worker", nil)),
		startRole(t, "correlator", env("correlator", map[string]string{
			"FAULTLINE_WEBHOOK_URL":    hookSrv.URL,
			"FAULTLINE_WEBHOOK_SECRET": "hook-secret",
		})),
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The reference scenario's first 45 minutes: telemetry of every kind,
	// deploys, and checkout's faulty v1.1.0 with its incident and alert.
	var reqs []replay.Request
	logs := 0
	for _, q := range replay.Scenario(1) {
		if q.At.Before(replay.T0.Add(45 * time.Minute)) {
			reqs = append(reqs, q)
			if q.Path == replay.PathLogs {
				logs += q.Records
			}
		}
	}
	if err := (&replay.Sender{BaseURL: "http://" + gatewayAddr}).Send(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	// GitHub's pushes and the deployment that ships them: the gateway keeps
	// the pushes in its bucket until the deployment arrives.
	for _, d := range []struct{ event, file string }{
		{"push", "push-new-branch.json"}, {"push", "push-deployed.json"}, {"deployment_status", "deployment_status-success.json"},
	} {
		body, err := os.ReadFile(filepath.Join("../../testdata/vendors/github", d.file))
		if err != nil {
			t.Fatal(err)
		}
		m := hmac.New(sha256.New, []byte("gh-secret"))
		m.Write(body)
		r, _ := http.NewRequest(http.MethodPost, "http://"+gatewayAddr+"/v1/github", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-GitHub-Event", d.event)
		r.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("/v1/github %s: %d", d.file, resp.StatusCode)
		}
	}

	conn, err := clickhouse.Open(ctx, ch, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	count := func(q string) uint64 {
		var n uint64
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	const wantAlert = "incident.correlated checkout v1.1.0"
	alerted := func() bool {
		hooks.mu.Lock()
		defer hooks.mu.Unlock()
		for _, l := range hooks.seen {
			if l == wantAlert {
				return true
			}
		}
		return false
	}
	var rows, github uint64
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		rows = count("SELECT count() FROM otel_logs")
		github = count("SELECT count() FROM deploys FINAL WHERE Service = 'Hello-World' AND LeadTimeSeconds IS NOT NULL")
		if rows >= uint64(logs) && github > 0 && alerted() {
			break
		}
	}
	if rows != uint64(logs) {
		t.Errorf("otel_logs holds %d rows, the scenario sent %d", rows, logs)
	}
	if github == 0 {
		t.Error("the GitHub deployment is not in deploys with its lead time (from the pushes the gateway keeps in its bucket)")
	}
	if !alerted() || hooks.bad > 0 {
		hooks.mu.Lock()
		t.Errorf("alerts: %v (%d badly signed), want %q among them", hooks.seen, hooks.bad, wantAlert)
		hooks.mu.Unlock()
	}
	for _, p := range procs {
		p.stop(t)
	}
	if n := viol.n.Load(); n > 0 {
		for _, p := range procs {
			t.Logf("faultline %s:\n%s", p.name, p.output())
		}
		t.Fatalf("%d permission violations:\n%s", n, viol.report())
	}

	// The check can fail: the gateway's user may not publish aggregates.
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("gateway", "gateway-secret"),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("faultline.aggregates", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	for deadline := time.Now().Add(5 * time.Second); viol.n.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if viol.n.Load() == 0 {
		t.Fatal("a publish outside the gateway's permissions was not logged as a violation")
	}
}

// TestNATSPermissionsDocumented: the table of deploy/README.md lists, for
// every role, exactly the subjects natsPermissions grants it with the
// default settings.
func TestNATSPermissionsDocumented(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/README.md")
	if err != nil {
		t.Fatal(err)
	}
	clearEnv(t)
	cfg, err := loadConfig(roles["run"])
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][2][]string{}
	code := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(string(raw), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 5 {
			continue
		}
		role, _, _ := strings.Cut(code.ReplaceAllString(cells[1], "$1"), " (")
		role = strings.TrimSpace(role)
		var pub, sub []string
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			pub = append(pub, m[1])
		}
		for _, m := range code.FindAllStringSubmatch(cells[3], -1) {
			sub = append(sub, m[1])
		}
		rows[role] = [2][]string{pub, sub}
	}
	for _, r := range natsPermissions(cfg) {
		row, ok := rows[r.Role]
		if !ok {
			t.Errorf("deploy/README.md: no row for %s in the permissions table", r.Role)
			continue
		}
		want := [2][]string{subjects(r.Publish), subjects(r.Subscribe)}
		for i, what := range []string{"publish", "subscribe"} {
			got := slices.Sorted(slices.Values(row[i]))
			w := slices.Sorted(slices.Values(want[i]))
			if !slices.Equal(got, w) {
				t.Errorf("deploy/README.md: %s %s %q, want %q (natsPermissions)", r.Role, what, got, w)
			}
		}
	}
}
