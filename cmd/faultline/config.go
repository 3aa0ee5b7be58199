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
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/webhook"
)

// envPrefix starts every setting's variable name.
const envPrefix = "FAULTLINE"

// Config is every setting of the faultline binary; each part belongs to the
// package that uses it and validates itself.
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

func loadConfig() (*Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	return &c, nil
}

// Validate checks every part.
func (c *Config) Validate() error {
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
		return fmt.Errorf("FAULTLINE_ADMIN_LISTEN: %q is not host:port: %w", c.AdminListen, err)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("FAULTLINE_SHUTDOWN_TIMEOUT: must be positive")
	}
	if c.DataDir == "" {
		return fmt.Errorf("FAULTLINE_DATA_DIR: must not be empty")
	}
	if err := c.NATS.Validate(); err != nil {
		return err
	}
	if err := c.Gateway.Validate(); err != nil {
		return err
	}
	if err := c.Worker.Validate(); err != nil {
		return err
	}
	if err := c.Correlator.Validate(); err != nil {
		return err
	}
	if err := c.Webhook.Validate(); err != nil {
		return err
	}
	return c.ClickHouse.Validate()
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
