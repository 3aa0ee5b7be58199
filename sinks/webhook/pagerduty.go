package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/faultline-dev/faultline/processors/alert"
	"github.com/faultline-dev/faultline/processors/events"
)

// PagerDutyURL is the Events API v2 endpoint a pagerduty target posts to
// when its url is empty.
const PagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// Events API v2 limits.
const (
	pdMaxSummary  = 1024 // characters
	pdMaxDedupKey = 255  // characters
)

// pdEvent is a PagerDuty Events API v2 alert event.
type pdEvent struct {
	RoutingKey  string     `json:"routing_key"`
	EventAction string     `json:"event_action"` // trigger | resolve
	DedupKey    string     `json:"dedup_key"`
	Payload     *pdPayload `json:"payload,omitempty"` // triggers only
	Links       []pdLink   `json:"links,omitempty"`
	Client      string     `json:"client,omitempty"`
	ClientURL   string     `json:"client_url,omitempty"`
}

type pdPayload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"` // critical | error | warning | info
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

type pdLink struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// pagerDutyWants: PagerDuty alerts are about incidents, so deploy.rolled_back
// (no incident to open or resolve) is not sent. Nor is anything about an
// incident that came from PagerDuty itself: triggering an alert for it
// would open a new PagerDuty incident, whose webhook would come back as
// another faultline incident, and so on.
func pagerDutyWants(ev *alert.Event) bool {
	switch ev.Type {
	case alert.TypeCorrelated, alert.TypeResolved, alert.TypeRetracted:
		return ev.Incident != nil && ev.Incident.Source != events.SourcePD
	}
	return false
}

// pagerDuty renders an alert as an Events API v2 event: incident.correlated
// triggers, incident.resolved and incident.retracted resolve, all with the
// incident id as dedup key so they act on one PagerDuty alert.
func pagerDuty(t *Target, ev *alert.Event, baseURL string) (*pdEvent, error) {
	i := ev.Incident
	if i == nil {
		return nil, fmt.Errorf("%s has no incident", ev.Type)
	}
	e := &pdEvent{RoutingKey: t.RoutingKey, DedupKey: dedupKey(i.ID), Client: "faultline", ClientURL: baseURL}
	switch ev.Type {
	case alert.TypeResolved, alert.TypeRetracted:
		e.EventAction = "resolve"
		return e, nil
	case alert.TypeCorrelated:
		e.EventAction = "trigger"
	default:
		return nil, fmt.Errorf("%s is not sent to PagerDuty", ev.Type)
	}
	summary := fmt.Sprintf("%s in %s: incident %s", i.Service, i.Environment, i.ID)
	if i.Title != "" {
		summary += " (" + i.Title + ")"
	}
	if ev.Verdict != nil {
		summary += fmt.Sprintf(", likely caused by %s %s (confidence %.2f)", i.Service, ev.Verdict.Version, i.Confidence)
	}
	if i.Provisional {
		summary = "[provisional] " + summary
	}
	e.Payload = &pdPayload{
		Summary:   clip(summary, pdMaxSummary),
		Source:    i.Service,
		Severity:  pdSeverity(i.Severity),
		Timestamp: i.StartedAt.UTC().Format(time.RFC3339Nano),
		Group:     i.Environment,
		Class:     i.Source,
		CustomDetails: map[string]any{
			"alert_id": ev.ID,
			"incident": i,
		},
	}
	if ev.Verdict != nil {
		e.Payload.Component = ev.Verdict.Version
		e.Payload.CustomDetails["change_failure"] = ev.Verdict
	}
	if len(ev.Suspects) > 0 {
		e.Payload.CustomDetails["suspects"] = ev.Suspects
	}
	for _, l := range ev.Links {
		e.Links = append(e.Links, pdLink{Href: l.URL, Text: "faultline " + l.Name + " " + i.ID})
	}
	if len(ev.Suspects) > 0 && ev.Suspects[0].URL != "" {
		s := ev.Suspects[0]
		e.Links = append(e.Links, pdLink{Href: s.URL, Text: "suspect deploy " + s.Service + " " + s.Version})
	}
	return e, nil
}

// pdSeverity maps faultline's severities onto the Events API's; an incident
// without one (detected from telemetry) is an error.
func pdSeverity(s string) string {
	switch s {
	case "critical":
		return "critical"
	case "minor":
		return "warning"
	}
	return "error"
}

// dedupKey is the incident id, or, past the API's 255 characters, a prefix
// and a hash of the whole, still the same for every event of the incident.
func dedupKey(id string) string {
	if utf8.RuneCountInString(id) <= pdMaxDedupKey {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return clip(id, pdMaxDedupKey-33) + "-" + hex.EncodeToString(sum[:16])
}

// clip cuts s to at most n characters, marking the cut with an ellipsis.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
