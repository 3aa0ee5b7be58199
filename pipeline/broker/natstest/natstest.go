// Package natstest starts real embedded NATS servers with JetStream for
// tests: each on a free port with its own storage, shut down when the test
// ends.
package natstest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
)

// Config returns the default broker settings with a free listen port.
func Config(t testing.TB) broker.Config {
	t.Helper()
	c := broker.DefaultConfig()
	c.Listen = "127.0.0.1:0"
	return c
}

// Server is an embedded server, a client connection and its JetStream
// context, with faultline's streams provisioned.
type Server struct {
	*server.Server
	Config broker.Config
	Dir    string
	NC     *nats.Conn
	JS     jetstream.JetStream
}

// Start runs a server storing under a fresh temporary directory.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartDir(t, Config(t), t.TempDir())
}

// StartDir runs a server with the given settings on dir; starting again on
// the same dir finds the streams it left.
func StartDir(t testing.TB, c broker.Config, dir string) *Server {
	t.Helper()
	s, err := broker.StartEmbedded(c, dir, nil)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, js, err := dial(ctx, c, s.ClientURL())
	if err != nil {
		s.Shutdown()
		t.Fatalf("natstest: %v", err)
	}
	if c.TelemetryMaxBytes, err = broker.TelemetryMaxBytes(ctx, js, c, s.JetStreamConfig().MaxStore); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	if err := broker.Provision(ctx, js, broker.Streams(c), nil); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	ts := &Server{Server: s, Config: c, Dir: dir, NC: nc, JS: js}
	t.Cleanup(ts.Stop)
	return ts
}

// Stop closes the client and shuts the server down; calling it twice is fine.
func (s *Server) Stop() {
	s.NC.Close()
	s.Shutdown()
	s.WaitForShutdown()
}

// StartLimited runs a server whose clients' account may store at most
// maxStore (a nats-server size: "4MB") in JetStream, as an operator limits
// an account on a shared cluster, with faultline's streams provisioned
// under the default sizing rule.
func StartLimited(t testing.TB, maxStore string) *Server {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	err := os.WriteFile(conf, []byte(`listen: "127.0.0.1:-1"
jetstream: {store_dir: "`+filepath.Join(dir, "js")+`"}
accounts: {
  app: {jetstream: {max_file: `+maxStore+`, max_mem: 1MB}, users: [{user: app, password: app}]}
}
`), 0o600)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		t.Fatal("natstest: limited server not ready")
	}
	c := Config(t)
	c.URL, c.User, c.Password = s.ClientURL(), "app", "app"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, js, err := dial(ctx, c, s.ClientURL())
	if err != nil {
		s.Shutdown()
		t.Fatalf("natstest: %v", err)
	}
	ts := &Server{Server: s, Config: c, Dir: dir, NC: nc, JS: js}
	t.Cleanup(ts.Stop)
	if c.TelemetryMaxBytes, err = broker.TelemetryMaxBytes(ctx, js, c, 0); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	ts.Config = c
	if err := broker.Provision(ctx, js, broker.Streams(c), nil); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	return ts
}

// dial connects a test client the way the roles do.
func dial(ctx context.Context, c broker.Config, url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := broker.Connect(ctx, c, url, "natstest", nil)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
