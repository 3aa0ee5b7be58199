package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/faultline-dev/faultline/processors/alert"
	"github.com/faultline-dev/faultline/sinks/webhook/webhooktest"
)

const routingKey = "R0UT1NGKEY0123456789ABCDEFGHIJKL" // 32 characters, as PagerDuty issues them

func pdTarget(url string) Target {
	return Target{Name: "pd", URL: url, Format: "pagerduty", RoutingKey: routingKey, Timeout: Duration(5 * time.Second), MaxAge: Duration(time.Minute)}
}

func pdSample() alert.Event {
	ev := sample()
	ev.Incident.Title = "checkout 5xx"
	ev.Incident.Severity = "major"
	ev.Suspects[0].URL = "https://ci.example.com/checkout/v1.1.0"
	return ev
}

func TestPagerDutyGolden(t *testing.T) {
	c := NewClient("https://faultline.example.com")
	tgt := pdTarget(PagerDutyURL)
	resolvedAt := time.Date(2026, 11, 1, 10, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		file string
		ev   func() alert.Event
	}{
		{"pagerduty_trigger.json", pdSample},
		{"pagerduty_resolve.json", func() alert.Event {
			ev := pdSample()
			inc := *ev.Incident
			inc.ResolvedAt = &resolvedAt
			return alert.Resolved(inc, ev.Suspects, ev.Verdict)
		}},
	} {
		ev := tc.ev()
		b, err := c.Body(&tgt, &ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, errs := webhooktest.CheckPDEvent("application/json", b); len(errs) > 0 {
			t.Errorf("%s breaks the Events API v2 schema: %v", tc.file, errs)
		}
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, b, "", "  ")
		pretty.WriteByte('\n')
		path := filepath.Join("testdata", tc.file)
		if *update {
			if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -update writes it)", err)
		}
		if !bytes.Equal(pretty.Bytes(), want) {
			t.Errorf("event differs from %s:\n%s", path, pretty.Bytes())
		}
	}
}

// TestPagerDutyDelivery sends a correlated incident, its resolve and a
// retraction to a local Events API v2 receiver that checks the schema.
func TestPagerDutyDelivery(t *testing.T) {
	pd := webhooktest.NewPagerDuty(t)
	c := NewClient("https://faultline.example.com")
	tgt := pdTarget(pd.URL())
	ctx := context.Background()

	correlated := pdSample()
	correlated.Incident.Title = strings.Repeat("é", 2000) // the summary must still fit 1024 characters
	correlated.Incident.ID = "am-" + strings.Repeat("f", 300)
	resolvedAt := correlated.Incident.StartedAt.Add(20 * time.Minute)
	inc := *correlated.Incident
	inc.ResolvedAt = &resolvedAt
	resolved := alert.Resolved(inc, correlated.Suspects, correlated.Verdict)
	provisional := pdSample()
	provisional.Incident.ID = "det-2"
	provisional.Incident.Provisional = true
	retracted := alert.Retracted(*provisional.Incident, nil)
	for _, ev := range []alert.Event{correlated, resolved, provisional, retracted} {
		if !tgt.Wants(&ev) {
			t.Fatalf("%s not wanted", ev.Type)
		}
		if err := c.Deliver(ctx, &tgt, &ev); err != nil {
			t.Fatalf("%s: %v (rejections %v)", ev.Type, err, pd.Rejected())
		}
	}
	got := pd.Accepted()
	if len(got) != 4 {
		t.Fatalf("%d events accepted, rejections %v", len(got), pd.Rejected())
	}
	want := []struct{ action, key string }{
		{"trigger", got[0].DedupKey}, {"resolve", got[0].DedupKey}, {"trigger", "det-2"}, {"resolve", "det-2"},
	}
	for i, w := range want {
		if got[i].EventAction != w.action || got[i].DedupKey != w.key {
			t.Errorf("event %d: %s %s, want %s %s", i, got[i].EventAction, got[i].DedupKey, w.action, w.key)
		}
	}
	if k := got[0].DedupKey; utf8.RuneCountInString(k) > 255 || !strings.HasPrefix(k, "am-fff") {
		t.Errorf("dedup key of a long id: %q", k)
	}
	if s := got[0].Payload.Summary; utf8.RuneCountInString(s) != 1024 || !strings.HasSuffix(s, "…") {
		t.Errorf("summary of %d characters", utf8.RuneCountInString(s))
	}
	if p := got[2].Payload; !strings.HasPrefix(p.Summary, "[provisional] ") || p.Severity != "error" || p.Component != "v1.1.0" || p.Group != "production" {
		t.Errorf("provisional trigger: %+v", p)
	}
	if len(got[0].Links) != 2 || got[0].Links[0].Href != "https://faultline.example.com/incidents/"+correlated.Incident.ID {
		t.Errorf("links: %+v", got[0].Links)
	}
}

// TestPagerDutyAnswers: 429 is retried, 400 (an invalid event) is final.
func TestPagerDutyAnswers(t *testing.T) {
	pd := webhooktest.NewPagerDuty(t)
	c := NewClient("")
	ev := pdSample()
	tgt := pdTarget(pd.URL())
	pd.Throttle(1)
	err := c.Deliver(context.Background(), &tgt, &ev)
	var we *Error
	if !errors.As(err, &we) || we.Status != 429 || !we.Retryable {
		t.Fatalf("throttled: %v, want a retryable 429", err)
	}
	if err := c.Deliver(context.Background(), &tgt, &ev); err != nil {
		t.Fatalf("after the throttle: %v", err)
	}
	short := tgt
	short.RoutingKey = "too-short"
	err = c.Deliver(context.Background(), &short, &ev)
	if !errors.As(err, &we) || we.Status != 400 || we.Retryable || !strings.Contains(err.Error(), "routing_key") {
		t.Fatalf("invalid event: %v, want a final 400 naming routing_key", err)
	}
}

func TestPagerDutyTargets(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "targets.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := Config{Timeout: time.Second, MaxAge: time.Minute, TargetsFile: write(`[{"name":"pd","format":"pagerduty","routing_key":"` + routingKey + `"}]`)}
	ts, err := c.Targets()
	if err != nil || len(ts) != 1 || ts[0].URL != PagerDutyURL {
		t.Fatalf("%+v %v", ts, err)
	}
	c.TargetsFile = write(`[{"name":"pd","format":"pagerduty"}]`)
	if _, err := c.Targets(); err == nil || !strings.Contains(err.Error(), "routing_key") {
		t.Fatalf("a pagerduty target without routing_key: %v", err)
	}

	tgt := ts[0]
	correlated := pdSample()
	fromPD := pdSample()
	fromPD.Incident.Source = "pagerduty"
	rolledBack := alert.RolledBack(alert.Deploy{ID: "d1", Service: "inventory", Environment: "production", Version: "v8"}, "rolled back")
	for _, tc := range []struct {
		name string
		ev   alert.Event
		want bool
	}{
		{"correlated", correlated, true},
		{"rolled back: no incident to open", rolledBack, false},
		{"an incident PagerDuty reported: no loop back", fromPD, false},
	} {
		if got := tgt.Wants(&tc.ev); got != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
}
