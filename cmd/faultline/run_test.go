package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/pipeline/replay"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestRunEndToEnd starts `faultline run` as make run does (embedded NATS,
// local ClickHouse, gateway, worker, admin; free ports), sends the reference
// scenario through the gateway, and checks that every record lands in
// ClickHouse, /readyz says ready, and shutdown returns cleanly.
func TestRunEndToEnd(t *testing.T) {
	bin, err := chtest.Bin()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"FAULTLINE_DATA_DIR":                   t.TempDir(),
		"FAULTLINE_NATS_LISTEN":                "127.0.0.1:0",
		"FAULTLINE_CLICKHOUSE_LOCAL_TCP_PORT":  "0",
		"FAULTLINE_CLICKHOUSE_LOCAL_HTTP_PORT": "0",
		"FAULTLINE_CLICKHOUSE_BIN":             bin,
		"FAULTLINE_GATEWAY_LISTEN":             "127.0.0.1:0",
		"FAULTLINE_GATEWAY_GRPC_LISTEN":        "127.0.0.1:0",
		"FAULTLINE_ADMIN_LISTEN":               "127.0.0.1:0",
		"FAULTLINE_LOG_LEVEL":                  "warn",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up := make(chan *stack, 1)
	done := make(chan error, 1)
	go func() { done <- cmdServe(ctx, roles["run"], func(s *stack) { up <- s }) }()
	var s *stack
	select {
	case s = <-up:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(3 * time.Minute):
		t.Fatal("run did not come up")
	}

	resp, err := http.Get("http://" + s.admin.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "clickhouse: ok") {
		t.Fatalf("readyz: %d %s", resp.StatusCode, body)
	}

	reqs := replay.Scenario(1)
	logs := 0
	for _, r := range reqs {
		if r.Path == replay.PathLogs {
			logs += r.Records
		}
	}
	sender := &replay.Sender{BaseURL: "http://" + s.gateway.Addr()}
	if err := sender.Send(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var n uint64
	for time.Now().Before(deadline) {
		if err := s.ch.QueryRow(ctx, "SELECT count() FROM otel_logs").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= uint64(logs) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if n != uint64(logs) {
		t.Fatalf("otel_logs holds %d rows, the scenario sent %d", n, logs)
	}
	var points uint64
	if err := s.ch.QueryRow(ctx, "SELECT count() FROM otel_metrics_histogram").Scan(&points); err != nil || points == 0 {
		t.Fatalf("histogram points: %d, %v", points, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("shutdown hung")
	}
}
