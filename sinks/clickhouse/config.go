// Package clickhouse is faultline's ClickHouse sink: the connection, the
// versioned schema migrations, and the batch writers that commit rows.
//
// # Clusters
//
// On one server every table is a plain MergeTree under its own name. With
// Config.Cluster set, the DDL runs ON CLUSTER and each table becomes two:
// <name>_local, with the Replicated engine, holds a shard's rows, and
// <name> is a Distributed table over it, so queries, the DORA views and
// Grafana use the same names in both shapes. Telemetry is sharded by
// cityHash64(ServiceName), which keeps a service's rows on one shard;
// deploys by cityHash64(DeployId), incidents and incident_suspects by
// cityHash64(IncidentId), so every version of a ReplacingMergeTree row
// lands on one shard and FINAL, which each shard applies to its own rows,
// stays exact. schema_migrations is distributed the same way.
//
// Writers insert into the Distributed tables with
// distributed_foreground_insert=1; see insertSettings for why that, and
// not the _local tables, keeps insert_deduplication_token's exactly-once
// across retries.
package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cenkalti/backoff/v4"
)

// Config is the ClickHouse part of faultline's settings (FAULTLINE_CLICKHOUSE_*).
type Config struct {
	// Addr lists native-protocol addresses (host:port, comma separated).
	// Empty means the local server that faultline run starts itself.
	Addr          []string `envconfig:"ADDR" desc:"native protocol addresses host:9000, comma separated; empty starts a local ClickHouse (make run)"`
	Database      string   `envconfig:"DATABASE" default:"faultline" desc:"database holding faultline's tables"`
	User          string   `envconfig:"USER" default:"default" desc:"user name"`
	Password      string   `envconfig:"PASSWORD" desc:"password"`
	TLS           bool     `envconfig:"TLS" default:"false" desc:"connect with TLS"`
	TLSCA         string   `envconfig:"TLS_CA" desc:"PEM file of CAs to trust (default: system roots)"`
	TLSSkipVerify bool     `envconfig:"TLS_INSECURE_SKIP_VERIFY" default:"false" desc:"do not verify the server certificate (testing only)"`
	// Cluster makes the DDL ON CLUSTER: <name>_local tables with
	// Replicated engines under Distributed tables of the familiar names.
	Cluster     string        `envconfig:"CLUSTER" desc:"cluster name: DDL runs ON CLUSTER, Replicated <name>_local tables under Distributed <name> tables"`
	TTLDays     int           `envconfig:"TTL_DAYS" default:"0" desc:"delete telemetry rows older than this many days; 0 keeps them"`
	DialTimeout time.Duration `envconfig:"DIAL_TIMEOUT" default:"5s" desc:"connect timeout"`
	MaxConns    int           `envconfig:"MAX_CONNS" default:"8" desc:"connection pool size"`

	// Local server (used when Addr is empty).
	LocalTCPPort  int    `envconfig:"LOCAL_TCP_PORT" default:"9000" desc:"native port of the local ClickHouse"`
	LocalHTTPPort int    `envconfig:"LOCAL_HTTP_PORT" default:"8123" desc:"HTTP port of the local ClickHouse"`
	LocalBin      string `envconfig:"BIN" default:"bin/faultline-clickhouse" desc:"launcher binary of the local ClickHouse"`

	// noCoordination renders cluster mode's Distributed tables without ON
	// CLUSTER and over plain MergeTree: the shape a server without Keeper
	// can run, so tests execute the Distributed DDL on local servers,
	// migrating each node of a local cluster on its own.
	noCoordination bool
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the settings before anything connects.
func (c *Config) Validate() error {
	for _, a := range c.Addr {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("FAULTLINE_CLICKHOUSE_ADDR: %q is not host:port: %w", a, err)
		}
	}
	if !identRE.MatchString(c.Database) {
		return fmt.Errorf("FAULTLINE_CLICKHOUSE_DATABASE: %q is not a plain identifier (letters, digits, _)", c.Database)
	}
	if c.Cluster != "" && !identRE.MatchString(c.Cluster) {
		return fmt.Errorf("FAULTLINE_CLICKHOUSE_CLUSTER: %q is not a plain identifier", c.Cluster)
	}
	if c.TTLDays < 0 {
		return fmt.Errorf("FAULTLINE_CLICKHOUSE_TTL_DAYS: %d is negative", c.TTLDays)
	}
	if c.MaxConns < 1 {
		return fmt.Errorf("FAULTLINE_CLICKHOUSE_MAX_CONNS: %d, need at least 1", c.MaxConns)
	}
	if c.TLSCA != "" {
		if _, err := os.Stat(c.TLSCA); err != nil {
			return fmt.Errorf("FAULTLINE_CLICKHOUSE_TLS_CA: %w", err)
		}
	}
	return nil
}

func (c *Config) options(db string) (*clickhouse.Options, error) {
	o := &clickhouse.Options{
		Addr:            c.Addr,
		Auth:            clickhouse.Auth{Database: db, Username: c.User, Password: c.Password},
		DialTimeout:     c.DialTimeout,
		MaxOpenConns:    c.MaxConns,
		MaxIdleConns:    c.MaxConns,
		ConnMaxLifetime: time.Hour,
		Settings:        clickhouse.Settings{},
	}
	if c.Cluster != "" {
		// Inserts through the Distributed tables (events, migration
		// records) return once the shards hold the rows, so what was
		// written is what the next query reads.
		o.Settings["distributed_foreground_insert"] = 1
	}
	if c.TLS {
		tc := &tls.Config{InsecureSkipVerify: c.TLSSkipVerify} //nolint:gosec // opt-in setting
		if c.TLSCA != "" {
			pem, err := os.ReadFile(c.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("read FAULTLINE_CLICKHOUSE_TLS_CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("FAULTLINE_CLICKHOUSE_TLS_CA holds no PEM certificate")
			}
			tc.RootCAs = pool
		}
		o.TLS = tc
	}
	return o, nil
}

// Open connects to ClickHouse, retrying with exponential backoff until ctx
// ends, and logs one line per failed attempt. The database must exist unless
// it is the empty string (used by migrations to create it).
func Open(ctx context.Context, c Config, log *slog.Logger) (driver.Conn, error) {
	if len(c.Addr) == 0 {
		return nil, errors.New("clickhouse: no address configured")
	}
	o, err := c.options(c.Database)
	if err != nil {
		return nil, err
	}
	return openWith(ctx, o, log)
}

func openWith(ctx context.Context, o *clickhouse.Options, log *slog.Logger) (driver.Conn, error) {
	conn, err := clickhouse.Open(o)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(10*time.Second),
		backoff.WithMaxElapsedTime(0)), ctx)
	attempt := 0
	err = backoff.Retry(func() error {
		attempt++
		pctx, cancel := context.WithTimeout(ctx, o.DialTimeout+5*time.Second)
		defer cancel()
		err := conn.Ping(pctx)
		if err != nil {
			var ex *clickhouse.Exception
			if errors.As(err, &ex) && (ex.Code == 516 || ex.Code == 81) { // auth failed, unknown database
				return backoff.Permanent(err)
			}
			if log != nil {
				log.Warn("clickhouse not reachable, retrying", "addr", strings.Join(o.Addr, ","), "attempt", attempt, "err", err)
			}
		}
		return err
	}, b)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", strings.Join(o.Addr, ","), err)
	}
	return conn, nil
}
