package ui_test

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/pipeline/ui"
	"github.com/faultline-dev/faultline/processors/correlate"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

func at(hm string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", "2026-11-01 "+hm)
	if err != nil {
		panic(err)
	}
	return t
}

func ptr[T any](v T) *T { return &v }

// uiServer is a UI over a fresh database holding one incident pinned on a
// bad deploy and resolved by a rollback, written by the correlator's own
// writer, with the service's logs by version.
func uiServer(t *testing.T, token string) http.Handler {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := chtest.Database(t)
	conn := chtest.Conn(t, cfg)
	ew, err := clickhouse.NewEventsWriter(conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ds := []correlate.DeployRow{
		{DeployID: "dep-good", Service: "checkout", Environment: "production", Version: "v1.0.0", Type: "deploy", Status: "succeeded", DeployedAt: at("09:00"),
			CommitSha: "aaa", FirstCommitAt: ptr(at("08:00")), LeadTimeSeconds: ptr(3600.0)},
		{DeployID: "dep-bad", Service: "checkout", Environment: "production", Version: "v1.1.0", Type: "deploy", Status: "succeeded", DeployedAt: at("10:10"),
			CommitSha: "bbb", ChangeFailure: true, FailureReason: "top suspect of incident inc-1, confidence 0.99", RolledBackBy: "dep-rb"},
		{DeployID: "dep-rb", Service: "checkout", Environment: "production", Version: "v1.0.0", Type: "rollback", Status: "succeeded", DeployedAt: at("10:30")},
	}
	is := []correlate.IncidentRow{{IncidentID: "inc-1", Service: "checkout", Environment: "production", Title: "checkout errors", Severity: "major",
		Source: "detected", Signal: "errors", DetectionReason: "20% errors vs 0.5% baseline, p < 1e-30", StartedAt: at("10:12"), ResolvedAt: ptr(at("10:30")),
		TimeToRestoreSeconds: ptr(1080.0), SuspectDeployID: "dep-bad", SuspectVersion: "v1.1.0", Confidence: 0.99, RestoredByDeployID: "dep-rb"}}
	ss := []correlate.SuspectRow{{IncidentID: "inc-1", DeployID: "dep-bad", Rank: 1, Score: 0.99, Confidence: 0.99,
		Reason: "went live 2m before; the errors come from v1.1.0", Service: "checkout", Environment: "production", Version: "v1.1.0"}}
	if err := ew.Write(ctx, ds, is, ss); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, `INSERT INTO otel_logs (Timestamp, ServiceName, SeverityNumber, ResourceAttributes)
		SELECT toDateTime64('2026-11-01 09:40:00', 9, 'UTC') + toIntervalSecond(number * 6), 'checkout',
			if(number >= 320 AND number < 500 AND number % 5 = 0, 17, 9),
			map('service.version', if(number >= 300 AND number < 500, 'v1.1.0', 'v1.0.0'), 'deployment.environment.name', 'production')
		FROM numbers(700)`); err != nil {
		t.Fatal(err)
	}
	s, err := ui.New(ui.Config{Token: token}, conn, cfg.Database, slog.New(slog.NewTextHandler(testLog{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s.Handler()
}

func get(t *testing.T, h http.Handler, path string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String(), w.Header()
}

// TestUIPages renders every page against real ClickHouse rows and checks
// what each shows, the 404s for unknown ids and paths, and the 400s for
// query parameters a page cannot take.
func TestUIPages(t *testing.T) {
	h := uiServer(t, "")
	for _, tc := range []struct {
		path string
		code int
		want []string
	}{
		{"/", 200, []string{"checkout", "production", "errors", "2026-11-01 10:12:00", "18m", `href="/deploys/dep-bad"`, "0.99", `href="/incidents/inc-1"`, "FROM test_"}},
		{"/?environment=production&service=checkout", 200, []string{`href="/incidents/inc-1"`, `<option value="production" selected>`}},
		{"/?environment=staging", 200, []string{"No incidents match the filter."}},
		{"/incidents/inc-1", 200, []string{"checkout in production", "20% errors vs 0.5% baseline", `id="chart-logs"`, "first bad minute", "rollback to v1.0.0",
			"restored service", "resolved after 18m", "went live 2m before", "#1", "countIf(SeverityNumber &gt;= 17)", "ServiceName = &#39;checkout&#39;", `"version":"v1.1.0"`}},
		{"/deploys/dep-bad", 200, []string{"checkout v1.1.0 in production", "change failure", "top suspect of incident inc-1", `href="/deploys/dep-rb"`, `href="/deploys/dep-good"`, `href="/incidents/inc-1"`}},
		{"/deploys/dep-good", 200, []string{"no change failure", "1h 0m", "nothing earlier is recorded"}},
		{"/deploys/dep-rb", 200, []string{"restored service"}},
		{"/dora?since=2026-10-01", 200, []string{"checkout", "elite", `id="chart-deploys"`, "toMonday(Day)", "33.3%"}},
		{"/dora?since=12w&environment=production", 200, []string{"DORA keys"}},
		{"/assets/uPlot.iife.min.js", 200, []string{"uPlot"}},
		{"/assets/LICENSE.uPlot", 200, []string{"MIT", "Leon Sorokin"}},
		{"/incidents/nope", 404, []string{`no incident &#34;nope&#34;`}},
		{"/incidents/x%27%20OR%201=1", 404, []string{"no incident"}},
		{"/deploys/nope", 404, []string{`no deploy &#34;nope&#34;`}},
		{"/nothing/here", 404, []string{"nothing at /nothing/here"}},
		{"/?env=production", 400, []string{`unknown query parameter &#34;env&#34;`}},
		{"/?service=a&service=b", 400, []string{"given 2 times"}},
		{"/?service=%00x", 400, []string{"not a name"}},
		{"/?service=" + strings.Repeat("x", 201), 400, []string{"longer than 200 bytes"}},
		{"/dora?since=forever", 400, []string{"since &#34;forever&#34;: want a number of days or weeks"}},
		{"/dora?since=99999d", 400, []string{"want a number of days"}},
		{"/incidents/inc-1?x=1", 400, []string{"unknown query parameter &#34;x&#34;: this page takes no query parameters"}},
		{"/incidents/", 404, []string{"nothing at /incidents/"}},
		{"/incidents/a%2Fb", 404, []string{`no incident &#34;a/b&#34;`}},
		{"/deploys/%E2%9C%93", 404, []string{"no deploy"}},
		{"/dora?since=0d&service=checkout", 200, []string{"No deploys or incidents since"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, body, hdr := get(t, h, tc.path)
			if code != tc.code {
				t.Fatalf("%s: %d, want %d\n%s", tc.path, code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s: no %q in\n%s", tc.path, w, body)
				}
			}
			if !strings.HasPrefix(tc.path, "/assets/") && !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
				t.Errorf("%s: no content security policy", tc.path)
			}
		})
	}
}

// TestUIToken: with a token set, every path needs it, as a bearer token or
// a basic-auth password.
func TestUIToken(t *testing.T) {
	h := uiServer(t, "s3cret")
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, tc := range []struct {
		name, path, auth string
		code             int
	}{
		{"none", "/", "", 401},
		{"none asset", "/assets/app.js", "", 401},
		{"wrong bearer", "/", "Bearer nope", 401},
		{"prefix of token", "/", "Bearer s3cre", 401},
		{"bearer", "/", "Bearer s3cret", 200},
		{"bearer lower case", "/incidents/inc-1", "bearer s3cret", 200},
		{"basic", "/dora", basic("anyone", "s3cret"), 200},
		{"basic wrong", "/", basic("s3cret", "x"), 401},
		{"basic garbage", "/", "Basic !!!", 401},
		{"empty bearer", "/", "Bearer ", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.auth != "" {
				hdr = []string{"Authorization", tc.auth}
			}
			code, _, h := get(t, h, tc.path, hdr...)
			if code != tc.code {
				t.Fatalf("%d, want %d", code, tc.code)
			}
			if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("401 without a basic-auth challenge: %q", h.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestBaseURL(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"[::1]:9090", "http://[::1]:9090"},
		{"0.0.0.0:8080", "http://" + host + ":8080"},
		{"[::]:8080", "http://" + host + ":8080"},
	} {
		if got := ui.BaseURL(tc.addr); got != tc.want {
			t.Errorf("BaseURL(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		listen string
		ok     bool
	}{{"127.0.0.1:8080", true}, {"", true}, {":8080", true}, {"8080", false}} {
		c := ui.Config{Listen: tc.listen}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tc.listen, err, tc.ok)
		}
	}
}

// testLog sends the UI's log to the test's.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
