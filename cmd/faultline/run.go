package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/admin"
	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/gateway"
	"github.com/faultline-dev/faultline/pipeline/ui"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
)

// stack holds the connections every role needs, and what this process
// started on its own (embedded NATS, local ClickHouse).
type stack struct {
	cfg   *Config
	log   *slog.Logger
	admin *admin.Server

	natsSrv *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream

	chSrv *chlocal.Server
	ch    driver.Conn

	gateway *gateway.Gateway
	ui      *ui.Server // nil when FAULTLINE_UI_LISTEN is empty
	started atomic.Bool

	stops []func(context.Context) // run in reverse order
}

// up brings the dependencies up: admin endpoints first (so /healthz
// answers while the rest waits), then NATS and ClickHouse, embedded or
// external, each retried until ctx ends.
func up(ctx context.Context, cfg *Config, log *slog.Logger, needCH bool) (*stack, error) {
	s := &stack{cfg: cfg, log: log}
	s.admin = admin.New(cfg.AdminToken, log)
	// Not ready until every part of the role is up, not only the
	// connections registered so far.
	s.admin.AddCheck("startup", func(context.Context) error {
		if !s.started.Load() {
			return errors.New("starting")
		}
		return nil
	})
	if err := s.admin.Listen(cfg.AdminListen); err != nil {
		return nil, err
	}
	s.onStop(func(ctx context.Context) { _ = s.admin.Shutdown(ctx) })

	if err := s.upNATS(ctx); err != nil {
		s.down()
		return nil, err
	}
	if needCH {
		if err := s.upClickHouse(ctx); err != nil {
			s.down()
			return nil, err
		}
	}
	return s, nil
}

func (s *stack) onStop(f func(context.Context)) { s.stops = append(s.stops, f) }

func (s *stack) upNATS(ctx context.Context) error {
	url := s.cfg.NATS.URL
	if url == "" {
		dir := s.cfg.NATS.StoreDir
		if dir == "" {
			dir = filepath.Join(s.cfg.DataDir, "nats")
		}
		srv, err := broker.StartEmbedded(s.cfg.NATS, dir, s.log)
		if err != nil {
			return err
		}
		s.natsSrv = srv
		s.onStop(func(context.Context) { srv.Shutdown(); srv.WaitForShutdown() })
		url = srv.ClientURL()
	}
	nc, err := broker.Connect(ctx, s.cfg.NATS, url, "faultline", s.log)
	if err != nil {
		return err
	}
	s.nc = nc
	s.onStop(func(context.Context) { _ = nc.Drain(); nc.Close() })
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	var serverMax int64
	if s.natsSrv != nil {
		if jc := s.natsSrv.JetStreamConfig(); jc != nil {
			serverMax = jc.MaxStore
		}
	}
	// Every role sizes the telemetry stream the same way, from the
	// account's or the server's storage, so they agree on its bound.
	if s.cfg.NATS.TelemetryMaxBytes, err = broker.TelemetryMaxBytes(ctx, js, s.cfg.NATS, serverMax); err != nil {
		return err
	}
	if err := broker.Provision(ctx, js, broker.Streams(s.cfg.NATS), s.log); err != nil {
		return err
	}
	s.log.Info("telemetry stream bound", "stream", s.cfg.NATS.TelemetryStream, "max_bytes", s.cfg.NATS.TelemetryMaxBytes)
	s.admin.AddCheck("nats", func(context.Context) error {
		if st := nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("connection %s", st)
		}
		return nil
	})
	return nil
}

func (s *stack) upClickHouse(ctx context.Context) error {
	if len(s.cfg.ClickHouse.Addr) == 0 {
		dir := filepath.Join(s.cfg.DataDir, "clickhouse")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("local clickhouse: %w", err)
		}
		srv, err := chlocal.Start(ctx, chlocal.Options{
			Bin:      s.cfg.ClickHouse.LocalBin,
			Dir:      dir,
			TCPPort:  s.cfg.ClickHouse.LocalTCPPort,
			HTTPPort: s.cfg.ClickHouse.LocalHTTPPort,
			Output:   os.Stderr,
			Restart:  true,
		})
		if err != nil {
			return fmt.Errorf("%w (or set FAULTLINE_CLICKHOUSE_ADDR to use a ClickHouse server)", err)
		}
		s.chSrv = srv
		s.onStop(func(context.Context) { _ = srv.Stop() })
		s.cfg.ClickHouse.Addr = []string{srv.Addr}
		s.log.Info("local clickhouse started", "native", srv.Addr, "http", srv.HTTPAddr, "data", dir)
	}
	if err := clickhouse.Migrate(ctx, s.cfg.ClickHouse, s.log); err != nil {
		return err
	}
	ch, err := clickhouse.Open(ctx, s.cfg.ClickHouse, s.log)
	if err != nil {
		return err
	}
	s.ch = ch
	s.onStop(func(context.Context) { _ = ch.Close() })
	s.admin.AddCheck("clickhouse", func(ctx context.Context) error { return ch.Ping(ctx) })
	return nil
}

func chHTTP(s *stack) string {
	if s.chSrv != nil {
		return s.chSrv.HTTPAddr
	}
	return "-"
}

// down stops everything started, newest first, within the shutdown timeout.
func (s *stack) down() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i](ctx)
	}
	s.stops = nil
}

// role names the parts a process runs and what it connects to; run is all
// of them. Settings are validated per role (Config.Validate).
type role struct {
	name string
	// local: with no address set, NATS is embedded and ClickHouse is the
	// local server run starts (dora reads that one); otherwise the role
	// joins an existing deployment and needs the addresses.
	local      bool
	needNATS   bool // every long-running role; it serves the admin endpoints
	needCH     bool
	gateway    bool
	worker     bool
	correlator bool // with the notifier, which delivers its alerts
	ui         bool // the web UI (FAULTLINE_UI_LISTEN)
}

var roles = map[string]role{
	"run":        {name: "run", local: true, needNATS: true, needCH: true, gateway: true, worker: true, correlator: true, ui: true},
	"correlator": {name: "correlator", needNATS: true, needCH: true, correlator: true, ui: true},
	"gateway":    {name: "gateway", needNATS: true, gateway: true},
	"worker":     {name: "worker", needNATS: true, needCH: true, worker: true},
	"migrate":    {name: "migrate", needCH: true},
	"dora":       {name: "dora", local: true, needCH: true},
}

// cmdServe brings the dependencies up, starts the role's parts, and on
// SIGINT/SIGTERM stops them in order: listeners stop accepting, workers
// commit and ack what they hold, then connections and embedded servers
// close. The whole shutdown is bounded by FAULTLINE_SHUTDOWN_TIMEOUT.
func cmdServe(ctx context.Context, r role, ready func(*stack)) error {
	cfg, err := loadConfig(r)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel).With("role", r.name)
	if r.name == "worker" && os.Getenv("GOGC") == "" && cfg.Worker.GCPercent > 0 {
		// A worker's heap is mostly the batches in flight; Go's default
		// lets it grow to twice that before collecting (VictoriaMetrics
		// makes the same trade with GOGC=30).
		debug.SetGCPercent(cfg.Worker.GCPercent)
	}
	start := time.Now()
	s, err := up(ctx, cfg, log, r.needCH)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	defer s.down()

	var g group
	if r.gateway {
		if err := startGateway(s); err != nil {
			return err
		}
	}
	if r.ui {
		if err := startUI(s); err != nil {
			return err
		}
	}
	if r.worker {
		if err := startWorker(ctx, s, &g); err != nil {
			return err
		}
	}
	if r.correlator {
		if err := startCorrelator(ctx, s, &g); err != nil {
			return err
		}
		if err := startNotifier(ctx, s, &g); err != nil {
			return err
		}
	}
	natsURL := cfg.NATS.URL
	if s.natsSrv != nil {
		natsURL = s.natsSrv.ClientURL()
	}
	s.started.Store(true)
	log.Info("faultline running",
		"startup", time.Since(start).Round(time.Millisecond).String(),
		"nats", natsURL,
		"clickhouse", cfg.ClickHouse.Addr,
		"database", cfg.ClickHouse.Database,
		"admin", "http://"+s.admin.Addr())
	if r.name == "run" {
		fmt.Fprintf(os.Stderr, "\nfaultline is up (%s)\n"+
			"  gateway     http://%s  (OTLP/HTTP /v1/logs /v1/metrics; /v1/deploys /v1/incidents /v1/alertmanager /v1/cdevents)\n"+
			"  OTLP/gRPC   %s\n"+
			"  NATS        %s  (the Collector's NATS exporter publishes to %s / %s)\n"+
			"  ClickHouse  %v  database %s  (HTTP %s)\n"+
			"  admin       http://%s/healthz /readyz /metrics\n"+
			"  web UI      %s\n"+
			"Try: bin/faultline replay   then   bin/faultline dora\nCtrl-C stops everything.\n\n",
			time.Since(start).Round(time.Millisecond), s.gateway.Addr(), s.gateway.GRPCAddr(), natsURL, cfg.NATS.LogsSubject, cfg.NATS.MetricsSubject,
			cfg.ClickHouse.Addr, cfg.ClickHouse.Database, chHTTP(s), s.admin.Addr(), uiURL(s))
	}
	if ready != nil {
		ready(s)
	}
	<-ctx.Done()
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(cfg.ShutdownTimeout):
		return fmt.Errorf("shutdown did not finish within %s", cfg.ShutdownTimeout)
	}
}

func cmdMigrate(ctx context.Context, args []string, out io.Writer) error {
	if help, err := noArgs(flag.NewFlagSet("migrate", flag.ContinueOnError), args, out); help || err != nil {
		return err
	}
	cfg, err := loadConfig(roles["migrate"])
	if err != nil {
		return err
	}
	return clickhouse.Migrate(ctx, cfg.ClickHouse, newLogger(cfg.LogLevel))
}

// checkRoles are the names faultline check takes: the roles and migrate.
var checkRoles = []string{"run", "gateway", "worker", "correlator", "migrate"}

// cmdCheck validates the settings as each named role would at start, and
// what the role needs besides, without connecting to anything: a bad
// setting is found before a rollout rather than by a crash loop.
func cmdCheck(_ context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	if help, err := parseFlags(fs, args, out); help || err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("check: name at least one role of %s (see 'faultline check --help')", strings.Join(checkRoles, ", "))
	}
	for _, name := range fs.Args() {
		if !slices.Contains(checkRoles, name) {
			return fmt.Errorf("check: unknown role %q, want one of %s", name, strings.Join(checkRoles, ", "))
		}
	}
	for _, name := range fs.Args() {
		if _, err := loadConfig(roles[name]); err != nil {
			return fmt.Errorf("check %s: %w", name, err)
		}
		fmt.Fprintf(out, "%s: settings valid\n", name)
	}
	return nil
}
