package events

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// CloudEvents content types: a structured-mode envelope, and the CDEvent
// itself as the body of binary mode (the CDEvents CloudEvents binding).
const (
	ContentTypeCloudEvents = "application/cloudevents+json"
	ContentTypeCDEvents    = "application/cdevents+json"
)

// ceEnvelope is a CloudEvents JSON envelope (structured content mode).
type ceEnvelope struct {
	SpecVersion string          `json:"specversion"`
	ID          string          `json:"id"`
	Source      string          `json:"source"`
	Type        string          `json:"type"`
	Subject     string          `json:"subject"`
	Time        string          `json:"time"`
	Data        json.RawMessage `json:"data"`
	DataBase64  string          `json:"data_base64"`
}

// ceAttrs are the CloudEvents attributes, from the envelope or the ce-*
// headers, and the field names to report them by.
type ceAttrs struct {
	specVersion, id, source, typ, subject, time string
	names                                       [6]string
}

var (
	envelopeNames = [6]string{"specversion", "id", "source", "type", "subject", "time"}
	headerNames   = [6]string{"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time"}
)

// FromCDEventHTTP reads a CDEvent as it arrives over HTTP, in any of the
// three ways producers send one:
//
//   - CloudEvents binary mode (a ce-specversion header): the CloudEvents
//     attributes are the ce-* headers, and the body is the whole CDEvent
//     (the CDEvents binding), or only its subject, or {"subject": ...}
//     without a context; the missing context then comes from ce-type,
//     ce-id, ce-source and ce-time, and the subject id from ce-subject.
//   - CloudEvents structured mode (application/cloudevents+json, or any
//     body with specversion and data at the top): the CDEvent is the
//     envelope's data (or data_base64); the envelope fills in what the
//     CDEvent lacks in the same way.
//   - A plain CDEvent body (FromCDEvent).
func FromCDEventHTTP(h http.Header, body []byte) (*Deploy, *Incident, error) {
	if h.Get("ce-specversion") != "" {
		a := ceAttrs{h.Get("ce-specversion"), h.Get("ce-id"), h.Get("ce-source"), h.Get("ce-type"), h.Get("ce-subject"), h.Get("ce-time"), headerNames}
		return fromCloudEvent(a, body)
	}
	if !isEnvelope(body) {
		return FromCDEvent(body)
	}
	var env ceEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, nil, jsonError(err)
	}
	data := env.Data
	if len(data) == 0 || string(data) == "null" {
		if env.DataBase64 == "" {
			return nil, nil, &FieldError{Field: "data", Msg: "is required: the CDEvent goes under data"}
		}
		b, err := base64.StdEncoding.DecodeString(env.DataBase64)
		if err != nil {
			return nil, nil, &FieldError{Field: "data_base64", Msg: "is not base64"}
		}
		data = b
	}
	a := ceAttrs{env.SpecVersion, env.ID, env.Source, env.Type, env.Subject, env.Time, envelopeNames}
	return fromCloudEvent(a, data)
}

// isEnvelope reports whether a JSON body is a CloudEvents envelope rather
// than a CDEvent: it has specversion and data (or data_base64) at the top
// and no CDEvents context.
func isEnvelope(body []byte) bool {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return false
	}
	_, spec := top["specversion"]
	_, data := top["data"]
	_, data64 := top["data_base64"]
	_, context := top["context"]
	return spec && (data || data64) && !context
}

// fromCloudEvent reads the CDEvent in payload, completing it from the
// CloudEvents attributes.
func fromCloudEvent(a ceAttrs, payload []byte) (*Deploy, *Incident, error) {
	if a.specVersion != "1.0" {
		return nil, nil, &FieldError{Field: a.names[0], Msg: fmt.Sprintf("%q: only CloudEvents 1.0 is supported", truncate(a.specVersion, 32))}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil {
		return nil, nil, fmt.Errorf("%w: the CDEvent must be a JSON object: %v", ErrSyntax, err)
	}
	var e cdEvent
	if err := json.Unmarshal(payload, &e); err != nil {
		return nil, nil, jsonError(err)
	}
	if _, ok := top["subject"]; !ok {
		if _, ok := top["content"]; ok { // the body is the subject alone
			if err := json.Unmarshal(payload, &e.Subject); err != nil {
				return nil, nil, jsonError(err)
			}
		}
	}
	c := &e.Context
	c.Type = firstNonEmpty(c.Type, strings.TrimSpace(a.typ))
	c.ID = firstNonEmpty(c.ID, a.id)
	c.Source = firstNonEmpty(c.Source, a.source)
	e.Subject.ID = firstNonEmpty(e.Subject.ID, a.subject)
	if c.Timestamp.IsZero() && a.time != "" {
		t, err := time.Parse(time.RFC3339Nano, a.time)
		if err != nil {
			return nil, nil, &FieldError{Field: a.names[5], Msg: fmt.Sprintf("%q is not an RFC 3339 time", truncate(a.time, 64))}
		}
		c.Timestamp = t
	}
	if c.Type == "" {
		return nil, nil, &FieldError{Field: a.names[3], Msg: "is required when the CDEvent has no context.type"}
	}
	return fromCDEvent(&e)
}
