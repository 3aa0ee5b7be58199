package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/faultline-dev/faultline/pipeline/replay"
	"github.com/faultline-dev/faultline/processors/alert"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
	"github.com/faultline-dev/faultline/sinks/webhook"
)

// TestRunEndToEnd starts `faultline run` as make run does (embedded NATS,
// local ClickHouse, gateway, worker, admin; free ports), sends the reference
// scenario through the gateway, and checks that every record lands in
// ClickHouse, /readyz says ready, and shutdown returns cleanly.
func TestRunEndToEnd(t *testing.T) {
	hooks := &hookReceiver{}
	srv := httptest.NewServer(hooks)
	defer srv.Close()
	t.Setenv("FAULTLINE_WEBHOOK_URL", srv.URL)
	t.Setenv("FAULTLINE_WEBHOOK_SECRET", "hook-secret")
	var alerts []string
	got := runScenario(t, 0, 0, func() { alerts = hooks.list() })
	want := referenceOutcome
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("scenario outcome:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The alerts, signed, each once.
	wantAlerts := referenceAlerts
	if strings.Join(alerts, "\n") != strings.Join(wantAlerts, "\n") {
		t.Fatalf("alerts:\n%s\nwant:\n%s", strings.Join(alerts, "\n"), strings.Join(wantAlerts, "\n"))
	}
}

// referenceOutcome is what the reference scenario (replay.Scenario(1)) must
// give, as outcome lines: its known truth, whatever the deployment.
var referenceOutcome = []string{
	"incident det checkout/production 10:12-10:30 ttr=1080 suspect=v1.1.0 restored=rollback",
	"incident det search/production 10:40-10:50 ttr=600 suspect= restored=",
	"incident det catalog/production 11:02-11:15 ttr=780 suspect=v5.0.0 restored=",
	"incident det ledger/production 11:50-12:00 ttr=600 suspect= restored=",
	"incident alertmanager payments/production 12:30-12:40 ttr=600 suspect= restored=",
	"incident api checkout/production 13:20-13:50 ttr=1800 suspect= restored=",
	"failure checkout/production v1.1.0 pinned=true rolledback=true",
	"failure catalog/production v5.0.0 pinned=true rolledback=false",
	"failure inventory/production v8 pinned=false rolledback=true",
	"dora production/catalog deployments=2 failures=1 incidents=1",
	"dora production/checkout deployments=3 failures=1 incidents=2",
	"dora production/inventory deployments=3 failures=1 incidents=0",
	"dora production/ledger deployments=0 failures=0 incidents=1",
	"dora production/payments deployments=1 failures=0 incidents=1",
	"dora production/search deployments=1 failures=0 incidents=1",
	"dora staging/checkout deployments=1 failures=0 incidents=0",
}

// referenceAlerts are the alerts it raises, each delivered once.
var referenceAlerts = []string{
	"deploy.rolled_back inventory v8",
	"incident.correlated catalog v5.0.0",
	"incident.correlated checkout v1.1.0",
	"incident.resolved alertmanager payments",
	"incident.resolved api checkout",
	"incident.resolved detected catalog",
	"incident.resolved detected checkout",
	"incident.resolved detected ledger",
	"incident.resolved detected search",
}

// hookReceiver is a webhook endpoint that checks signatures and keeps one
// line per distinct delivery.
type hookReceiver struct {
	mu   sync.Mutex
	seen map[string]string
	bad  int
	// Every delivery by webhook-id, repeats included.
	count map[string]int
	evs   map[string]alert.Event
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen == nil {
		h.seen, h.count, h.evs = map[string]string{}, map[string]int{}, map[string]alert.Event{}
	}
	if webhook.Verify("hook-secret", r.Header, body, time.Now()) != nil {
		h.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev alert.Event
	_ = json.Unmarshal(body, &ev)
	id := r.Header.Get(webhook.HeaderID)
	h.count[id]++
	h.evs[id] = ev
	line := ev.Type
	switch {
	case ev.Type == alert.TypeRolledBack:
		line += " " + ev.Deploy.Service + " " + ev.Deploy.Version
	case ev.Type == alert.TypeCorrelated:
		line += " " + ev.Incident.Service + " " + ev.Verdict.Version
	default:
		line += " " + ev.Incident.Source + " " + ev.Incident.Service
	}
	h.seen[id] = line
}

func (h *hookReceiver) list() []string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		var out []string
		for _, l := range h.seen {
			out = append(out, l)
		}
		h.mu.Unlock()
		slices.Sort(out)
		if len(out) >= 9 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestScenarioShuffledWithThreeWorkers: the same scenario delivered out of
// order (within the 2-minute lateness) through three workers gives the same
// incidents, suspects, change failures and DORA rows.
func TestScenarioShuffledWithThreeWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("replays the scenario twice")
	}
	a := runScenario(t, 0, 0, nil)
	b := runScenario(t, 90*time.Second, 2, nil)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("in order, one worker:\n%s\nshuffled, three workers:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
}

// runScenario starts faultline run, sends the reference scenario (shuffled
// within shuffle, with extra workers beside run's own) and returns the
// outcome as comparable lines.
func runScenario(t *testing.T, shuffle time.Duration, extraWorkers int, beforeStop func()) []string {
	var out []string
	runStack(t, stackRun{
		reqs:         replay.Shuffle(replay.Scenario(1), shuffle, 5),
		extraWorkers: extraWorkers,
		settled: func(ctx context.Context, s *stack) bool {
			out = outcome(t, ctx, s)
			all := strings.Join(out, "\n")
			return len(out) >= 5 && strings.Contains(all, "catalog/production 11:02-11:15 ttr=780 suspect=v5.0.0") &&
				strings.Contains(all, "api checkout/production 13:20-13:50")
		},
		inspect: func(ctx context.Context, s *stack) {
			// Rows carry the release that was live at their time.
			var enriched uint64
			if err := s.ch.QueryRow(ctx, `SELECT count() FROM otel_logs WHERE ServiceName = 'checkout' AND ResourceAttributes['deployment.environment.name'] = 'production'
				AND Timestamp >= '2026-11-01 10:10:00' AND Timestamp < '2026-11-01 10:30:00' AND DeployVersion = 'v1.1.0'`).Scan(&enriched); err != nil {
				t.Fatal(err)
			}
			if enriched != 20*300 {
				t.Errorf("%d checkout rows between +10m and +30m carry DeployVersion v1.1.0, want %d", enriched, 20*300)
			}
			time.Sleep(1500 * time.Millisecond) // one more flush
			out = outcome(t, ctx, s)
			checkIncidentIDs(t, ctx, s)
			if beforeStop != nil {
				beforeStop()
			}
		},
	})
	return out
}

// stackRun is one run of the whole stack on a scenario.
type stackRun struct {
	reqs         []replay.Request
	extraWorkers int // workers beside run's own
	// settled reports whether the correlator has written what the test
	// waits for; it is asked until it says so or settleWithin (default a
	// minute) has passed.
	settled      func(ctx context.Context, s *stack) bool
	settleWithin time.Duration
	// inspect reads the settled stack before it stops.
	inspect func(ctx context.Context, s *stack)
}

// runStack starts faultline run as make run does (embedded NATS, local
// ClickHouse, gateway, worker, correlator, admin; free ports), sends the
// requests through the gateway, waits until every log record is in
// ClickHouse and the run has settled, inspects it and shuts down cleanly.
func runStack(t *testing.T, r stackRun) {
	ctx, s, stop := startRun(t, nil)

	for i := 0; i < r.extraWorkers; i++ {
		var g group
		if err := startWorker(ctx, s, &g); err != nil {
			t.Fatal(err)
		}
	}
	logs := 0
	for _, q := range r.reqs {
		if q.Path == replay.PathLogs {
			logs += q.Records
		}
	}
	sender := &replay.Sender{BaseURL: "http://" + s.gateway.Addr()}
	if err := sender.Send(ctx, r.reqs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var n uint64
	for time.Now().Before(deadline) {
		if err := s.ch.QueryRow(ctx, "SELECT count() FROM otel_logs").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= uint64(logs) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if n != uint64(logs) {
		t.Fatalf("otel_logs holds %d rows, the scenario sent %d", n, logs)
	}
	var points uint64
	if err := s.ch.QueryRow(ctx, "SELECT count() FROM otel_metrics_histogram").Scan(&points); err != nil || points == 0 {
		t.Fatalf("histogram points: %d, %v", points, err)
	}
	// The correlator writes within a flush interval of the last aggregate.
	within := r.settleWithin
	if within == 0 {
		within = time.Minute
	}
	for deadline := time.Now().Add(within); time.Now().Before(deadline) && !r.settled(ctx, s); {
		time.Sleep(500 * time.Millisecond)
	}
	r.inspect(ctx, s)
	stop()
}

// startRun starts faultline run as make run does (embedded NATS, local
// ClickHouse, gateway, worker, correlator, UI, admin), on free loopback
// ports, with env on top of that, and waits until /readyz says everything
// is ready. stop shuts it down and fails the test unless it stops cleanly
// within a minute.
func startRun(t *testing.T, env map[string]string) (ctx context.Context, s *stack, stop func()) {
	t.Helper()
	bin, err := chtest.Bin()
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{
		"FAULTLINE_DATA_DIR":                   t.TempDir(),
		"FAULTLINE_NATS_LISTEN":                "127.0.0.1:0",
		"FAULTLINE_CLICKHOUSE_LOCAL_TCP_PORT":  "0",
		"FAULTLINE_CLICKHOUSE_LOCAL_HTTP_PORT": "0",
		"FAULTLINE_CLICKHOUSE_BIN":             bin,
		"FAULTLINE_GATEWAY_LISTEN":             "127.0.0.1:0",
		"FAULTLINE_GATEWAY_GRPC_LISTEN":        "127.0.0.1:0",
		"FAULTLINE_ADMIN_LISTEN":               "127.0.0.1:0",
		"FAULTLINE_UI_LISTEN":                  "127.0.0.1:0",
		"FAULTLINE_LOG_LEVEL":                  "warn",
	}
	for k, v := range env {
		settings[k] = v
	}
	for k, v := range settings {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan *stack, 1)
	done := make(chan error, 1)
	go func() { done <- cmdServe(ctx, roles["run"], func(s *stack) { up <- s }) }()
	select {
	case s = <-up:
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
	case <-time.After(3 * time.Minute):
		cancel()
		t.Fatal("run did not come up")
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("shutdown: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("shutdown hung")
		}
	}
	t.Cleanup(stop)

	// Ready once the correlator has read its (empty) streams, at its
	// first tick.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + s.admin.Addr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.Contains(string(body), "clickhouse: ok") && strings.Contains(string(body), "correlator: ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz: %d %s", resp.StatusCode, body)
		}
	}
	return ctx, s, stop
}

// outcome reads incidents, change failures and DORA rows as lines.
func outcome(t *testing.T, ctx context.Context, s *stack) []string {
	return readOutcome(t, ctx, s.ch)
}

// readOutcome is outcome read through any connection to the database.
func readOutcome(t *testing.T, ctx context.Context, ch driver.Conn) []string {
	var out []string
	rows, err := ch.Query(ctx, `SELECT Source, Service, Environment, formatDateTime(StartedAt, '%H:%i'), ifNull(formatDateTime(ResolvedAt, '%H:%i'), ''),
		ifNull(toString(TimeToRestoreSeconds), ''), SuspectVersion, if(RestoredByDeployId = '', '', ifNull((SELECT any(Type) FROM deploys FINAL WHERE DeployId = RestoredByDeployId), '?'))
		FROM incidents FINAL ORDER BY StartedAt, IncidentId`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var src, svc, env, start, end, ttr, suspect, restored string
		if err := rows.Scan(&src, &svc, &env, &start, &end, &ttr, &suspect, &restored); err != nil {
			t.Fatal(err)
		}
		if src == "detected" {
			src = "det"
		}
		out = append(out, fmt.Sprintf("incident %s %s/%s %s-%s ttr=%s suspect=%s restored=%s", src, svc, env, start, end, ttr, suspect, restored))
	}
	rows.Close()
	rows, err = ch.Query(ctx, `SELECT Service, Environment, Version, FailureReason LIKE '%top suspect%', RolledBackBy != '' FROM deploys FINAL WHERE ChangeFailure ORDER BY DeployedAt`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var svc, env, ver string
		var pinned, rb bool
		if err := rows.Scan(&svc, &env, &ver, &pinned, &rb); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("failure %s/%s %s pinned=%v rolledback=%v", svc, env, ver, pinned, rb))
	}
	rows.Close()
	rows, err = ch.Query(ctx, `SELECT Environment, Service, Deployments, ChangeFailures, Incidents FROM dora_summary ORDER BY Environment, Service`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var env, svc string
		var d, f, i uint64
		if err := rows.Scan(&env, &svc, &d, &f, &i); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("dora %s/%s deployments=%d failures=%d incidents=%d", env, svc, d, f, i))
	}
	rows.Close()
	return out
}

// checkIncidentIDs checks that every log record inside an incident's span
// (its service and environment, StartedAt to ResolvedAt) carries the
// incident's id, and that no other record carries one: counted per
// incident straight from the incidents table, against otel_logs.IncidentId.
func checkIncidentIDs(t *testing.T, ctx context.Context, s *stack) {
	t.Helper()
	checkIncidentIDsIn(t, ctx, s.ch)
}

// checkIncidentIDsIn is checkIncidentIDs through any connection.
func checkIncidentIDsIn(t *testing.T, ctx context.Context, ch driver.Conn) {
	t.Helper()
	if err := ch.Exec(ctx, "SYSTEM RELOAD DICTIONARY incident_spans"); err != nil {
		t.Fatal(err)
	}
	rows, err := ch.Query(ctx, `SELECT IncidentId, Service, Environment, StartedAt, ResolvedAt FROM incidents FINAL ORDER BY StartedAt`)
	if err != nil {
		t.Fatal(err)
	}
	type span struct {
		id, svc, env string
		start        time.Time
		end          *time.Time
	}
	var spans []span
	for rows.Next() {
		var sp span
		if err := rows.Scan(&sp.id, &sp.svc, &sp.env, &sp.start, &sp.end); err != nil {
			t.Fatal(err)
		}
		spans = append(spans, sp)
	}
	rows.Close()
	var inside uint64
	for _, sp := range spans {
		end := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		if sp.end != nil {
			end = *sp.end
		}
		var want, got uint64
		if err := ch.QueryRow(ctx, `SELECT count() FROM otel_logs WHERE ServiceName = ? AND ResourceAttributes['deployment.environment.name'] = ?
			AND Timestamp >= ? AND Timestamp < ?`, sp.svc, sp.env, sp.start, end).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if err := ch.QueryRow(ctx, `SELECT count() FROM otel_logs WHERE IncidentId = ?`, sp.id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("incident %s (%s/%s from %s): %d records carry its id, %d lie inside it", sp.id, sp.svc, sp.env, sp.start.Format("15:04"), got, want)
		}
		inside += want
	}
	var stamped uint64
	if err := ch.QueryRow(ctx, `SELECT count() FROM otel_logs WHERE IncidentId != ''`).Scan(&stamped); err != nil {
		t.Fatal(err)
	}
	if stamped != inside {
		t.Errorf("%d records carry an incident id, %d lie inside incidents", stamped, inside)
	}
	if inside == 0 {
		t.Error("no record lies inside an incident: the check checked nothing")
	}
}
