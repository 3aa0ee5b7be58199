package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/correlator"
	"github.com/faultline-dev/faultline/pipeline/gateway"
	"github.com/faultline-dev/faultline/pipeline/worker"
	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/webhook"
)

// envPrefix starts every setting's variable name.
const envPrefix = "FAULTLINE"

// Config is every setting of the faultline binary; each part belongs to the
// package that uses it and validates itself, and a role validates only the
// parts it uses (Validate).
type Config struct {
	LogLevel        string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	DataDir         string        `envconfig:"DATA_DIR" default:".data" desc:"where the embedded NATS and local ClickHouse keep their data"`
	AdminListen     string        `envconfig:"ADMIN_LISTEN" default:"127.0.0.1:8888" desc:"listen address of /healthz, /readyz, /metrics"`
	AdminToken      string        `envconfig:"ADMIN_TOKEN" desc:"bearer token required by /metrics and /debug/pprof"`
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"30s" desc:"how long a graceful shutdown may take"`

	NATS       broker.Config     `envconfig:"NATS"`
	ClickHouse clickhouse.Config `envconfig:"CLICKHOUSE"`
	Gateway    gateway.Config    `envconfig:"GATEWAY"`
	Worker     worker.Config     `envconfig:"WORKER"`
	Correlator correlator.Config `envconfig:"CORRELATOR"`
	Webhook    webhook.Config    `envconfig:"WEBHOOK"`
}

// loadConfig reads the settings and validates those role r uses.
func loadConfig(r role) (*Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	if err := c.Validate(r); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	return &c, nil
}

// Validate checks the settings role r reads, and only those: in a
// deployment every role loads the same ConfigMap and Secret, so a setting
// of one role (the notifier's webhook secret, say) must not stop another
// that never reads it.
func (c *Config) Validate(r role) error {
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if r.needNATS {
		if err := c.validateServing(r); err != nil {
			return err
		}
	}
	if r.local && c.DataDir == "" {
		return fmt.Errorf("FAULTLINE_DATA_DIR: must not be empty")
	}
	if r.gateway {
		if err := c.Gateway.Validate(); err != nil {
			return err
		}
	}
	if r.worker {
		if err := c.Worker.Validate(); err != nil {
			return err
		}
		// The aggregates hook reads the detection rules: a worker that
		// publishes aggregates needs the correlator's rules file.
		if c.Worker.Aggregates && c.Correlator.RulesFile != "" {
			if _, err := detect.LoadRules(c.Correlator.RulesFile); err != nil {
				return fmt.Errorf("FAULTLINE_CORRELATOR_RULES_FILE: %w", err)
			}
		}
	}
	if r.correlator {
		if err := c.Correlator.Validate(); err != nil {
			return err
		}
		// The correlator role delivers the alert webhooks.
		if err := c.Webhook.Validate(); err != nil {
			return err
		}
	}
	if r.needCH {
		if !r.local && len(c.ClickHouse.Addr) == 0 {
			return fmt.Errorf("faultline %s joins an existing deployment: set FAULTLINE_CLICKHOUSE_ADDR (faultline run starts a local ClickHouse)", r.name)
		}
		return c.ClickHouse.Validate()
	}
	return nil
}

// validateServing checks what every long-running role reads: the admin
// listener, the shutdown bound and NATS.
func (c *Config) validateServing(r role) error {
	if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
		return fmt.Errorf("FAULTLINE_ADMIN_LISTEN: %q is not host:port: %w", c.AdminListen, err)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("FAULTLINE_SHUTDOWN_TIMEOUT: must be positive")
	}
	if !r.local && c.NATS.URL == "" {
		return fmt.Errorf("faultline %s joins an existing deployment: set FAULTLINE_NATS_URL (faultline run embeds NATS)", r.name)
	}
	return c.NATS.Validate()
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("FAULTLINE_LOG_LEVEL: %q, want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(level string) *slog.Logger {
	l, _ := parseLevel(level)
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// printConfig lists every setting with its variable, type, default and
// description.
func printConfig() error {
	var c Config
	return envconfig.Usagef(envPrefix, &c, os.Stdout, "{{range .}}{{usage_key .}}\t{{usage_type .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}")
}
