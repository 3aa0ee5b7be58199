// Package webhook delivers alert events to HTTP endpoints: the event JSON,
// a Slack message or a PagerDuty Events API v2 event, signed per the
// Standard Webhooks specification so receivers can verify it came from
// faultline, refuse replays and drop repeats by id.
//
// Every request: POST, Content-Type application/json, and
//
//	webhook-id:        <event id>
//	webhook-timestamp: <unix seconds>
//	webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<raw body>"> (with a secret)
//
// and, deprecated, kept for one release for receivers that check them:
//
//	X-Faultline-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the target's secret as is>
//	X-Faultline-Timestamp: <unix seconds>
//	X-Faultline-Delivery:  <event id>
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/processors/alert"
)

// Config is the webhook part of faultline's settings (FAULTLINE_WEBHOOK_*).
type Config struct {
	URL         string        `envconfig:"URL" desc:"one JSON target: where alerts are POSTed"`
	Secret      string        `envconfig:"SECRET" desc:"HMAC secret of FAULTLINE_WEBHOOK_URL"`
	TargetsFile string        `envconfig:"TARGETS_FILE" desc:"JSON file of targets (name, url, secret, format json|slack|pagerduty, routing_key, environments, services, min_confidence, types, timeout, max_age)"`
	BaseURL     string        `envconfig:"BASE_URL" desc:"base URL of the links put in alerts, which open BASE/incidents/ID; default: the web UI's address (FAULTLINE_UI_LISTEN)"`
	Timeout     time.Duration `envconfig:"TIMEOUT" default:"10s" desc:"timeout of one delivery attempt"`
	MaxAge      time.Duration `envconfig:"MAX_AGE" default:"1h" desc:"how long a failing delivery is retried before it is dead-lettered"`
}

// Target is one receiver.
type Target struct {
	Name          string   `json:"name"`
	URL           string   `json:"url"`
	Secret        string   `json:"secret"`
	Format        string   `json:"format"`                // json | slack | pagerduty
	RoutingKey    string   `json:"routing_key,omitempty"` // pagerduty: the Events API v2 integration key
	Environments  []string `json:"environments,omitempty"`
	Services      []string `json:"services,omitempty"`
	Types         []string `json:"types,omitempty"`
	MinConfidence float64  `json:"min_confidence,omitempty"`
	Timeout       Duration `json:"timeout,omitempty"`
	MaxAge        Duration `json:"max_age,omitempty"`
}

// Duration reads "10s" in JSON.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Targets returns the configured targets, validated: the simple one from
// FAULTLINE_WEBHOOK_URL and those of the targets file.
func (c *Config) Targets() ([]Target, error) {
	var ts []Target
	if c.URL != "" {
		ts = append(ts, Target{Name: "default", URL: c.URL, Secret: c.Secret, Format: "json"})
	}
	if c.TargetsFile != "" {
		b, err := os.ReadFile(c.TargetsFile)
		if err != nil {
			return nil, fmt.Errorf("FAULTLINE_WEBHOOK_TARGETS_FILE: %w", err)
		}
		var file []Target
		if err := json.Unmarshal(b, &file); err != nil {
			return nil, fmt.Errorf("FAULTLINE_WEBHOOK_TARGETS_FILE %s: %w", c.TargetsFile, err)
		}
		ts = append(ts, file...)
	}
	seen := map[string]bool{}
	for i := range ts {
		t := &ts[i]
		if t.Format == "" {
			t.Format = "json"
		}
		if t.Timeout == 0 {
			t.Timeout = Duration(c.Timeout)
		}
		if t.MaxAge == 0 {
			t.MaxAge = Duration(c.MaxAge)
		}
		if t.URL == "" && t.Format == "pagerduty" {
			t.URL = PagerDutyURL
		}
		u, err := url.Parse(t.URL)
		switch {
		case t.Name == "" || strings.ContainsAny(t.Name, " .*>"):
			return nil, fmt.Errorf("webhook target %d: name %q must be set and contain no spaces, dots or wildcards", i, t.Name)
		case seen[t.Name]:
			return nil, fmt.Errorf("webhook target %q: name used twice", t.Name)
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return nil, fmt.Errorf("webhook target %q: url %q is not an http(s) URL", t.Name, t.URL)
		case t.Secret == "" && t.Format == "json":
			return nil, fmt.Errorf("webhook target %q: a secret is required to sign deliveries (FAULTLINE_WEBHOOK_SECRET)", t.Name)
		case t.Format != "json" && t.Format != "slack" && t.Format != "pagerduty":
			return nil, fmt.Errorf("webhook target %q: format %q is not json, slack or pagerduty", t.Name, t.Format)
		case t.Format == "pagerduty" && strings.TrimSpace(t.RoutingKey) == "":
			return nil, fmt.Errorf("webhook target %q: a pagerduty target needs routing_key (the integration key of an Events API v2 integration)", t.Name)
		case t.MinConfidence < 0 || t.MinConfidence > 1:
			return nil, fmt.Errorf("webhook target %q: min_confidence must be in [0, 1]", t.Name)
		}
		if _, err := signingKey(t.Secret); err != nil {
			return nil, fmt.Errorf("webhook target %q: %w", t.Name, err)
		}
		seen[t.Name] = true
	}
	return ts, nil
}

// Validate checks the settings.
func (c *Config) Validate() error {
	if c.URL == "" && c.Secret != "" {
		return errors.New("FAULTLINE_WEBHOOK_SECRET is set without FAULTLINE_WEBHOOK_URL")
	}
	if c.Timeout <= 0 || c.MaxAge <= 0 {
		return errors.New("FAULTLINE_WEBHOOK_TIMEOUT and FAULTLINE_WEBHOOK_MAX_AGE must be positive")
	}
	_, err := c.Targets()
	return err
}

// Wants reports whether the target's filters let an event through.
func (t *Target) Wants(ev *alert.Event) bool {
	if len(t.Types) > 0 && !slices.Contains(t.Types, ev.Type) {
		return false
	}
	if t.Format == "pagerduty" && !pagerDutyWants(ev) {
		return false
	}
	svc, env, conf := "", "", 1.0
	if ev.Incident != nil {
		svc, env, conf = ev.Incident.Service, ev.Incident.Environment, ev.Incident.Confidence
	} else if ev.Deploy != nil {
		svc, env = ev.Deploy.Service, ev.Deploy.Environment
	}
	if len(t.Environments) > 0 && !slices.Contains(t.Environments, env) {
		return false
	}
	if len(t.Services) > 0 && !slices.Contains(t.Services, svc) {
		return false
	}
	return ev.Type != alert.TypeCorrelated || conf >= t.MinConfidence
}

// LegacySign returns the X-Faultline-Signature value of body.
//
// Deprecated: receivers should verify webhook-signature (Verify); the
// X-Faultline-* headers go away in the next release.
func LegacySign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// LegacyVerify checks an X-Faultline-Signature.
//
// Deprecated: use Verify, which also refuses replays.
func LegacyVerify(secret string, body []byte, signature string) bool {
	return hmac.Equal([]byte(LegacySign(secret, body)), []byte(signature))
}

// Error is a failed delivery.
type Error struct {
	Status     int           // 0 for network errors
	Retryable  bool          // network errors, 5xx, 429
	RetryAfter time.Duration // from a Retry-After header
	Err        error
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("HTTP %d: %v", e.Status, e.Err)
	}
	return e.Err.Error()
}

// Client delivers events.
type Client struct {
	HTTP    *http.Client
	BaseURL string
	now     func() time.Time
}

// NewClient returns a client; each request is bounded by its target's
// timeout.
func NewClient(baseURL string) *Client {
	return &Client{HTTP: &http.Client{}, BaseURL: baseURL, now: time.Now}
}

// Body renders the request body for a target's format.
func (c *Client) Body(t *Target, ev *alert.Event) ([]byte, error) {
	e := *ev
	if c.BaseURL != "" && e.Incident != nil {
		e.Links = append(e.Links, Link(c.BaseURL, "incident", e.Incident.ID))
	}
	switch t.Format {
	case "slack":
		return json.Marshal(slack(&e, c.now()))
	case "pagerduty":
		pd, err := pagerDuty(t, &e, c.BaseURL)
		if err != nil {
			return nil, err
		}
		return json.Marshal(pd)
	}
	return json.Marshal(&e)
}

// Link builds a link under base.
func Link(base, name, id string) alert.Link {
	return alert.Link{Name: name, URL: strings.TrimRight(base, "/") + "/" + name + "s/" + url.PathEscape(id)}
}

// Deliver POSTs one event to one target.
func (c *Client) Deliver(ctx context.Context, t *Target, ev *alert.Event) error {
	body, err := c.Body(t, ev)
	if err != nil {
		return &Error{Err: fmt.Errorf("render: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(t.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return &Error{Err: err}
	}
	now := c.now()
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "faultline-webhook/1")
	req.Header.Set(HeaderID, ev.ID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set("X-Faultline-Timestamp", ts)
	req.Header.Set("X-Faultline-Delivery", ev.ID)
	if t.Secret != "" {
		sig, err := Sign(t.Secret, ev.ID, now, body)
		if err != nil {
			return &Error{Err: fmt.Errorf("sign: %w", err)}
		}
		req.Header.Set(HeaderSignature, sig)
		req.Header.Set("X-Faultline-Signature", LegacySign(t.Secret, body))
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return &Error{Retryable: true, Err: err}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	e := &Error{Status: resp.StatusCode, Err: fmt.Errorf("%s", bytes.TrimSpace(msg))}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		e.Retryable = true
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), c.now())
	}
	return e
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP-date
// (RFC 9110 10.2.3); zero when absent, unreadable or already past.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// slack renders an incoming-webhook message with Block Kit.
func slack(ev *alert.Event, now time.Time) map[string]any {
	var title, text string
	switch ev.Type {
	case alert.TypeCorrelated:
		i := ev.Incident
		title = fmt.Sprintf(":rotating_light: %s in %s: pinned on %s", i.Service, i.Environment, ev.Verdict.Version)
		text = fmt.Sprintf("*Incident* %s (%s), started %s\n*Suspect* %s %s, confidence %.2f\n*Why* %s",
			i.ID, i.Source, i.StartedAt.Format(time.RFC3339), i.Service, ev.Verdict.Version, i.Confidence, ev.Verdict.Reason)
		if len(ev.Suspects) > 0 {
			text += fmt.Sprintf("\n*Deployed* %s before the incident", i.StartedAt.Sub(ev.Suspects[0].DeployedAt).Round(time.Second))
		}
		if i.Provisional {
			text += "\n_Provisional: judged on live data before late records could arrive; a withdrawal follows if they change the verdict._"
		}
	case alert.TypeResolved:
		i := ev.Incident
		title = fmt.Sprintf(":white_check_mark: %s in %s resolved", i.Service, i.Environment)
		text = fmt.Sprintf("*Incident* %s", i.ID)
		if i.TimeToRestoreSeconds != nil {
			text += fmt.Sprintf(", restored in %s", (time.Duration(*i.TimeToRestoreSeconds) * time.Second).String())
		}
		if i.RestoredByDeployID != "" {
			text += fmt.Sprintf(" by deploy %s", i.RestoredByDeployID)
		}
	case alert.TypeRetracted:
		i := ev.Incident
		title = fmt.Sprintf(":information_source: %s in %s: incident withdrawn", i.Service, i.Environment)
		text = fmt.Sprintf("*Incident* %s, reported provisionally for %s, did not hold once late data arrived", i.ID, i.StartedAt.Format(time.RFC3339))
	case alert.TypeRolledBack:
		d := ev.Deploy
		title = fmt.Sprintf(":leftwards_arrow_with_hook: %s %s rolled back in %s", d.Service, d.Version, d.Environment)
		text = ev.Verdict.Reason
	}
	blocks := []any{
		map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": title}},
		map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": text}},
	}
	for _, l := range ev.Links {
		blocks = append(blocks, map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": fmt.Sprintf("<%s|%s>", l.URL, l.Name)}})
	}
	return map[string]any{"text": title, "blocks": blocks}
}
