package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/faultline-dev/faultline/processors/alert"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
)

// liveLatency runs `faultline run` and feeds it live telemetry (event time
// = now) for a service whose error rate jumps after a deploy, then measures
// from the incident's StartedAt (event time) to the moment the incident with
// its suspect is queryable in ClickHouse, and to the webhook's receipt.
func liveLatency(bin string) error {
	dir, err := os.MkdirTemp("", "faultline-live-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var mu sync.Mutex
	var hookAt time.Time
	var hookStarted time.Time
	var provisional bool
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev alert.Event
		b, _ := io.ReadAll(r.Body)
		if json.Unmarshal(b, &ev) == nil && ev.Type == alert.TypeCorrelated && ev.Incident.Service == "live" {
			mu.Lock()
			if hookAt.IsZero() {
				hookAt, hookStarted, provisional = time.Now(), ev.Incident.StartedAt, ev.Incident.Provisional
			}
			mu.Unlock()
		}
	}))
	defer hook.Close()
	ports := map[string]int{}
	for _, k := range []string{"nats", "tcp", "http", "gw", "grpc", "admin"} {
		if ports[k], err = chlocal.FreePort(); err != nil {
			return err
		}
	}
	addr := func(k string) string { return "127.0.0.1:" + strconv.Itoa(ports[k]) }
	cmd := exec.Command(filepath.Join(bin, "faultline"), "run")
	cmd.Env = append(os.Environ(), "FAULTLINE_DATA_DIR="+dir, "FAULTLINE_NATS_LISTEN="+addr("nats"),
		"FAULTLINE_CLICKHOUSE_LOCAL_TCP_PORT="+strconv.Itoa(ports["tcp"]), "FAULTLINE_CLICKHOUSE_LOCAL_HTTP_PORT="+strconv.Itoa(ports["http"]),
		"FAULTLINE_CLICKHOUSE_BIN="+filepath.Join(bin, "faultline-clickhouse"),
		"FAULTLINE_GATEWAY_LISTEN="+addr("gw"), "FAULTLINE_GATEWAY_GRPC_LISTEN="+addr("grpc"), "FAULTLINE_ADMIN_LISTEN="+addr("admin"), "FAULTLINE_UI_LISTEN=127.0.0.1:0",
		"FAULTLINE_WEBHOOK_URL="+hook.URL, "FAULTLINE_WEBHOOK_SECRET=live", "FAULTLINE_LOG_LEVEL=warn")
	logf, err := os.Create(filepath.Join(dir, "faultline.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	gw := "http://" + addr("gw")
	for i := 0; ; i++ {
		if resp, err := http.Get("http://" + addr("admin") + "/readyz"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				fmt.Fprintf(os.Stderr, "live: ready: %s", body)
				break
			}
		}
		if i > 300 {
			b, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("faultline run did not become ready:\n%s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	post := func(path, ctype string, body []byte) error {
		resp, err := http.Post(gw+path, ctype, bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		return nil
	}
	start := time.Now()
	deploy, _ := json.Marshal(map[string]any{"service": "live", "environment": "production", "version": "v2", "timestamp": start.UTC().Format(time.RFC3339Nano)})
	if err := post("/v1/deploys", "application/json", deploy); err != nil {
		b, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("%w\n%s", err, b)
	}
	faulty := start.Truncate(time.Minute).Add(time.Minute) // errors from the next whole minute
	conn, err := chgo.Open(&chgo.Options{Addr: []string{addr("tcp")}, Auth: chgo.Auth{Database: "faultline", Username: "default"}})
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(os.Stderr, "live: sending telemetry every second; errors from %s; this takes about five minutes\n", faulty.Format(time.TimeOnly))
	var queryable, started time.Time
	for time.Since(start) < 9*time.Minute {
		now := time.Now()
		if err := post("/v1/logs", "application/x-protobuf", liveLogs(now, now.After(faulty))); err != nil {
			return err
		}
		if queryable.IsZero() {
			var s time.Time
			var v string
			if err := conn.QueryRow(context.Background(), "SELECT StartedAt, SuspectVersion FROM incidents FINAL WHERE Service = 'live' AND SuspectVersion != '' LIMIT 1").Scan(&s, &v); err == nil {
				queryable, started = time.Now(), s
			}
		}
		mu.Lock()
		done := !queryable.IsZero() && !hookAt.IsZero()
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(time.Second - time.Since(now))
	}
	if queryable.IsZero() {
		return fmt.Errorf("no incident with a suspect within 9 minutes")
	}
	mu.Lock()
	defer mu.Unlock()
	target := 2*time.Minute + 15*time.Second
	fmt.Printf("live: incident started %s (event time); queryable with its suspect %s later; webhook received %s later (provisional: %v); target %s\n",
		started.Format(time.TimeOnly), queryable.Sub(started).Round(time.Second), hookAt.Sub(hookStarted).Round(time.Second), provisional, target)
	fmt.Println("live: the rule needs two breaching minutes; on live data a minute is judged FAULTLINE_CORRELATOR_EARLY_AFTER (10s) after it ends, provisionally, and the final verdict follows once the allowed lateness (2m) has passed")
	return nil
}

// liveLogs is one second of a service: 10 records, 3 of them errors when
// faulty (30%).
func liveLogs(now time.Time, faulty bool) []byte {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "live")
	rl.Resource().Attributes().PutStr("service.version", "v2")
	rl.Resource().Attributes().PutStr("deployment.environment.name", "production")
	recs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i := 0; i < 10; i++ {
		lr := recs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(i) * 100 * time.Millisecond)))
		lr.SetSeverityNumber(plog.SeverityNumberInfo)
		if faulty && i < 3 {
			lr.SetSeverityNumber(plog.SeverityNumberError)
		}
		lr.Body().SetStr("live request")
	}
	b, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	return b
}
