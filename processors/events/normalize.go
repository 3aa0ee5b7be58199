package events

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

func severity(s string) string {
	switch strings.ToLower(s) {
	case "critical", "page", "p1":
		return "critical"
	case "major", "error", "high", "p2":
		return "major"
	case "":
		return ""
	}
	return "minor"
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// cdEvent is the part of a CDEvents (CloudEvents structured JSON) event
// faultline reads.
type cdEvent struct {
	Context struct {
		ID        string    `json:"id"`
		Source    string    `json:"source"`
		Type      string    `json:"type"`
		Timestamp time.Time `json:"timestamp"`
	} `json:"context"`
	Subject struct {
		ID      string `json:"id"`
		Content struct {
			Environment struct {
				ID string `json:"id"`
			} `json:"environment"`
			ArtifactID  string `json:"artifactId"`
			Description string `json:"description"`
			Service     struct {
				ID string `json:"id"`
			} `json:"service"`
		} `json:"content"`
	} `json:"subject"`
}

// FromCDEvent turns a CDEvents v0.4 or v0.5 event into a deploy
// (service.deployed, upgraded, rolledback) or an incident (incident.detected,
// reported, resolved). The service comes from the artifact purl's name,
// else the subject id; the environment from environment.id.
func FromCDEvent(body []byte) (*Deploy, *Incident, error) {
	var e cdEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	return fromCDEvent(&e)
}

func fromCDEvent(e *cdEvent) (*Deploy, *Incident, error) {
	kind, ok := cdKind(e.Context.Type)
	if !ok {
		return nil, nil, &FieldError{Field: "context.type", Msg: fmt.Sprintf("%q is not a supported CDEvents type (dev.cdevents.service.deployed|upgraded|rolledback, dev.cdevents.incident.detected|reported|resolved; versions 0.2.0 and 0.3.0)", e.Context.Type)}
	}
	if e.Context.Timestamp.IsZero() {
		return nil, nil, &FieldError{Field: "context.timestamp", Msg: "is required"}
	}
	env := e.Subject.Content.Environment.ID
	if env == "" {
		return nil, nil, &FieldError{Field: "subject.content.environment.id", Msg: "is required"}
	}
	name, version := purl(e.Subject.Content.ArtifactID)
	service := firstNonEmpty(name, e.Subject.Content.Service.ID, e.Subject.ID)
	if service == "" {
		return nil, nil, &FieldError{Field: "subject.content.artifactId", Msg: "no service name in the artifact purl or subject id"}
	}
	ts := e.Context.Timestamp.UTC()
	switch kind {
	case "deployed", "upgraded", "rolledback":
		if version == "" {
			return nil, nil, &FieldError{Field: "subject.content.artifactId", Msg: "the artifact purl has no version (pkg:oci/name@version)"}
		}
		d := Deploy{Service: service, Environment: env, Version: version, Timestamp: ts, Type: TypeDeploy, Status: StatusSucceeded,
			URL: e.Context.Source, Attributes: map[string]string{"cdevents.id": e.Context.ID, "cdevents.type": e.Context.Type}}
		if kind == "rolledback" {
			d.Type = TypeRollback
		}
		d.ID = DeployID(d)
		return &d, nil, nil
	default:
		id := e.Subject.ID
		if id == "" {
			return nil, nil, &FieldError{Field: "subject.id", Msg: "is required for incidents"}
		}
		if len(id) > maxFieldLen || !printable(id) {
			return nil, nil, &FieldError{Field: "subject.id", Msg: "must be printable, at most 1024 bytes"}
		}
		inc := Incident{ID: id, Service: service, Environment: env, Status: StatusOpen, Timestamp: ts,
			Title: e.Subject.Content.Description, Source: SourceCDEvents}
		if kind == "resolved" {
			inc.Status = StatusResolved
		}
		return nil, &inc, nil
	}
}

// cdKind returns the predicate of a supported event type.
func cdKind(t string) (string, bool) {
	for _, p := range []string{"dev.cdevents.service.", "dev.cdevents.incident."} {
		if !strings.HasPrefix(t, p) {
			continue
		}
		rest := strings.TrimPrefix(t, p)
		kind, ver, ok := strings.Cut(rest, ".")
		if !ok || (ver != "0.2.0" && ver != "0.3.0" && !strings.HasPrefix(ver, "0.2.") && !strings.HasPrefix(ver, "0.3.")) {
			return "", false
		}
		switch kind {
		case "deployed", "upgraded", "rolledback":
			return kind, p == "dev.cdevents.service."
		case "detected", "reported", "resolved":
			return kind, p == "dev.cdevents.incident."
		}
	}
	return "", false
}

// purl extracts name and version from a package URL such as
// pkg:oci/checkout@sha256%3Aabc?repository_url=... or pkg:golang/x/y@v1.2.
func purl(s string) (name, version string) {
	if !strings.HasPrefix(s, "pkg:") {
		return "", ""
	}
	s = strings.TrimPrefix(s, "pkg:")
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	path, ver, _ := strings.Cut(s, "@")
	if i := strings.LastIndex(path, "/"); i >= 0 {
		path = path[i+1:]
	}
	name, _ = url.PathUnescape(path)
	version, _ = url.PathUnescape(ver)
	return name, version
}
