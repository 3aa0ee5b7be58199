package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// PagerDutyConfig says how PagerDuty incidents map onto faultline's
// services and environments: PagerDuty services are named for people
// ("API Service"), faultline's for telemetry (service.name).
type PagerDutyConfig struct {
	// Services maps a PagerDuty service id or name to a faultline service;
	// an unmapped service keeps its PagerDuty name.
	Services map[string]string
	// Environment is the environment of every PagerDuty incident.
	Environment string
}

// VerifyPagerDuty checks an X-PagerDuty-Signature header: one or more
// comma-separated "v1=<hex HMAC-SHA256 of the body>" (several while a
// secret is being rotated); one match is enough. Each comparison takes
// constant time.
func VerifyPagerDuty(secret string, body []byte, header string) bool {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	want := m.Sum(nil)
	ok := false
	for _, sig := range strings.Split(header, ",") {
		hexSig, found := strings.CutPrefix(strings.TrimSpace(sig), "v1=")
		if !found {
			continue
		}
		got, err := hex.DecodeString(hexSig)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			ok = true
		}
	}
	return ok
}

// pdWebhook is the part of a PagerDuty v3 webhook faultline reads.
type pdWebhook struct {
	Event *struct {
		ID           string          `json:"id"`
		EventType    string          `json:"event_type"`
		ResourceType string          `json:"resource_type"`
		OccurredAt   string          `json:"occurred_at"`
		Data         json.RawMessage `json:"data"`
	} `json:"event"`
}

type pdIncident struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	Title     string `json:"title"`
	Urgency   string `json:"urgency"`
	Service   struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"service"`
	Priority *struct {
		Summary string `json:"summary"`
	} `json:"priority"`
}

// FromPagerDuty turns a PagerDuty v3 webhook into an incident event:
// incident.triggered opens incident "pd-<id>" at the incident's created_at,
// incident.resolved resolves it at the event's occurred_at. Every other
// event type (incident.acknowledged keeps the incident open; notes,
// escalations, service changes, pings) yields no incident and says why in
// ignored.
func FromPagerDuty(body []byte, c PagerDutyConfig) (inc *Incident, ignored string, err error) {
	var w pdWebhook
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, "", jsonError(err)
	}
	if w.Event == nil {
		return nil, "", &FieldError{Field: "event", Msg: "is required (a PagerDuty v3 webhook)"}
	}
	e := w.Event
	switch e.EventType {
	case "":
		return nil, "", &FieldError{Field: "event.event_type", Msg: "is required"}
	case "incident.triggered", "incident.resolved":
	case "incident.acknowledged":
		return nil, "incident.acknowledged: the incident stays open", nil
	default:
		return nil, fmt.Sprintf("%s: not an incident opening or resolving", truncate(e.EventType, 64)), nil
	}
	var d pdIncident
	if len(e.Data) == 0 || string(e.Data) == "null" {
		return nil, "", &FieldError{Field: "event.data", Msg: "is required"}
	}
	if err := json.Unmarshal(e.Data, &d); err != nil {
		if fe, ok := jsonError(err).(*FieldError); ok {
			fe.Field = "event.data." + fe.Field
			return nil, "", fe
		}
		return nil, "", &FieldError{Field: "event.data", Msg: "must be an incident object"}
	}
	if d.ID == "" {
		return nil, "", &FieldError{Field: "event.data.id", Msg: "is required"}
	}
	if len(d.ID) > 128 || !printable(d.ID) {
		return nil, "", &FieldError{Field: "event.data.id", Msg: "must be at most 128 printable characters"}
	}
	service := firstNonEmpty(c.Services[d.Service.ID], c.Services[d.Service.Summary], strings.TrimSpace(d.Service.Summary))
	if service == "" {
		return nil, "", &FieldError{Field: "event.data.service.summary", Msg: "is required (or map the service id in FAULTLINE_GATEWAY_PAGERDUTY_SERVICES)"}
	}
	if len(service) > maxFieldLen {
		return nil, "", &FieldError{Field: "event.data.service.summary", Msg: fmt.Sprintf("longer than %d bytes", maxFieldLen)}
	}
	occurred, err := alertTime(e.OccurredAt, "event.occurred_at")
	if err != nil {
		return nil, "", err
	}
	inc = &Incident{
		ID:          "pd-" + d.ID,
		Service:     service,
		Environment: c.Environment,
		Status:      StatusOpen,
		Timestamp:   occurred,
		Title:       truncate(strings.TrimSpace(d.Title), maxFieldLen),
		Severity:    pdSeverity(d),
		Source:      SourcePD,
	}
	if inc.Environment == "" {
		inc.Environment = "production"
	}
	if e.EventType == "incident.resolved" {
		inc.Status = StatusResolved
		return inc, "", nil
	}
	// The incident began when PagerDuty created it; a delayed trigger
	// webhook must not move the start (time to restore counts from it).
	if d.CreatedAt != "" {
		created, err := alertTime(d.CreatedAt, "event.data.created_at")
		if err != nil {
			return nil, "", err
		}
		inc.Timestamp = created
	}
	return inc, "", nil
}

// pdSeverity reads the priority (P1 critical, P2 major, lower minor), else
// the urgency (high major, low minor).
func pdSeverity(d pdIncident) string {
	if d.Priority != nil && d.Priority.Summary != "" {
		return severity(d.Priority.Summary)
	}
	switch d.Urgency {
	case "high":
		return "major"
	case "low":
		return "minor"
	}
	return ""
}
