package correlator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/faultline-dev/faultline/pipeline/admin"
	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestReadyAfterCatchUp: with a history in both streams, /readyz of a
// process running the correlator answers 503 naming the lag until the
// correlator has read both streams and released its reorder buffer, then
// 200; the lag gauges count the messages left, and the watermark gauge
// says how far event time is behind now.
func TestReadyAfterCatchUp(t *testing.T) {
	const deploys, batches = 200, 300
	ns := natstest.Start(t)
	cfg := chtest.Database(t)
	conn := chtest.Conn(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for i := range deploys {
		b, _ := json.Marshal(map[string]string{"id": fmt.Sprintf("d-%d", i), "service": fmt.Sprintf("svc-%d", i%20), "environment": "production",
			"version": fmt.Sprintf("v%d", i), "timestamp": time.Now().Add(-time.Duration(deploys-i) * time.Minute).Format(time.RFC3339),
			"type": "deploy", "status": "succeeded"})
		if _, err := ns.JS.Publish(ctx, broker.DeploysSubject, b); err != nil {
			t.Fatal(err)
		}
	}
	// A minute per telemetry message, the last one 11 minutes ago; the
	// first message (sequence 1) never comes, so the rest wait GapWait in
	// the reorder buffer.
	last := time.Now().Truncate(time.Minute).Add(-11 * time.Minute)
	for i := range batches {
		publishAggs(t, ns, fmt.Sprintf("b%d", i), aggEntry{Seq: uint64(i + 2), Aggs: []detect.Aggregate{{Service: "checkout", Environment: "production",
			Version: "v1", Minute: last.Add(-time.Duration(batches-1-i) * time.Minute).Unix(), Total: 200}}})
	}

	const gapWait = 2 * time.Second
	c := New(Config{Threshold: 0.5, FlushInterval: 100 * time.Millisecond, GapWait: gapWait}, ns.JS, ns.Config, mustEventsWriter(t, conn, cfg), nil)
	a := admin.New("", slog.New(slog.DiscardHandler))
	if err := a.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	a.AddCheck("correlator", c.Ready)
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + a.Addr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := readyz(); code != 503 || body != "correlator: starting\n" {
		t.Fatalf("readyz before Run = %d %q, want 503 starting", code, body)
	}

	// What the streams hold when following begins is the lag before the
	// first message is handled.
	evs, err := c.follow(ctx, ns.Config.EventsStream, []string{broker.DeploysSubject, broker.IncidentsSubject}, 0)
	if err != nil {
		t.Fatal(err)
	}
	aggs, err := c.follow(ctx, ns.Config.AggregatesStream, []string{broker.AggregatesSubject}, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.startCatchUp(evs, aggs)
	evs.Stop()
	aggs.Stop()
	want := fmt.Sprintf("correlator: catching up, %d messages behind\n", deploys+batches)
	if code, body := readyz(); code != 503 || body != want {
		t.Fatalf("readyz = %d %q, want 503 %q", code, body, want)
	}
	checkGauge(t, `faultline_correlator_lag_messages{stream="EVENTS"}`, deploys, 0)
	checkGauge(t, `faultline_correlator_lag_messages{stream="AGGREGATES"}`, batches, 0)

	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- c.Run(ctx) }()
	behind := regexp.MustCompile(`^correlator: catching up, \d+ messages behind`)
	var sawHeld bool
	for {
		code, body := readyz()
		if code == 200 {
			break
		}
		if code != 503 || !behind.MatchString(body) {
			t.Fatalf("readyz while catching up = %d %q", code, body)
		}
		sawHeld = sawHeld || strings.Contains(body, fmt.Sprintf("the aggregates of %d telemetry messages held for stream order", batches))
		if time.Since(start) > 30*time.Second {
			t.Fatalf("not ready after 30s: %q", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(start); took < gapWait {
		t.Errorf("ready after %s, before the reorder buffer could be released (GapWait %s)", took, gapWait)
	}
	if !sawHeld {
		t.Error("readyz never named the aggregates held in the reorder buffer")
	}
	checkGauge(t, `faultline_correlator_lag_messages{stream="EVENTS"}`, 0, 0)
	checkGauge(t, `faultline_correlator_lag_messages{stream="AGGREGATES"}`, 0, 0)

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Set at the last tick, so at most a little less than now's distance.
	wm := c.det.Watermark()
	if d := time.Since(wm); wm.IsZero() || d < 11*time.Minute {
		t.Fatalf("watermark %s is %s behind now, want the last minute's end less the lateness", wm, d)
	}
	checkGauge(t, "faultline_correlator_watermark_lag_seconds", time.Since(wm).Seconds()-1, 1)
}

// checkGauge finds a metric in the Prometheus text /metrics serves and
// compares its value with want, within tolerance.
func checkGauge(t *testing.T, name string, want, tolerance float64) {
	t.Helper()
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			got, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || got < want-tolerance || got > want+tolerance {
				t.Errorf("%s = %s, want %g (±%g)", name, strings.TrimSpace(v), want, tolerance)
			}
			return
		}
	}
	t.Errorf("no %s in the metrics", name)
}
