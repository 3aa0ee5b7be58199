// Package webhooktest runs local receivers that hold deliveries to the
// receiving services' documented contracts, for tests.
package webhooktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// PDEvent is an Events API v2 event as a PagerDuty receiver reads it.
type PDEvent struct {
	RoutingKey  string `json:"routing_key"`
	EventAction string `json:"event_action"`
	DedupKey    string `json:"dedup_key"`
	Payload     *struct {
		Summary       string         `json:"summary"`
		Source        string         `json:"source"`
		Severity      string         `json:"severity"`
		Timestamp     string         `json:"timestamp"`
		Component     string         `json:"component"`
		Group         string         `json:"group"`
		Class         string         `json:"class"`
		CustomDetails map[string]any `json:"custom_details"`
	} `json:"payload"`
	Links []struct {
		Href string `json:"href"`
		Text string `json:"text"`
	} `json:"links"`
	Client    string `json:"client"`
	ClientURL string `json:"client_url"`
}

// PagerDuty is a local Events API v2 endpoint (POST /v2/enqueue). It checks
// every event against the documented schema: routing_key of 32 characters;
// event_action trigger, acknowledge or resolve; dedup_key of at most 255
// characters, required to acknowledge or resolve; a trigger's payload with
// summary (1 to 1024 characters), source and severity (critical, error,
// warning or info), an ISO 8601 timestamp and an object custom_details when
// present; links with href, images with an https src; no unknown fields.
// It answers as PagerDuty does: 202 {"status":"success","message":"Event
// processed","dedup_key":...}, or 400 {"status":"invalid event","message":
// "Event object is invalid","errors":[...]}. Throttle makes it answer the
// next requests 429, as PagerDuty does over its rate limit.
type PagerDuty struct {
	*httptest.Server

	mu       sync.Mutex
	throttle int
	calls    int
	accepted []PDEvent
	rejected [][]string
}

// NewPagerDuty starts a receiver, closed when the test ends.
func NewPagerDuty(t *testing.T) *PagerDuty {
	p := &PagerDuty{}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

// URL is the enqueue endpoint.
func (p *PagerDuty) URL() string { return p.Server.URL + "/v2/enqueue" }

// Throttle answers the next n requests 429.
func (p *PagerDuty) Throttle(n int) {
	p.mu.Lock()
	p.throttle = n
	p.mu.Unlock()
}

// Calls counts requests, answered or not.
func (p *PagerDuty) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// Accepted returns the valid events in arrival order.
func (p *PagerDuty) Accepted() []PDEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.accepted)
}

// Rejected returns the schema errors of each refused event.
func (p *PagerDuty) Rejected() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.rejected)
}

func (p *PagerDuty) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	p.calls++
	throttled := p.throttle > 0
	if throttled {
		p.throttle--
	}
	p.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/v2/enqueue" {
		http.NotFound(w, r)
		return
	}
	if throttled {
		answer(w, http.StatusTooManyRequests, map[string]any{"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."})
		return
	}
	ev, errs := CheckPDEvent(r.Header.Get("Content-Type"), body)
	p.mu.Lock()
	if len(errs) > 0 {
		p.rejected = append(p.rejected, errs)
	} else {
		p.accepted = append(p.accepted, ev)
	}
	p.mu.Unlock()
	if len(errs) > 0 {
		answer(w, http.StatusBadRequest, map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": errs})
		return
	}
	answer(w, http.StatusAccepted, map[string]any{"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey})
}

func answer(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// CheckPDEvent validates one request body against the Events API v2
// schema and returns the event and what is wrong with it.
func CheckPDEvent(contentType string, body []byte) (PDEvent, []string) {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if mt, _, _ := mime.ParseMediaType(contentType); mt != "application/json" {
		bad("Content-Type %q is not application/json", contentType)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return PDEvent{}, append(errs, "body is not a JSON object: "+err.Error())
	}
	for k := range top {
		if !slices.Contains([]string{"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url"}, k) {
			bad("unknown field %q", k)
		}
	}
	var ev PDEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil && !strings.Contains(err.Error(), "unknown field") {
		return ev, append(errs, "body does not match the schema: "+err.Error())
	}
	if n := utf8.RuneCountInString(ev.RoutingKey); n != 32 {
		bad("routing_key must be 32 characters, has %d", n)
	}
	if !slices.Contains([]string{"trigger", "acknowledge", "resolve"}, ev.EventAction) {
		bad("event_action %q is not trigger, acknowledge or resolve", ev.EventAction)
	}
	if n := utf8.RuneCountInString(ev.DedupKey); n > 255 {
		bad("dedup_key longer than 255 characters (%d)", n)
	}
	if ev.DedupKey == "" && ev.EventAction != "trigger" {
		bad("dedup_key is required to %s", ev.EventAction)
	}
	if ev.EventAction == "trigger" {
		pl := ev.Payload
		switch {
		case pl == nil:
			bad("payload is required to trigger")
		default:
			if n := utf8.RuneCountInString(pl.Summary); n == 0 || n > 1024 {
				bad("payload.summary must be 1 to 1024 characters, has %d", n)
			}
			if pl.Source == "" {
				bad("payload.source is required")
			}
			if !slices.Contains([]string{"critical", "error", "warning", "info"}, pl.Severity) {
				bad("payload.severity %q is not critical, error, warning or info", pl.Severity)
			}
			if pl.Timestamp != "" {
				if _, err := time.Parse(time.RFC3339Nano, pl.Timestamp); err != nil {
					bad("payload.timestamp %q is not ISO 8601", pl.Timestamp)
				}
			}
			var raw map[string]json.RawMessage
			_ = json.Unmarshal(top["payload"], &raw)
			if cd, ok := raw["custom_details"]; ok && !bytes.HasPrefix(bytes.TrimSpace(cd), []byte("{")) {
				bad("payload.custom_details must be an object")
			}
		}
	}
	for i, l := range ev.Links {
		if l.Href == "" {
			bad("links[%d].href is required", i)
		}
	}
	if raw, ok := top["images"]; ok {
		var images []struct {
			Src string `json:"src"`
		}
		if json.Unmarshal(raw, &images) != nil {
			bad("images must be an array of objects")
		}
		for i, im := range images {
			if !strings.HasPrefix(im.Src, "https://") {
				bad("images[%d].src must be an https URL", i)
			}
		}
	}
	return ev, errs
}
