package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/gateway"
	"github.com/faultline-dev/faultline/processors/events"
)

// vendor reads a payload of testdata/vendors, as the tool sends it.
func vendor(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vendors", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vendorHeaders reads a .headers file of testdata/vendors.
func vendorHeaders(t *testing.T, name string) http.Header {
	h := http.Header{}
	sc := bufio.NewScanner(bytes.NewReader(vendor(t, name)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			h.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return h
}

func pdSign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// postH posts with arbitrary headers and decodes a JSON answer.
func postH(t *testing.T, g *gateway.Gateway, path string, h http.Header, body []byte) (int, map[string]any) {
	t.Helper()
	hr, _ := http.NewRequest(http.MethodPost, "http://"+g.Addr()+path, bytes.NewReader(body))
	for k, v := range h {
		hr.Header[k] = v
	}
	if hr.Header.Get("Content-Type") == "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: answer %q is not JSON", path, b)
	}
	return resp.StatusCode, m
}

// storedIncidents reads every incident event of the events stream, as
// "id status source service environment" lines.
func storedIncidents(t *testing.T, ns *natstest.Server) []string {
	t.Helper()
	ctx := context.Background()
	s, err := ns.JS.Stream(ctx, ns.Config.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var inc events.Incident
		if err := json.Unmarshal(m.Data, &inc); err != nil {
			t.Fatal(err)
		}
		if inc.Status == "" { // a deploy
			continue
		}
		out = append(out, strings.Join([]string{inc.ID, inc.Status, inc.Source, inc.Service, inc.Environment}, " "))
	}
	return out
}

// TestIncidentTools posts each tool's payloads as the tool sends them: each
// stored once however often it is delivered, refused whole when malformed,
// and an alert without labels skipped while its group is accepted.
func TestIncidentTools(t *testing.T) {
	ns := natstest.Start(t)
	c := testConfig()
	c.PagerDutySecret = "pd-signing-secret"
	c.PagerDutyServices = "PF9KMXH=api"
	c.PagerDutyEnvironment = "production"
	var logs natstest.Buffer
	g, err := gateway.New(c, ns.JS, ns.Config, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })

	skipped := metrics.GetOrCreateCounter(`faultline_gateway_alerts_skipped_total{source="alertmanager",reason="missing_service_label"}`)
	skippedBefore := skipped.Get()
	signed := func(file string) (http.Header, []byte) {
		b := vendor(t, file)
		return http.Header{"X-Pagerduty-Signature": {pdSign(c.PagerDutySecret, b)}}, b
	}
	pdTriggered, pdTriggeredBody := signed("pagerduty/incident_triggered.json")
	pdResolved, pdResolvedBody := signed("pagerduty/incident_resolved.json")
	pdAck, pdAckBody := signed("pagerduty/incident_acknowledged.json")
	malformed := []byte(`{"event":{"event_type":"incident.triggered","occurred_at":"yesterday","data":{"id":"P1","service":{"summary":"api"}}}}`)
	pdMalformed := http.Header{"X-Pagerduty-Signature": {pdSign(c.PagerDutySecret, malformed)}}
	rotated := http.Header{"X-Pagerduty-Signature": {pdSign("old-secret", pdResolvedBody) + "," + pdSign(c.PagerDutySecret, pdResolvedBody)}}
	none := http.Header{}

	for _, tc := range []struct {
		name, path string
		h          http.Header
		body       []byte
		code       int
		want       map[string]any
	}{
		{"pagerduty triggered", "/v1/pagerduty", pdTriggered, pdTriggeredBody, 202, map[string]any{"accepted": 1.0}},
		{"pagerduty triggered, delivered again", "/v1/pagerduty", pdTriggered, pdTriggeredBody, 202, map[string]any{"accepted": 1.0}},
		{"pagerduty acknowledged", "/v1/pagerduty", pdAck, pdAckBody, 202, map[string]any{"accepted": 0.0, "ignored": "incident.acknowledged: the incident stays open"}},
		{"pagerduty unsigned", "/v1/pagerduty", none, pdResolvedBody, 401, nil},
		{"pagerduty signed for another body", "/v1/pagerduty", pdTriggered, pdResolvedBody, 401, nil},
		{"pagerduty signed with another secret", "/v1/pagerduty", http.Header{"X-Pagerduty-Signature": {pdSign("other", pdResolvedBody)}}, pdResolvedBody, 401, nil},
		{"pagerduty malformed", "/v1/pagerduty", pdMalformed, malformed, 400, map[string]any{"field": "event.occurred_at"}},
		{"pagerduty resolved, secret being rotated", "/v1/pagerduty", rotated, pdResolvedBody, 202, map[string]any{"accepted": 1.0}},
		{"pagerduty resolved, delivered again", "/v1/pagerduty", pdResolved, pdResolvedBody, 202, map[string]any{"accepted": 1.0}},

		{"grafana docs example (no labels)", "/v1/grafana", none, vendor(t, "grafana/webhook_docs.json"), 202, map[string]any{"accepted": 0.0, "skipped": 2.0}},
		{"grafana firing", "/v1/grafana", none, vendor(t, "grafana/firing.json"), 202, map[string]any{"accepted": 2.0, "skipped": 0.0}},
		{"grafana firing, delivered again", "/v1/grafana", none, vendor(t, "grafana/firing.json"), 202, map[string]any{"accepted": 2.0}},
		{"grafana resolved", "/v1/grafana", none, vendor(t, "grafana/resolved.json"), 202, map[string]any{"accepted": 1.0}},
		{"grafana malformed", "/v1/grafana", none, []byte(`{"alerts":[{"status":"firing","labels":{"service":"s","environment":"p"},"startsAt":"noon"}]}`), 400, map[string]any{"field": "alerts[0].startsAt"}},

		{"alertmanager group, one alert unlabelled", "/v1/alertmanager", none, vendor(t, "alertmanager/firing.json"), 202, map[string]any{"accepted": 2.0, "skipped": 1.0}},
		{"alertmanager group, delivered again", "/v1/alertmanager", none, vendor(t, "alertmanager/firing.json"), 202, map[string]any{"accepted": 2.0, "skipped": 1.0}},
		{"alertmanager resolved", "/v1/alertmanager", none, vendor(t, "alertmanager/resolved.json"), 202, map[string]any{"accepted": 1.0}},
		{"alertmanager without fingerprint", "/v1/alertmanager", none, vendor(t, "alertmanager/no_fingerprint.json"), 202, map[string]any{"accepted": 1.0}},
		{"alertmanager malformed", "/v1/alertmanager", none, []byte(`{"version":"4","alerts":[{"status":"firing","labels":{"service":"s","environment":"p"},"startsAt":"2026-11-01T10:00:00Z"},{"status":"pending","startsAt":"2026-11-01T10:00:00Z"}]}`), 400, map[string]any{"field": "alerts[1].status"}},

		{"cdevents plain", "/v1/cdevents", none, vendor(t, "cdevents/incident_detected.json"), 202, map[string]any{"accepted": 1.0}},
		{"cdevents structured, same event", "/v1/cdevents", http.Header{"Content-Type": {"application/cloudevents+json"}}, vendor(t, "cdevents/structured_incident_detected.json"), 202, map[string]any{"accepted": 1.0}},
		{"cdevents binary, same event", "/v1/cdevents", vendorHeaders(t, "cdevents/binary_incident_detected.headers"), vendor(t, "cdevents/incident_detected.json"), 202, map[string]any{"accepted": 1.0}},
		{"cdevents binary, subject only", "/v1/cdevents", vendorHeaders(t, "cdevents/binary_incident_resolved_subject.headers"), vendor(t, "cdevents/binary_incident_resolved_subject.json"), 202, map[string]any{"accepted": 1.0}},
		{"cdevents binary, malformed", "/v1/cdevents", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Type": {"dev.cdevents.incident.detected.0.3.0"}, "Ce-Time": {"today"}},
			vendor(t, "cdevents/binary_incident_resolved_subject.json"), 400, map[string]any{"field": "ce-time"}},
	} {
		code, got := postH(t, g, tc.path, tc.h, tc.body)
		if code != tc.code {
			t.Errorf("%s: %d %v, want %d", tc.name, code, got, tc.code)
			continue
		}
		if code >= 400 && got["error"] == nil {
			t.Errorf("%s: %v has no error", tc.name, got)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v (%v)", tc.name, k, got[k], v, got)
			}
		}
	}

	want := []string{
		"pd-PGR0VU2 open pagerduty api production",
		"pd-PGR0VU2 resolved pagerduty api production",
		"grafana-c6eadffa33fcdf37-1634025063 open grafana checkout production",
		"grafana-bc97ff14869b13e3-1634025363 open grafana search production",
		"grafana-c6eadffa33fcdf37-1634025063 resolved grafana checkout production",
		"am-9c1d2e3f4a5b6c7d-1793527500 open alertmanager checkout production",
		"am-0f1e2d3c4b5a6978-1793527590 open alertmanager payments production",
		"am-9c1d2e3f4a5b6c7d-1793527500 resolved alertmanager checkout production",
		"am-c28c1fbfe8be1189-1793530800 open alertmanager checkout staging",
		"incident-123 open cdevents myapp prod1",
		"incident-123 resolved cdevents myapp prod1",
	}
	if got := storedIncidents(t, ns); !slices.Equal(got, want) {
		t.Fatalf("stored:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The unlabelled alert: counted once per stored request, logged with why.
	if n := skipped.Get() - skippedBefore; n != 2 {
		t.Errorf("skipped counter rose by %d, want 2 (the group was delivered twice)", n)
	}
	if l := logs.String(); !strings.Contains(l, `"msg":"alert skipped"`) || !strings.Contains(l, `"fingerprint":"77aa88bb99cc00dd"`) || !strings.Contains(l, `"reason":"missing_service_label"`) {
		t.Errorf("no log line for the skipped alert:\n%s", l)
	}
}

// TestGrafanaAuth: the contact point's bearer or basic credentials work on
// /v1/grafana, the gateway-wide token works there as everywhere, and the
// Grafana token opens no other endpoint.
func TestGrafanaAuth(t *testing.T) {
	ns := natstest.Start(t)
	c := testConfig()
	c.Token = "gateway-token"
	c.GrafanaToken = "grafana-token"
	g := start(t, ns, c)
	body := vendor(t, "grafana/firing.json")
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, tc := range []struct {
		path, auth string
		code       int
	}{
		{"/v1/grafana", "Bearer grafana-token", 202},
		{"/v1/grafana", basic("grafana", "grafana-token"), 202},
		{"/v1/grafana", "Bearer gateway-token", 202},
		{"/v1/grafana", basic("", "gateway-token"), 202},
		{"/v1/grafana", "", 401},
		{"/v1/grafana", "Bearer nope", 401},
		{"/v1/grafana", basic("grafana-token", "nope"), 401},
		{"/v1/grafana", "Basic !!!", 401},
		{"/v1/grafana", "Token grafana-token", 401},
		{"/v1/alertmanager", "Bearer grafana-token", 401},
		{"/v1/pagerduty", "Bearer grafana-token", 401},
	} {
		h := http.Header{}
		if tc.auth != "" {
			h.Set("Authorization", tc.auth)
		}
		if code, got := postH(t, g, tc.path, h, body); code != tc.code {
			t.Errorf("%s %q: %d %v, want %d", tc.path, tc.auth, code, got, tc.code)
		}
	}
}
