package replay

import (
	"encoding/json"
	"fmt"
	"github.com/faultline-dev/faultline/processors/detect"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/protobuf/encoding/protowire"
)

// Expected is one real incident of the realistic scenario: the ground truth
// a detector is scored against (see Score).
type Expected struct {
	Name                 string // a short word a table prints, e.g. "canary"
	Service, Environment string
	Start, End           time.Time // first bad minute; first good minute after
	Signal               string    // SignalErrors, SignalLatency or SignalVersionErrors
	// SuspectVersion is the service.version of the deploy that should be
	// the pinned suspect; "" when no deploy should be pinned.
	SuspectVersion string
	// MaxDelay is how long after Start a detector may open the incident
	// and still be on time.
	MaxDelay time.Duration
}

// Signals: what gives an Expected incident away, named as the detector
// names them.
const (
	// SignalErrors: the service's error ratio departs from its own normal.
	SignalErrors = detect.SignalErrors
	// SignalLatency: requests get slow, and nothing else changes.
	SignalLatency = detect.SignalLatency
	// SignalVersionErrors: one version errs while the service as a whole
	// stays near its usual ratio for a while (a canary, a rolling deploy).
	SignalVersionErrors = detect.SignalVersion
)

// LatencyBounds are the OpenTelemetry default explicit bucket bounds of
// http.server.request.duration, in seconds.
var LatencyBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// Realistic is four hours of production-like traffic in which a detector
// must find eight real incidents and ignore what only looks like one. Its
// counts are random but fixed by the seed; the Expected list is its ground
// truth and holds for every seed.
//
// Event time runs from T0-60m to T0+180m; the first hour is history for
// baselines. Every minute each service sends one OTLP logs request, one log
// record per request it served (INFO for 2xx, ERROR for 5xx; one
// ResourceLogs per live service.version), and one cumulative
// http.server.request.duration histogram point per version and status code
// (2xx and 5xx series, OpenTelemetry's default bounds, timestamped at the
// end of the minute). A version's series start when its pods start: at its
// deploy, or, for the versions live when the scenario begins, at their
// deploy but no earlier than T0-8h, with the earlier counts; a rollback
// restarts the old version's series. A 5xx series appears with its first
// failure, as SDKs export it: its first point counts from zero, although its
// start time is its pods'.
//
// The noise is what makes it realistic: production request rates follow a
// daily swing (x0.6 at T0-60m, x1.4 at T0+60m, x0.6 at T0+180m, a cosine)
// and a 10% log-normal jitter per minute, the count is Poisson around that;
// each minute's true error ratio is the nominal one times a log-normal
// factor with 30% spread (real traffic is overdispersed), and errors are
// then binomial. Latencies are log-normal (spread 0.55) around a median
// per service and version.
//
// Services (production unless said; rate per minute at the daily mean,
// baseline error ratio, median latency):
//
//	frontend         600  0.2%  30ms   v9.3.0; v9.4.0 at +100 changes nothing;
//	                                   +75 alone at 2% errors (a spike)
//	search           300  1.5%  80ms   x5 traffic from +30 to +44 at the same
//	                                   ratio (a surge); +130 alone at 15% (a spike);
//	                                   an explicit incident (/v1/incidents,
//	                                   support-reported) from +160 to +170
//	checkout         300  1%    120ms  v2.7.0; v2.8.0 at +20: 25% errors
//	                                   (500, in pricing) from +20; rolled back
//	                                   to v2.7.0 (type rollback) at +40
//	cart             250  0.5%  25ms   v4.1.0; canary v4.2.0 at +50 takes 10%
//	                                   of the requests at 40% errors (the
//	                                   service ~4.5%); rolled back at +70
//	inventory        220  0.4%  15ms   v6.9.2; v7.0.0 at +140; v7.0.1, another
//	                                   change, at +144 as a canary on 10% of the
//	                                   requests, without a single error; from
//	                                   +146 (its stock cache expires) v7.0.0
//	                                   fails 20% of its requests: the incident
//	                                   starts after both deploys and every error
//	                                   carries v7.0.0; rolled back to v6.9.2 at +160
//	orders           180  0.5%  60ms   v3.0.4; rolling v3.1.0 at +120 takes 10%
//	                                   more of the requests each minute (100%
//	                                   at +129) at 15% errors; v3.1.1 at +150 fixes it
//	catalog          150  0.3%  40ms   v5.2.4; v5.3.0 at +80: median 900ms,
//	                                   p95 ~2s (p95 was ~100ms), no more errors;
//	                                   v5.3.1 at +105 fixes it
//	notifications    150  8%    200ms  always noisy; +110 and +111 at 16%
//	recommendations  120  1%    90ms   v0.42.0 (deployed a day ago); its
//	                                   feature store fails from +100 to +114: 30%
//	                                   errors (503 after ~2s). No deploy of its
//	                                   own within 2h; frontend v9.4.0 goes live
//	                                   at +100, catalog v5.3.0 at +80
//	admin              5  0%    50ms   v1.3.2; v1.4.0 at +60: 60% errors;
//	                                   rolled back at +80
//	reports            2  0.1%  1.5s   nothing happens
//	ledger           400  0.2%  8ms    histograms only, no logs; v11.3.0 at
//	                                   +35 changes nothing
//	checkout staging  40  0.5%  150ms  flat traffic; v2.8.0 from long ago;
//	                                   v2.9.0-rc1 at +90: 30% errors; v2.9.0-rc2
//	                                   at +110 fixes it. Production must not
//	                                   notice.
//
// The real incidents (the Expected list, by Start):
//
//	regress     checkout/production         +20  to +40   errors          v2.8.0
//	canary      cart/production             +50  to +70   version_errors  v4.2.0
//	lowtraffic  admin/production            +60  to +80   errors          v1.4.0
//	latency     catalog/production          +80  to +105  latency         v5.3.0
//	staging     checkout/staging            +90  to +110  errors          v2.9.0-rc1
//	outage      recommendations/production  +100 to +115  errors          (none)
//	rolling     orders/production           +120 to +150  version_errors  v3.1.0
//	twodeploys  inventory/production        +146 to +160  errors          v7.0.0
//
// MaxDelay is 3m, and 5m for latency and for the service of five requests a
// minute. Everything else is a trap that must open nothing: the noisy
// notifications, its two-minute blip at twice its ratio, the search surge,
// the one-minute spikes of frontend and search, the deploys of frontend and
// ledger that change nothing, and production checkout while staging burns.
//
// About 580k log records (seed 1: 580,191) and 6k histogram points in all.
func Realistic(seed uint64) ([]Request, []Expected) {
	g := &realGen{rng: rand.New(rand.NewPCG(seed, seed^0x2545f4914f6cdd1d)), series: map[string]*versionSeries{}}
	m := realMinute

	for _, s := range realServices {
		g.deploy(m(s.since), s.name, s.env, s.version, "deploy", nil)
	}
	g.deploy(m(20), "checkout", "production", "v2.8.0", "deploy", nil)
	g.deploy(m(35), "ledger", "production", "v11.3.0", "deploy", nil)
	g.deploy(m(40), "checkout", "production", "v2.7.0", "rollback", nil)
	g.deploy(m(50), "cart", "production", "v4.2.0", "deploy", map[string]string{"strategy": "canary", "traffic": "10%"})
	g.deploy(m(60), "admin", "production", "v1.4.0", "deploy", nil)
	g.deploy(m(70), "cart", "production", "v4.1.0", "rollback", nil)
	g.deploy(m(80), "admin", "production", "v1.3.2", "rollback", nil)
	g.deploy(m(80), "catalog", "production", "v5.3.0", "deploy", nil)
	g.deploy(m(90), "checkout", "staging", "v2.9.0-rc1", "deploy", nil)
	g.deploy(m(100), "frontend", "production", "v9.4.0", "deploy", nil)
	g.deploy(m(105), "catalog", "production", "v5.3.1", "deploy", nil)
	g.deploy(m(110), "checkout", "staging", "v2.9.0-rc2", "deploy", nil)
	g.deploy(m(120), "orders", "production", "v3.1.0", "deploy", map[string]string{"strategy": "rolling", "duration": "10m"})
	g.deploy(m(140), "inventory", "production", "v7.0.0", "deploy", nil)
	g.deploy(m(144), "inventory", "production", "v7.0.1", "deploy", map[string]string{"strategy": "canary", "traffic": "10%"})
	g.deploy(m(150), "orders", "production", "v3.1.1", "deploy", nil)
	g.deploy(m(160), "inventory", "production", "v6.9.2", "rollback", nil)
	g.incident(m(160), "sup-4471", "search", "production", "open", "Search results stale (reported by support)")
	g.incident(m(170), "sup-4471", "search", "production", "resolved", "Search results stale (reported by support)")

	for min := realFrom; min < realTo; min++ {
		for i := range realServices {
			g.minute(&realServices[i], min)
		}
	}
	sort.SliceStable(g.reqs, func(i, j int) bool { return g.reqs[i].At.Before(g.reqs[j].At) })

	exp := func(name, svc, env string, from, to int, signal, suspect string) Expected {
		d := 3 * time.Minute
		if signal == SignalLatency || svc == "admin" { // slow requests, or five a minute: minutes to tell
			d = 5 * time.Minute
		}
		return Expected{Name: name, Service: svc, Environment: env, Start: m(from), End: m(to), Signal: signal, SuspectVersion: suspect, MaxDelay: d}
	}
	return g.reqs, []Expected{
		exp("regress", "checkout", "production", 20, 40, SignalErrors, "v2.8.0"),
		exp("canary", "cart", "production", 50, 70, SignalVersionErrors, "v4.2.0"),
		exp("lowtraffic", "admin", "production", 60, 80, SignalErrors, "v1.4.0"),
		exp("latency", "catalog", "production", 80, 105, SignalLatency, "v5.3.0"),
		exp("staging", "checkout", "staging", 90, 110, SignalErrors, "v2.9.0-rc1"),
		exp("outage", "recommendations", "production", 100, 115, SignalErrors, ""),
		exp("rolling", "orders", "production", 120, 150, SignalVersionErrors, "v3.1.0"),
		exp("twodeploys", "inventory", "production", 146, 160, SignalErrors, "v7.0.0"),
	}
}

// The realistic scenario's event time, in minutes from T0: [realFrom, realTo).
const (
	realFrom = -60
	realTo   = 180
)

func realMinute(n int) time.Time { return T0.Add(time.Duration(n) * time.Minute) }

// realService is one service (in one environment) of the realistic
// scenario and its ordinary behaviour.
type realService struct {
	name, env string
	rate      float64 // requests per minute at the daily mean
	errs      float64 // baseline error ratio
	p50       float64 // median latency of a 2xx request, seconds
	logs      bool    // one log record per request (ledger has metrics only)
	daily     bool    // follows the daily swing (production)
	version   string  // live before the scenario starts
	since     int     // its deploy, minutes from T0
	route     string
	errBody   string // the log body of an ordinary failure
}

var realServices = []realService{
	{"frontend", "production", 600, 0.002, 0.030, true, true, "v9.3.0", -1440, "/", "upstream connect error or disconnect/reset before headers"},
	{"search", "production", 300, 0.015, 0.080, true, true, "v6.12.0", -2000, "/api/search", "search backend: context deadline exceeded"},
	{"checkout", "production", 300, 0.01, 0.120, true, true, "v2.7.0", -1600, "/api/checkout", "payment provider timeout after 3 retries"},
	{"cart", "production", 250, 0.005, 0.025, true, true, "v4.1.0", -3000, "/api/cart", "redis: i/o timeout"},
	{"inventory", "production", 220, 0.004, 0.015, true, true, "v6.9.2", -5000, "/api/stock", "postgres: canceling statement due to statement timeout"},
	{"orders", "production", 180, 0.005, 0.060, true, true, "v3.0.4", -900, "/api/orders", "kafka: leader not available"},
	{"catalog", "production", 150, 0.003, 0.040, true, true, "v5.2.4", -4000, "/api/products", "elasticsearch: 429 too many requests"},
	{"notifications", "production", 150, 0.08, 0.200, true, true, "v1.18.0", -7000, "/api/notify", "smtp relay: 421 service not available"},
	{"recommendations", "production", 120, 0.01, 0.090, true, true, "v0.42.0", -1500, "/api/recommendations", "model server: deadline exceeded"},
	{"admin", "production", 5, 0, 0.050, true, true, "v1.3.2", -10000, "/admin", "internal error"},
	{"reports", "production", 2, 0.001, 1.5, true, true, "v2.0.0", -20000, "/api/reports", "report query failed"},
	{"ledger", "production", 400, 0.002, 0.008, false, true, "v11.2.0", -3000, "/api/ledger", ""},
	{"checkout", "staging", 40, 0.005, 0.150, true, false, "v2.8.0", -200, "/api/checkout", "payment sandbox timeout"},
}

// part is one version's share of a service's requests in one minute.
type part struct {
	version string
	share   float64 // of the service's requests
	errs    float64 // nominal error ratio
	p50     float64 // median latency of a 2xx request, seconds
	errP50  float64 // median latency of a 5xx request, seconds
	code    int64   // status code of its failures
	errBody string
}

// plan says how a service behaves in a minute: a traffic factor on top of
// the daily swing, and its versions.
func (g *realGen) plan(s *realService, min int) (float64, []part) {
	base := part{version: s.version, share: 1, errs: s.errs, p50: s.p50, errP50: 0.02, code: 500, errBody: s.errBody}
	in := func(from, to int) bool { return min >= from && min < to }
	with := func(p part, f func(*part)) part { f(&p); return p }
	switch s.name + "/" + s.env {
	case "frontend/production":
		if min >= 100 {
			base.version = "v9.4.0"
		}
		if min == 75 {
			base.errs = 0.02
		}
	case "search/production":
		if in(30, 45) {
			return 5, []part{base}
		}
		if min == 130 {
			base.errs = 0.15
		}
	case "checkout/production":
		if in(20, 40) {
			base = with(base, func(p *part) {
				p.version, p.errs, p.errBody = "v2.8.0", 0.25, "pricing: nil map entry for promotion \"AUTUMN25\""
			})
		}
	case "cart/production":
		if in(50, 70) {
			canary := with(base, func(p *part) {
				p.version, p.share, p.errs, p.errBody = "v4.2.0", 0.1, 0.4, "cart: decode session: unexpected end of JSON input"
			})
			base.share = 0.9
			return 1, []part{base, canary}
		}
	case "inventory/production":
		if in(140, 160) {
			base.version = "v7.0.0"
			if min >= 146 {
				base.errs, base.errBody = 0.2, "stock cache: entry version mismatch"
			}
			if min >= 144 {
				canary := with(base, func(p *part) { p.version, p.share, p.errs = "v7.0.1", 0.1, 0 })
				base.share = 0.9
				return 1, []part{base, canary}
			}
		}
	case "orders/production":
		if in(120, 150) {
			roll := with(base, func(p *part) {
				p.version, p.errs, p.errBody = "v3.1.0", 0.15, "orders: duplicate key value violates unique constraint \"orders_idem_key\""
			})
			roll.share = math.Min(1, float64(min-119)/10)
			if roll.share == 1 {
				return 1, []part{roll}
			}
			base.share = 1 - roll.share
			return 1, []part{base, roll}
		}
		if min >= 150 {
			base.version = "v3.1.1"
		}
	case "catalog/production":
		if in(80, 105) {
			base.version, base.p50 = "v5.3.0", 0.9
		} else if min >= 105 {
			base.version = "v5.3.1"
		}
	case "notifications/production":
		if min == 110 || min == 111 {
			base.errs = 0.16
		}
	case "recommendations/production":
		if in(100, 115) {
			base.errs, base.errP50, base.code, base.errBody = 0.3, 2, 503, "feature store: upstream unavailable (503) after 2s"
		}
	case "admin/production":
		if in(60, 80) {
			base.version, base.errs, base.errBody = "v1.4.0", 0.6, "template: users.html:42: executing \"row\" at <.Team.Name>: nil pointer evaluating *Team.Name"
		}
	case "ledger/production":
		if min >= 35 {
			base.version = "v11.3.0"
		}
	case "checkout/staging":
		if in(90, 110) {
			base.version, base.errs, base.errBody = "v2.9.0-rc1", 0.3, "pricing: currency \"\" not supported"
		} else if min >= 110 {
			base.version = "v2.9.0-rc2"
		}
	}
	return 1, []part{base}
}

// daily is the day's traffic swing: x0.6 at the start and the end of the
// scenario, x1.4 in its middle.
func daily(min int) float64 {
	return 1 - 0.4*math.Cos(2*math.Pi*float64(min-realFrom)/float64(realTo-realFrom))
}

// latencySpread is the log-normal sigma of request latencies: a median of
// 40ms gives a p95 of about 100ms.
const latencySpread = 0.55

type realGen struct {
	rng    *rand.Rand
	reqs   []Request
	series map[string]*versionSeries // service/env/version -> histogram series
}

// versionSeries is the cumulative state of one version's histogram series:
// its pods' start, and per status code the counts since.
type versionSeries struct {
	live  bool // it served requests in the previous minute
	start time.Time
	codes []int64 // in order of appearance; 200 first
	hists map[int64]*cumHist
}

type cumHist struct {
	count   uint64
	sum     float64
	buckets []uint64
}

// request is one served request of a minute.
type request struct {
	part    int
	failed  bool
	latency float64
}

func (g *realGen) minute(s *realService, min int) {
	at := realMinute(min)
	factor, parts := g.plan(s, min)
	lambda := s.rate * factor * math.Exp(0.1*g.rng.NormFloat64()-0.005)
	if s.daily {
		lambda *= daily(min)
	}
	n := g.poisson(lambda)
	// The minute's error ratios move together: one overdispersion factor
	// per service and minute.
	jitter := math.Exp(0.3*g.rng.NormFloat64() - 0.045)
	reqs := make([]request, n)
	for i := range reqs {
		u, k := g.rng.Float64(), 0
		for acc := parts[0].share; u >= acc && k < len(parts)-1; acc += parts[k].share {
			k++
		}
		p := &parts[k]
		r := request{part: k, failed: g.rng.Float64() < math.Min(p.errs*jitter, 0.98)}
		if r.failed {
			r.latency = p.errP50 * math.Exp(0.6*g.rng.NormFloat64())
		} else {
			r.latency = p.p50 * math.Exp(latencySpread*g.rng.NormFloat64())
		}
		reqs[i] = r
	}
	if s.logs {
		g.logs(at, s, parts, reqs)
	}
	g.histograms(at, s, parts, reqs)
}

// poisson draws a Poisson count: Knuth's method for small means, the
// normal approximation above.
func (g *realGen) poisson(lambda float64) int {
	if lambda > 60 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*g.rng.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= g.rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// logs adds the minute's OTLP logs request: one record per request, one
// ResourceLogs per version. It encodes the protobuf itself: pdata builds an
// object per record and attribute, which made the scenario take seconds to
// build (tens under -race). The tests decode it with pdata.
func (g *realGen) logs(at time.Time, s *realService, parts []part, reqs []request) {
	if len(reqs) == 0 {
		return // nothing served, nothing logged
	}
	records := make([][]byte, len(parts)) // per part: its log_records fields
	hosts := make([]string, len(parts))
	var order []int // parts in order of their first request
	attrs := func(code int64) []byte {
		var b []byte
		b = pbMessage(b, 6, pbKeyValue(nil, "http.request.method", pbStrValue("GET")))
		b = pbMessage(b, 6, pbKeyValue(nil, "http.route", pbStrValue(s.route)))
		return pbMessage(b, 6, pbKeyValue(nil, "http.response.status_code", pbIntValue(code)))
	}
	okAttrs, okBody := attrs(200), pbStrValue("request served")
	errAttrs, errBodies := make([][]byte, len(parts)), make([][]byte, len(parts))
	for k, p := range parts {
		errAttrs[k], errBodies[k] = attrs(p.code), pbStrValue(p.errBody)
	}
	var rec []byte
	for i, r := range reqs {
		k := r.part
		if hosts[k] == "" {
			hosts[k] = fmt.Sprintf("%s-%s-%d", s.name, parts[k].version, g.rng.IntN(4))
			order = append(order, k)
			records[k] = make([]byte, 0, 160*len(reqs)) // a record takes about 130 bytes
		}
		// Requests are spread over the minute in order, each at a random
		// moment of its own slot.
		ts := uint64(at.Add(time.Duration((float64(i) + g.rng.Float64()) / float64(len(reqs)) * float64(time.Minute))).UnixNano())
		sev, text, body, a := plog.SeverityNumberInfo, "INFO", okBody, okAttrs
		if r.failed {
			sev, text, body, a = plog.SeverityNumberError, "ERROR", errBodies[k], errAttrs[k]
		}
		rec = protowire.AppendTag(rec[:0], 1, protowire.Fixed64Type) // time_unix_nano
		rec = protowire.AppendFixed64(rec, ts)
		rec = protowire.AppendTag(rec, 2, protowire.VarintType) // severity_number
		rec = protowire.AppendVarint(rec, uint64(sev))
		rec = pbString(rec, 3, text)                              // severity_text
		rec = pbMessage(rec, 5, body)                             // body
		rec = append(rec, a...)                                   // attributes
		rec = protowire.AppendTag(rec, 11, protowire.Fixed64Type) // observed_time_unix_nano
		rec = protowire.AppendFixed64(rec, ts)
		records[k] = pbMessage(records[k], 2, rec) // ScopeLogs.log_records
	}
	size := 0
	for _, r := range records {
		size += len(r) + 300
	}
	out, res, rl := make([]byte, 0, size), []byte(nil), make([]byte, 0, size)
	for _, k := range order {
		res = res[:0]
		for _, kv := range [][2]string{{"service.name", s.name}, {"service.version", parts[k].version},
			{"deployment.environment.name", s.env}, {"host.name", hosts[k]}} {
			res = pbMessage(res, 1, pbKeyValue(nil, kv[0], pbStrValue(kv[1])))
		}
		rl = pbMessage(rl[:0], 1, res) // ResourceLogs.resource
		scope := pbMessage(nil, 1, pbString(nil, 1, "go.opentelemetry.io/contrib/bridges/otelslog"))
		rl = pbMessage(rl, 2, append(scope, records[k]...)) // ResourceLogs.scope_logs
		out = pbMessage(out, 1, rl)                         // ExportLogsServiceRequest.resource_logs
	}
	g.reqs = append(g.reqs, Request{Path: PathLogs, ContentType: "application/x-protobuf", Body: out, At: at, Records: len(reqs)})
}

// Protobuf encoding of the OTLP messages logs needs.

func pbString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func pbMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// pbKeyValue appends a KeyValue's fields: key, and value (an AnyValue).
func pbKeyValue(b []byte, key string, value []byte) []byte {
	return pbMessage(pbString(b, 1, key), 2, value)
}

// pbStrValue and pbIntValue are AnyValue's fields.
func pbStrValue(s string) []byte { return pbString(nil, 1, s) }

func pbIntValue(v int64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), uint64(v))
}

// histograms adds the minute's cumulative points: per live version, one
// per status code seen since its pods started.
func (g *realGen) histograms(at time.Time, s *realService, parts []part, reqs []request) {
	for k, p := range parts {
		key := s.name + "/" + s.env + "/" + p.version
		vs := g.series[key]
		if vs == nil {
			vs = &versionSeries{}
			g.series[key] = vs
		}
		if !vs.live {
			vs.restart(at, s, p, at.Equal(realMinute(realFrom)))
		}
		for _, r := range reqs {
			if r.part != k {
				continue
			}
			code := int64(200)
			if r.failed {
				code = p.code
			}
			vs.hist(code).add(r.latency)
		}
	}
	// A version that served nothing this minute has no pods left.
	for _, vs := range g.seriesOf(s) {
		vs.live = false
	}
	md := pmetric.NewMetrics()
	points := 0
	for _, p := range parts {
		vs := g.series[s.name+"/"+s.env+"/"+p.version]
		vs.live = true
		rm := md.ResourceMetrics().AppendEmpty()
		ra := rm.Resource().Attributes()
		ra.PutStr("service.name", s.name)
		ra.PutStr("service.version", p.version)
		ra.PutStr("deployment.environment.name", s.env)
		sm := rm.ScopeMetrics().AppendEmpty()
		sm.Scope().SetName("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp")
		met := sm.Metrics().AppendEmpty()
		met.SetName("http.server.request.duration")
		met.SetUnit("s")
		met.SetDescription("Duration of HTTP server requests.")
		h := met.SetEmptyHistogram()
		h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		for _, code := range vs.codes {
			c := vs.hists[code]
			dp := h.DataPoints().AppendEmpty()
			dp.SetStartTimestamp(pcommon.NewTimestampFromTime(vs.start))
			dp.SetTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Minute - time.Second)))
			dp.Attributes().PutStr("http.request.method", "GET")
			dp.Attributes().PutStr("http.route", s.route)
			dp.Attributes().PutInt("http.response.status_code", code)
			dp.SetCount(c.count)
			dp.SetSum(c.sum)
			dp.ExplicitBounds().FromRaw(LatencyBounds)
			dp.BucketCounts().FromRaw(c.buckets)
			points++
		}
	}
	body, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	g.reqs = append(g.reqs, Request{Path: PathMetrics, ContentType: "application/x-protobuf", Body: body, At: at, Records: points})
}

// seriesOf returns the histogram series of a service's versions, in a
// fixed order.
func (g *realGen) seriesOf(s *realService) []*versionSeries {
	prefix := s.name + "/" + s.env + "/"
	var keys []string
	for k := range g.series {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]*versionSeries, len(keys))
	for i, k := range keys {
		out[i] = g.series[k]
	}
	return out
}

// restart starts a version's series afresh at at (its pods started then),
// or, for the versions live when the scenario begins, at their deploy but
// no earlier than T0-8h (pods restart now and then), with the counts of the
// time since.
func (vs *versionSeries) restart(at time.Time, s *realService, p part, initial bool) {
	vs.start, vs.codes, vs.hists = at, nil, map[int64]*cumHist{}
	vs.hist(200)
	if !initial {
		return
	}
	vs.start = realMinute(max(s.since, -8*60))
	n := s.rate * 0.6 * at.Sub(vs.start).Minutes()
	vs.hist(200).fill(n*(1-p.errs), p.p50, latencySpread)
	if bad := n * p.errs; bad >= 1 {
		vs.hist(p.code).fill(bad, p.errP50, 0.6)
	}
}

func (vs *versionSeries) hist(code int64) *cumHist {
	c := vs.hists[code]
	if c == nil {
		c = &cumHist{buckets: make([]uint64, len(LatencyBounds)+1)}
		vs.hists[code] = c
		vs.codes = append(vs.codes, code)
	}
	return c
}

func (c *cumHist) add(latency float64) {
	c.count++
	c.sum += latency
	c.buckets[sort.SearchFloat64s(LatencyBounds, latency)]++ // bucket i holds (bounds[i-1], bounds[i]]
}

// fill adds n requests spread over the buckets as a log-normal latency
// with median p50 would spread them.
func (c *cumHist) fill(n, p50, sigma float64) {
	cdf := func(x float64) float64 { return 0.5 * math.Erfc(-math.Log(x/p50)/(sigma*math.Sqrt2)) }
	prev := 0.0
	for i := range c.buckets {
		next := 1.0
		if i < len(LatencyBounds) {
			next = cdf(LatencyBounds[i])
		}
		k := uint64(math.Round(n * (next - prev)))
		c.buckets[i] += k
		c.count += k
		prev = next
	}
	c.sum += float64(c.count) * p50 * math.Exp(sigma*sigma/2)
}

func (g *realGen) deploy(at time.Time, service, env, version, typ string, attrs map[string]string) {
	d := map[string]any{
		"service": service, "environment": env, "version": version,
		"timestamp": at.Format(time.RFC3339), "type": typ, "status": "succeeded",
		"author": "ci@example.com", "url": fmt.Sprintf("https://ci.example.com/%s/%s", service, version),
	}
	if typ == "deploy" {
		sha := fmt.Sprintf("%040x", g.rng.Uint64())
		d["commit"] = sha
		d["commits"] = []map[string]string{{"sha": sha, "timestamp": at.Add(-time.Duration(30+g.rng.IntN(600)) * time.Minute).Format(time.RFC3339)}}
	}
	if attrs != nil {
		d["attributes"] = attrs
	}
	body, _ := json.Marshal(d)
	g.reqs = append(g.reqs, Request{Path: PathDeploys, ContentType: "application/json", Body: body, At: at, Records: 1})
}

func (g *realGen) incident(at time.Time, id, service, env, status, title string) {
	body, _ := json.Marshal(map[string]any{
		"id": id, "service": service, "environment": env, "status": status,
		"timestamp": at.Format(time.RFC3339), "title": title, "severity": "minor",
	})
	g.reqs = append(g.reqs, Request{Path: PathIncidents, ContentType: "application/json", Body: body, At: at, Records: 1})
}
