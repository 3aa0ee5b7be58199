package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
)

func TestProvisionIdempotentAndUpdates(t *testing.T) {
	s := natstest.Start(t) // provisions once
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := s.JS.Stream(ctx, s.Config.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	created := before.CachedInfo().Created

	if err := broker.Provision(ctx, s.JS, broker.Streams(s.Config), nil); err != nil {
		t.Fatalf("second provision: %v", err)
	}
	after, err := s.JS.Stream(ctx, s.Config.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	if !after.CachedInfo().Created.Equal(created) {
		t.Fatal("second provision recreated the stream")
	}

	// A setting NATS can change in place is applied.
	c := s.Config
	c.TelemetryMaxAge = time.Hour
	if err := broker.Provision(ctx, s.JS, broker.Streams(c), nil); err != nil {
		t.Fatalf("update max age: %v", err)
	}
	info, err := s.JS.Stream(ctx, c.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Fatalf("max age = %v after update, want 1h", got)
	}

	// One it cannot change fails and names the stream.
	defs := broker.Streams(c)
	defs[0].Storage = jetstream.MemoryStorage
	err = broker.Provision(ctx, s.JS, defs, nil)
	if err == nil || !strings.Contains(err.Error(), c.TelemetryStream) {
		t.Fatalf("changing storage: err = %v, want an error naming %s", err, c.TelemetryStream)
	}
}

func TestEmbeddedPersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	c := natstest.Config(t)
	s := natstest.StartDir(t, c, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 10; i++ {
		if _, err := s.JS.Publish(ctx, broker.DeploysSubject, []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	s.Stop()

	s = natstest.StartDir(t, c, dir)
	st, err := s.JS.Stream(ctx, c.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 10 {
		t.Fatalf("events stream holds %d messages after restart, want 10", n)
	}
}

func TestEmbeddedRequiresConfiguredToken(t *testing.T) {
	c := natstest.Config(t)
	c.Token = "s3cret"
	s := natstest.StartDir(t, c, t.TempDir()) // connects with the token
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bad := c
	bad.Token = "wrong"
	if nc, err := broker.Connect(ctx, bad, s.ClientURL(), "intruder", nil); err == nil {
		nc.Close()
		t.Fatal("connected with a wrong token")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*broker.Config)
		ok   bool
	}{
		{"defaults", func(*broker.Config) {}, true},
		{"bad listen", func(c *broker.Config) { c.Listen = "4222" }, false},
		{"user without password", func(c *broker.Config) { c.User = "u" }, false},
		{"cert without key", func(c *broker.Config) { c.TLSCert = "/etc/hostname" }, false},
		{"missing creds file", func(c *broker.Config) { c.CredsFile = "/nonexistent.creds" }, false},
		{"replicas 0", func(c *broker.Config) { c.Replicas = 0 }, false},
		{"wildcard subject", func(c *broker.Config) { c.LogsSubject = "otel.*" }, false},
		{"dotted stream", func(c *broker.Config) { c.EventsStream = "a.b" }, false},
		{"unbounded telemetry", func(c *broker.Config) { c.TelemetryMaxBytes = -1 }, true},
		{"telemetry bound below -1", func(c *broker.Config) { c.TelemetryMaxBytes = -2 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := natstest.Config(t)
			tc.mod(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
