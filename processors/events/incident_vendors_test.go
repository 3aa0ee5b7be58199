package events

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fixture reads testdata/vendors/<vendor>/<file> named as "vendor/file".
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	return readFixture(t, filepath.Dir(name), filepath.Base(name))
}

// fixtureHeaders reads a .headers file: "Name: value" lines.
func fixtureHeaders(t testing.TB, name string) http.Header {
	t.Helper()
	h := http.Header{}
	sc := bufio.NewScanner(bytes.NewReader(fixture(t, name)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return h
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestAlertmanagerAndGrafanaFixtures(t *testing.T) {
	lc := LabelConfig{}
	for _, tc := range []struct {
		file    string
		parse   func([]byte, LabelConfig) (Alerts, error)
		want    []Incident
		skipped []Skipped
	}{
		{"alertmanager/firing.json", FromAlertmanager, []Incident{
			{ID: "am-9c1d2e3f4a5b6c7d-1793527500", Service: "checkout", Environment: "production", Status: StatusOpen,
				Timestamp: at("2026-11-01T10:05:00.123Z"), Title: "checkout 5xx above 1/s", Severity: "critical", Source: SourceAM},
			{ID: "am-0f1e2d3c4b5a6978-1793527590", Service: "payments", Environment: "production", Status: StatusOpen,
				Timestamp: at("2026-11-01T10:06:30Z"), Title: "payments 5xx above 1/s", Severity: "minor", Source: SourceAM},
		}, []Skipped{{Index: 2, Fingerprint: "77aa88bb99cc00dd", Alertname: "HighErrorRate", Reason: SkipNoService, Detail: `no "service" label names the service`}}},
		{"alertmanager/resolved.json", FromAlertmanager, []Incident{
			{ID: "am-9c1d2e3f4a5b6c7d-1793527500", Service: "checkout", Environment: "production", Status: StatusResolved,
				Timestamp: at("2026-11-01T10:25:00.456Z"), Title: "checkout 5xx above 1/s", Severity: "critical", Source: SourceAM},
		}, nil},
		// No fingerprint: Alertmanager's own, derived from the labels.
		{"alertmanager/no_fingerprint.json", FromAlertmanager, []Incident{
			{ID: "am-c28c1fbfe8be1189-1793530800", Service: "checkout", Environment: "staging", Status: StatusOpen,
				Timestamp: at("2026-11-01T11:00:00Z"), Title: "p99 above 2s", Severity: "major", Source: SourceAM},
		}, nil},
		{"grafana/webhook_docs.json", FromGrafana, nil, []Skipped{
			{Index: 0, Fingerprint: "c6eadffa33fcdf37", Alertname: "High memory usage", Reason: SkipNoService, Detail: `no "service" label names the service`},
			{Index: 1, Fingerprint: "bc97ff14869b13e3", Alertname: "High CPU usage", Reason: SkipNoService, Detail: `no "service" label names the service`},
		}},
		{"grafana/firing.json", FromGrafana, []Incident{
			{ID: "grafana-c6eadffa33fcdf37-1634025063", Service: "checkout", Environment: "production", Status: StatusOpen,
				Timestamp: at("2021-10-12T07:51:03.157076Z"), Title: "This alert was triggered for zone us-1", Severity: "critical", Source: SourceGrafana},
			{ID: "grafana-bc97ff14869b13e3-1634025363", Service: "search", Environment: "production", Status: StatusOpen,
				Timestamp: at("2021-10-12T07:56:03.157076Z"), Title: "This alert was triggered for zone eu-1", Source: SourceGrafana},
		}, nil},
		{"grafana/resolved.json", FromGrafana, []Incident{
			{ID: "grafana-c6eadffa33fcdf37-1634025063", Service: "checkout", Environment: "production", Status: StatusResolved,
				Timestamp: at("2021-10-12T08:21:03.157076Z"), Title: "This alert was triggered for zone us-1", Severity: "critical", Source: SourceGrafana},
		}, nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := tc.parse(fixture(t, tc.file), lc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Incidents, tc.want) {
				t.Errorf("incidents\n got %+v\nwant %+v", got.Incidents, tc.want)
			}
			if !reflect.DeepEqual(got.Skipped, tc.skipped) {
				t.Errorf("skipped\n got %+v\nwant %+v", got.Skipped, tc.skipped)
			}
		})
	}
}

func TestAlertErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, field string
	}{
		{"not JSON", `{"version":"4",`, ""},
		{"labels not strings", `{"version":"4","alerts":[{"status":"firing","labels":{"service":1}}]}`, "alerts.labels"},
		{"wrong version", `{"version":"3","alerts":[]}`, "version"},
		{"no alerts", `{"version":"4","alerts":[]}`, "alerts"},
		{"no startsAt", `{"version":"4","alerts":[{"status":"firing","labels":{"service":"s","environment":"p"},"fingerprint":"f"}]}`, "alerts[0].startsAt"},
		{"bad startsAt", `{"version":"4","alerts":[{"status":"firing","startsAt":"yesterday","fingerprint":"f"}]}`, "alerts[0].startsAt"},
		{"resolved without endsAt", `{"version":"4","alerts":[{"status":"resolved","startsAt":"2026-11-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f"}]}`, "alerts[0].endsAt"},
		{"bad status", `{"version":"4","alerts":[{"status":"pending","startsAt":"2026-11-01T10:00:00Z","fingerprint":"f"}]}`, "alerts[0].status"},
		{"fingerprint with a line break", `{"version":"4","alerts":[{"status":"firing","startsAt":"2026-11-01T10:00:00Z","fingerprint":"a\nb"}]}`, "alerts[0].fingerprint"},
	} {
		_, err := FromAlertmanager([]byte(tc.body), LabelConfig{})
		var fe *FieldError
		switch {
		case tc.field == "" && !errors.Is(err, ErrSyntax):
			t.Errorf("%s: %v, want a syntax error", tc.name, err)
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("%s: %v, want field %s", tc.name, err, tc.field)
		}
	}
}

func TestFingerprintIsAlertmanagers(t *testing.T) {
	// Alertmanager's fingerprint of the empty label set is FNV-1a's offset
	// basis; a resolve without fingerprint finds its firing.
	if got := Fingerprint(nil); got != "cbf29ce484222325" {
		t.Fatalf("empty label set: %s", got)
	}
	a := Fingerprint(map[string]string{"b": "2", "a": "1"})
	if b := Fingerprint(map[string]string{"a": "1", "b": "2"}); a != b || len(a) != 16 {
		t.Fatalf("%s %s", a, b)
	}
	if Fingerprint(map[string]string{"a": "1b"}) == Fingerprint(map[string]string{"a1": "b"}) {
		t.Fatal("separator missing")
	}
}

func TestPagerDutyFixtures(t *testing.T) {
	mapped := PagerDutyConfig{Services: map[string]string{"PF9KMXH": "api"}, Environment: "production"}
	plain := PagerDutyConfig{Environment: "staging"}
	for _, tc := range []struct {
		file    string
		c       PagerDutyConfig
		want    *Incident
		ignored string
	}{
		{"pagerduty/incident_triggered.json", mapped, &Incident{ID: "pd-PGR0VU2", Service: "api", Environment: "production", Status: StatusOpen,
			Timestamp: at("2020-04-09T15:16:27Z"), Title: "A little bump in the road", Severity: "critical", Source: SourcePD}, ""},
		{"pagerduty/incident_triggered.json", plain, &Incident{ID: "pd-PGR0VU2", Service: "API Service", Environment: "staging", Status: StatusOpen,
			Timestamp: at("2020-04-09T15:16:27Z"), Title: "A little bump in the road", Severity: "critical", Source: SourcePD}, ""},
		{"pagerduty/incident_resolved.json", mapped, &Incident{ID: "pd-PGR0VU2", Service: "api", Environment: "production", Status: StatusResolved,
			Timestamp: at("2020-04-09T15:58:41.207Z"), Title: "A little bump in the road", Severity: "critical", Source: SourcePD}, ""},
		{"pagerduty/incident_acknowledged.json", mapped, nil, "incident.acknowledged: the incident stays open"},
		{"pagerduty/incident_priority_updated.json", mapped, nil, "incident.priority_updated: not an incident opening or resolving"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, ignored, err := FromPagerDuty(fixture(t, tc.file), tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) || ignored != tc.ignored {
				t.Errorf("got %+v %q\nwant %+v %q", got, ignored, tc.want, tc.ignored)
			}
		})
	}
	// Mapping by name works too; severity falls back on urgency.
	body := `{"event":{"event_type":"incident.triggered","occurred_at":"2026-11-01T10:00:00Z","data":{"id":"Q1","urgency":"low","service":{"id":"PX","summary":"Payments API"}}}}`
	inc, _, err := FromPagerDuty([]byte(body), PagerDutyConfig{Services: map[string]string{"Payments API": "payments"}})
	if err != nil || inc.Service != "payments" || inc.Environment != "production" || inc.Severity != "minor" || !inc.Timestamp.Equal(at("2026-11-01T10:00:00Z")) {
		t.Fatalf("%+v %v", inc, err)
	}
}

func TestPagerDutyErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, field string }{
		{"no event", `{}`, "event"},
		{"event not an object", `{"event":"x"}`, "event"},
		{"no type", `{"event":{}}`, "event.event_type"},
		{"no data", `{"event":{"event_type":"incident.triggered","occurred_at":"2026-11-01T10:00:00Z"}}`, "event.data"},
		{"data id not a string", `{"event":{"event_type":"incident.triggered","occurred_at":"2026-11-01T10:00:00Z","data":{"id":7}}}`, "event.data.id"},
		{"no id", `{"event":{"event_type":"incident.resolved","occurred_at":"2026-11-01T10:00:00Z","data":{"service":{"summary":"s"}}}}`, "event.data.id"},
		{"no service", `{"event":{"event_type":"incident.triggered","occurred_at":"2026-11-01T10:00:00Z","data":{"id":"P1"}}}`, "event.data.service.summary"},
		{"bad time", `{"event":{"event_type":"incident.resolved","occurred_at":"soon","data":{"id":"P1","service":{"summary":"s"}}}}`, "event.occurred_at"},
		{"bad created_at", `{"event":{"event_type":"incident.triggered","occurred_at":"2026-11-01T10:00:00Z","data":{"id":"P1","created_at":"x","service":{"summary":"s"}}}}`, "event.data.created_at"},
	} {
		_, _, err := FromPagerDuty([]byte(tc.body), PagerDutyConfig{})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: %v, want field %s", tc.name, err, tc.field)
		}
	}
}

func TestVerifyPagerDuty(t *testing.T) {
	body := fixture(t, "pagerduty/incident_triggered.json")
	// printf '%s' "$BODY" | openssl dgst -sha256 -hmac secret, computed here
	// the long way round to keep the test independent of the code.
	good := "v1=" + hmacHex("s3cret", body)
	for _, tc := range []struct {
		header string
		ok     bool
	}{
		{good, true},
		{"v1=00," + good, true}, // rotation: another secret's signature first
		{good + ",v1=abcd", true},
		{" " + good + " ", true},
		{"v0=" + good[3:], false},
		{"v1=" + hmacHex("other", body), false},
		{"v1=zz", false},
		{"", false},
	} {
		if got := VerifyPagerDuty("s3cret", body, tc.header); got != tc.ok {
			t.Errorf("%q: %v", tc.header, got)
		}
	}
	if VerifyPagerDuty("s3cret", append(body, ' '), good) {
		t.Error("a changed body verified")
	}
}

func TestParseServiceMap(t *testing.T) {
	m, err := ParseServiceMap(" PF9KMXH=checkout, API Service = api ,")
	if err != nil || !reflect.DeepEqual(m, map[string]string{"PF9KMXH": "checkout", "API Service": "api"}) {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"x", "=y", "x="} {
		if _, err := ParseServiceMap(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCDEventFixtures(t *testing.T) {
	detected := &Incident{ID: "incident-123", Service: "myapp", Environment: "prod1", Status: StatusOpen,
		Timestamp: at("2022-11-11T13:52:20.079Z"), Title: "Response time above threshold of 100ms", Source: SourceCDEvents}
	resolved := &Incident{ID: "incident-123", Service: "myapp", Environment: "prod1", Status: StatusResolved,
		Timestamp: at("2022-11-11T13:52:20.079Z"), Title: "Response time restored below 100ms", Source: SourceCDEvents}
	binaryResolved := *resolved
	binaryResolved.Timestamp = at("2022-11-11T14:30:05.5Z")
	deployed := &Deploy{Service: "myapp", Environment: "test123", Version: "sha256:0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427",
		Timestamp: at("2023-03-20T14:27:05.315384Z"), Type: TypeDeploy, Status: StatusSucceeded, URL: "/event/source/123",
		Attributes: map[string]string{"cdevents.id": "271069a8-fc18-44f1-b38f-9d70a1695819", "cdevents.type": "dev.cdevents.service.deployed.0.2.0"}}
	deployed.ID = DeployID(*deployed)
	for _, tc := range []struct {
		name, body, headers string
		deploy              *Deploy
		inc                 *Incident
	}{
		{"plain incident.detected", "cdevents/incident_detected.json", "", nil, detected},
		{"plain incident.resolved", "cdevents/incident_resolved.json", "", nil, resolved},
		{"plain service.deployed", "cdevents/service_deployed.json", "", deployed, nil},
		{"structured", "cdevents/structured_incident_detected.json", "", nil, detected},
		{"binary, whole CDEvent", "cdevents/incident_detected.json", "cdevents/binary_incident_detected.headers", nil, detected},
		{"binary, subject only", "cdevents/binary_incident_resolved_subject.json", "cdevents/binary_incident_resolved_subject.headers", nil, &binaryResolved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.headers != "" {
				h = fixtureHeaders(t, tc.headers)
			}
			d, inc, err := FromCDEventHTTP(h, fixture(t, tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d, tc.deploy) || !reflect.DeepEqual(inc, tc.inc) {
				t.Errorf("got %+v %+v\nwant %+v %+v", d, inc, tc.deploy, tc.inc)
			}
		})
	}
}

func TestCloudEventErrors(t *testing.T) {
	subject := `{"subject":{"id":"i","content":{"environment":{"id":"p"},"service":{"id":"s"}}}}`
	for _, tc := range []struct {
		name, body, field string
		h                 http.Header
	}{
		{"binary, wrong spec version", subject, "ce-specversion", http.Header{"Ce-Specversion": {"0.3"}, "Ce-Type": {"dev.cdevents.incident.detected.0.3.0"}}},
		{"binary, no type anywhere", subject, "ce-type", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Time": {"2026-11-01T10:00:00Z"}}},
		{"binary, bad time", subject, "ce-time", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Type": {"dev.cdevents.incident.detected.0.3.0"}, "Ce-Time": {"now"}}},
		{"binary, no time anywhere", subject, "context.timestamp", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Type": {"dev.cdevents.incident.detected.0.3.0"}}},
		{"structured, no data", `{"specversion":"1.0","type":"x","data_base64":"%%%"}`, "data_base64", http.Header{}},
		{"structured, wrong version", `{"specversion":"0.3","data":{}}`, "specversion", http.Header{}},
		{"structured, data not an object", `{"specversion":"1.0","data":[1]}`, "", http.Header{}},
	} {
		_, _, err := FromCDEventHTTP(tc.h, []byte(tc.body))
		var fe *FieldError
		switch {
		case tc.field == "" && !errors.Is(err, ErrSyntax):
			t.Errorf("%s: %v, want a syntax error", tc.name, err)
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("%s: %v, want field %s", tc.name, err, tc.field)
		}
	}
}

// checkAlerts holds what the gateway relies on: every alert is either an
// incident or skipped, and incidents are complete.
func checkAlerts(t *testing.T, as Alerts) {
	t.Helper()
	for _, i := range as.Incidents {
		if i.Service == "" || i.Environment == "" || i.ID == "" || !printable(i.ID) || (i.Status != StatusOpen && i.Status != StatusResolved) || i.Timestamp.IsZero() {
			t.Fatalf("accepted %+v", i)
		}
	}
	for _, s := range as.Skipped {
		if s.Reason != SkipNoService && s.Reason != SkipNoEnvironment {
			t.Fatalf("skipped for %q", s.Reason)
		}
	}
}

func FuzzGrafana(f *testing.F) {
	f.Add(fixture(f, "grafana/firing.json"))
	f.Add(fixture(f, "grafana/webhook_docs.json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if as, err := FromGrafana(b, LabelConfig{}); err == nil {
			checkAlerts(t, as)
		}
	})
}

func FuzzPagerDuty(f *testing.F) {
	f.Add(fixture(f, "pagerduty/incident_triggered.json"))
	f.Add(fixture(f, "pagerduty/incident_resolved.json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		inc, ignored, err := FromPagerDuty(b, PagerDutyConfig{Environment: "production"})
		switch {
		case err != nil:
			if inc != nil || ignored != "" {
				t.Fatalf("an error and a result: %+v %q", inc, ignored)
			}
		case (inc == nil) == (ignored == ""):
			t.Fatalf("want exactly one of an incident and a reason: %+v %q", inc, ignored)
		case inc != nil && (!strings.HasPrefix(inc.ID, "pd-") || !printable(inc.ID) || inc.Service == "" || inc.Environment == "" || inc.Timestamp.IsZero()):
			t.Fatalf("accepted %+v", inc)
		}
		VerifyPagerDuty("k", b, string(b))
	})
}

func FuzzCloudEvents(f *testing.F) {
	f.Add(fixture(f, "cdevents/structured_incident_detected.json"), "")
	f.Add(fixture(f, "cdevents/binary_incident_resolved_subject.json"), "dev.cdevents.incident.resolved.0.3.0")
	f.Fuzz(func(t *testing.T, b []byte, ceType string) {
		h := http.Header{}
		if ceType != "" {
			h.Set("ce-specversion", "1.0")
			h.Set("ce-type", ceType)
			h.Set("ce-time", "2026-11-01T10:00:00Z")
		}
		d, inc, err := FromCDEventHTTP(h, b)
		if err == nil && (d == nil) == (inc == nil) {
			t.Fatalf("want exactly one event: %+v %+v", d, inc)
		}
		if inc != nil && (inc.ID == "" || !printable(inc.ID) || inc.Service == "" || inc.Environment == "") {
			t.Fatalf("accepted %+v", inc)
		}
	})
}

func hmacHex(key string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}
