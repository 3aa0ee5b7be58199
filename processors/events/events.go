// Package events defines faultline's native deploy and incident events (the
// JSON the gateway accepts), validates them field by field, derives stable
// ids, and normalizes other tools' payloads into them: Alertmanager,
// Grafana alerting, PagerDuty webhooks and CDEvents (plain or CloudEvents),
// one file per source.
package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Commit is one change shipped by a deploy.
type Commit struct {
	SHA       string    `json:"sha"`
	Timestamp time.Time `json:"timestamp"`
}

// Deploy is a deploy event: a version of a service went live (or failed to)
// in an environment.
type Deploy struct {
	ID          string            `json:"id"`
	Service     string            `json:"service"`
	Environment string            `json:"environment"`
	Version     string            `json:"version"`
	Timestamp   time.Time         `json:"timestamp"`
	Type        string            `json:"type"`   // "deploy" | "rollback"
	Status      string            `json:"status"` // "succeeded" | "failed"
	Commit      string            `json:"commit,omitempty"`
	Commits     []Commit          `json:"commits,omitempty"`
	Author      string            `json:"author,omitempty"`
	URL         string            `json:"url,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
}

// Incident is an incident event: open, or resolved, by id.
type Incident struct {
	ID          string    `json:"id"`
	Service     string    `json:"service"`
	Environment string    `json:"environment"`
	Status      string    `json:"status"` // "open" | "resolved"
	Timestamp   time.Time `json:"timestamp"`
	Title       string    `json:"title,omitempty"`
	Severity    string    `json:"severity,omitempty"` // "critical" | "major" | "minor"
	// Source says where it came from: api, alertmanager, grafana,
	// pagerduty, cdevents or detected. Set by the gateway, not by callers.
	Source string `json:"source,omitempty"`
}

// Types and statuses.
const (
	TypeDeploy      = "deploy"
	TypeRollback    = "rollback"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusOpen      = "open"
	StatusResolved  = "resolved"
	SourceAPI       = "api"
	SourceAM        = "alertmanager"
	SourceCDEvents  = "cdevents"
	SourceGrafana   = "grafana"
	SourcePD        = "pagerduty"
	SourceDetected  = "detected"
	maxFieldLen     = 1024
	maxAttributes   = 64
	maxCommits      = 1000
)

// FieldError names the item and field that failed validation.
type FieldError struct {
	Index int    // position in the request's array; 0 for a single object
	Field string // JSON field name
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("item %d: %s: %s", e.Index, e.Field, e.Msg)
}

// ErrSyntax wraps JSON that does not parse or has the wrong shape.
var ErrSyntax = errors.New("invalid JSON")

// ParseDeploys reads one deploy object or an array of them, validates
// every field, fills defaults and derives missing ids.
func ParseDeploys(body []byte) ([]Deploy, error) {
	raws, err := items(body)
	if err != nil {
		return nil, err
	}
	out := make([]Deploy, 0, len(raws))
	for i, raw := range raws {
		d, err := parseDeploy(raw)
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				fe.Index = i
			}
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// ParseIncidents reads one incident object or an array of them.
func ParseIncidents(body []byte) ([]Incident, error) {
	raws, err := items(body)
	if err != nil {
		return nil, err
	}
	out := make([]Incident, 0, len(raws))
	for i, raw := range raws {
		inc, err := parseIncident(raw)
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				fe.Index = i
			}
			return nil, err
		}
		inc.Source = SourceAPI
		out = append(out, inc)
	}
	return out, nil
}

// items splits a body into its objects.
func items(body []byte) ([]json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrSyntax)
	}
	if body[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(body, &arr); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		if len(arr) == 0 {
			return nil, fmt.Errorf("%w: empty array", ErrSyntax)
		}
		return arr, nil
	}
	if body[0] != '{' {
		return nil, fmt.Errorf("%w: want an object or an array of objects", ErrSyntax)
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	return []json.RawMessage{body}, nil
}

// fields decodes an object into raw fields so each can be checked and
// reported by name.
func fields(raw json.RawMessage) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, &FieldError{Field: "(item)", Msg: "must be a JSON object"}
	}
	return m, nil
}

func str(m map[string]json.RawMessage, name string, required bool) (string, error) {
	raw, ok := m[name]
	if !ok || string(raw) == "null" {
		if required {
			return "", &FieldError{Field: name, Msg: "is required"}
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &FieldError{Field: name, Msg: "must be a string"}
	}
	s = strings.TrimSpace(s)
	if required && s == "" {
		return "", &FieldError{Field: name, Msg: "must not be empty"}
	}
	if len(s) > maxFieldLen {
		return "", &FieldError{Field: name, Msg: fmt.Sprintf("longer than %d bytes", maxFieldLen)}
	}
	return s, nil
}

func timestamp(m map[string]json.RawMessage, name string, required bool) (time.Time, error) {
	s, err := str(m, name, required)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, &FieldError{Field: name, Msg: fmt.Sprintf("%q is not an RFC 3339 time (2026-11-01T10:00:00Z)", s)}
	}
	if t.Year() < 1970 || t.Year() > 2200 {
		return time.Time{}, &FieldError{Field: name, Msg: fmt.Sprintf("%q is out of range", s)}
	}
	return t.UTC(), nil
}

func oneOf(m map[string]json.RawMessage, name, def string, allowed ...string) (string, error) {
	s, err := str(m, name, false)
	if err != nil {
		return "", err
	}
	if s == "" {
		return def, nil
	}
	for _, a := range allowed {
		if s == a {
			return s, nil
		}
	}
	return "", &FieldError{Field: name, Msg: fmt.Sprintf("%q is not one of %s", s, strings.Join(allowed, ", "))}
}

func parseDeploy(raw json.RawMessage) (Deploy, error) {
	m, err := fields(raw)
	if err != nil {
		return Deploy{}, err
	}
	var d Deploy
	if d.Service, err = str(m, "service", true); err != nil {
		return d, err
	}
	if d.Environment, err = str(m, "environment", true); err != nil {
		return d, err
	}
	if d.Version, err = str(m, "version", true); err != nil {
		return d, err
	}
	if d.Timestamp, err = timestamp(m, "timestamp", true); err != nil {
		return d, err
	}
	if d.Type, err = oneOf(m, "type", TypeDeploy, TypeDeploy, TypeRollback); err != nil {
		return d, err
	}
	if d.Status, err = oneOf(m, "status", StatusSucceeded, StatusSucceeded, StatusFailed); err != nil {
		return d, err
	}
	if d.ID, err = str(m, "id", false); err != nil {
		return d, err
	}
	if d.Commit, err = str(m, "commit", false); err != nil {
		return d, err
	}
	if d.Author, err = str(m, "author", false); err != nil {
		return d, err
	}
	if d.URL, err = str(m, "url", false); err != nil {
		return d, err
	}
	if raw, ok := m["commits"]; ok && string(raw) != "null" {
		var cs []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &cs); err != nil {
			return d, &FieldError{Field: "commits", Msg: "must be an array of {sha, timestamp} objects"}
		}
		if len(cs) > maxCommits {
			return d, &FieldError{Field: "commits", Msg: fmt.Sprintf("more than %d commits", maxCommits)}
		}
		for i, c := range cs {
			sha, err := str(c, "sha", true)
			if err != nil {
				return d, &FieldError{Field: "commits[" + strconv.Itoa(i) + "]." + err.(*FieldError).Field, Msg: err.(*FieldError).Msg}
			}
			ts, err := timestamp(c, "timestamp", true)
			if err != nil {
				return d, &FieldError{Field: "commits[" + strconv.Itoa(i) + "]." + err.(*FieldError).Field, Msg: err.(*FieldError).Msg}
			}
			d.Commits = append(d.Commits, Commit{SHA: sha, Timestamp: ts})
		}
	}
	if raw, ok := m["attributes"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &d.Attributes); err != nil {
			return d, &FieldError{Field: "attributes", Msg: "must be an object of string values"}
		}
		if len(d.Attributes) > maxAttributes {
			return d, &FieldError{Field: "attributes", Msg: fmt.Sprintf("more than %d attributes", maxAttributes)}
		}
	}
	if d.ID == "" {
		d.ID = DeployID(d)
	}
	return d, nil
}

func parseIncident(raw json.RawMessage) (Incident, error) {
	m, err := fields(raw)
	if err != nil {
		return Incident{}, err
	}
	var inc Incident
	if inc.ID, err = str(m, "id", true); err != nil {
		return inc, err
	}
	if inc.Service, err = str(m, "service", true); err != nil {
		return inc, err
	}
	if inc.Environment, err = str(m, "environment", true); err != nil {
		return inc, err
	}
	if inc.Status, err = oneOf(m, "status", "", StatusOpen, StatusResolved); err != nil {
		return inc, err
	}
	if inc.Status == "" {
		return inc, &FieldError{Field: "status", Msg: "is required (open or resolved)"}
	}
	if inc.Timestamp, err = timestamp(m, "timestamp", true); err != nil {
		return inc, err
	}
	if inc.Title, err = str(m, "title", false); err != nil {
		return inc, err
	}
	if inc.Severity, err = oneOf(m, "severity", "", "critical", "major", "minor"); err != nil {
		return inc, err
	}
	return inc, nil
}

// DeployID derives a deploy's id from service, environment, version and
// timestamp: the same deploy reported twice gets the same id.
func DeployID(d Deploy) string {
	h := sha256.New()
	for _, s := range []string{d.Service, d.Environment, d.Version, d.Timestamp.UTC().Format(time.RFC3339Nano)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "dep-" + hex.EncodeToString(h.Sum(nil)[:10])
}

// MsgID is the JetStream message id of an event: a retried publish of the
// same fact is dropped; an open and a resolve of one incident are distinct.
func (inc Incident) MsgID() string {
	return "inc/" + inc.ID + "/" + inc.Status + "/" + inc.Timestamp.Format(time.RFC3339Nano)
}

// MsgID is the JetStream message id of a deploy event.
func (d Deploy) MsgID() string { return "dep/" + d.ID + "/" + d.Status }
