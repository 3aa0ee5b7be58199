// Package broker is faultline's side of NATS JetStream: the embedded server
// used when no URL is configured, connecting with credentials and TLS, and
// provisioning the streams everything else reads and writes.
package broker

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Config is the NATS part of faultline's settings (FAULTLINE_NATS_*).
type Config struct {
	URL string `envconfig:"URL" desc:"NATS server URLs, comma separated; empty runs an embedded server"`

	// Client authentication, used against an external server and required
	// by the embedded one when set.
	CredsFile string `envconfig:"CREDS" desc:"NATS credentials file (JWT + nkey)"`
	User      string `envconfig:"USER" desc:"NATS user"`
	Password  string `envconfig:"PASSWORD" desc:"NATS password"`
	Token     string `envconfig:"TOKEN" desc:"NATS auth token"`
	TLSCA     string `envconfig:"TLS_CA" desc:"PEM file of CAs that sign the server certificate"`
	TLSCert   string `envconfig:"TLS_CERT" desc:"client certificate (PEM) for mutual TLS; also the embedded server's certificate"`
	TLSKey    string `envconfig:"TLS_KEY" desc:"key of TLS_CERT"`

	// Embedded server.
	Listen   string `envconfig:"LISTEN" default:"127.0.0.1:4222" desc:"client listen address of the embedded server"`
	StoreDir string `envconfig:"STORE_DIR" desc:"JetStream storage of the embedded server (default DATA_DIR/nats)"`

	// Streams.
	Replicas          int           `envconfig:"REPLICAS" default:"1" desc:"stream replicas (3 on a cluster)"`
	TelemetryStream   string        `envconfig:"TELEMETRY_STREAM" default:"TELEMETRY" desc:"stream of OTLP payloads"`
	LogsSubject       string        `envconfig:"LOGS_SUBJECT" default:"otel_logs" desc:"subject of OTLP logs (and subjects below it)"`
	MetricsSubject    string        `envconfig:"METRICS_SUBJECT" default:"otel_metrics" desc:"subject of OTLP metrics (and subjects below it)"`
	TelemetryMaxAge   time.Duration `envconfig:"TELEMETRY_MAX_AGE" default:"72h" desc:"how long OTLP payloads stay in the stream"`
	TelemetryMaxBytes int64         `envconfig:"TELEMETRY_MAX_BYTES" default:"0" desc:"size bound of the telemetry stream in bytes (per replica), beyond which it refuses new messages; 0 is half of the JetStream storage of the account or server, -1 is unbounded"`
	EventsStream      string        `envconfig:"EVENTS_STREAM" default:"EVENTS" desc:"stream of deploy and incident events"`
	EventsMaxAge      time.Duration `envconfig:"EVENTS_MAX_AGE" default:"8760h" desc:"how long deploy and incident events stay in the stream"`
	DuplicateWindow   time.Duration `envconfig:"DUPLICATE_WINDOW" default:"2m" desc:"window in which a repeated Nats-Msg-Id is dropped"`
	AggregatesStream  string        `envconfig:"AGGREGATES_STREAM" default:"AGGREGATES" desc:"stream of per-minute telemetry aggregates the workers emit for detection"`
	AggregatesMaxAge  time.Duration `envconfig:"AGGREGATES_MAX_AGE" default:"72h" desc:"how long aggregates stay (the correlator rebuilds its state from them)"`
	AlertsStream      string        `envconfig:"ALERTS_STREAM" default:"ALERTS" desc:"stream of alert events waiting for webhook delivery"`
	AlertsMaxAge      time.Duration `envconfig:"ALERTS_MAX_AGE" default:"168h" desc:"how long alert events stay"`
	DeadLetterStream  string        `envconfig:"DLQ_STREAM" default:"DEADLETTER" desc:"stream of messages that could not be processed (faultline.dlq.>)"`
	DeadLetterMaxAge  time.Duration `envconfig:"DLQ_MAX_AGE" default:"336h" desc:"how long dead letters are kept"`
}

// DefaultConfig returns the settings with every default applied and no
// environment read.
func DefaultConfig() Config {
	var c Config
	// The prefix names no variable anyone sets: only defaults apply.
	if err := envconfig.Process("faultline_defaults_only", &c); err != nil {
		panic("broker: defaults do not parse: " + err.Error())
	}
	return c
}

// Validate checks the settings before anything connects.
func (c *Config) Validate() error {
	if c.URL == "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return fmt.Errorf("FAULTLINE_NATS_LISTEN: %q is not host:port: %w", c.Listen, err)
		}
	}
	for name, f := range map[string]string{"CREDS": c.CredsFile, "TLS_CA": c.TLSCA, "TLS_CERT": c.TLSCert, "TLS_KEY": c.TLSKey} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("FAULTLINE_NATS_%s: %w", name, err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("FAULTLINE_NATS_TLS_CERT and FAULTLINE_NATS_TLS_KEY go together")
	}
	if (c.User == "") != (c.Password == "") {
		return fmt.Errorf("FAULTLINE_NATS_USER and FAULTLINE_NATS_PASSWORD go together")
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("FAULTLINE_NATS_REPLICAS: %d, want 1 to 5", c.Replicas)
	}
	for name, s := range map[string]string{"TELEMETRY_STREAM": c.TelemetryStream, "EVENTS_STREAM": c.EventsStream, "AGGREGATES_STREAM": c.AggregatesStream, "ALERTS_STREAM": c.AlertsStream, "DLQ_STREAM": c.DeadLetterStream} {
		if !validName(s) {
			return fmt.Errorf("FAULTLINE_NATS_%s: %q is not a valid stream name", name, s)
		}
	}
	for name, s := range map[string]string{"LOGS_SUBJECT": c.LogsSubject, "METRICS_SUBJECT": c.MetricsSubject} {
		if !validSubject(s) {
			return fmt.Errorf("FAULTLINE_NATS_%s: %q is not a literal subject", name, s)
		}
	}
	if c.TelemetryMaxAge < 0 || c.EventsMaxAge < 0 || c.DeadLetterMaxAge < 0 {
		return fmt.Errorf("FAULTLINE_NATS_*_MAX_AGE: limits cannot be negative")
	}
	if c.TelemetryMaxBytes < -1 {
		return fmt.Errorf("FAULTLINE_NATS_TELEMETRY_MAX_BYTES: %d, want a size in bytes, 0 (half of the JetStream storage) or -1 (unbounded)", c.TelemetryMaxBytes)
	}
	if c.DuplicateWindow <= 0 {
		return fmt.Errorf("FAULTLINE_NATS_DUPLICATE_WINDOW: must be positive")
	}
	return nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' {
			return false
		}
	}
	return true
}

func validSubject(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i, r := range s {
		if r <= ' ' || r == '*' || r == '>' || (r == '.' && s[i-1] == '.') {
			return false
		}
	}
	return true
}
