// Package replay builds faultline's scenarios and sends them through the
// gateway at full speed. Scenario is the reference, a deterministic day in
// the life of a few services: its tests replay it through the real
// gateway, NATS and ClickHouse and check the exact incidents, suspects and
// DORA rows. Realistic is noisy production traffic with its ground truth,
// and Score rates a detector's incidents against it. `faultline replay`
// sends either to a running faultline so users can see the tables fill.
package replay

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// Gateway paths the scenario posts to.
const (
	PathLogs         = "/v1/logs"
	PathMetrics      = "/v1/metrics"
	PathDeploys      = "/v1/deploys"
	PathIncidents    = "/v1/incidents"
	PathAlertmanager = "/v1/alertmanager"
)

// Request is one HTTP request of the scenario.
type Request struct {
	Path        string
	ContentType string
	Body        []byte
	// At is the event time the request speaks about; requests are sent in
	// this order (ties keep their build order).
	At time.Time
	// Records is the number of log records or metric points it carries.
	Records int
}

// T0 is the scenario's reference time.
var T0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

// Scenario is the reference scenario. Every count is fixed by the seed.
//
// Production, event time relative to T0:
//   - checkout: v1.0.0 at -3h (healthy); v1.1.0 at +10m is faulty: 20% of its
//     records are errors from +12m; rolled back to v1.0.0 (type rollback) at
//     +30m, after which errors stop. One detected incident, started +12m,
//     resolved +30m; suspect v1.1.0, restored by the rollback.
//   - checkout in staging: v1.2.0-rc1 at +11m, a decoy never suspected.
//   - payments: v3.4.0 at +20m (healthy); v3.5.0 at +85m failed (never live);
//     an Alertmanager alert fires at +150m and resolves at +160m.
//   - search: errors from +40m to +50m with no search deploy: an incident
//     with no same-service suspect.
//   - catalog: v5.0.0 live at +60m, errors from +62m to +75m, and the deploy
//     event arrives late, after the telemetry of +80m: the incident is
//     re-correlated onto it.
//   - inventory: v7 at +5m, v8 at +80m, v7 again at +95m (a rollback by
//     version, without incident): v8 is a change failure.
//   - ledger: metrics only, cumulative http.server.request.duration
//     histograms; 5xx ratio 30% from +110m to +120m, and a process restart
//     (counter reset) at +115m: one detected incident from the metric rule.
//   - an explicit incident through /v1/incidents for checkout at +200m,
//     resolved at +230m, with no deploy within 2h of it.
//
// Telemetry runs from -10m to +240m, one request per service and minute.
func Scenario(seed uint64) []Request {
	b := &builder{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	m := func(n int) time.Time { return T0.Add(time.Duration(n) * time.Minute) }

	b.deploy(m(-180), "checkout", "production", "v1.0.0", "deploy", "succeeded", m(-200))
	b.deploy(m(10), "checkout", "production", "v1.1.0", "deploy", "succeeded", m(-60))
	b.deploy(m(11), "checkout", "staging", "v1.2.0-rc1", "deploy", "succeeded", m(-30))
	b.deploy(m(30), "checkout", "production", "v1.0.0", "rollback", "succeeded", time.Time{})
	b.deploy(m(20), "payments", "production", "v3.4.0", "deploy", "succeeded", m(-1440))
	b.deploy(m(85), "payments", "production", "v3.5.0", "deploy", "failed", m(-30))
	b.deploy(m(5), "inventory", "production", "v7", "deploy", "succeeded", m(-120))
	b.deploy(m(80), "inventory", "production", "v8", "deploy", "succeeded", m(-45))
	b.deploy(m(95), "inventory", "production", "v7", "deploy", "succeeded", time.Time{})
	// The catalog deploy event is sent late: its request sorts after +80m.
	b.deployAt(m(81), m(60), "catalog", "production", "v5.0.0", "deploy", "succeeded", m(-90))
	b.deploy(m(-100), "search", "production", "v9.1.0", "deploy", "succeeded", m(-200))
	b.deploy(m(-300), "catalog", "production", "v4.9.0", "deploy", "succeeded", m(-400))

	b.alertmanager(m(150), "firing", "payments", "production", m(150), time.Time{})
	b.alertmanager(m(160), "resolved", "payments", "production", m(150), m(160))
	b.incident(m(200), "ops-2026-1101", "checkout", "production", "open", "Checkout latency reported by support")
	b.incident(m(230), "ops-2026-1101", "checkout", "production", "resolved", "Checkout latency reported by support")

	for min := -10; min < 240; min++ {
		at := m(min)
		// checkout: v1.1.0 live from +10m to +30m; faulty from +12m.
		ver := "v1.0.0"
		if min >= 10 && min < 30 {
			ver = "v1.1.0"
		}
		errRate := 0.002
		if min >= 12 && min < 30 {
			errRate = 0.2
		}
		b.logs(at, "checkout", "production", ver, 300, errRate)
		b.logs(at, "checkout", "staging", "v1.2.0-rc1", 40, 0.001)

		b.logs(at, "payments", "production", "v3.4.0", 200, 0.002)

		errRate = 0.003
		if min >= 40 && min < 50 {
			errRate = 0.25
		}
		b.logs(at, "search", "production", "v9.1.0", 250, errRate)

		ver, errRate = "v4.9.0", 0.002
		if min >= 60 {
			ver = "v5.0.0"
		}
		if min >= 62 && min < 75 {
			errRate = 0.3
		}
		b.logs(at, "catalog", "production", ver, 150, errRate)

		ver = "v7"
		if min >= 80 && min < 95 {
			ver = "v8"
		}
		b.logs(at, "inventory", "production", ver, 100, 0.002)

		ratio := 0.001
		if min >= 110 && min < 120 {
			ratio = 0.3
		}
		b.histogram(at, "ledger", "production", "v2.0.0", 400, ratio, min >= 115)
	}
	sort.SliceStable(b.reqs, func(i, j int) bool { return b.reqs[i].At.Before(b.reqs[j].At) })
	return b.reqs
}

type builder struct {
	rng  *rand.Rand
	reqs []Request
	// cumulative histogram state of the ledger series
	hist struct {
		start      time.Time
		total, bad uint64
	}
}

func (b *builder) deploy(at time.Time, service, env, version, typ, status string, commitAt time.Time) {
	b.deployAt(at, at, service, env, version, typ, status, commitAt)
}

// deployAt sends at sendAt a deploy that went live at liveAt.
func (b *builder) deployAt(sendAt, liveAt time.Time, service, env, version, typ, status string, commitAt time.Time) {
	d := map[string]any{
		"service": service, "environment": env, "version": version,
		"timestamp": liveAt.Format(time.RFC3339), "type": typ, "status": status,
		"author": "ci@example.com", "url": fmt.Sprintf("https://ci.example.com/%s/%s", service, version),
	}
	if !commitAt.IsZero() {
		sha := fmt.Sprintf("%040x", b.rng.Uint64())
		d["commit"] = sha
		d["commits"] = []map[string]string{{"sha": sha, "timestamp": commitAt.Format(time.RFC3339)}}
	}
	body, _ := json.Marshal(d)
	b.reqs = append(b.reqs, Request{Path: PathDeploys, ContentType: "application/json", Body: body, At: sendAt, Records: 1})
}

func (b *builder) incident(at time.Time, id, service, env, status, title string) {
	body, _ := json.Marshal(map[string]any{
		"id": id, "service": service, "environment": env, "status": status,
		"timestamp": at.Format(time.RFC3339), "title": title, "severity": "major",
	})
	b.reqs = append(b.reqs, Request{Path: PathIncidents, ContentType: "application/json", Body: body, At: at, Records: 1})
}

func (b *builder) alertmanager(at time.Time, status, service, env string, startsAt, endsAt time.Time) {
	alert := map[string]any{
		"status":      status,
		"labels":      map[string]string{"alertname": "PaymentsErrorBudgetBurn", "service": service, "environment": env, "severity": "critical"},
		"annotations": map[string]string{"summary": "payments error budget burning fast"},
		"startsAt":    startsAt.Format(time.RFC3339),
		"endsAt":      "0001-01-01T00:00:00Z",
		"fingerprint": "5ac1f3e0d1b2a9c4",
	}
	if !endsAt.IsZero() {
		alert["endsAt"] = endsAt.Format(time.RFC3339)
	}
	body, _ := json.Marshal(map[string]any{
		"version": "4", "status": status, "receiver": "faultline", "groupKey": "{}:{alertname=\"PaymentsErrorBudgetBurn\"}",
		"groupLabels": map[string]string{"alertname": "PaymentsErrorBudgetBurn"}, "commonLabels": alert["labels"],
		"alerts": []any{alert},
	})
	b.reqs = append(b.reqs, Request{Path: PathAlertmanager, ContentType: "application/json", Body: body, At: at, Records: 1})
}

// logs adds one OTLP logs request: n records spread over the minute at,
// a fraction errRate of them errors (exact, rounded).
func (b *builder) logs(at time.Time, service, env, version string, n int, errRate float64) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	ra := rl.Resource().Attributes()
	ra.PutStr("service.name", service)
	ra.PutStr("service.version", version)
	ra.PutStr("deployment.environment.name", env)
	ra.PutStr("host.name", service+"-7d9f8-"+fmt.Sprint(b.rng.IntN(3)))
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("scenario")
	errs := int(float64(n)*errRate + 0.5)
	for i := 0; i < n; i++ {
		lr := sl.LogRecords().AppendEmpty()
		ts := at.Add(time.Duration(i) * time.Minute / time.Duration(n))
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(ts))
		if i*errs/n != (i+1)*errs/n { // exactly errs errors, evenly spread
			lr.SetSeverityNumber(plog.SeverityNumberError)
			lr.SetSeverityText("ERROR")
			lr.Body().SetStr("payment provider timeout after 3 retries")
		} else {
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetSeverityText("INFO")
			lr.Body().SetStr("request served")
		}
		lr.Attributes().PutStr("http.route", "/api/"+service)
		lr.Attributes().PutInt("http.response.status_code", 200)
	}
	body, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	b.reqs = append(b.reqs, Request{Path: PathLogs, ContentType: "application/x-protobuf", Body: body, At: at, Records: n})
}

// histogram adds one cumulative http.server.request.duration point pair
// (2xx and 5xx series) for the minute at; reset restarts the counters once.
func (b *builder) histogram(at time.Time, service, env, version string, n int, badRatio float64, reset bool) {
	h := &b.hist
	if h.start.IsZero() || (reset && h.start.Before(T0.Add(115*time.Minute))) {
		h.start, h.total, h.bad = at, 0, 0
	}
	bad := uint64(float64(n)*badRatio + 0.5)
	h.bad += bad
	h.total += uint64(n) - bad
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	ra := rm.Resource().Attributes()
	ra.PutStr("service.name", service)
	ra.PutStr("service.version", version)
	ra.PutStr("deployment.environment.name", env)
	sm := rm.ScopeMetrics().AppendEmpty()
	met := sm.Metrics().AppendEmpty()
	met.SetName("http.server.request.duration")
	met.SetUnit("s")
	hist := met.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	ts := at.Add(59 * time.Second)
	for _, p := range []struct {
		code  int64
		count uint64
	}{{200, h.total}, {503, h.bad}} {
		dp := hist.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(h.start))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		dp.Attributes().PutStr("http.request.method", "POST")
		dp.Attributes().PutInt("http.response.status_code", p.code)
		dp.SetCount(p.count)
		dp.SetSum(float64(p.count) * 0.05)
		dp.ExplicitBounds().FromRaw([]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1})
		dp.BucketCounts().FromRaw([]uint64{0, 0, 0, p.count, 0, 0, 0, 0, 0})
	}
	body, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	b.reqs = append(b.reqs, Request{Path: PathMetrics, ContentType: "application/x-protobuf", Body: body, At: at, Records: 2})
}
