package gateway

import (
	"strconv"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

type gwMetrics struct {
	publishSeconds *metrics.PrometheusHistogram
	bytes, events  *metrics.Counter
	publishedBytes *metrics.Counter // OTLP bytes as published (compressed)
	mu             sync.Mutex
	byCode         map[[2]string]*metrics.Counter
}

// refused counts a publish JetStream did not store, by reason (refuse.go):
// the signal that the telemetry stream is full and senders are being held
// back.
func (m *gwMetrics) refused(reason string) {
	metrics.GetOrCreateCounter(`faultline_gateway_refused_total{reason="` + reason + `"}`).Inc()
}

func newMetrics() *gwMetrics {
	return &gwMetrics{
		publishSeconds: metrics.GetOrCreatePrometheusHistogram("faultline_gateway_publish_seconds"),
		bytes:          metrics.GetOrCreateCounter("faultline_gateway_otlp_bytes_total"),
		events:         metrics.GetOrCreateCounter("faultline_gateway_events_total"),
		publishedBytes: metrics.GetOrCreateCounter("faultline_gateway_otlp_published_bytes_total"),
		byCode:         map[[2]string]*metrics.Counter{},
	}
}

// request counts a request by endpoint and outcome: accepted (2xx),
// throttled (429/503, retried by clients) or rejected (other 4xx/5xx).
func (m *gwMetrics) request(endpoint string, code int) {
	outcome := "rejected"
	switch {
	case code/100 == 2:
		outcome = "accepted"
	case code == 429 || code == 503:
		outcome = "throttled"
	}
	k := [2]string{endpoint, strconv.Itoa(code)}
	m.mu.Lock()
	c, ok := m.byCode[k]
	if !ok {
		c = metrics.GetOrCreateCounter(`faultline_gateway_requests_total{endpoint="` + endpoint + `",outcome="` + outcome + `",code="` + k[1] + `"}`)
		m.byCode[k] = c
	}
	m.mu.Unlock()
	c.Inc()
}
