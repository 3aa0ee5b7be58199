package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/correlator"
	"github.com/faultline-dev/faultline/pipeline/gateway"
	"github.com/faultline-dev/faultline/pipeline/ui"
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
	AdminListen     string        `envconfig:"ADMIN_LISTEN" default:"127.0.0.1:8888" desc:"listen address of /healthz, /readyz, /metrics and /debug/pprof"`
	AdminToken      string        `envconfig:"ADMIN_TOKEN" desc:"bearer token required by /metrics and /debug/pprof"`
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"30s" desc:"how long a graceful shutdown may take"`

	NATS       broker.Config          `envconfig:"NATS"`
	ClickHouse clickhouse.Config      `envconfig:"CLICKHOUSE"`
	Gateway    gateway.Config         `envconfig:"GATEWAY"`
	Worker     worker.Config          `envconfig:"WORKER"`
	Correlator correlator.Config      `envconfig:"CORRELATOR"`
	Lease      correlator.LeaseConfig `envconfig:"CORRELATOR_LEASE"`
	Webhook    webhook.Config         `envconfig:"WEBHOOK"`
	UI         ui.Config              `envconfig:"UI"`
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
		if err := c.Lease.Validate(); err != nil {
			return err
		}
		// The correlator role delivers the alert webhooks.
		if err := c.Webhook.Validate(); err != nil {
			return err
		}
	}
	if r.ui {
		if err := c.UI.Validate(); err != nil {
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

// A setting is one environment variable, as envconfig reads it.
type setting struct {
	Key, Type, Default, Description string
}

// settings lists every setting of Config in declaration order. It is the
// one source of faultline config and of docs/settings.md.
func settings() ([]setting, error) {
	var b strings.Builder
	var c Config
	// Unit and record separators: descriptions hold tabs and commas of
	// their own.
	if err := envconfig.Usagef(envPrefix, &c, &b, "{{range .}}{{usage_key .}}\x1f{{usage_type .}}\x1f{{usage_default .}}\x1f{{usage_description .}}\x1e{{end}}"); err != nil {
		return nil, err
	}
	var out []setting
	for _, rec := range strings.Split(strings.TrimSuffix(b.String(), "\x1e"), "\x1e") {
		f := strings.Split(rec, "\x1f")
		if len(f) != 4 {
			return nil, fmt.Errorf("settings: cannot read %q", rec)
		}
		out = append(out, setting{Key: f[0], Type: f[1], Default: f[2], Description: f[3]})
	}
	return out, nil
}

// cmdConfig lists every setting with its variable, type, default and
// description, or with --markdown the text of docs/settings.md.
func cmdConfig(_ context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	md := fs.Bool("markdown", false, "print docs/settings.md: the settings as Markdown tables, grouped by the roles that use them")
	perms := fs.Bool("nats-permissions", false, "print the NATS users of the gateway, worker and correlator, each with exactly the permissions its role needs with the current settings, as nats-server configuration")
	if help, err := noArgs(fs, args, out); help || err != nil {
		return err
	}
	if *perms {
		// Only names matter here: no role's validation applies.
		var cfg Config
		if err := envconfig.Process(envPrefix, &cfg); err != nil {
			return fmt.Errorf("settings: %w", err)
		}
		fmt.Fprintln(out, "# The users faultline's roles connect as (FAULTLINE_NATS_USER and FAULTLINE_NATS_PASSWORD),\n"+
			"# each with exactly the permissions its role needs: include this in nats-server's\n"+
			"# configuration, with the passwords in its environment.")
		return natsAuthorization(out, natsPermissions(&cfg), natsPasswordVar)
	}
	ss, err := settings()
	if err != nil {
		return err
	}
	if *md {
		return settingsMarkdown(out, ss)
	}
	for _, s := range ss {
		fmt.Fprintf(out, "%s\t%s\t%s\t%s\n", s.Key, s.Type, s.Default, s.Description)
	}
	return nil
}

// settingGroups says, per part of Config (by its envconfig tag; "" for the
// top-level settings), what the part is and which roles use it. A part
// missing here still gets its table, titled by its tag.
var settingGroups = map[string]struct{ title, usedBy string }{
	"":                 {"General", "Used by `run`, `gateway`, `worker` and `correlator` (`DATA_DIR` by `run` only: the other roles embed and start nothing); `migrate` reads `LOG_LEVEL`."},
	"NATS":             {"NATS and streams", "Used by `run`, `gateway`, `worker` and `correlator`."},
	"CLICKHOUSE":       {"ClickHouse", "Used by `run`, `worker`, `correlator`, `migrate` and `dora`; the gateway never connects to ClickHouse."},
	"GATEWAY":          {"Gateway", "Used by `run` and `gateway`."},
	"WORKER":           {"Worker", "Used by `run` and `worker`."},
	"CORRELATOR":       {"Correlator and detection", "Used by `run` and `correlator`; a worker reads `RULES_FILE` too, because the aggregates it publishes follow the rules' severity and latency metrics."},
	"CORRELATOR_LEASE": {"Correlator lease", "Used by `run` and `correlator`: of the correlators sharing a NATS, the one holding the lease detects, correlates, writes and alerts; the others stand by (docs/operations.md)."},
	"WEBHOOK":          {"Alert webhooks", "Used by `run` and `correlator` (the notifier runs beside the correlator)."},
	"UI":               {"Web UI", "Used by `run` and `correlator`, which serve the web UI (incidents, DORA, deploys; read-only on ClickHouse)."},
}

//go:generate sh -c "go run . config --markdown > ../../docs/settings.md"

// settingsMarkdown writes docs/settings.md: one table per part of Config,
// in declaration order.
func settingsMarkdown(out io.Writer, ss []setting) error {
	type group struct {
		tag, prefix string
		rows        []setting
	}
	groups := []*group{{}}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("envconfig"); tag != "" && f.Type.Kind() == reflect.Struct {
			groups = append(groups, &group{tag: tag, prefix: envPrefix + "_" + tag + "_"})
		}
	}
	for _, s := range ss {
		g := groups[0]
		for _, x := range groups[1:] {
			if strings.HasPrefix(s.Key, x.prefix) {
				g = x
			}
		}
		g.rows = append(g.rows, s)
	}
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	var b strings.Builder
	b.WriteString(`# Settings

<!-- Generated by 'faultline config --markdown' from the settings' declarations; do not edit.
     Regenerate: go run ./cmd/faultline config --markdown > docs/settings.md -->

Every setting is an environment variable. A command that loads settings (` + "`run`, `gateway`, `worker`, `correlator`,\n" +
		"`migrate`, `dora`, `check`" + `) validates all of them, not only those it uses, and stops with a message naming the
variable when one is wrong; ` + "`faultline check ROLE...`" + ` does the same without connecting to anything. ` + "`faultline config`" + `
prints this list as plain text. Durations are Go durations (` + "`90s`, `5m`, `72h`" + `); lists are comma separated.
`)
	for _, g := range groups {
		if len(g.rows) == 0 {
			continue
		}
		meta, ok := settingGroups[g.tag]
		if !ok {
			meta.title = g.tag
		}
		fmt.Fprintf(&b, "\n## %s\n\n", meta.title)
		if meta.usedBy != "" {
			fmt.Fprintf(&b, "%s\n\n", meta.usedBy)
		}
		b.WriteString("| Variable | Type | Default | Description |\n| --- | --- | --- | --- |\n")
		for _, s := range g.rows {
			def := ""
			if s.Default != "" {
				def = "`" + cell(s.Default) + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", s.Key, typeName(s.Type), def, cell(s.Description))
		}
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// typeName shortens envconfig's type descriptions.
func typeName(t string) string {
	switch t {
	case "True or False":
		return "bool"
	case "Comma-separated list of String":
		return "list"
	}
	return strings.ToLower(t)
}
