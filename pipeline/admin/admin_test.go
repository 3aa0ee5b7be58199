package admin_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/faultline-dev/faultline/pipeline/admin"
)

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	s := admin.New("tok", slog.New(slog.DiscardHandler))
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	base := "http://" + s.Addr()
	metrics.GetOrCreateCounter("faultline_admin_test_total").Inc()

	if code, _ := get(t, base+"/healthz", ""); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	if code, body := get(t, base+"/readyz", ""); code != 503 || !strings.Contains(body, "no dependency") {
		t.Fatalf("readyz with no checks = %d %q, want 503", code, body)
	}
	var failing error = errors.New("connection refused")
	s.AddCheck("nats", func(context.Context) error { return nil })
	s.AddCheck("clickhouse", func(context.Context) error { return failing })
	if code, body := get(t, base+"/readyz", ""); code != 503 || !strings.Contains(body, "clickhouse: connection refused") {
		t.Fatalf("readyz = %d %q, want 503 naming clickhouse", code, body)
	}
	failing = nil
	if code, body := get(t, base+"/readyz", ""); code != 200 {
		t.Fatalf("readyz = %d %q, want 200", code, body)
	}
	if code, _ := get(t, base+"/metrics", ""); code != 401 {
		t.Fatalf("metrics without token = %d, want 401", code)
	}
	code, body := get(t, base+"/metrics", "tok")
	if code != 200 || !strings.Contains(body, "faultline_admin_test_total 1") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics = %d, body lacks the counter or process metrics", code)
	}
}
