package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
)

// TestTelemetryStreamUpgradeToDiscardNew: a telemetry stream made by an
// earlier version (no byte bound, oldest dropped first) is brought in place
// to the bound and to refusing new messages when full, keeping what it
// holds; once full, a publish fails with the error the gateway maps to 429.
func TestTelemetryStreamUpgradeToDiscardNew(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := natstest.Config(t)
	srv, err := broker.StartEmbedded(c, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := broker.Connect(ctx, c, srv.ClientURL(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)

	old := broker.Streams(c)[0]
	old.MaxBytes, old.Discard = -1, jetstream.DiscardOld
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 10<<10)
	for i := range 20 {
		if _, err := js.Publish(ctx, c.LogsSubject, append([]byte(fmt.Sprint(i)), body...)); err != nil {
			t.Fatal(err)
		}
	}

	c.TelemetryMaxBytes = 256 << 10
	if err := broker.Provision(ctx, js, broker.Streams(c), nil); err != nil {
		t.Fatalf("provision over the old stream: %v", err)
	}
	s, err := js.Stream(ctx, c.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.Config.Discard != jetstream.DiscardNew || info.Config.MaxBytes != 256<<10 {
		t.Fatalf("after upgrade: discard %v, max bytes %d; want DiscardNew, %d", info.Config.Discard, info.Config.MaxBytes, 256<<10)
	}
	if info.State.Msgs != 20 || info.State.FirstSeq != 1 {
		t.Fatalf("after upgrade the stream holds %d messages from %d, want the 20 from 1", info.State.Msgs, info.State.FirstSeq)
	}

	var apiErr *jetstream.APIError
	for i := 20; ; i++ {
		_, err := js.Publish(ctx, c.LogsSubject, append([]byte(fmt.Sprint(i)), body...))
		if err == nil {
			if i > 100 {
				t.Fatal("a stream bounded to 256 KiB took 1 MiB")
			}
			continue
		}
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10077 || apiErr.Description != "maximum bytes exceeded" {
			t.Fatalf("publish to the full stream: %v (%#v), want error code 10077 maximum bytes exceeded", err, apiErr)
		}
		break
	}
	// A message larger than half the bound could never be stored: it is
	// refused as too large, not as full.
	_, err = js.Publish(ctx, c.LogsSubject, make([]byte, 200<<10))
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10054 {
		t.Fatalf("publish of 200 KiB to a stream bounded to 256 KiB: %v, want error code 10054", err)
	}
	s, _ = js.Stream(ctx, c.TelemetryStream)
	if first := s.CachedInfo().State.FirstSeq; first != 1 {
		t.Fatalf("the full stream dropped old messages: first sequence %d", first)
	}
}

func TestTelemetryMaxBytes(t *testing.T) {
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serverMax := ns.JetStreamConfig().MaxStore
	for _, tc := range []struct {
		name    string
		setting int64
		server  int64
		want    int64
	}{
		{"explicit", 5 << 20, serverMax, 5 << 20},
		{"unbounded", -1, serverMax, -1},
		{"half of the server's storage", 0, serverMax, serverMax / 2},
		{"nothing known", 0, 0, broker.FallbackTelemetryMaxBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ns.Config
			c.TelemetryMaxBytes = tc.setting
			got, err := broker.TelemetryMaxBytes(ctx, ns.JS, c, tc.server)
			if err != nil || got != tc.want {
				t.Fatalf("TelemetryMaxBytes = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	c := ns.Config
	c.TelemetryMaxBytes = -2
	if _, err := broker.TelemetryMaxBytes(ctx, ns.JS, c, serverMax); err == nil {
		t.Fatal("-2 accepted")
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "TELEMETRY_MAX_BYTES") {
		t.Fatalf("Validate(-2) = %v, want an error naming the setting", err)
	}
}

// TestTelemetryMaxBytesFromAccount: on a server whose account has a
// JetStream storage limit, the default bound is half of it per replica,
// and a stream left unbounded fails at the account's limit with the error
// the gateway counts as account_full.
func TestTelemetryMaxBytesFromAccount(t *testing.T) {
	ns := natstest.StartLimited(t, "4MB")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, c := ns.JS, ns.Config
	if c.TelemetryMaxBytes != 2<<20 {
		t.Fatalf("telemetry bound %d, want half of the account's 4 MiB", c.TelemetryMaxBytes)
	}
	// The server's own storage, however large, does not raise it.
	c.TelemetryMaxBytes = 0
	if got, err := broker.TelemetryMaxBytes(ctx, js, c, ns.JetStreamConfig().MaxStore); err != nil || got != 2<<20 {
		t.Fatalf("TelemetryMaxBytes = %d, %v; want 2 MiB", got, err)
	}

	c.TelemetryMaxBytes = -1
	if err := broker.Provision(ctx, js, broker.Streams(c)[:1], nil); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 64<<10)
	var apiErr *jetstream.APIError
	for i := 0; ; i++ {
		_, err := js.Publish(ctx, c.LogsSubject, body)
		if err == nil {
			if i > 100 {
				t.Fatal("an account limited to 4 MB stored 6 MB")
			}
			continue
		}
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10002 {
			t.Fatalf("publish beyond the account's storage: %v, want error code 10002", err)
		}
		break
	}
}

// TestTrimAcked: past the fill mark, what every durable consumer acked is
// purged and the rest stays; a consumer that acked nothing holds it back.
func TestTrimAcked(t *testing.T) {
	c := natstest.Config(t)
	c.TelemetryMaxBytes = 100 << 10
	ns := natstest.StartDir(t, c, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := make([]byte, 1000)
	for range 60 {
		if _, err := ns.JS.Publish(ctx, c.LogsSubject, body); err != nil {
			t.Fatal(err)
		}
	}
	// Below the mark nothing happens, acked or not.
	if _, n, _, err := broker.TrimAcked(ctx, ns.JS, c.TelemetryStream, 0.9); err != nil || n != 0 {
		t.Fatalf("below the mark: trimmed %d, %v", n, err)
	}

	cons, err := ns.JS.CreateOrUpdateConsumer(ctx, c.TelemetryStream, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	idle, err := ns.JS.CreateOrUpdateConsumer(ctx, c.TelemetryStream, jetstream.ConsumerConfig{Durable: "idle", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	ack := func(cons jetstream.Consumer, n int) {
		t.Helper()
		b, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	ack(cons, 40)
	if _, n, _, err := broker.TrimAcked(ctx, ns.JS, c.TelemetryStream, 0.5); err != nil || n != 0 {
		t.Fatalf("with a consumer that acked nothing: trimmed %d, %v", n, err)
	}
	ack(idle, 30)
	_, n, bytes, err := broker.TrimAcked(ctx, ns.JS, c.TelemetryStream, 0.5)
	if err != nil || n != 30 || bytes < 30*1000 {
		t.Fatalf("trimmed %d messages, %d bytes, %v; want the 30 both acked", n, bytes, err)
	}
	s, _ := ns.JS.Stream(ctx, c.TelemetryStream)
	if st := s.CachedInfo().State; st.FirstSeq != 31 || st.Msgs != 30 {
		t.Fatalf("after the trim: first %d, %d messages; want 31, 30", st.FirstSeq, st.Msgs)
	}
}
