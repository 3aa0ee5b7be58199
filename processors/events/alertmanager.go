package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// LabelConfig names the alert labels that carry the service and the
// environment (Alertmanager and Grafana alike).
type LabelConfig struct {
	Service     string // default "service"
	Environment string // default "environment"
}

// Skipped is an alert that was not turned into an incident, and why. The
// rest of its notification is still accepted: one badly labelled rule must
// not hold back the alerts grouped with it.
type Skipped struct {
	Index       int    // position in alerts[]
	Fingerprint string // as received or derived
	Alertname   string
	Reason      string // short and stable, for a metric label: missing_service_label, missing_environment_label
	Detail      string // for people
}

// Skip reasons.
const (
	SkipNoService     = "missing_service_label"
	SkipNoEnvironment = "missing_environment_label"
)

// Alerts is what one alert notification yields.
type Alerts struct {
	Incidents []Incident
	Skipped   []Skipped
}

// amPayload is the webhook body both Alertmanager (version "4") and
// Grafana's unified alerting (version "1") send. Times are kept as strings
// so a bad one is reported by its field.
type amPayload struct {
	Version string    `json:"version"`
	Alerts  []amAlert `json:"alerts"`
}

type amAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    string            `json:"startsAt"`
	EndsAt      string            `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
}

// FromAlertmanager turns an Alertmanager webhook (version 4) into incident
// events, one per alert; see fromAlerts.
func FromAlertmanager(body []byte, lc LabelConfig) (Alerts, error) {
	return fromAlerts(body, lc, "am-", SourceAM, "4")
}

// FromGrafana turns a Grafana alerting webhook contact point's notification
// into incident events. Grafana sends Alertmanager's shape (its version
// field is its own, "1"), so the handling is the same.
func FromGrafana(body []byte, lc LabelConfig) (Alerts, error) {
	return fromAlerts(body, lc, "grafana-", SourceGrafana, "")
}

// fromAlerts handles each alert on its own. A firing alert opens at
// startsAt and a resolved one resolves at endsAt. The incident id is
// prefix + fingerprint + "-" + startsAt in Unix seconds: the resolve of an
// alert carries the startsAt of its firing, so both name one incident,
// while the same alert firing again later is a new incident. An alert
// without the service or environment label is skipped, not refused.
// Anything malformed refuses the whole notification, naming the field, so
// that nothing of it is stored.
func fromAlerts(body []byte, lc LabelConfig, prefix, source, version string) (Alerts, error) {
	if lc.Service == "" {
		lc.Service = "service"
	}
	if lc.Environment == "" {
		lc.Environment = "environment"
	}
	var p amPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return Alerts{}, jsonError(err)
	}
	if version != "" && p.Version != version {
		return Alerts{}, &FieldError{Field: "version", Msg: fmt.Sprintf("%q: only webhook version %s is supported", p.Version, version)}
	}
	if len(p.Alerts) == 0 {
		return Alerts{}, &FieldError{Field: "alerts", Msg: "is empty"}
	}
	var out Alerts
	for i, a := range p.Alerts {
		field := func(name string) string { return "alerts[" + strconv.Itoa(i) + "]." + name }
		starts, err := alertTime(a.StartsAt, field("startsAt"))
		if err != nil {
			return Alerts{}, err
		}
		fp := a.Fingerprint
		if fp == "" {
			fp = Fingerprint(a.Labels)
		}
		if len(fp) > 128 || !printable(fp) {
			return Alerts{}, &FieldError{Field: field("fingerprint"), Msg: "must be at most 128 printable characters"}
		}
		inc := Incident{
			ID:          prefix + fp + "-" + strconv.FormatInt(starts.Unix(), 10),
			Service:     strings.TrimSpace(a.Labels[lc.Service]),
			Environment: strings.TrimSpace(a.Labels[lc.Environment]),
			Title:       truncate(firstNonEmpty(a.Annotations["summary"], a.Annotations["description"], a.Labels["alertname"]), maxFieldLen),
			Severity:    severity(a.Labels["severity"]),
			Source:      source,
		}
		switch a.Status {
		case "firing":
			inc.Status, inc.Timestamp = StatusOpen, starts
		case "resolved":
			ends, err := alertTime(a.EndsAt, field("endsAt"))
			if err != nil {
				return Alerts{}, err
			}
			inc.Status, inc.Timestamp = StatusResolved, ends
		default:
			return Alerts{}, &FieldError{Field: field("status"), Msg: fmt.Sprintf("%q is not firing or resolved", a.Status)}
		}
		for _, l := range []struct{ name, value string }{{lc.Service, inc.Service}, {lc.Environment, inc.Environment}} {
			if len(l.value) > maxFieldLen {
				return Alerts{}, &FieldError{Field: field("labels." + l.name), Msg: fmt.Sprintf("longer than %d bytes", maxFieldLen)}
			}
		}
		skip := Skipped{Index: i, Fingerprint: fp, Alertname: a.Labels["alertname"]}
		switch {
		case inc.Service == "":
			skip.Reason, skip.Detail = SkipNoService, fmt.Sprintf("no %q label names the service", lc.Service)
		case inc.Environment == "":
			skip.Reason, skip.Detail = SkipNoEnvironment, fmt.Sprintf("no %q label names the environment", lc.Environment)
		}
		if skip.Reason != "" {
			out.Skipped = append(out.Skipped, skip)
			continue
		}
		out.Incidents = append(out.Incidents, inc)
	}
	return out, nil
}

// alertTime reads an alert's RFC 3339 time; Alertmanager's "no time" is
// year 1 (0001-01-01T00:00:00Z), which counts as missing.
func alertTime(s, field string) (time.Time, error) {
	if s == "" {
		return time.Time{}, &FieldError{Field: field, Msg: "is required"}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, &FieldError{Field: field, Msg: fmt.Sprintf("%q is not an RFC 3339 time", s)}
	}
	if t.Year() < 1970 || t.Year() > 2200 {
		return time.Time{}, &FieldError{Field: field, Msg: fmt.Sprintf("%q is missing or out of range", s)}
	}
	return t.UTC(), nil
}

// Fingerprint is Alertmanager's fingerprint of a label set: FNV-1a 64 over
// the labels sorted by name, each name and value followed by the byte 0xff,
// as 16 hex digits. An alert that arrives without a fingerprint (a proxy
// dropped it, an older sender) gets the one Alertmanager would have given
// it, so its firing and its resolve still meet.
func Fingerprint(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	h := fnv.New64a()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[n]))
		h.Write([]byte{0xff})
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// jsonError names the field of a JSON type mismatch; other decoding
// errors are syntax errors.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return &FieldError{Field: te.Field, Msg: "must be " + jsonKind(te.Type)}
	}
	return fmt.Errorf("%w: %v", ErrSyntax, err)
}

// printable reports whether s is valid UTF-8 without control characters:
// ids end up in JetStream message-id headers, where a line break would
// corrupt the message.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
