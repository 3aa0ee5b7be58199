package gateway

import (
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/faultline-dev/faultline/processors/events"
)

// Incident tools: Alertmanager and Grafana alerting post the same shape and
// share its handling; PagerDuty posts v3 webhooks. Parsing lives in
// processors/events; these handlers authenticate, publish and answer.

func (g *Gateway) alertmanager(w http.ResponseWriter, r *http.Request, body []byte) error {
	return g.alerts(w, r, body, events.SourceAM, events.FromAlertmanager)
}

func (g *Gateway) grafana(w http.ResponseWriter, r *http.Request, body []byte) error {
	return g.alerts(w, r, body, events.SourceGrafana, events.FromGrafana)
}

// alerts publishes the incidents of one alert notification and answers
// 202 {"accepted": N, "skipped": M}. Alerts without the service or
// environment label are skipped, logged and counted, never refused: the
// sender would retry the whole group forever, holding back its good alerts.
func (g *Gateway) alerts(w http.ResponseWriter, r *http.Request, body []byte, source string,
	parse func([]byte, events.LabelConfig) (events.Alerts, error)) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	as, err := parse(body, events.LabelConfig{Service: g.cfg.ServiceLabel, Environment: g.cfg.EnvLabel})
	if err != nil {
		return eventError(err)
	}
	if err := g.tooMany(len(as.Incidents)); err != nil {
		return err
	}
	if err := g.publishIncidents(r.Context(), as.Incidents); err != nil {
		return err
	}
	// Counted once stored: a request answered 503 and retried counts once.
	for _, s := range as.Skipped {
		g.log.Warn("alert skipped", "source", source, "reason", s.Reason, "detail", s.Detail,
			"alertname", s.Alertname, "fingerprint", s.Fingerprint, "index", s.Index)
		metrics.GetOrCreateCounter(`faultline_gateway_alerts_skipped_total{source="` + source + `",reason="` + s.Reason + `"}`).Inc()
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"accepted": len(as.Incidents), "skipped": len(as.Skipped)})
	return nil
}

// grafanaAuthorized accepts what a Grafana webhook contact point can send:
// "Bearer <token>" (its Authorization header settings) or basic auth with
// the token as password (any user name), where the token is
// FAULTLINE_GATEWAY_GRAFANA_TOKEN or the gateway-wide token.
func (g *Gateway) grafanaAuthorized(header string) bool {
	var tokens []string
	for _, t := range []string{g.cfg.Token, g.cfg.GrafanaToken} {
		if t != "" {
			tokens = append(tokens, t)
		}
	}
	if len(tokens) == 0 {
		return true
	}
	var given string
	scheme, cred, _ := strings.Cut(header, " ")
	switch strings.ToLower(scheme) {
	case "bearer":
		given = strings.TrimSpace(cred)
	case "basic":
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return false
		}
		_, given, _ = strings.Cut(string(b), ":")
	default:
		return false
	}
	ok := 0
	for _, t := range tokens {
		ok |= subtle.ConstantTimeCompare([]byte(given), []byte(t))
	}
	return ok == 1
}

// pagerduty handles a PagerDuty v3 webhook: with a signing secret set, the
// X-PagerDuty-Signature must match (401 otherwise, so a forged or
// misconfigured sender is visible in PagerDuty's delivery log). Event types
// that neither open nor resolve an incident are answered 202 with
// {"accepted": 0, "ignored": "<why>"}, so PagerDuty does not retry them.
func (g *Gateway) pagerduty(w http.ResponseWriter, r *http.Request, body []byte) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	if s := g.cfg.PagerDutySecret; s != "" && !events.VerifyPagerDuty(s, body, r.Header.Get("X-PagerDuty-Signature")) {
		return fail(http.StatusUnauthorized, "X-PagerDuty-Signature is missing or not made with FAULTLINE_GATEWAY_PAGERDUTY_SECRET")
	}
	services, err := events.ParseServiceMap(g.cfg.PagerDutyServices) // validated at start
	if err != nil {
		return err
	}
	inc, ignored, err := events.FromPagerDuty(body, events.PagerDutyConfig{Services: services, Environment: g.cfg.PagerDutyEnvironment})
	if err != nil {
		return eventError(err)
	}
	if inc == nil {
		writeJSON(w, http.StatusAccepted, map[string]any{"accepted": 0, "ignored": ignored})
		return nil
	}
	if err := g.publishIncidents(r.Context(), []events.Incident{*inc}); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"accepted": 1})
	return nil
}
