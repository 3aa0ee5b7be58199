package webhook

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/processors/alert"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sample() alert.Event {
	at := time.Date(2026, 11, 1, 10, 12, 0, 0, time.UTC)
	return alert.Correlated(alert.Incident{ID: "det-1", Service: "checkout", Environment: "production", Source: "detected", StartedAt: at, Confidence: 0.82},
		[]alert.Suspect{{DeployID: "d-2", Service: "checkout", Version: "v1.1.0", DeployedAt: at.Add(-2 * time.Minute), Rank: 1, Score: 0.82, Reason: "went live 2m before"}},
		alert.Verdict{DeployID: "d-2", Version: "v1.1.0", Reason: "top suspect of incident det-1, confidence 0.82"})
}

func TestLegacySignVerify(t *testing.T) {
	body := []byte(`{"id":"x"}`)
	sig := LegacySign("secret", body)
	// The shell recipe in the README: printf '%s' '{"id":"x"}' | openssl dgst -sha256 -hmac secret
	if want := "sha256=ebf5302b9c8bc5e255e0d2135c1a75138c004e631d57c70e6081aa366c1de3b9"; sig != want {
		t.Fatalf("signature %s, openssl says %s", sig, want)
	}
	if !LegacyVerify("secret", body, sig) || LegacyVerify("other", body, sig) || LegacyVerify("secret", append(body, ' '), sig) {
		t.Fatal("Verify accepts what it must not, or rejects a valid signature")
	}
}

func TestSlackGolden(t *testing.T) {
	c := NewClient("https://faultline.example.com")
	c.now = func() time.Time { return time.Date(2026, 11, 1, 10, 15, 0, 0, time.UTC) }
	for _, tc := range []struct {
		file string
		edit func(*alert.Event)
	}{
		{"slack_correlated.json", func(*alert.Event) {}},
		{"slack_correlated_provisional.json", func(ev *alert.Event) { ev.Incident.Provisional = true }},
		{"slack_retracted.json", func(ev *alert.Event) {
			inc := *ev.Incident
			inc.Provisional = true
			*ev = alert.Retracted(inc, ev.Suspects)
		}},
	} {
		ev := sample()
		tc.edit(&ev)
		b, err := c.Body(&Target{Format: "slack"}, &ev)
		if err != nil {
			t.Fatal(err)
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
			t.Errorf("slack message differs from %s:\n%s", path, pretty.Bytes())
		}
	}
}

func TestWants(t *testing.T) {
	ev := sample()
	for _, tc := range []struct {
		name string
		t    Target
		want bool
	}{
		{"no filters", Target{}, true},
		{"environment", Target{Environments: []string{"staging"}}, false},
		{"service", Target{Services: []string{"checkout"}}, true},
		{"confidence", Target{MinConfidence: 0.9}, false},
		{"type", Target{Types: []string{alert.TypeResolved}}, false},
	} {
		if got := tc.t.Wants(&ev); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"Tue, 24 Nov 2026 12:01:30 GMT", 90 * time.Second},
		{"Tuesday, 24-Nov-26 12:00:10 GMT", 10 * time.Second}, // RFC 850, still accepted
		{"Tue, 24 Nov 2026 11:59:00 GMT", 0},                  // past
		{"soon", 0},
	} {
		if got := retryAfter(tc.h, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.h, got, tc.want)
		}
	}
}
